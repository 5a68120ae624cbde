#include "operator/manager/operator.h"

#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "operator/controller/objects.h"
#include "operator/controller/reconciler.h"
#include "operator/distribution/log.h"
#include "operator/distribution/server.h"
#include "operator/http/http_endpoints.h"
#include "operator/kube/client.h"
#include "operator/kube/events.h"
#include "operator/kube/informer.h"
#include "operator/kube/kubeconfig.h"
#include "operator/kube/leader.h"
#include "operator/kube/workqueue.h"
#include "operator/manager/agent_controller.h"
#include "operator/manager/denial_recorder.h"
#include "operator/manager/metrics.h"

namespace stockade::manager {
namespace {

using distribution::LogFields;
using distribution::LogLevel;

// The one work item: everything is recomputed from the caches.
constexpr char kAll[] = "all";

std::string DefaultIdentity() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "_", getpid());
}

// Decoded objects by key, reused while their resourceVersion is unchanged:
// a reconcile of 10,000 unchanged policies decodes none. Take() lends the
// objects to one reconcile (moved, not copied: they are most of the
// operator's memory) and Return() takes them back.
template <typename T>
class DecodeCache {
 public:
  using Decoder = absl::StatusOr<T> (*)(absl::string_view);
  explicit DecodeCache(Decoder decode) : decode_(decode) {}

  // The objects of `list`, decoded; undecodable ones are logged and
  // skipped (the API server validated them against the CRD already).
  // Objects not in `list` are forgotten.
  std::vector<T> Take(const std::vector<kube::ObjectPtr>& list,
                      const distribution::LogFn& log) {
    std::map<std::string, Entry> next;
    std::vector<T> out;
    out.reserve(list.size());
    lent_.clear();
    for (const kube::ObjectPtr& object : list) {
      std::string key = kube::KeyOf(*object);
      const std::string version = kube::ResourceVersionOf(*object);
      auto cached = cache_.find(key);
      if (cached != cache_.end() && !version.empty() &&
          cached->second.version == version) {
        out.push_back(std::move(cached->second.object));
      } else {
        absl::StatusOr<T> decoded = decode_(kube::ObjectText(*object));
        if (!decoded.ok()) {
          log(LogLevel::kWarning, "cannot decode object",
              {{"key", key},
               {"error", std::string(decoded.status().message())}});
          continue;
        }
        out.push_back(*std::move(decoded));
      }
      next[key].version = version;
      lent_.push_back(std::move(key));
    }
    cache_ = std::move(next);
    return out;
  }

  // Takes back what the last Take() lent, in its order.
  void Return(std::vector<T> objects) {
    for (size_t i = 0; i < objects.size() && i < lent_.size(); ++i) {
      auto it = cache_.find(lent_[i]);
      if (it != cache_.end()) it->second.object = std::move(objects[i]);
    }
    lent_.clear();
  }

 private:
  struct Entry {
    std::string version;
    T object;
  };
  Decoder decode_;
  std::map<std::string, Entry> cache_;
  std::vector<std::string> lent_;  // keys of what Take() returned
};

absl::StatusOr<controller::AgentPolicyObject> DecodePolicy(
    absl::string_view text) {
  return controller::DecodeAgentPolicy(text);
}
absl::StatusOr<controller::ClusterAgentPolicyObject> DecodeClusterPolicy(
    absl::string_view text) {
  return controller::DecodeClusterAgentPolicy(text);
}
absl::StatusOr<controller::NamespaceObject> DecodeNs(absl::string_view text) {
  return controller::DecodeNamespace(text);
}

}  // namespace

struct Operator::Impl {
  OperatorOptions options;
  distribution::LogFn log;
  std::unique_ptr<kube::Client> client;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<OperatorMetrics> metrics;
  std::unique_ptr<distribution::DistributionServer> server;
  std::unique_ptr<http::HttpEndpoints> http;
  std::unique_ptr<kube::EventRecorder> recorder;
  // After recorder: destroyed before it (and after the server, reset first).
  std::unique_ptr<DenialRecorder> denials;
  std::unique_ptr<kube::Informer> policies, cluster_policies, namespaces;
  std::unique_ptr<AgentController> agents;
  kube::WorkQueue queue;
  std::unique_ptr<kube::LeaderElector> elector;
  std::thread worker;
  std::atomic<bool> leading{false};
  std::atomic<bool> reconciled_once{false};

  controller::PolicyReconciler reconciler;
  DecodeCache<controller::AgentPolicyObject> policy_cache{&DecodePolicy};
  DecodeCache<controller::ClusterAgentPolicyObject> cluster_cache{
      &DecodeClusterPolicy};
  DecodeCache<controller::NamespaceObject> ns_cache{&DecodeNs};

  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status why ABSL_GUARDED_BY(mu);

