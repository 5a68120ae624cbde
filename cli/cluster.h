// The cluster as `kubectl stockade` reads it: the connection (kubeconfig
// found as kubectl finds it, --context, the namespace) and the Stockade
// objects, namespaces and guardrails fetched from the apiserver, with errors
// that say what was asked of which apiserver and what went wrong.
#ifndef STOCKADE_CLI_CLUSTER_H_
#define STOCKADE_CLI_CLUSTER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/merge.h"
#include "operator/kube/client.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::cli {

// --kubeconfig, --context and -n/--namespace.
struct ClusterFlags {
  std::string kubeconfig;
  std::string context;
  std::string namespace_;
};

// Finds the configuration as kubectl does: --kubeconfig, else $KUBECONFIG
// (':'-separated files merged), else ~/.kube/config, else the pod's service
// account when $KUBERNETES_SERVICE_HOST is set. FailedPrecondition naming
// what was tried when there is none.
absl::StatusOr<kube::ClusterConfig> FindClusterConfig(
    const ClusterFlags& flags);

// A ClusterAgentPolicy as the apiserver sent it and decoded.
struct Guardrail {
  nlohmann::json object;
  stockade::v1::ClusterAgentPolicy policy;
};

// A client of one apiserver and the namespace the command works in
// (--namespace, else the context's, else "default").
class Cluster {
 public:
  static absl::StatusOr<std::unique_ptr<Cluster>> Connect(
      const ClusterFlags& flags);

  const std::string& namespace_name() const { return namespace_name_; }

  // Every object of `resource` in `ns` ("" every namespace; ignored for a
  // cluster-scoped resource), or those `label_selector` selects.
  absl::StatusOr<std::vector<nlohmann::json>> List(
      const kube::Resource& resource, absl::string_view ns,
      absl::string_view label_selector = "");
  // The object, or nullopt when there is none.
  absl::StatusOr<std::optional<nlohmann::json>> Get(
      const kube::Resource& resource, absl::string_view ns,
      absl::string_view name);

  // The labels of namespace `ns` (NotFound when it does not exist).
  absl::StatusOr<compiler::NamespaceLabels> NamespaceLabels(
      absl::string_view ns);
  // Every ClusterAgentPolicy, decoded; InvalidArgument naming the first one
  // whose spec does not decode (the operator compiles nothing it selects).
  absl::StatusOr<std::vector<Guardrail>> Guardrails();

 private:
  Cluster(std::unique_ptr<kube::Client> client, std::string ns)
      : client_(std::move(client)), namespace_name_(std::move(ns)) {}
  // `status` (of a request for `what`) with the apiserver and the
  // configuration named when it never got an answer.
  absl::Status Explain(const absl::Status& status, absl::string_view what);

  std::unique_ptr<kube::Client> client_;
  std::string namespace_name_;
};

// "AgentPolicy agents/research-agent" and the like, for messages.
std::string Describe(const kube::Resource& resource, absl::string_view ns,
                     absl::string_view name);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_CLUSTER_H_
