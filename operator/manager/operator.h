// stockade-operator's composition root: informers on AgentPolicy,
// ClusterAgentPolicy and Namespace feed one level-triggered reconcile
// (operator/controller) whose output goes to the node agents
// (operator/distribution) and back to the API server as status and Events;
// the Agent controller (agent_controller.h) turns Agents into Deployments
// and NetworkPolicies;
// leader election decides which replica does it; /healthz, /readyz and
// /metrics report on it. Each part stays unaware of the others.
#ifndef STOCKADE_OPERATOR_MANAGER_OPERATOR_H_
#define STOCKADE_OPERATOR_MANAGER_OPERATOR_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "operator/distribution/log.h"

namespace stockade::manager {

struct OperatorOptions {
  // Empty: $KUBECONFIG, in-cluster, ~/.kube/config (kube::LoadConfig).
  std::string kubeconfig;
  // Node agents connect here (gRPC, mTLS unless insecure).
  std::string grpc_address = "0.0.0.0:9443";
  std::string tls_cert, tls_key, tls_client_ca;
  bool insecure = false;
  // /healthz, /readyz, /metrics.
  std::string http_address = "0.0.0.0:8080";
  // Leader election over a coordination.k8s.io Lease.
  bool leader_elect = true;
  std::string lease_namespace = "stockade-system";
  std::string lease_name = "stockade-operator";
  std::string identity;  // default: hostname + pid
  absl::Duration lease_duration = absl::Seconds(15);
  absl::Duration renew_deadline = absl::Seconds(10);
  absl::Duration retry_period = absl::Seconds(2);
  // Every policy is reconciled at least this often, changes or not.
  absl::Duration resync = absl::Seconds(30);
  // Label this replica's own Pod (named by `identity`, in `pod_namespace`)
  // stockade.dev/leader=true while it leads and =false before, so that a
  // Service selecting the label sends the node agents to the leader while
  // every replica stays Ready (the Helm chart's gRPC Service).
  bool label_leader_pod = false;
  std::string pod_namespace;  // default: lease_namespace
  distribution::LogLevel log_level = distribution::LogLevel::kInfo;
};

class Operator {
 public:
  // Connects to the API server, starts the gRPC and HTTP servers, the
  // informers and the elector. Fails on bad flags, credentials or ports.
  static absl::StatusOr<std::unique_ptr<Operator>> Start(
      OperatorOptions options);
  // Stops everything (releases the lease when leading).
  ~Operator();
  Operator(const Operator&) = delete;
  Operator& operator=(const Operator&) = delete;

  // Blocks until Stop() or until leadership is lost (a replica that lost
  // the lease exits rather than run on with stale state). Returns why.
  absl::Status Wait();
  void Stop();

  int grpc_port() const;
  int http_port() const;

  struct Impl;

 private:
  Operator() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stockade::manager

#endif  // STOCKADE_OPERATOR_MANAGER_OPERATOR_H_