  void Finish(absl::Status status) {
    absl::MutexLock lock(&mu);
    if (!done) {
      done = true;
      why = std::move(status);
    }
  }

  bool Synced() const {
    return policies->HasSynced() && cluster_policies->HasSynced() &&
           namespaces->HasSynced() && agents->Synced();
  }

  absl::Status Ready() const {
    if (!Synced()) return absl::UnavailableError("caches not synced");
    if (options.leader_elect && !leading) {
      return absl::UnavailableError(
          "not the leader (node agents connect to the leader)");
    }
    if (!reconciled_once) return absl::UnavailableError("no reconcile yet");
    return absl::OkStatus();
  }

  // stockade.dev/leader on this replica's Pod (options.label_leader_pod).
  void LabelOwnPod(bool leader);

  void StartWorker() {
    agents->StartWorker();
    worker = std::thread([this] {
      // The first reconcile must see every policy: a partial desired state
      // would tell the nodes to drop what they hold.
      while (!Synced()) {
        if (queue.ShuttingDown()) return;
        absl::SleepFor(absl::Milliseconds(50));
      }
      queue.Add(kAll);
      std::string key;
      while (queue.Get(&key)) {
        metrics->queue_depth->Set(static_cast<double>(queue.Len()));
        absl::Status status = ReconcileOnce();
        if (status.ok()) {
          queue.Forget(key);
          queue.AddAfter(key, options.resync);
        } else {
          metrics->reconcile_errors->Increment();
          log(LogLevel::kError, "reconcile failed",
              {{"error", std::string(status.message())}});
          queue.AddRateLimited(key);
        }
        queue.Done(key);
      }
    });
  }

  absl::Status ReconcileOnce() {
    const absl::Time start = absl::Now();
    controller::Snapshot snapshot;
    snapshot.policies = policy_cache.Take(policies->List(), log);
    snapshot.cluster_policies =
        cluster_cache.Take(cluster_policies->List(), log);
    std::vector<controller::NamespaceObject> namespace_objects =
        ns_cache.Take(namespaces->List(), log);
    for (const controller::NamespaceObject& ns : namespace_objects) {
      snapshot.namespaces[ns.name] = ns.labels;
    }
    ns_cache.Return(std::move(namespace_objects));
    // However this reconcile ends, the decoded objects go back.
    absl::Cleanup return_objects = [&] {
      policy_cache.Return(std::move(snapshot.policies));
      cluster_cache.Return(std::move(snapshot.cluster_policies));
    };
    for (const distribution::NodeInfo& node : server->Nodes()) {
      if (!node.connected) continue;
      controller::NodeState state;
      state.name = node.name;
      state.held.insert(node.held.begin(), node.held.end());
      state.in_use.insert(node.in_use.begin(), node.in_use.end());
      snapshot.nodes.push_back(std::move(state));
    }
    controller::ReconcileResult result = reconciler.Reconcile(snapshot);

    std::vector<distribution::PolicyPtr> desired;
    desired.reserve(result.desired.policies.size());
    for (const auto& [hash, policy] : result.desired.policies) {
      desired.push_back(policy);
    }
    std::vector<distribution::IndexEntry> index;
    index.reserve(result.desired.index.size());
    for (const auto& [key, hash] : result.desired.index) {
      index.push_back({key.first, key.second, hash});
    }
    absl::Status set = server->SetDesired(std::move(desired), index);
    if (!set.ok()) return set;

    absl::Status first_error = absl::OkStatus();
    auto write_status = [&](const kube::Resource& resource,
                            const controller::ObjectRef& object,
                            const std::string& patch) {
      auto written = client->PatchStatus(resource, object.namespace_,
                                         object.name, kube::PatchType::kMerge,
                                         nlohmann::json::parse(patch));
      metrics->status_writes->Increment();
      // NotFound: deleted since the snapshot; the next reconcile knows.
      if (!written.ok() && !absl::IsNotFound(written.status()) &&
          first_error.ok()) {
        first_error = written.status();
      }
    };
    for (const controller::AgentPolicyResult& p : result.policies) {
      if (p.status_changed) {
        write_status(kube::kAgentPolicy, p.object,
                     controller::StatusMergePatch(p.status));
      }
    }
    for (const controller::ClusterAgentPolicyResult& p :
         result.cluster_policies) {
      if (p.status_changed) {
        write_status(kube::kClusterAgentPolicy, p.object,
                     controller::StatusMergePatch(p.status));
      }
    }
    RecordEvents(recorder.get(), result.events, log);
    metrics->reconciles->Increment();
    metrics->policies->Set(static_cast<double>(result.policies.size()));
    metrics->reconcile_seconds->Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
    reconciled_once = true;
    if (result.stats.compiled > 0 || result.stats.failed > 0) {
      log(LogLevel::kInfo, "reconciled",
          {{"policies", absl::StrCat(result.policies.size())},
           {"compiled", absl::StrCat(result.stats.compiled)},
           {"failed", absl::StrCat(result.stats.failed)},
           {"version", absl::StrCat(server->version())},
           {"nodes", absl::StrCat(snapshot.nodes.size())}});
    }
    // The result and the compiled policies a change replaced are freed now;
    // give their pages back rather than keep the peak.
    std::move(return_objects).Invoke();
    result = controller::ReconcileResult();
    malloc_trim(0);
    metrics->heap_bytes->Set(static_cast<double>(mallinfo2().uordblks));
    return first_error;
  }
};

