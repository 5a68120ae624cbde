#include "operator/compiler/nftables/nftables.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace stockade::compiler {
namespace {

namespace v1 = ::stockade::v1;

// A parsed CIDR (the effective policy's are canonical: network address and
// prefix always present).
struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> addr = {};
  int prefix = 0;
  std::string text;
};

bool ParseCidr(absl::string_view text, Cidr* out) {
  const size_t slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  out->v6 = addr.find(':') != std::string::npos;
  const int bits = out->v6 ? 128 : 32;
  out->prefix = bits;
  if (slash != absl::string_view::npos &&
      !absl::SimpleAtoi(text.substr(slash + 1), &out->prefix)) {
    return false;
  }
  if (out->prefix < 0 || out->prefix > bits) return false;
  if (inet_pton(out->v6 ? AF_INET6 : AF_INET, addr.c_str(), out->addr.data()) !=
      1) {
    return false;
  }
  out->text = std::string(text);
  return true;
}

// True when every address of `inner` lies in `outer` (same family).
bool Contains(const Cidr& outer, const Cidr& inner) {
  if (outer.prefix > inner.prefix) return false;
  const int full = outer.prefix / 8;
  if (!std::equal(outer.addr.begin(), outer.addr.begin() + full,
                  inner.addr.begin())) {
    return false;
  }
  const int rest = outer.prefix % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (outer.addr[full] & mask) == (inner.addr[full] & mask);
}

// The CIDRs of one family, in address order, without those inside another
// (nft would reject overlapping intervals in one set).
std::vector<std::string> Normalize(std::vector<Cidr> cidrs) {
  std::sort(cidrs.begin(), cidrs.end(), [](const Cidr& a, const Cidr& b) {
    return std::tie(a.addr, a.prefix) < std::tie(b.addr, b.prefix);
  });
  std::vector<std::string> out;
  std::vector<Cidr> kept;
  for (const Cidr& c : cidrs) {
    bool inside = false;
    for (const Cidr& k : kept) inside = inside || Contains(k, c);
    if (inside) continue;
    kept.push_back(c);
    out.push_back(c.text);
  }
  return out;
}

// Port ranges sorted and merged (overlapping or adjacent), as nft writes
// them: "443", "8000-8080".
std::vector<std::string> PortSet(std::vector<std::pair<int, int>> ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<int, int>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  std::vector<std::string> out;
  for (const auto& [first, last] : merged) {
    out.push_back(first == last ? absl::StrCat(first)
                                : absl::StrCat(first, "-", last));
  }
  return out;
}

std::string Set(const std::vector<std::string>& items) {
  return absl::StrCat("{ ", absl::StrJoin(items, ", "), " }");
}

// Accept rules for one egress rule.
void EgressRule(const v1::EgressRule& rule, int index, std::string* out) {
  std::vector<Cidr> v4, v6;
  for (const std::string& text : rule.cidrs()) {
    Cidr c;
    if (!ParseCidr(text, &c)) continue;  // validated upstream
    (c.v6 ? v6 : v4).push_back(c);
  }
  std::vector<std::pair<int, int>> tcp, udp;
  for (const v1::PortRule& p : rule.ports()) {
    const int last = p.end_port() > p.port() ? p.end_port() : p.port();
    (p.protocol() == v1::PROTOCOL_UDP ? udp : tcp).push_back({p.port(), last});
  }
  const std::string comment = absl::StrCat("comment \"egress ", index, "\"");
  for (const auto& [family, cidrs] :
       {std::pair<const char*, std::vector<Cidr>*>{"ip", &v4},
        std::pair<const char*, std::vector<Cidr>*>{"ip6", &v6}}) {
    if (cidrs->empty()) continue;
    const std::string daddr =
        absl::StrCat(family, " daddr ", Set(Normalize(*cidrs)));
    if (rule.ports_size() == 0) {
      absl::StrAppend(out, "\t\t", daddr, " meta l4proto { tcp, udp } accept ",
                      comment, "\n");
      continue;
    }
    if (!tcp.empty()) {
      absl::StrAppend(out, "\t\t", daddr, " tcp dport ", Set(PortSet(tcp)),
                      " accept ", comment, "\n");
    }
    if (!udp.empty()) {
      absl::StrAppend(out, "\t\t", daddr, " udp dport ", Set(PortSet(udp)),
                      " accept ", comment, "\n");
    }
  }
}

}  // namespace

std::string NftLogPrefix(bool complain, absl::string_view log_tag) {
  std::string prefix =
      complain ? "stockade-egress-complain " : "stockade-egress-drop ";
  // NF_LOG_PREFIXLEN is 128 with the NUL; the tag holds only Kubernetes
  // name characters and '/'.
  if (!log_tag.empty() && prefix.size() + log_tag.size() + 1 <= 127) {
    absl::StrAppend(&prefix, log_tag, " ");
  }
  return prefix;
}

std::string CompileNftables(const EffectivePolicy& policy,
                            absl::string_view log_tag) {
  const bool complain = policy.mode() == v1::MODE_COMPLAIN;
  std::string out = absl::StrCat(
      "# Stockade egress rules for one pod's network namespace (generated).\n"
      "# `nft -f` applies this file in one transaction: the empty table and\n"
      "# the delete make re-applying it replace the previous version.\n"
      "table inet ",
      kNftTable, " {\n}\ndelete table inet ", kNftTable, "\ntable inet ",
      kNftTable, " {\n");
  absl::StrAppend(&out, "\tchain output {\n",
                  "\t\ttype filter hook output priority 0; policy ",
                  complain ? "accept" : "drop", ";\n");
  absl::StrAppend(&out,
                  "\t\tct state established,related accept\n"
                  "\t\toif \"lo\" accept\n"
                  // IPv6 neighbour discovery: without it no IPv6 packet
                  // leaves.
                  "\t\ticmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
                  "nd-neighbor-advert } accept\n");
  if (policy.network().dns()) {
    absl::StrAppend(&out, "\t\tudp dport 53 accept comment \"dns\"\n",
                    "\t\ttcp dport 53 accept comment \"dns\"\n");
  }
  for (int i = 0; i < policy.network().egress_size(); ++i) {
    EgressRule(policy.network().egress(i), i, &out);
  }
  // The kernel's own link-local multicast (MLD reports when an interface
  // comes up) is no agent's egress: dropped (let through in Complain mode)
  // without a log line, so that denial reports name only what the agent did.
  absl::StrAppend(&out, "\t\tip6 daddr ff02::/16 ",
                  complain ? "accept" : "drop",
                  " comment \"link-local multicast\"\n");
  // Counted always, logged at most 10 times a second.
  absl::StrAppend(&out, "\t\tcounter limit rate 10/second log prefix \"",
                  NftLogPrefix(complain, log_tag), "\"\n");
  absl::StrAppend(&out, "\t}\n}\n");
  return out;
}

}  // namespace stockade::compiler
