#include "operator/controller/agent_reconciler.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/controller/conditions.h"
#include "shim/policy/policy.h"
#include "shim/spec/apply_spec.h"

namespace stockade::controller {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using Json = nlohmann::json;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);
const std::string kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kHash(64, 'a');
const std::string kNewHash(64, 'b');

// An Agent as the API server sends it.
AgentObject MakeAgent(const Json& spec, int64_t generation = 1) {
  Json doc = {{"apiVersion", "stockade.dev/v1alpha1"},
              {"kind", "Agent"},
              {"metadata",
               {{"name", "research"},
                {"namespace", "agents"},
                {"uid", "agent-uid"},
                {"generation", generation}}},
              {"spec", spec}};
  absl::StatusOr<AgentObject> agent = DecodeAgent(doc.dump());
  EXPECT_TRUE(agent.ok()) << agent.status();
  return *agent;
}

Json RefSpec() {
  return {{"image", "ghcr.io/acme/agent@" + kDigest},
          {"command", {"python3"}},
          {"args", {"-m", "agent"}},
          {"env", {{{"name", "MODE"}, {"value", "research"}}}},
          {"replicas", 2},
          {"resources", {{"limits", {{"cpu", "1"}, {"memory", "512Mi"}}}}},
          {"policyRef", {{"name", "research-policy"}}}};
}

// An AgentPolicy whose controller compiled generation 1 to `hash` and
// (when `ready`) put it on every node.
AgentPolicyObject MakePolicy(const std::string& name, const std::string& hash,
                             bool ready = true) {
  AgentPolicyObject p;
  v1::AgentPolicy& o = p.object;
  o.mutable_metadata()->set_name(name);
  o.mutable_metadata()->set_namespace_("agents");
  o.mutable_metadata()->set_generation(1);
  v1::EgressRule* rule = o.mutable_spec()->mutable_network()->add_egress();
  rule->add_cidrs("10.0.0.0/8");
  v1::PortRule* port = rule->add_ports();
  port->set_port(443);
  port->set_end_port(444);
  o.mutable_spec()->mutable_network()->set_dns(true);
  o.mutable_spec()->mutable_capabilities()->add_add("NET_BIND_SERVICE");
  v1::AgentPolicyStatus* st = o.mutable_status();
  st->set_observed_generation(1);
  st->set_policy_hash(hash);
  *st->add_conditions() =
      MakeCondition({}, kCompiled, v1::CONDITION_STATUS_TRUE, "Compiled",
                    "compiled", 1, "2026-01-01T00:00:00Z");
  *st->add_conditions() = MakeCondition(
      {}, kReady,
      ready ? v1::CONDITION_STATUS_TRUE : v1::CONDITION_STATUS_FALSE,
      ready ? "Ready" : "Distributing",
      ready ? "on every node" : "0/2 nodes hold policy", 1,
      "2026-01-01T00:00:00Z");
  return p;
}

class AgentReconcilerTest : public ::testing::Test {
 protected:
  AgentResult Run(const AgentObject& agent,
                  const AgentPolicyObject* policy = nullptr) {
    AgentSnapshot s;
    s.agent = &agent;
    s.policy = policy;
    s.cluster_policies = guards_;
    s.namespace_labels = &labels_;
    s.deployment = deployment_;
    s.network_policy = network_policy_;
    return ReconcileAgent(s, kNow);
  }

  // A Deployment as the cluster would show the one `applied` made, with
  // `ready` pods ready and available.
  void Observe(const Json& applied, int ready, int64_t generation = 1) {
    Json d = applied;
    d["metadata"]["generation"] = generation;
    d["status"] = {{"observedGeneration", generation},
                   {"replicas", ready},
                   {"updatedReplicas", ready},
                   {"readyReplicas", ready},
                   {"availableReplicas", ready}};
    deployment_ = ObserveDeployment(d);
    network_policy_ = OwnedObject{true, "agent-uid"};
  }

  std::vector<ClusterAgentPolicyObject> guards_;
  compiler::NamespaceLabels labels_ = {{"env", "prod"}};
  DeploymentState deployment_;
  OwnedObject network_policy_;
};

const v1::Condition& Cond(const v1::AgentStatus& status,
                          absl::string_view type) {
  const v1::Condition* c = FindCondition(status.conditions(), type);
  static const v1::Condition kNone;
  EXPECT_NE(c, nullptr) << type;
  return c != nullptr ? *c : kNone;
}

