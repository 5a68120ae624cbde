// The egress compiler: effective policy -> an nftables ruleset (nft -f
// syntax) for the container's network namespace: default drop, allowlisted
// CIDR+port destinations, DNS when enabled, IPv4 and IPv6.
#ifndef STOCKADE_OPERATOR_COMPILER_NFTABLES_NFTABLES_H_
#define STOCKADE_OPERATOR_COMPILER_NFTABLES_NFTABLES_H_

#include <string>

#include "absl/strings/string_view.h"
#include "operator/compiler/effective.h"

namespace stockade::compiler {

// The table every Stockade egress ruleset lives in (family inet).
inline constexpr char kNftTable[] = "stockade";

// Returns the ruleset: table inet stockade with one output chain (policy
// drop; accept replies, loopback, IPv6 neighbour discovery, DNS when allowed,
// each egress rule's CIDRs x ports; every drop counted and logged at most
// 10/s with prefix "stockade-egress-drop "). Egress only: no input chain,
// since the agent cannot listen (Landlock denies bind) and inbound traffic is
// the NetworkPolicy's job. In Complain mode the policy is accept and what
// would be dropped is logged with prefix "stockade-egress-complain ". The
// prefix then names the policy, `log_tag` ("namespace/name"), when it fits
// the kernel's 127 bytes, so that the node agent attributes the logged drops
// (node/denials). The text starts with an empty table and its deletion, so
// `nft -f` (one transaction) replaces a previous version and re-applying is
// idempotent.
std::string CompileNftables(const EffectivePolicy& policy,
                            absl::string_view log_tag = "");

// The log prefix CompileNftables writes.
std::string NftLogPrefix(bool complain, absl::string_view log_tag);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_NFTABLES_NFTABLES_H_
