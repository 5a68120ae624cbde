// Rewrites a container's OCI runtime spec (config.json) with a compiled
// policy: what the shim does at Create, and what `stockade apply-spec` shows.
// Every field the policy does not touch is kept as it was.
#ifndef STOCKADE_SHIM_SPEC_APPLY_SPEC_H_
#define STOCKADE_SHIM_SPEC_APPLY_SPEC_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::shim {

// The annotation that records which compiled policy confines the container.
inline constexpr char kPolicyHashAnnotation[] = "stockade.dev/policy-hash";

struct ApplySpecOptions {
  // Set process.apparmorProfile to the policy's profile. Only where the
  // kernel has AppArmor and the profile is loaded: runc fails otherwise.
  bool set_apparmor_profile = false;
};

// Returns config_json rewritten with policy. Only ever tightens:
//
// - root.readonly: set when the policy asks for a read-only root.
// - mounts: the policy's mounts replace an existing mount at the same
//   destination (in place; later duplicates removed) or are appended.
// - linux.maskedPaths, linux.readonlyPaths: union with the policy's, sorted.
// - process.capabilities: each of bounding, effective, permitted,
//   inheritable and ambient becomes (its current content) ∩ (the policy's
//   capabilities), sorted. A capability the spec did not grant (say a pod that
//   drops ALL) is never added. Ambient therefore stays empty unless the spec
//   already had it (CRI never sets it): a non-root agent keeps an allowed
//   capability across execve only if the spec put it in ambient. A spec
//   without process.capabilities (runc then keeps all of root's) gets the
//   policy's capabilities in bounding, effective and permitted.
// - process.noNewPrivileges: true.
// - process.rlimits: an entry of the same type is replaced (in place, later
//   duplicates removed) by the lower soft and the lower hard value of the two;
//   otherwise the policy's entry is appended.
// - linux.resources.pids.limit: the lower of the two when the spec has a
//   positive limit, else the policy's.
// - linux.seccomp: the policy's seccomp object, replacing any other.
// - process.apparmorProfile: the policy's profile name, when
//   options.set_apparmor_profile.
// - annotations[kPolicyHashAnnotation]: the policy's hash.
//
// Applying twice gives the same bytes as applying once. Output: JSON indented
// by 2, keys in their original order (new ones after), ending in "\n".
// Errors (InvalidArgument, naming the field) on malformed input: not JSON, a
// top level or field of the wrong type; or on a policy without hash or
// seccomp. Never a partial result.
absl::StatusOr<std::string> ApplySpec(
    std::string_view config_json, const stockade::v1::CompiledPolicy& policy,
    const ApplySpecOptions& options);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_SPEC_APPLY_SPEC_H_
