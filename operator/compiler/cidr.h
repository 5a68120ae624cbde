// IPv4 and IPv6 networks in CIDR notation: parsing, canonical form and
// containment, for egress rules and guardrails.
#ifndef STOCKADE_OPERATOR_COMPILER_CIDR_H_
#define STOCKADE_OPERATOR_COMPILER_CIDR_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::compiler {

struct Cidr {
  bool ipv6 = false;
  std::array<uint8_t, 16> address{};  // IPv4 uses the first 4 bytes
  int prefix = 0;

  // "10.0.0.0/8", "2001:db8::/32".
  std::string ToString() const;
  // True when every address of `inner` is in this network.
  bool Contains(const Cidr& inner) const;
};

// Parses "ADDR/PREFIX" or a single address (prefix /32 or /128). Rejects host
// bits set beyond the prefix, naming the network that was probably meant.
absl::StatusOr<Cidr> ParseCidr(absl::string_view text);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_CIDR_H_
