// The ClusterAgentPolicy guardrails that concern the Agent workload rather
// than its AgentPolicy: image digest pinning, allowed registries, maximum
// replicas and required resource limits. An Agent that breaks one is
// blocked by the Agent controller (agent_reconciler.h). Pure functions.
#ifndef STOCKADE_OPERATOR_CONTROLLER_WORKLOAD_GUARDRAILS_H_
#define STOCKADE_OPERATOR_CONTROLLER_WORKLOAD_GUARDRAILS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/merge.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::controller {

// A container image reference, normalized as the container runtimes do:
// "python:3.12" is docker.io/library/python with tag 3.12.
struct ImageReference {
  std::string registry;    // "docker.io", "ghcr.io", "localhost:5000"
  std::string repository;  // registry + path: "docker.io/library/python"
  std::string tag;         // "" when absent
  std::string digest;      // "sha256:<hex>" or "" when absent
};
ImageReference ParseImage(absl::string_view image);

// Whether `image` is pinned by a sha256 digest (name@sha256:<64 hex>).
bool PinnedByDigest(absl::string_view image);

// Whether the image's repository is `entry` or lies beneath it
// ("ghcr.io/acme" admits ghcr.io/acme/agent, not ghcr.io/acmecorp/agent).
bool RegistryAllows(absl::string_view entry, const ImageReference& image);

// The violations of `spec` against the guardrails of every ClusterAgentPolicy
// selecting a namespace with `namespace_labels`, in the order of
// `cluster_policies` then of the guardrails. Each names the Agent's field
// ("spec.image"), the value, the ClusterAgentPolicy and its guardrail.
std::vector<compiler::Problem> CheckWorkloadGuardrails(
    const stockade::v1::AgentSpec& spec,
    absl::Span<const stockade::v1::ClusterAgentPolicy> cluster_policies,
    const compiler::NamespaceLabels& namespace_labels);

}  // namespace stockade::controller

#endif  // STOCKADE_OPERATOR_CONTROLLER_WORKLOAD_GUARDRAILS_H_