TEST(AgentReconcilerConstantsTest, AnnotationsAreTheShims) {
  EXPECT_STREQ(kPolicyAnnotation, shim::kPolicyAnnotation);
  EXPECT_STREQ(kPolicyHashAnnotation, shim::kPolicyHashAnnotation);
  EXPECT_STREQ(kAgentAnnotation, shim::kAgentAnnotation);
}

TEST_F(AgentReconcilerTest, ReadyPolicyMakesAConfinedDeployment) {
  AgentObject agent = MakeAgent(RefSpec());
  ASSERT_THAT(agent.problems, IsEmpty());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  AgentResult r = Run(agent, &policy);
  ASSERT_TRUE(r.deployment.has_value());
  const Json& d = *r.deployment;
  EXPECT_EQ(d["apiVersion"], "apps/v1");
  EXPECT_EQ(d["metadata"]["name"], "research");
  EXPECT_EQ(d["metadata"]["namespace"], "agents");
  EXPECT_EQ(d["metadata"]["ownerReferences"],
            Json::parse(R"([{"apiVersion":"stockade.dev/v1alpha1",
              "kind":"Agent","name":"research","uid":"agent-uid",
              "controller":true,"blockOwnerDeletion":true}])"));
  EXPECT_EQ(d["spec"]["replicas"], 2);
  EXPECT_EQ(d["spec"]["selector"]["matchLabels"],
            Json({{"stockade.dev/agent", "research"}}));
  const Json& tmpl = d["spec"]["template"];
  EXPECT_EQ(tmpl["metadata"]["labels"]["stockade.dev/agent"], "research");
  EXPECT_EQ(tmpl["metadata"]["annotations"],
            Json({{"stockade.dev/policy", "research-policy"},
                  {"stockade.dev/policy-hash", kHash},
                  {"stockade.dev/agent", "research"}}));
  EXPECT_EQ(tmpl["spec"]["runtimeClassName"], "stockade");
  EXPECT_EQ(tmpl["spec"]["automountServiceAccountToken"], false);
  const Json& c = tmpl["spec"]["containers"][0];
  EXPECT_EQ(c["name"], "agent");
  EXPECT_EQ(c["image"], "ghcr.io/acme/agent@" + kDigest);
  EXPECT_EQ(c["command"], Json({"python3"}));
  EXPECT_EQ(c["args"], Json({"-m", "agent"}));
  EXPECT_EQ(c["env"], Json::parse(R"([{"name":"MODE","value":"research"}])"));
  EXPECT_EQ(c["resources"]["limits"],
            Json({{"cpu", "1"}, {"memory", "512Mi"}}));
  EXPECT_FALSE(c["resources"].contains("requests"));
  EXPECT_EQ(c["securityContext"], Json::parse(R"({
      "allowPrivilegeEscalation": false, "privileged": false,
      "readOnlyRootFilesystem": true,
      "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})"));

  ASSERT_TRUE(r.network_policy.has_value());
  const Json& np = *r.network_policy;
  EXPECT_EQ(np["apiVersion"], "networking.k8s.io/v1");
  EXPECT_EQ(np["metadata"]["ownerReferences"],
            d["metadata"]["ownerReferences"]);
  EXPECT_EQ(np["spec"]["podSelector"]["matchLabels"],
            Json({{"stockade.dev/agent", "research"}}));
  EXPECT_EQ(np["spec"]["policyTypes"], Json({"Ingress", "Egress"}));
  EXPECT_FALSE(np["spec"].contains("ingress"));  // no ingress at all
  EXPECT_EQ(np["spec"]["egress"], Json::parse(R"([
      {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
       "ports": [{"protocol": "TCP", "port": 443, "endPort": 444}]},
      {"to": [{"namespaceSelector": {"matchLabels":
                  {"kubernetes.io/metadata.name": "kube-system"}},
               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
       "ports": [{"protocol": "UDP", "port": 53},
                 {"protocol": "TCP", "port": 53}]}])"));
  EXPECT_FALSE(r.inline_policy.has_value());

  EXPECT_EQ(r.policy_name, "research-policy");
  EXPECT_TRUE(r.status_changed);
  EXPECT_EQ(r.status.observed_generation(), 1);
  EXPECT_EQ(r.status.policy(), "research-policy");
  EXPECT_EQ(r.status.policy_hash(), "");  // nothing observed yet
  EXPECT_EQ(Cond(r.status, kPolicyReady).status(), v1::CONDITION_STATUS_TRUE);
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyReady);
  EXPECT_EQ(Cond(r.status, kAvailable).reason(), kReasonReplicasUnavailable);
  EXPECT_EQ(Cond(r.status, kProgressing).status(), v1::CONDITION_STATUS_TRUE);
  EXPECT_EQ(Cond(r.status, kProgressing).reason(), kReasonRollingOut);
  EXPECT_EQ(r.events.size(), 3u);
}

