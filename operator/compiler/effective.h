// The effective policy: what the emitters (apparmor/, seccomp/, landlock/,
// nftables/, oci/) take as input. It is an AgentPolicySpec after validation
// (validate.h) and after guardrails and defaults were applied (merge.h), with
// these guarantees, so no emitter re-checks or re-defaults anything:
//
// - mode is MODE_ENFORCE or MODE_COMPLAIN.
// - filesystem.read_only_root is set. writable[] paths are absolute, clean
//   (no "..", ".", "//" or trailing "/"), sorted by path, unique; each
//   size_limit is a valid quantity (ParseQuantity in quantity.h succeeds).
//   read_only[] and deny[] are clean absolute paths, sorted, unique; no path
//   is both writable and denied.
// - exec.allow[] are clean absolute paths, sorted, unique; an entry ending in
//   "/" means every executable beneath that directory.
// - procfs and sysfs are set (not UNSPECIFIED).
// - network.dns and network.raw_sockets are set. Every egress cidr is
//   canonical ("10.0.0.0/8", "2001:db8::/32": network address, prefix always
//   present); every port has protocol set, and end_port is 0 or > port.
// - syscalls.baseline and syscalls.default_action are set; allow[] and deny[]
//   are known syscall names, sorted, unique, and disjoint (deny wins).
// - capabilities.add[] are known capability names without "CAP_", sorted.
// - processes.max is set.
#ifndef STOCKADE_OPERATOR_COMPILER_EFFECTIVE_H_
#define STOCKADE_OPERATOR_COMPILER_EFFECTIVE_H_

#include "stockade/v1/policy.pb.h"

namespace stockade::compiler {

using EffectivePolicy = ::stockade::v1::AgentPolicySpec;

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_EFFECTIVE_H_
