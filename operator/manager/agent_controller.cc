#include "operator/manager/agent_controller.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "operator/controller/agent_reconciler.h"
#include "operator/controller/objects.h"

namespace stockade::manager {
namespace {

using distribution::LogLevel;

// The Agent that an owned object belongs to: its stockade.dev/agent label.
std::string OwnerKey(const nlohmann::json& object) {
  const std::string agent =
      kube::StringAt(object, {"metadata", "labels", controller::kAgentLabel});
  return agent.empty() ? "" : kube::MakeKey(kube::NamespaceOf(object), agent);
}

// The applied_ key of object `name` of `resource` in `ns`.
std::string AppliedKey(const kube::Resource& resource, const std::string& ns,
                       const std::string& name) {
  return absl::StrCat(resource.plural, "/", ns, "/", name);
}

}  // namespace

void RecordEvents(kube::EventRecorder* recorder,
                  const std::vector<controller::Event>& events,
                  const distribution::LogFn& log) {
  for (const controller::Event& e : events) {
    kube::ObjectReference ref;
    ref.api_version = e.object.api_version;
    ref.kind = e.object.kind;
    ref.namespace_ = e.object.namespace_;
    ref.name = e.object.name;
    ref.uid = e.object.uid;
    absl::Status recorded =
        recorder->Record(ref,
                         e.type == "Warning" ? kube::EventType::kWarning
                                             : kube::EventType::kNormal,
                         e.reason, e.message);
    if (!recorded.ok()) {
      log(LogLevel::kWarning, "cannot record event",
          {{"reason", e.reason}, {"error", std::string(recorded.message())}});
    }
  }
}

AgentController::AgentController(AgentControllerDeps deps)
    : deps_(std::move(deps)) {
  agents_ = std::make_unique<kube::Informer>(deps_.client, kube::kAgent,
                                             deps_.informer_options);
  // Only the objects the controller made (labelled with their Agent).
  kube::InformerOptions owned = deps_.informer_options;
  owned.label_selector = controller::kAgentLabel;
  deployments_ =
      std::make_unique<kube::Informer>(deps_.client, kube::kDeployment, owned);
  network_policies_ = std::make_unique<kube::Informer>(
      deps_.client, kube::kNetworkPolicy, owned);

  kube::InformerHandlers by_key;
  by_key.on_add = [this](const kube::ObjectPtr& o) {
    queue_.Add(kube::KeyOf(*o));
  };
  by_key.on_update = [this](const kube::ObjectPtr&, const kube::ObjectPtr& o) {
    queue_.Add(kube::KeyOf(*o));
  };
  by_key.on_delete = [this](const kube::ObjectPtr& o) {
    queue_.Add(kube::KeyOf(*o));
  };
  agents_->AddHandlers(by_key);
  kube::InformerHandlers by_owner;
  auto add_owner = [this](const kube::ObjectPtr& o) {
    if (std::string key = OwnerKey(*o); !key.empty()) queue_.Add(key);
  };
  by_owner.on_add = add_owner;
  by_owner.on_update = [add_owner](const kube::ObjectPtr&,
                                   const kube::ObjectPtr& o) { add_owner(o); };
  by_owner.on_delete = add_owner;
  deployments_->AddHandlers(by_owner);
  network_policies_->AddHandlers(by_owner);
}

AgentController::~AgentController() { Stop(); }

void AgentController::StartInformers() {
  agents_->Start();
  deployments_->Start();
  network_policies_->Start();
}

bool AgentController::Synced() const {
  return agents_->HasSynced() && deployments_->HasSynced() &&
         network_policies_->HasSynced();
}

void AgentController::EnqueueAll() {
  for (const std::string& key : agents_->Keys()) queue_.Add(key);
}

void AgentController::EnqueueAgents(const std::string& ns,
                                    const std::string& policy) {
  for (const kube::ObjectPtr& agent : agents_->List()) {
    if (kube::NamespaceOf(*agent) != ns) continue;
    if (!policy.empty()) {
      const nlohmann::json* spec = kube::Find(*agent, {"spec"});
      const bool inline_policy = spec != nullptr && spec->contains("policy");
      const std::string named =
          inline_policy ? kube::NameOf(*agent)  // controller::InlinePolicyName
                        : kube::StringAt(*agent, {"spec", "policyRef", "name"});
      if (named != policy) continue;
    }
    queue_.Add(kube::KeyOf(*agent));
  }
}

bool AgentController::NeedsApply(const std::string& key, size_t digest,
                                 const nlohmann::json* live) {
  auto it = applied_.find(key);
  return it == applied_.end() || live == nullptr ||
         it->second.digest != digest || it->second.uid != kube::UidOf(*live) ||
         it->second.resource_version != kube::ResourceVersionOf(*live);
}

void AgentController::Stop() {
  queue_.ShutDown();
  if (worker_.joinable()) worker_.join();
  agents_->Stop();
  deployments_->Stop();
  network_policies_->Stop();
}

void AgentController::StartWorker() {
  worker_ = std::thread([this] {
    while (!Synced() || !deps_.policies->HasSynced() ||
           !deps_.cluster_policies->HasSynced() ||
           !deps_.namespaces->HasSynced()) {
      if (queue_.ShuttingDown()) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    EnqueueAll();
    std::string key;
    while (queue_.Get(&key)) {
      bool exists = true;
      absl::Status status = Reconcile(key, &exists);
      if (status.ok()) {
        deps_.metrics->agent_reconciles->Increment();
        queue_.Forget(key);
        if (exists) queue_.AddAfter(key, deps_.resync);
      } else {
        deps_.metrics->agent_reconcile_errors->Increment();
        deps_.log(LogLevel::kError, "agent reconcile failed",
                  {{"agent", key}, {"error", std::string(status.message())}});
        queue_.AddRateLimited(key);
      }
      queue_.Done(key);
    }
  });
}

absl::Status AgentController::Reconcile(const std::string& key, bool* exists) {
  kube::ObjectPtr object = agents_->Get(key);
  *exists = object != nullptr;
  if (object == nullptr) {
    // Gone: so are (or soon, by the garbage collector) its objects.
    std::string ns, name;
    kube::SplitKey(key, &ns, &name);
    for (const kube::Resource* r :
         {&kube::kAgentPolicy, &kube::kDeployment, &kube::kNetworkPolicy}) {
      applied_.erase(AppliedKey(*r, ns, name));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<controller::AgentObject> agent =
      controller::DecodeAgent(object->dump());
  if (!agent.ok()) {
    // Not an Agent this operator can read; nothing to do until it changes.
    deps_.log(
        LogLevel::kWarning, "cannot decode agent",
        {{"agent", key}, {"error", std::string(agent.status().message())}});
    return absl::OkStatus();
  }
  const stockade::v1::Agent& a = agent->object;
  const std::string ns = a.metadata().namespace_();
  const std::string name = a.metadata().name();

  // The policy, the guardrails, the namespace, the owned objects.
  std::optional<controller::AgentPolicyObject> policy;
  const std::string policy_name = a.spec().has_policy()
                                      ? controller::InlinePolicyName(a)
                                      : a.spec().policy_ref().name();
  if (!policy_name.empty()) {
    if (kube::ObjectPtr p = deps_.policies->Get(kube::MakeKey(ns, policy_name));
        p != nullptr) {
      absl::StatusOr<controller::AgentPolicyObject> decoded =
          controller::DecodeAgentPolicy(kube::ObjectText(*p));
      if (decoded.ok()) policy = *std::move(decoded);
    }
  }
  std::vector<controller::ClusterAgentPolicyObject> guards;
  for (const kube::ObjectPtr& c : deps_.cluster_policies->List()) {
    absl::StatusOr<controller::ClusterAgentPolicyObject> decoded =
        controller::DecodeClusterAgentPolicy(kube::ObjectText(*c));
    if (decoded.ok()) guards.push_back(*std::move(decoded));
  }
  std::optional<compiler::NamespaceLabels> labels;
  if (kube::ObjectPtr n = deps_.namespaces->Get(ns); n != nullptr) {
    absl::StatusOr<controller::NamespaceObject> decoded =
        controller::DecodeNamespace(kube::ObjectText(*n));
    if (decoded.ok()) labels = std::move(decoded->labels);
  }
  controller::AgentSnapshot snapshot;
  snapshot.agent = &*agent;
  snapshot.policy = policy.has_value() ? &*policy : nullptr;
  snapshot.cluster_policies = guards;
  snapshot.namespace_labels = labels.has_value() ? &*labels : nullptr;
  if (kube::ObjectPtr d = deployments_->Get(key); d != nullptr) {
    snapshot.deployment = controller::ObserveDeployment(*d);
  }
  if (kube::ObjectPtr np = network_policies_->Get(key); np != nullptr) {
    snapshot.network_policy = controller::ObserveOwner(*np);
  }
  const absl::Time now = absl::Now();
  controller::AgentResult result = controller::ReconcileAgent(snapshot, now);

  // The informers see only labelled objects: before creating one, make sure
  // no unlabelled object of that name exists (it is never taken over).
  if (result.deployment.has_value() || result.network_policy.has_value()) {
    bool rerun = false;
    // Fetches `resource` when the informer has none: found -> *object.
    auto lookup = [&](const kube::Resource& resource, bool cached,
                      nlohmann::json* object) -> absl::Status {
      if (cached) return absl::OkStatus();
      auto found = deps_.client->Get(resource, ns, name);
      if (absl::IsNotFound(found.status())) return absl::OkStatus();
      if (!found.ok()) return found.status();
      *object = *std::move(found);
      rerun = true;
      return absl::OkStatus();
    };
    nlohmann::json deployment, network_policy;
    if (absl::Status s = lookup(kube::kDeployment,
                                snapshot.deployment.owner.exists, &deployment);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            lookup(kube::kNetworkPolicy, snapshot.network_policy.exists,
                   &network_policy);
        !s.ok()) {
      return s;
    }
    if (deployment.is_object()) {
      snapshot.deployment = controller::ObserveDeployment(deployment);
    }
    if (network_policy.is_object()) {
      snapshot.network_policy = controller::ObserveOwner(network_policy);
    }
    if (rerun) result = controller::ReconcileAgent(snapshot, now);
  }

  // Server-side apply of `desired` unless the informer's copy (`live`) is
  // what the last apply of it made, untouched since: then that copy.
  auto apply =
      [&](const kube::Resource& resource, const nlohmann::json& desired,
          const kube::ObjectPtr& live) -> absl::StatusOr<nlohmann::json> {
    const std::string applied_key =
        AppliedKey(resource, ns, kube::StringAt(desired, {"metadata", "name"}));
    const size_t digest = absl::HashOf(desired.dump());
    if (!NeedsApply(applied_key, digest, live.get())) return *live;
    deps_.metrics->agent_applies->Increment();
    absl::StatusOr<nlohmann::json> applied = deps_.client->Apply(
        resource, ns, desired, kFieldManager, /*force=*/true);
    if (applied.ok()) {
      applied_[applied_key] = Applied{digest, kube::UidOf(*applied),
                                      kube::ResourceVersionOf(*applied)};
    } else {
      applied_.erase(applied_key);
    }
    return applied;
  };
  if (result.inline_policy.has_value()) {
    // The informer holds policies compact: uid and resourceVersion are kept.
    auto applied = apply(kube::kAgentPolicy, *result.inline_policy,
                         deps_.policies->Get(kube::MakeKey(ns, policy_name)));
    if (!applied.ok()) return applied.status();
  }
  if (result.deployment.has_value()) {
    auto applied =
        apply(kube::kDeployment, *result.deployment, deployments_->Get(key));
    if (!applied.ok()) return applied.status();
    // The status reports what the apply produced.
    snapshot.deployment = controller::ObserveDeployment(*applied);
    auto applied_np = apply(kube::kNetworkPolicy, *result.network_policy,
                            network_policies_->Get(key));
    if (!applied_np.ok()) return applied_np.status();
    snapshot.network_policy = controller::ObserveOwner(*applied_np);
    result = controller::ReconcileAgent(snapshot, now);
  }

  if (result.status_changed) {
    auto written = deps_.client->PatchStatus(
        kube::kAgent, ns, name, kube::PatchType::kMerge,
        nlohmann::json::parse(controller::StatusMergePatch(result.status)));
    deps_.metrics->status_writes->Increment();
    if (!written.ok() && !absl::IsNotFound(written.status())) {
      return written.status();
    }
  }
  RecordEvents(deps_.recorder, result.events, deps_.log);
  if (!result.events.empty()) {
    deps_.log(LogLevel::kInfo, "agent reconciled",
              {{"agent", key},
               {"policy", result.policy_name},
               {"hash", result.status.policy_hash()}});
  }
  return absl::OkStatus();
}

}  // namespace stockade::manager