TEST_F(AgentReconcilerTest, StatusFollowsTheObservedDeployment) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  AgentResult first = Run(agent, &policy);
  Observe(*first.deployment, 1);
  AgentResult r = Run(agent, &policy);
  EXPECT_EQ(r.status.replicas(), 1);
  EXPECT_EQ(r.status.ready_replicas(), 1);
  EXPECT_EQ(r.status.policy_hash(), kHash);
  EXPECT_EQ(Cond(r.status, kAvailable).status(), v1::CONDITION_STATUS_FALSE);
  EXPECT_THAT(Cond(r.status, kAvailable).message(),
              HasSubstr("1 of 2 pods available"));
  EXPECT_EQ(Cond(r.status, kProgressing).reason(), kReasonRollingOut);

  Observe(*first.deployment, 2);
  r = Run(agent, &policy);
  EXPECT_EQ(r.status.ready_replicas(), 2);
  EXPECT_EQ(Cond(r.status, kAvailable).status(), v1::CONDITION_STATUS_TRUE);
  EXPECT_EQ(Cond(r.status, kAvailable).reason(), kReasonReplicasAvailable);
  EXPECT_EQ(Cond(r.status, kProgressing).status(), v1::CONDITION_STATUS_FALSE);
  EXPECT_EQ(Cond(r.status, kProgressing).reason(), kReasonRolledOut);

  // Fed back: nothing to write, nothing to tell.
  *agent.object.mutable_status() = r.status;
  AgentResult again = Run(agent, &policy);
  EXPECT_FALSE(again.status_changed);
  EXPECT_THAT(again.events, IsEmpty());
  EXPECT_TRUE(again.deployment.has_value());  // applied every time (a no-op)
}

TEST_F(AgentReconcilerTest, ANewPolicyHashRollsTheDeployment) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  Observe(*Run(agent, &policy).deployment, 2);
  AgentPolicyObject changed = MakePolicy("research-policy", kNewHash);
  AgentResult r = Run(agent, &changed);
  ASSERT_TRUE(r.deployment.has_value());
  EXPECT_EQ((*r.deployment)["spec"]["template"]["metadata"]["annotations"]
                           ["stockade.dev/policy-hash"],
            kNewHash);
  EXPECT_EQ(Cond(r.status, kProgressing).reason(), kReasonRollingOut);
  EXPECT_THAT(Cond(r.status, kProgressing).message(),
              HasSubstr(kNewHash.substr(0, 12)));
  // Still available on the old pods meanwhile.
  EXPECT_EQ(Cond(r.status, kAvailable).status(), v1::CONDITION_STATUS_TRUE);
}

TEST_F(AgentReconcilerTest, APolicyNotYetOnEveryNodeKeepsTheOldDeployment) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  Observe(*Run(agent, &policy).deployment, 2);
  AgentPolicyObject distributing =
      MakePolicy("research-policy", kNewHash, /*ready=*/false);
  AgentResult r = Run(agent, &distributing);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_FALSE(r.network_policy.has_value());
  EXPECT_EQ(r.status.policy_hash(), kHash);
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyNotReady);
  EXPECT_THAT(Cond(r.status, kPolicyReady).message(),
              HasSubstr("0/2 nodes hold policy"));
  EXPECT_EQ(Cond(r.status, kProgressing).status(), v1::CONDITION_STATUS_TRUE);
  EXPECT_EQ(Cond(r.status, kAvailable).status(), v1::CONDITION_STATUS_TRUE);
}

TEST_F(AgentReconcilerTest, MissingOrUncompiledPolicyCreatesNothing) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentResult r = Run(agent, nullptr);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).status(), v1::CONDITION_STATUS_FALSE);
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyNotFound);
  EXPECT_THAT(Cond(r.status, kPolicyReady).message(),
              HasSubstr("AgentPolicy research-policy (spec.policyRef.name) "
                        "does not exist in namespace agents"));
  EXPECT_EQ(Cond(r.status, kAvailable).reason(), kReasonPolicyNotFound);
  EXPECT_EQ(r.events.at(0).type, "Warning");

  AgentPolicyObject broken = MakePolicy("research-policy", "");
  *broken.object.mutable_status()->mutable_conditions(0) = MakeCondition(
      {}, kCompiled, v1::CONDITION_STATUS_FALSE, "GuardrailViolation",
      "spec.exec.allow[0]: /usr/bin/pip", 1, "2026-01-01T00:00:00Z");
  r = Run(agent, &broken);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyNotCompiled);
  EXPECT_THAT(Cond(r.status, kPolicyReady).message(),
              HasSubstr("does not compile (GuardrailViolation): "
                        "spec.exec.allow[0]"));

  // A status for an older generation is not trusted.
  AgentPolicyObject stale = MakePolicy("research-policy", kHash);
  stale.object.mutable_metadata()->set_generation(2);
  r = Run(agent, &stale);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyNotCompiled);
}

