// Combines an AgentPolicy with the ClusterAgentPolicies that select its
// namespace into the effective policy (effective.h): requests beyond a
// guardrail are rejected, fields left out take the guardrails' defaults and
// then Stockade's, and every value is clamped to the tightest guardrail.
#ifndef STOCKADE_OPERATOR_COMPILER_MERGE_H_
#define STOCKADE_OPERATOR_COMPILER_MERGE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "operator/compiler/effective.h"
#include "operator/compiler/manifest/manifest.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::compiler {

using NamespaceLabels = std::map<std::string, std::string>;

// True when the selector matches a namespace with these labels (an empty
// selector matches every namespace).
bool SelectorMatches(const stockade::v1::LabelSelector& selector,
                     const NamespaceLabels& labels);

struct MergeResult {
  EffectivePolicy effective;
  // Names of the ClusterAgentPolicies that applied, sorted.
  std::vector<std::string> guardrails;
  // Requests beyond a guardrail, each naming the field ("spec.…"), the value
  // and the guardrail. When non-empty, `effective` must not be used.
  std::vector<Problem> violations;
};

// `requested` must have passed ValidatePolicySpec; `cluster_policies` are all
// ClusterAgentPolicies (those not selecting the namespace are ignored).
MergeResult Merge(
    const stockade::v1::AgentPolicySpec& requested,
    absl::Span<const stockade::v1::ClusterAgentPolicy> cluster_policies,
    const NamespaceLabels& namespace_labels);

// Stockade's own defaults, applied after the guardrails' defaults.
inline constexpr char kDefaultWritableSize[] = "64Mi";
inline constexpr int kDefaultMaxProcesses = 128;

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_MERGE_H_
