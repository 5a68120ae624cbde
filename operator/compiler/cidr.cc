#include "operator/compiler/cidr.h"

#include <arpa/inet.h>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stockade::compiler {
namespace {

int Bits(const Cidr& c) { return c.ipv6 ? 128 : 32; }

bool BitSet(const std::array<uint8_t, 16>& a, int bit) {
  return (a[bit / 8] >> (7 - bit % 8)) & 1;
}

}  // namespace

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ipv6 ? AF_INET6 : AF_INET, address.data(), buf, sizeof(buf));
  return absl::StrCat(buf, "/", prefix);
}

bool Cidr::Contains(const Cidr& inner) const {
  if (ipv6 != inner.ipv6 || inner.prefix < prefix) return false;
  for (int bit = 0; bit < prefix; ++bit) {
    if (BitSet(address, bit) != BitSet(inner.address, bit)) return false;
  }
  return true;
}

absl::StatusOr<Cidr> ParseCidr(absl::string_view text) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text.substr(0, 64), "\" is not a valid CIDR (", why,
                     "); write e.g. 10.0.0.0/8 or 2001:db8::/32"));
  };
  if (text.size() > 64) return invalid("too long");
  Cidr c;
  const size_t slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  if (addr.find(':') != std::string::npos) {
    c.ipv6 = true;
    if (inet_pton(AF_INET6, addr.c_str(), c.address.data()) != 1) {
      return invalid("bad IPv6 address");
    }
  } else if (inet_pton(AF_INET, addr.c_str(), c.address.data()) != 1) {
    return invalid("bad IPv4 address");
  }
  c.prefix = Bits(c);
  if (slash != absl::string_view::npos) {
    const absl::string_view p = text.substr(slash + 1);
    int prefix = 0;
    if (p.empty() || p.size() > 3 || !absl::SimpleAtoi(p, &prefix) ||
        prefix < 0 || prefix > Bits(c) || p[0] == '+' || p[0] == '-') {
      return invalid(absl::StrCat("prefix length must be 0 to ", Bits(c)));
    }
    c.prefix = prefix;
  }
  Cidr network = c;
  for (int bit = c.prefix; bit < Bits(c); ++bit) {
    network.address[bit / 8] &= ~(1 << (7 - bit % 8));
  }
  if (network.address != c.address) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" has host bits set; did you mean ",
                     network.ToString(), "?"));
  }
  return c;
}

}  // namespace stockade::compiler
