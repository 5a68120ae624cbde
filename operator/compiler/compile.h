// The compiler's front door: an AgentPolicy and the ClusterAgentPolicies of
// the cluster -> one CompiledPolicy holding every layer's rules (AppArmor,
// seccomp, Landlock, OCI spec changes, nftables), named by its content hash.
#ifndef STOCKADE_OPERATOR_COMPILER_COMPILE_H_
#define STOCKADE_OPERATOR_COMPILER_COMPILE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "operator/compiler/effective.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/merge.h"
#include "stockade/v1/compiled.pb.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::compiler {

// Changes whenever the compiler's output for the same input changes; part of
// every policy hash.
inline constexpr char kCompilerVersion[] = "stockade-compiler/2";

// sha256 (hex) over the compiler version, the source's kind, namespace and
// name, and the effective policy.
std::string PolicyHash(const EffectivePolicy& policy,
                       const stockade::v1::PolicySource& source);

// "stockade.<namespace>.<name>.<first 12 hex digits of hash>"; cluster-scoped
// sources use "_cluster" as namespace.
std::string AppArmorProfileName(const stockade::v1::PolicySource& source,
                                absl::string_view hash);

// Emits every layer for an effective policy (see effective.h).
absl::StatusOr<stockade::v1::CompiledPolicy> CompileEffective(
    const EffectivePolicy& policy, const stockade::v1::PolicySource& source);

struct CompileResult {
  std::optional<stockade::v1::CompiledPolicy> compiled;
  // Validation problems and guardrail violations (paths start at "spec").
  std::vector<Problem> problems;
};

// Validates `policy`, merges it with the ClusterAgentPolicies selecting its
// namespace (labels of that namespace given) and emits every layer.
// `source_kind` is "Agent" for a policy written inline in an Agent.
CompileResult CompileAgentPolicy(
    const stockade::v1::AgentPolicy& policy,
    absl::Span<const stockade::v1::ClusterAgentPolicy> cluster_policies,
    const NamespaceLabels& namespace_labels,
    absl::string_view source_kind = "AgentPolicy");

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_COMPILE_H_