TEST_F(AgentReconcilerTest, GuardrailViolationsBlockTheAgent) {
  ClusterAgentPolicyObject guard;
  guard.object.mutable_metadata()->set_name("workloads");
  v1::Guardrails* g = guard.object.mutable_spec()->mutable_guardrails();
  g->set_require_image_digest(true);
  g->set_max_replicas(1);
  guards_.push_back(guard);
  Json spec = RefSpec();
  spec["image"] = "python:3.12";
  AgentObject agent = MakeAgent(spec);
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  AgentResult r = Run(agent, &policy);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_FALSE(r.network_policy.has_value());
  for (const char* type : {kPolicyReady, kAvailable, kProgressing}) {
    const v1::Condition& c = Cond(r.status, type);
    EXPECT_EQ(c.status(), v1::CONDITION_STATUS_FALSE) << type;
    EXPECT_EQ(c.reason(), kReasonGuardrailViolation) << type;
    EXPECT_THAT(c.message(), HasSubstr("spec.image: image \"python:3.12\" is "
                                       "not pinned by digest"));
    EXPECT_THAT(c.message(), HasSubstr("guardrails.requireImageDigest"));
    EXPECT_THAT(c.message(), HasSubstr("spec.replicas: 2 replicas exceed"));
  }
  EXPECT_THAT(Cond(r.status, kAvailable).message(),
              HasSubstr("No Deployment is created."));
  // One Warning, not three.
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].type, "Warning");
  EXPECT_EQ(r.events[0].reason, kReasonGuardrailViolation);

  // A guardrail added under a running Agent: its Deployment is left alone.
  guards_.clear();
  AgentResult before = Run(MakeAgent(RefSpec()), &policy);
  ASSERT_TRUE(before.deployment.has_value());
  Observe(*before.deployment, 2);
  guards_.push_back(guard);
  r = Run(agent, &policy);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_THAT(Cond(r.status, kAvailable).message(),
              HasSubstr("The Deployment is left as it is (2 of 2 pods "
                        "available)."));
}

TEST_F(AgentReconcilerTest, ExactlyOneOfPolicyRefAndPolicy) {
  Json both = RefSpec();
  both["policy"] = {{"mode", "Enforce"}};
  AgentResult r = Run(MakeAgent(both));
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonInvalidSpec);
  EXPECT_THAT(Cond(r.status, kPolicyReady).message(),
              HasSubstr("spec.policyRef: exactly one of policyRef or policy "
                        "must be set"));
  Json neither = RefSpec();
  neither.erase("policyRef");
  r = Run(MakeAgent(neither));
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonInvalidSpec);
}

TEST_F(AgentReconcilerTest, InlinePolicyBecomesAnOwnedAgentPolicy) {
  Json spec = RefSpec();
  spec.erase("policyRef");
  spec["policy"] =
      Json::parse(R"({"filesystem": {"writable": [{"path": "/tmp"}]},
      "network": {"egress": [{"cidrs": ["192.0.2.0/24"]}]}})");
  spec["automountServiceAccountToken"] = true;
  AgentObject agent = MakeAgent(spec);
  ASSERT_THAT(agent.problems, IsEmpty());
  AgentResult r = Run(agent, nullptr);
  ASSERT_TRUE(r.inline_policy.has_value());
  const Json& p = *r.inline_policy;
  EXPECT_EQ(p["kind"], "AgentPolicy");
  EXPECT_EQ(p["metadata"]["name"], "research");
  EXPECT_EQ(p["metadata"]["ownerReferences"][0]["uid"], "agent-uid");
  EXPECT_EQ(p["spec"]["filesystem"]["writable"],
            Json::parse(R"([{"path": "/tmp"}])"));  // no sizeLimit: ""
  EXPECT_EQ(p["spec"]["network"]["egress"][0]["cidrs"], Json({"192.0.2.0/24"}));
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyNotFound);
  EXPECT_THAT(Cond(r.status, kPolicyReady).message(),
              HasSubstr("AgentPolicy research (spec.policy) is being created"));

  // Once compiled and distributed: the Deployment names it.
  AgentPolicyObject own = MakePolicy("research", kHash);
  v1::OwnerReference* ref =
      own.object.mutable_metadata()->add_owner_references();
  ref->set_uid("agent-uid");
  ref->set_controller(true);
  r = Run(agent, &own);
  ASSERT_TRUE(r.deployment.has_value());
  const Json& tmpl = (*r.deployment)["spec"]["template"];
  EXPECT_EQ(tmpl["metadata"]["annotations"]["stockade.dev/policy"], "research");
  EXPECT_EQ(tmpl["spec"]["automountServiceAccountToken"], true);
  EXPECT_EQ(r.status.policy(), "research");

  // Someone else's AgentPolicy of that name is never taken over.
  AgentPolicyObject foreign = MakePolicy("research", kHash);
  r = Run(agent, &foreign);
  EXPECT_FALSE(r.inline_policy.has_value());
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).reason(), kReasonPolicyConflict);
}

