// The Agent controller's wiring: informers on Agents and on the Deployments
// and NetworkPolicies they own, a work queue keyed per Agent, and for each
// key the pure reconcile of operator/controller/agent_reconciler.h followed
// by server-side applies (field manager "stockade-operator"), a status write
// to agents/status and Events. AgentPolicies, ClusterAgentPolicies and
// Namespaces come from the operator's informers (read only here).
#ifndef STOCKADE_OPERATOR_MANAGER_AGENT_CONTROLLER_H_
#define STOCKADE_OPERATOR_MANAGER_AGENT_CONTROLLER_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "operator/controller/reconciler.h"
#include "operator/distribution/log.h"
#include "operator/kube/client.h"
#include "operator/kube/events.h"
#include "operator/kube/informer.h"
#include "operator/kube/workqueue.h"
#include "operator/manager/metrics.h"

namespace stockade::manager {

// The field manager of every server-side apply of the operator.
inline constexpr char kFieldManager[] = "stockade-operator";

// Records `events` (failures are logged: an Event is never worth a retry).
void RecordEvents(kube::EventRecorder* recorder,
                  const std::vector<controller::Event>& events,
                  const distribution::LogFn& log);

struct AgentControllerDeps {
  kube::Client* client = nullptr;
  kube::EventRecorder* recorder = nullptr;
  OperatorMetrics* metrics = nullptr;
  distribution::LogFn log;
  // The operator's informers (must outlive the controller).
  const kube::Informer* policies = nullptr;
  const kube::Informer* cluster_policies = nullptr;
  const kube::Informer* namespaces = nullptr;
  // Every Agent is reconciled at least this often.
  absl::Duration resync = absl::Seconds(30);
  kube::InformerOptions informer_options;
};

class AgentController {
 public:
  // Creates the informers (not started).
  explicit AgentController(AgentControllerDeps deps);
  ~AgentController();  // Stop()
  AgentController(const AgentController&) = delete;
  AgentController& operator=(const AgentController&) = delete;

  void StartInformers();
  // Whether the controller's own informers have listed once.
  bool Synced() const;
  // Starts the worker (on the leader): once every informer, the operator's
  // included, has synced, it reconciles each Agent and then each key queued.
  void StartWorker();
  void Stop();

  // Queues every Agent: a guardrail (ClusterAgentPolicy) changed.
  void EnqueueAll();
  // Queues the Agents of namespace `ns` whose policy is `policy` (its
  // policyRef, or the policy an inline spec.policy becomes), or every Agent
  // of `ns` when `policy` is empty: what a change of that AgentPolicy, or of
  // the namespace's labels, can affect. A policy's status writes (one per
  // policy, thousands at a cold start) so reach only its own Agents.
  void EnqueueAgents(const std::string& ns, const std::string& policy);

 private:
  // What the last apply of an object produced: a digest of what was
  // applied, and the object's uid and resourceVersion after it. An object
  // whose desired state has the same digest and whose cached copy is that
  // very version (nobody wrote it since, nor deleted and made it again) is
  // not applied again.
  struct Applied {
    size_t digest = 0;
    std::string uid, resource_version;
  };
  // Whether the desired object of digest `digest` must be applied over
  // `live` (the informer's copy, or null), for applied_ key `key`.
  bool NeedsApply(const std::string& key, size_t digest,
                  const nlohmann::json* live);

  // Reconciles the Agent `key` ("namespace/name"); *exists is false when it
  // is gone (the garbage collector deletes what it owned).
  absl::Status Reconcile(const std::string& key, bool* exists);

  AgentControllerDeps deps_;
  std::unique_ptr<kube::Informer> agents_, deployments_, network_policies_;
  kube::WorkQueue queue_;
  std::thread worker_;
  // "<resource>/<namespace>/<name>" -> the last apply; the worker's only.
  std::map<std::string, Applied> applied_;
};

}  // namespace stockade::manager

#endif  // STOCKADE_OPERATOR_MANAGER_AGENT_CONTROLLER_H_