void Operator::Impl::LabelOwnPod(bool leader) {
  static constexpr kube::Resource kPod{"", "v1", "pods", "Pod", true};
  const std::string& ns = options.pod_namespace.empty()
                              ? options.lease_namespace
                              : options.pod_namespace;
  nlohmann::json patch = {
      {"metadata",
       {{"labels", {{"stockade.dev/leader", leader ? "true" : "false"}}}}}};
  absl::StatusOr<nlohmann::json> r =
      client->Patch(kPod, ns, options.identity, kube::PatchType::kMerge, patch);
  if (!r.ok()) {
    log(LogLevel::kWarning, "cannot label this replica's pod",
        {{"pod", absl::StrCat(ns, "/", options.identity)},
         {"error", std::string(r.status().message())}});
  }
}

absl::StatusOr<std::unique_ptr<Operator>> Operator::Start(
    OperatorOptions options) {
  std::unique_ptr<Operator> op(new Operator());
  op->impl_ = std::make_unique<Impl>();
  Impl& impl = *op->impl_;
  if (options.identity.empty()) options.identity = DefaultIdentity();
  impl.options = options;
  impl.log =
      distribution::StderrJsonLog("stockade-operator", options.log_level);
  distribution::RouteGrpcLogs(impl.log);

  absl::StatusOr<kube::ClusterConfig> config =
      kube::LoadConfig(options.kubeconfig);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<kube::Client>> client =
      kube::Client::FromConfig(*std::move(config));
  if (!client.ok()) return client.status();
  impl.client = *std::move(client);

  impl.registry = std::make_shared<prometheus::Registry>();
  impl.metrics = std::make_unique<OperatorMetrics>(*impl.registry);

  kube::EventRecorderOptions event_options;
  event_options.instance = options.identity;
  impl.recorder = std::make_unique<kube::EventRecorder>(
      impl.client.get(), "stockade-operator", event_options);
  impl.denials = std::make_unique<DenialRecorder>(
      impl.client.get(), impl.recorder.get(), impl.metrics.get(), impl.log);

  distribution::ServerOptions server_options;
  server_options.on_denials =
      [&impl](const std::string& node,
              const google::protobuf::RepeatedPtrField<v1::NodeDenial>& d) {
        impl.denials->Add(node, d);
      };
  server_options.address = options.grpc_address;
  server_options.cert_file = options.tls_cert;
  server_options.key_file = options.tls_key;
  server_options.client_ca_file = options.tls_client_ca;
  server_options.insecure = options.insecure;
  server_options.log = impl.log;
  auto server = distribution::DistributionServer::Start(server_options);
  if (!server.ok()) return server.status();
  impl.server = *std::move(server);
  impl.metrics->WatchServer(impl.server.get());
  impl.server->SetNodeCallback(
      [&impl](const distribution::NodeInfo&) { impl.queue.Add(kAll); });

  auto http = http::HttpEndpoints::Start(options.http_address,
                                         impl.metrics->Collectable(),
                                         [&impl] { return impl.Ready(); });
  if (!http.ok()) return http.status();
  impl.http = *std::move(http);

  // A change of a policy, guardrail or namespace: everything is
  // recomputed, and the Agents it can affect look at their policy again
  // (`agents_of` names them from the changed object).
  auto on_change =
      [&impl](std::function<void(const nlohmann::json&)> agents_of) {
        kube::InformerHandlers h;
        h.on_add = [&impl, agents_of](const kube::ObjectPtr& o) {
          impl.queue.Add(kAll);
          agents_of(*o);
        };
        h.on_update = [&impl, agents_of](const kube::ObjectPtr&,
                                         const kube::ObjectPtr& o) {
          impl.queue.Add(kAll);
          agents_of(*o);
        };
        h.on_delete = [&impl, agents_of](const kube::ObjectPtr& o) {
          impl.queue.Add(kAll);
          agents_of(*o);
        };
        return h;
      };
  kube::InformerOptions informer_options;
  informer_options.on_error = [&impl](const absl::Status& s) {
    impl.log(LogLevel::kWarning, "list/watch error",
             {{"error", std::string(s.message())}});
  };
  // Policies are many and decoded by DecodeCache: cache them compact.
  kube::InformerOptions policy_options = informer_options;
  policy_options.transform = kube::CompactObject;
  impl.policies = std::make_unique<kube::Informer>(
      impl.client.get(), kube::kAgentPolicy, policy_options);
  impl.cluster_policies = std::make_unique<kube::Informer>(
      impl.client.get(), kube::kClusterAgentPolicy, informer_options);
  impl.namespaces = std::make_unique<kube::Informer>(
      impl.client.get(), kube::kNamespace, informer_options);
  AgentControllerDeps agent_deps;
  agent_deps.client = impl.client.get();
  agent_deps.recorder = impl.recorder.get();
  agent_deps.metrics = impl.metrics.get();
  agent_deps.log = impl.log;
  agent_deps.policies = impl.policies.get();
  agent_deps.cluster_policies = impl.cluster_policies.get();
  agent_deps.namespaces = impl.namespaces.get();
  agent_deps.resync = options.resync;
  agent_deps.informer_options = informer_options;
  impl.agents = std::make_unique<AgentController>(std::move(agent_deps));
  impl.agents->StartInformers();
  impl.policies->AddHandlers(on_change([&impl](const nlohmann::json& p) {
    impl.agents->EnqueueAgents(kube::NamespaceOf(p), kube::NameOf(p));
  }));
  impl.cluster_policies->AddHandlers(
      on_change([&impl](const nlohmann::json&) { impl.agents->EnqueueAll(); }));
  impl.namespaces->AddHandlers(on_change([&impl](const nlohmann::json& n) {
    impl.agents->EnqueueAgents(kube::NameOf(n), "");
  }));
  for (kube::Informer* i : {impl.policies.get(), impl.cluster_policies.get(),
                            impl.namespaces.get()}) {
    i->Start();
  }

  if (!options.leader_elect) {
    if (options.label_leader_pod) impl.LabelOwnPod(true);
    impl.leading = true;
    impl.StartWorker();
    return op;
  }
  kube::LeaderElectionConfig election;
  election.lease_name = options.lease_name;
  election.lease_namespace = options.lease_namespace;
  election.identity = options.identity;
  election.lease_duration = options.lease_duration;
  election.renew_deadline = options.renew_deadline;
  election.retry_period = options.retry_period;
  if (options.label_leader_pod) impl.LabelOwnPod(false);
  election.on_started_leading = [&impl] {
    impl.log(LogLevel::kInfo, "leading", {{"identity", impl.options.identity}});
    if (impl.options.label_leader_pod) impl.LabelOwnPod(true);
    impl.leading = true;
    impl.StartWorker();
  };
  election.on_stopped_leading = [&impl] {
    impl.leading = false;
    impl.Finish(absl::AbortedError(
        "lost the leader lease; exiting so that a fresh replica takes over"));
  };
  election.on_new_leader = [&impl](const std::string& identity) {
    impl.log(LogLevel::kInfo, "leader", {{"identity", identity}});
  };
  election.on_error = [&impl](const absl::Status& s) {
    impl.log(LogLevel::kWarning, "leader election",
             {{"error", std::string(s.message())}});
  };
  impl.elector =
      std::make_unique<kube::LeaderElector>(impl.client.get(), election);
  if (absl::Status s = impl.elector->Start(); !s.ok()) return s;
  return op;
}

absl::Status Operator::Wait() {
  absl::MutexLock lock(&impl_->mu);
  impl_->mu.Await(absl::Condition(&impl_->done));
  return impl_->why;
}

void Operator::Stop() { impl_->Finish(absl::OkStatus()); }

int Operator::grpc_port() const { return impl_->server->port(); }
int Operator::http_port() const { return impl_->http->port(); }

Operator::~Operator() {
  if (!impl_) return;
  impl_->Finish(absl::OkStatus());
  impl_->queue.ShutDown();
  if (impl_->worker.joinable()) impl_->worker.join();
  if (impl_->agents) impl_->agents->Stop();
  if (impl_->elector) impl_->elector->Stop();
  for (auto* i : {impl_->policies.get(), impl_->cluster_policies.get(),
                  impl_->namespaces.get()}) {
    if (i != nullptr) i->Stop();
  }
  impl_->http.reset();
  impl_->server.reset();
}

}  // namespace stockade::manager
