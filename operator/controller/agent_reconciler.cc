#include "operator/controller/agent_reconciler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/message_differencer.h"
#include "operator/controller/conditions.h"
#include "operator/controller/workload_guardrails.h"

namespace stockade::controller {
namespace {

namespace v1 = ::stockade::v1;
using nlohmann::json;

// Label values are at most 63 characters; the Agent's name is one.
constexpr size_t kMaxLabelValue = 63;
constexpr int kDnsPort = 53;

const json* Find(const json& object, std::initializer_list<const char*> path) {
  const json* at = &object;
  for (const char* key : path) {
    if (!at->is_object()) return nullptr;
    auto it = at->find(key);
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

int64_t IntAt(const json& object, std::initializer_list<const char*> path,
              int64_t fallback = 0) {
  const json* v = Find(object, path);
  return v != nullptr && v->is_number_integer() ? v->get<int64_t>() : fallback;
}

std::string StringAt(const json& object,
                     std::initializer_list<const char*> path) {
  const json* v = Find(object, path);
  return v != nullptr && v->is_string() ? v->get<std::string>() : "";
}

std::string Short(absl::string_view hash) {
  return std::string(hash.substr(0, 12));
}

std::string Sentence(std::string text) {
  if (!text.empty() && text.back() != '.') text.push_back('.');
  return text;
}

std::string JoinProblems(const std::vector<compiler::Problem>& problems) {
  std::vector<std::string> parts;
  for (const compiler::Problem& p : problems) {
    parts.push_back(absl::StrCat(p.path, ": ", p.message));
  }
  return absl::StrJoin(parts, "; ");
}

// Removes "" strings (unset proto3 scalars such as a sizeLimit left out) from
// a ToCrdJson document, which the CRD's patterns would refuse.
void PruneEmptyStrings(json& value) {
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end();) {
      if (it->is_string() && it->get<std::string>().empty()) {
        it = value.erase(it);
      } else {
        PruneEmptyStrings(*it);
        ++it;
      }
    }
  } else if (value.is_array()) {
    for (json& item : value) PruneEmptyStrings(item);
  }
}

json OwnerReference(const v1::Agent& agent) {
  return json{{"apiVersion", compiler::kApiVersion},
              {"kind", "Agent"},
              {"name", agent.metadata().name()},
              {"uid", agent.metadata().uid()},
              {"controller", true},
              {"blockOwnerDeletion", true}};
}

json Labels(const v1::Agent& agent) {
  return json{{"app.kubernetes.io/name", "stockade-agent"},
              {"app.kubernetes.io/instance", agent.metadata().name()},
              {"app.kubernetes.io/managed-by", "stockade-operator"},
              {kAgentLabel, agent.metadata().name()}};
}

json Metadata(const v1::Agent& agent, const std::string& name) {
  return json{{"name", name},
              {"namespace", agent.metadata().namespace_()},
              {"labels", Labels(agent)},
              {"ownerReferences", json::array({OwnerReference(agent)})}};
}

json BuildInlinePolicy(const v1::Agent& agent) {
  json spec = json::parse(ToCrdJson(agent.spec().policy()));
  PruneEmptyStrings(spec);
  return json{{"apiVersion", compiler::kApiVersion},
              {"kind", "AgentPolicy"},
              {"metadata", Metadata(agent, InlinePolicyName(agent))},
              {"spec", std::move(spec)}};
}

json BuildDeployment(const v1::Agent& agent, int32_t replicas,
                     const std::string& policy_name, const std::string& hash,
                     const compiler::EffectivePolicy& effective) {
  const v1::AgentSpec& spec = agent.spec();
  json container = {{"name", kContainerName}, {"image", spec.image()}};
  if (spec.command_size() > 0) container["command"] = spec.command();
  if (spec.args_size() > 0) container["args"] = spec.args();
  if (spec.env_size() > 0) {
    json env = json::array();
    for (const v1::EnvVar& e : spec.env()) {
      env.push_back({{"name", e.name()}, {"value", e.value()}});
    }
    container["env"] = std::move(env);
  }
  json resources = json::object();
  if (!spec.resources().limits().empty()) {
    resources["limits"] = json(spec.resources().limits());
  }
  if (!spec.resources().requests().empty()) {
    resources["requests"] = json(spec.resources().requests());
  }
  if (!resources.empty()) container["resources"] = std::move(resources);
  // Every capability dropped but those the policy keeps (the shim only ever
  // narrows what the pod spec grants: a capability dropped here is gone).
  json capabilities = {{"drop", json::array({"ALL"})}};
  if (effective.capabilities().add_size() > 0) {
    capabilities["add"] = effective.capabilities().add();
  }
  container["securityContext"] = {
      {"allowPrivilegeEscalation", false},
      {"privileged", false},
      {"readOnlyRootFilesystem", effective.filesystem().read_only_root()},
      {"capabilities", std::move(capabilities)}};
  const bool automount = spec.has_automount_service_account_token() &&
                         spec.automount_service_account_token();
  json pod_labels = {{kAgentLabel, agent.metadata().name()},
                     {"app.kubernetes.io/name", "stockade-agent"},
                     {"app.kubernetes.io/instance", agent.metadata().name()}};
  return json{{"apiVersion", "apps/v1"},
              {"kind", "Deployment"},
              {"metadata", Metadata(agent, agent.metadata().name())},
              {"spec",
               {{"replicas", replicas},
                {"selector",
                 {{"matchLabels", {{kAgentLabel, agent.metadata().name()}}}}},
                {"template",
                 {{"metadata",
                   {{"labels", std::move(pod_labels)},
                    {"annotations",
                     {{kPolicyAnnotation, policy_name},
                      {kPolicyHashAnnotation, hash},
                      {kAgentAnnotation, agent.metadata().name()}}}}},
                  {"spec",
                   {{"runtimeClassName", kRuntimeClassName},
                    {"automountServiceAccountToken", automount},
                    {"enableServiceLinks", false},
                    {"containers", json::array({std::move(container)})}}}}}}}};
}

absl::string_view ProtocolName(v1::Protocol p) {
  return p == v1::PROTOCOL_UDP ? "UDP" : "TCP";
}

json BuildNetworkPolicy(const v1::Agent& agent,
                        const compiler::EffectivePolicy& effective) {
  json egress = json::array();
  if (effective.mode() == v1::MODE_COMPLAIN) {
    // Complain mode reports what the agent does instead of blocking it; a
    // cluster-level deny would hide exactly that.
    egress.push_back(json::object());
  } else {
    for (const v1::EgressRule& rule : effective.network().egress()) {
      json to = json::array();
      for (const std::string& cidr : rule.cidrs()) {
        to.push_back({{"ipBlock", {{"cidr", cidr}}}});
      }
      json entry = {{"to", std::move(to)}};
      if (rule.ports_size() > 0) {
        json ports = json::array();
        for (const v1::PortRule& p : rule.ports()) {
          json port = {{"protocol", ProtocolName(p.protocol())},
                       {"port", p.port()}};
          if (p.end_port() > p.port()) port["endPort"] = p.end_port();
          ports.push_back(std::move(port));
        }
        entry["ports"] = std::move(ports);
      }
      egress.push_back(std::move(entry));
    }
    if (effective.network().dns()) {
      egress.push_back(
          {{"to", json::array(
                      {{{"namespaceSelector",
                         {{"matchLabels",
                           {{"kubernetes.io/metadata.name", "kube-system"}}}}},
                        {"podSelector",
                         {{"matchLabels", {{"k8s-app", "kube-dns"}}}}}}})},
           {"ports",
            json::array({{{"protocol", "UDP"}, {"port", kDnsPort}},
                         {{"protocol", "TCP"}, {"port", kDnsPort}}})}});
    }
  }
  return json{{"apiVersion", "networking.k8s.io/v1"},
              {"kind", "NetworkPolicy"},
              {"metadata", Metadata(agent, agent.metadata().name())},
              {"spec",
               {{"podSelector",
                 {{"matchLabels", {{kAgentLabel, agent.metadata().name()}}}}},
                {"policyTypes", json::array({"Ingress", "Egress"})},
                {"egress", std::move(egress)}}}};
}

// How the Agent stands with its policy.
enum class Gate {
  kReady,    // apply the Deployment and NetworkPolicy
  kWaiting,  // leave them as they are until the policy is ready
  kBlocked,  // leave them as they are until a person fixes something
};

struct Verdict {
  Gate gate = Gate::kWaiting;
  v1::ConditionStatus status = v1::CONDITION_STATUS_FALSE;
  std::string reason;
  std::string message;
  std::string hash;
  compiler::EffectivePolicy effective;
};

Verdict Blocked(absl::string_view reason, std::string message) {
  Verdict v;
  v.gate = Gate::kBlocked;
  v.reason = std::string(reason);
  v.message = Sentence(std::move(message));
  return v;
}

Verdict Waiting(absl::string_view reason, std::string message,
                v1::ConditionStatus status = v1::CONDITION_STATUS_FALSE) {
  Verdict v;
  v.gate = Gate::kWaiting;
  v.status = status;
  v.reason = std::string(reason);
  v.message = Sentence(std::move(message));
  return v;
}

// The verdict on a (found) AgentPolicy's status; `guards`: every
// ClusterAgentPolicy.
Verdict JudgePolicy(const AgentSnapshot& s,
                    absl::Span<const v1::ClusterAgentPolicy> guards,
                    const std::string& what) {
  const v1::AgentPolicy& policy = s.policy->object;
  const v1::AgentPolicyStatus& st = policy.status();
  const v1::Condition* compiled = FindCondition(st.conditions(), kCompiled);
  const v1::Condition* ready = FindCondition(st.conditions(), kReady);
  if (st.observed_generation() != policy.metadata().generation() ||
      compiled == nullptr) {
    return Waiting(
        kReasonPolicyNotCompiled,
        absl::StrCat(what, " generation ", policy.metadata().generation(),
                     " is not compiled yet"));
  }
  if (compiled->status() != v1::CONDITION_STATUS_TRUE) {
    return Waiting(kReasonPolicyNotCompiled,
                   absl::StrCat(what, " does not compile (", compiled->reason(),
                                "): ", compiled->message()));
  }
  if (ready == nullptr || ready->status() != v1::CONDITION_STATUS_TRUE ||
      st.policy_hash().empty()) {
    return Waiting(
        kReasonPolicyNotReady,
        absl::StrCat(what, " is compiled but not on every node yet",
                     ready == nullptr ? std::string()
                                      : absl::StrCat(": ", ready->message())));
  }
  compiler::MergeResult merged =
      compiler::Merge(policy.spec(), guards, *s.namespace_labels);
  if (!merged.violations.empty()) {
    // The AgentPolicy controller has not caught up with a guardrail change.
    return Waiting(kReasonPolicyNotCompiled,
                   absl::StrCat(what, " breaks a guardrail: ",
                                JoinProblems(merged.violations)));
  }
  Verdict v;
  v.gate = Gate::kReady;
  v.status = v1::CONDITION_STATUS_TRUE;
  v.reason = kReasonPolicyReady;
  v.hash = st.policy_hash();
  v.message = absl::StrCat(what, " is compiled to policy ", Short(v.hash),
                           " and held by every node.");
  v.effective = std::move(merged.effective);
  return v;
}

Verdict Judge(const AgentSnapshot& s, AgentResult* out) {
  const v1::Agent& agent = s.agent->object;
  const v1::AgentSpec& spec = agent.spec();
  std::vector<compiler::Problem> problems = s.agent->problems;
  if (agent.metadata().name().size() > kMaxLabelValue) {
    problems.push_back(compiler::Problem{
        "", 0, "metadata.name",
        absl::StrCat("an Agent's name is a label value of its pods: at most ",
                     kMaxLabelValue, " characters")});
  }
  if (!problems.empty()) {
    return Blocked(kReasonInvalidSpec, JoinProblems(problems));
  }
  out->policy_name =
      spec.has_policy() ? InlinePolicyName(agent) : spec.policy_ref().name();
  if (s.namespace_labels == nullptr) {
    return Waiting(kReasonNamespaceUnknown,
                   absl::StrCat("Namespace ", agent.metadata().namespace_(),
                                " is not known yet"),
                   v1::CONDITION_STATUS_UNKNOWN);
  }
  std::vector<v1::ClusterAgentPolicy> guards;
  for (const ClusterAgentPolicyObject& c : s.cluster_policies) {
    guards.push_back(c.object);
  }
  std::vector<compiler::Problem> violations =
      CheckWorkloadGuardrails(spec, guards, *s.namespace_labels);
  if (!violations.empty()) {
    return Blocked(kReasonGuardrailViolation, JoinProblems(violations));
  }
  const std::string what =
      absl::StrCat("AgentPolicy ", out->policy_name,
                   spec.has_policy() ? " (spec.policy)" : "");
  if (spec.has_policy()) {
    if (s.policy != nullptr) {
      bool owned = false;
      for (const v1::OwnerReference& o :
           s.policy->object.metadata().owner_references()) {
        owned = owned || (o.controller() && o.uid() == agent.metadata().uid());
      }
      if (!owned) {
        return Blocked(
            kReasonPolicyConflict,
            absl::StrCat("AgentPolicy ", out->policy_name,
                         " exists and does not belong to this Agent, whose "
                         "inline spec.policy would take its name; rename one "
                         "of them or use spec.policyRef"));
      }
    }
    out->inline_policy = BuildInlinePolicy(agent);
  }
  if (s.policy == nullptr) {
    return spec.has_policy()
               ? Waiting(kReasonPolicyNotFound,
                         absl::StrCat(what, " is being created"))
               : Waiting(kReasonPolicyNotFound,
                         absl::StrCat("AgentPolicy ", out->policy_name,
                                      " (spec.policyRef.name) does not exist "
                                      "in namespace ",
                                      agent.metadata().namespace_()));
  }
  return JudgePolicy(s, guards, what);
}

bool OwnedBy(const OwnedObject& o, const v1::Agent& agent) {
  return o.exists && o.controller_uid == agent.metadata().uid();
}

bool IsWarning(absl::string_view reason) {
  for (absl::string_view w :
       {kReasonInvalidSpec, kReasonGuardrailViolation, kReasonPolicyConflict,
        kReasonNameConflict, kReasonPolicyNotFound, kReasonPolicyNotCompiled,
        kReasonProgressDeadlineExceeded}) {
    if (reason == w) return true;
  }
  return false;
}

}  // namespace

std::string InlinePolicyName(const stockade::v1::Agent& agent) {
  return agent.metadata().name();
}

OwnedObject ObserveOwner(const nlohmann::json& object) {
  OwnedObject out;
  if (!object.is_object()) return out;
  out.exists = true;
  const json* refs = Find(object, {"metadata", "ownerReferences"});
  if (refs == nullptr || !refs->is_array()) return out;
  for (const json& ref : *refs) {
    const json* controller = Find(ref, {"controller"});
    if (controller != nullptr && controller->is_boolean() &&
        controller->get<bool>()) {
      out.controller_uid = StringAt(ref, {"uid"});
    }
  }
  return out;
}

DeploymentState ObserveDeployment(const nlohmann::json& deployment) {
  DeploymentState d;
  d.owner = ObserveOwner(deployment);
  if (!d.owner.exists) return d;
  d.generation = IntAt(deployment, {"metadata", "generation"});
  d.observed_generation = IntAt(deployment, {"status", "observedGeneration"});
  d.spec_replicas =
      static_cast<int32_t>(IntAt(deployment, {"spec", "replicas"}, 1));
  d.replicas = static_cast<int32_t>(IntAt(deployment, {"status", "replicas"}));
  d.ready_replicas =
      static_cast<int32_t>(IntAt(deployment, {"status", "readyReplicas"}));
  d.available_replicas =
      static_cast<int32_t>(IntAt(deployment, {"status", "availableReplicas"}));
  d.updated_replicas =
      static_cast<int32_t>(IntAt(deployment, {"status", "updatedReplicas"}));
  const json* annotations =
      Find(deployment, {"spec", "template", "metadata", "annotations"});
  if (annotations != nullptr) {
    d.policy_hash = StringAt(*annotations, {kPolicyHashAnnotation});
  }
  const json* conditions = Find(deployment, {"status", "conditions"});
  if (conditions != nullptr && conditions->is_array()) {
    for (const json& c : *conditions) {
      if (StringAt(c, {"type"}) == "Progressing" &&
          StringAt(c, {"reason"}) == "ProgressDeadlineExceeded") {
        d.deadline_exceeded = true;
        d.progress_message = StringAt(c, {"message"});
      }
    }
  }
  return d;
}

AgentResult ReconcileAgent(const AgentSnapshot& s, absl::Time now_time) {
  const v1::Agent& agent = s.agent->object;
  const v1::ObjectMeta& meta = agent.metadata();
  const int64_t generation = meta.generation();
  const std::string now = Rfc3339(now_time);
  AgentResult out;
  out.object = ObjectRef{compiler::kApiVersion, "Agent",    meta.namespace_(),
                         meta.name(),           meta.uid(), generation};
  const int32_t replicas =
      agent.spec().has_replicas() ? agent.spec().replicas() : 1;

  // PolicyReady, and what (if anything) keeps the objects from being applied
  // until a person acts.
  const Verdict v = Judge(s, &out);
  std::optional<Verdict> block;
  if (v.gate == Gate::kBlocked) block = v;
  const DeploymentState& d = s.deployment;
  const bool have = OwnedBy(d.owner, agent);
  if (v.gate == Gate::kReady) {
    std::vector<std::string> taken;
    if (d.owner.exists && !have) taken.push_back("Deployment");
    if (s.network_policy.exists && !OwnedBy(s.network_policy, agent)) {
      taken.push_back("NetworkPolicy");
    }
    if (!taken.empty()) {
      block = Blocked(
          kReasonNameConflict,
          absl::StrCat("A ", absl::StrJoin(taken, " and a "), " named ",
                       meta.name(),
                       " exists and is not controlled by this Agent; delete "
                       "it or rename the Agent"));
    } else {
      out.deployment = BuildDeployment(agent, replicas, out.policy_name, v.hash,
                                       v.effective);
      out.network_policy = BuildNetworkPolicy(agent, v.effective);
    }
  }
  const bool applying = out.deployment.has_value();
  const int32_t target = applying ? replicas : d.spec_replicas;
  const std::string pods =
      absl::StrCat(have ? d.available_replicas : 0, " of ", target,
                   target == 1 ? " pod" : " pods", " available");

  // Available.
  v1::ConditionStatus available = v1::CONDITION_STATUS_FALSE;
  std::string available_reason, available_message;
  if (block.has_value()) {
    available_reason = block->reason;
    available_message = absl::StrCat(
        block->message, " ",
        have ? absl::StrCat("The Deployment is left as it is (", pods, ").")
             : std::string("No Deployment is created."));
  } else if (!have) {
    available_reason = applying ? kReasonReplicasUnavailable : v.reason;
    available_message =
        applying ? absl::StrCat("Deployment created; ", pods, ".")
                 : absl::StrCat("No Deployment until the policy is ready: ",
                                v.message);
    if (!applying)
      available = v.status == v1::CONDITION_STATUS_UNKNOWN
                      ? v1::CONDITION_STATUS_UNKNOWN
                      : v1::CONDITION_STATUS_FALSE;
  } else if (target == 0) {
    available_reason = kReasonScaledToZero;
    available_message = "spec.replicas is 0.";
  } else if (d.available_replicas >= target) {
    available = v1::CONDITION_STATUS_TRUE;
    available_reason = kReasonReplicasAvailable;
    available_message = absl::StrCat(pods, ".");
  } else {
    available_reason = kReasonReplicasUnavailable;
    available_message = absl::StrCat(pods, ".");
  }

  // Progressing.
  v1::ConditionStatus progressing = v1::CONDITION_STATUS_FALSE;
  std::string progressing_reason, progressing_message;
  if (block.has_value()) {
    progressing_reason = block->reason;
    progressing_message = block->message;
  } else if (!applying) {
    // Distribution to the nodes is progress; the rest waits for a person
    // or the AgentPolicy controller.
    progressing = v.reason == kReasonPolicyNotReady ? v1::CONDITION_STATUS_TRUE
                  : v.status == v1::CONDITION_STATUS_UNKNOWN
                      ? v1::CONDITION_STATUS_UNKNOWN
                      : v1::CONDITION_STATUS_FALSE;
    progressing_reason = v.reason;
    progressing_message = absl::StrCat("Waiting for the policy: ", v.message);
  } else if (have && d.deadline_exceeded) {
    progressing_reason = kReasonProgressDeadlineExceeded;
    progressing_message = Sentence(
        absl::StrCat("The Deployment made no progress: ", d.progress_message));
  } else if (!have || d.policy_hash != v.hash ||
             d.observed_generation < d.generation ||
             d.spec_replicas != replicas || d.updated_replicas < replicas ||
             d.replicas > d.updated_replicas) {
    progressing = v1::CONDITION_STATUS_TRUE;
    progressing_reason = kReasonRollingOut;
    progressing_message = absl::StrCat(
        "Rolling out policy ", Short(v.hash), " to ", replicas,
        replicas == 1 ? " pod: " : " pods: ", have ? d.updated_replicas : 0,
        " updated, ", pods, ".");
  } else {
    progressing_reason = kReasonRolledOut;
    progressing_message =
        absl::StrCat(replicas, replicas == 1 ? " pod runs" : " pods run",
                     " policy ", Short(v.hash), ".");
  }

  // Status, from what was observed.
  const v1::AgentStatus& before = agent.status();
  v1::AgentStatus& status = out.status;
  status.set_observed_generation(generation);
  status.set_policy(out.policy_name);
  if (have) {
    status.set_replicas(d.replicas);
    status.set_ready_replicas(d.ready_replicas);
    status.set_policy_hash(d.policy_hash);
  }
  *status.add_conditions() =
      MakeCondition(before.conditions(), kPolicyReady, v.status, v.reason,
                    Truncate(v.message, kMaxConditionMessage), generation, now);
  *status.add_conditions() = MakeCondition(
      before.conditions(), kAvailable, available, available_reason,
      Truncate(available_message, kMaxConditionMessage), generation, now);
  *status.add_conditions() = MakeCondition(
      before.conditions(), kProgressing, progressing, progressing_reason,
      Truncate(progressing_message, kMaxConditionMessage), generation, now);
  out.status_changed =
      !google::protobuf::util::MessageDifferencer::Equals(before, status);

  // Events: one per new (status, reason) of a condition, one per reason.
  std::vector<std::string> told;
  for (const v1::Condition& c : status.conditions()) {
    const v1::Condition* old = FindCondition(before.conditions(), c.type());
    if (old != nullptr && old->status() == c.status() &&
        old->reason() == c.reason()) {
      continue;
    }
    if (std::find(told.begin(), told.end(), c.reason()) != told.end()) {
      continue;
    }
    told.push_back(c.reason());
    out.events.push_back(
        Event{out.object,
              c.status() != v1::CONDITION_STATUS_TRUE && IsWarning(c.reason())
                  ? "Warning"
                  : "Normal",
              c.reason(), c.message()});
  }
  return out;
}

}  // namespace stockade::controller