TEST_F(AgentReconcilerTest, AForeignDeploymentOfTheSameNameIsNotTakenOver) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  deployment_ = ObserveDeployment(Json::parse(
      R"({"metadata": {"name": "research", "ownerReferences": [
          {"uid": "other", "controller": true}]}})"));
  AgentResult r = Run(agent, &policy);
  EXPECT_FALSE(r.deployment.has_value());
  EXPECT_FALSE(r.network_policy.has_value());
  EXPECT_EQ(Cond(r.status, kPolicyReady).status(), v1::CONDITION_STATUS_TRUE);
  EXPECT_EQ(Cond(r.status, kAvailable).reason(), kReasonNameConflict);
  EXPECT_THAT(Cond(r.status, kAvailable).message(),
              HasSubstr("A Deployment named research exists and is not "
                        "controlled by this Agent"));
  EXPECT_EQ(r.status.replicas(), 0);  // not ours to report
}

TEST_F(AgentReconcilerTest, ComplainModeDoesNotDenyEgress) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  policy.object.mutable_spec()->set_mode(v1::MODE_COMPLAIN);
  AgentResult r = Run(agent, &policy);
  ASSERT_TRUE(r.network_policy.has_value());
  EXPECT_EQ((*r.network_policy)["spec"]["egress"], Json::parse("[{}]"));
}

TEST_F(AgentReconcilerTest, ProgressDeadlineAndUnknownNamespace) {
  AgentObject agent = MakeAgent(RefSpec());
  AgentPolicyObject policy = MakePolicy("research-policy", kHash);
  Json d = *Run(agent, &policy).deployment;
  d["status"]["conditions"] = Json::parse(
      R"([{"type": "Progressing", "status": "False",
           "reason": "ProgressDeadlineExceeded",
           "message": "ReplicaSet research-1 has timed out progressing."}])");
  deployment_ = ObserveDeployment(d);
  AgentResult r = Run(agent, &policy);
  EXPECT_EQ(Cond(r.status, kProgressing).reason(),
            kReasonProgressDeadlineExceeded);
  EXPECT_THAT(Cond(r.status, kProgressing).message(),
              HasSubstr("has timed out progressing"));

  AgentSnapshot s;
  s.agent = &agent;
  s.policy = &policy;
  AgentResult unknown = ReconcileAgent(s, kNow);
  EXPECT_FALSE(unknown.deployment.has_value());
  EXPECT_EQ(Cond(unknown.status, kPolicyReady).status(),
            v1::CONDITION_STATUS_UNKNOWN);
  EXPECT_EQ(Cond(unknown.status, kPolicyReady).reason(),
            kReasonNamespaceUnknown);
}

TEST(DecodeAgentTest, ProblemsNameTheField) {
  absl::StatusOr<AgentObject> a = DecodeAgent(R"({"apiVersion":
      "stockade.dev/v1alpha1", "kind": "Agent",
      "metadata": {"name": "x", "namespace": "agents"},
      "spec": {"image": "python", "replicas": -1,
               "policyRef": {"name": "p"}}})");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_THAT(a->problems, Not(IsEmpty()));
  EXPECT_EQ(a->problems[0].path, "spec.replicas");

  a = DecodeAgent(R"({"kind": "Agent", "metadata": {"name": "x"},
      "spec": {"image": "python", "policyRef": {"name": "p"},
               "resources": {"limits": {"cpu": "lots"}}}})");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_THAT(a->problems,
              ElementsAre(testing::Field(&compiler::Problem::path,
                                         "spec.resources.limits.cpu")));
  EXPECT_FALSE(DecodeAgent(R"({"kind": "AgentPolicy",
      "metadata": {"name": "x"}})")
                   .ok());
}

}  // namespace
}  // namespace stockade::controller
