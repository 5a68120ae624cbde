#include "operator/controller/reconciler.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/controller/conditions.h"

namespace stockade::controller {
namespace {

namespace v1 = ::stockade::v1;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::string SourceDir() {
  const char* root = std::getenv("STOCKADE_SOURCE_DIR");
  EXPECT_NE(root, nullptr) << "STOCKADE_SOURCE_DIR is not set (run via ctest)";
  return root ? root : ".";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

compiler::DecodeResult DecodeExample(const std::string& name) {
  compiler::DecodeResult r = compiler::DecodeManifests(
      ReadFile(SourceDir() + "/examples/policies/" + name), name);
  for (const auto& p : r.problems) ADD_FAILURE() << p.ToString();
  return r;
}

// What the API server adds to an object: a uid and a generation.
AgentPolicyObject Served(v1::AgentPolicy p, int64_t generation = 1) {
  p.mutable_metadata()->set_uid("uid-" + p.metadata().namespace_() + "-" +
                                p.metadata().name());
  p.mutable_metadata()->set_generation(generation);
  return AgentPolicyObject{std::move(p), {}};
}

ClusterAgentPolicyObject Served(v1::ClusterAgentPolicy c,
                                int64_t generation = 1) {
  c.mutable_metadata()->set_uid("uid-" + c.metadata().name());
  c.mutable_metadata()->set_generation(generation);
  return ClusterAgentPolicyObject{std::move(c), {}};
}

AgentPolicyObject ExamplePolicy(const std::string& file) {
  compiler::DecodeResult r = DecodeExample(file);
  EXPECT_THAT(r.documents, SizeIs(1));
  return Served(std::get<v1::AgentPolicy>(r.documents.at(0).object));
}

ClusterAgentPolicyObject Baseline() {
  compiler::DecodeResult r = DecodeExample("cluster-guardrails.yaml");
  EXPECT_THAT(r.documents, SizeIs(1));
  return Served(std::get<v1::ClusterAgentPolicy>(r.documents.at(0).object));
}

// A minimal valid policy.
AgentPolicyObject Simple(const std::string& ns, const std::string& name,
                         int64_t generation = 1) {
  v1::AgentPolicy p;
  p.mutable_metadata()->set_namespace_(ns);
  p.mutable_metadata()->set_name(name);
  p.mutable_spec()->mutable_exec()->add_allow("/usr/bin/python3");
  p.mutable_spec()->mutable_processes()->set_max(32);
  return Served(std::move(p), generation);
}

const compiler::NamespaceLabels kEnforced = {{"stockade.dev/enforce", "true"}};

// A settable clock (the reconciler takes any callable).
class TestClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(absl::Duration d) { now_ += d; }
  PolicyReconciler::Clock AsClock() {
    return [this] { return now_; };
  }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1767225600);  // 2026-01-01
};

NodeState Node(const std::string& name) { return NodeState{name, {}, {}}; }

// Every node takes every desired policy, as node agents would.
void NodesSync(const ReconcileResult& r, Snapshot* s) {
  for (NodeState& n : s->nodes) {
    for (const auto& [hash, policy] : r.desired.policies) n.held.insert(hash);
  }
}

// The API server stores the statuses the operator wrote.
void WriteBack(const ReconcileResult& r, Snapshot* s) {
  for (AgentPolicyObject& p : s->policies) {
    for (const AgentPolicyResult& res : r.policies) {
      if (res.object.uid == p.object.metadata().uid()) {
        *p.object.mutable_status() = res.status;
      }
    }
  }
  for (ClusterAgentPolicyObject& c : s->cluster_policies) {
    for (const ClusterAgentPolicyResult& res : r.cluster_policies) {
      if (res.object.uid == c.object.metadata().uid()) {
        *c.object.mutable_status() = res.status;
      }
    }
  }
}

const AgentPolicyResult& Result(const ReconcileResult& r, const std::string& ns,
                                const std::string& name) {
  for (const AgentPolicyResult& p : r.policies) {
    if (p.object.namespace_ == ns && p.object.name == name) return p;
  }
  ADD_FAILURE() << "no result for " << ns << "/" << name;
  static const AgentPolicyResult kNone;
  return kNone;
}

const v1::Condition& Cond(const AgentPolicyResult& r, const std::string& type) {
  const v1::Condition* c = FindCondition(r.status.conditions(), type);
  EXPECT_NE(c, nullptr) << type;
  static const v1::Condition kNone;
  return c ? *c : kNone;
}

MATCHER_P2(IsCondition, status, reason, "") {
  *result_listener << "is " << StatusName(arg.status()) << "/" << arg.reason()
                   << ": " << arg.message();
  return arg.status() == status && arg.reason() == reason;
}

const auto kTrue = v1::CONDITION_STATUS_TRUE;
const auto kFalse = v1::CONDITION_STATUS_FALSE;
const auto kUnknown = v1::CONDITION_STATUS_UNKNOWN;

// --- Examples ---------------------------------------------------------------

TEST(ReconcilerTest, ExamplesCompileAndAreReadyOnceEveryNodeHoldsThem) {
  Snapshot s;
  int agents = 0;
  for (const auto& entry : std::filesystem::directory_iterator(
           SourceDir() + "/examples/policies")) {
    compiler::DecodeResult r = DecodeExample(entry.path().filename().string());
    for (const compiler::Document& doc : r.documents) {
      if (const auto* p = std::get_if<v1::AgentPolicy>(&doc.object)) {
        s.policies.push_back(Served(*p));
      } else if (const auto* c =
                     std::get_if<v1::ClusterAgentPolicy>(&doc.object)) {
        s.cluster_policies.push_back(Served(*c));
      } else {
        ++agents;  // Agents are the Agent controller's
      }
    }
  }
  ASSERT_GE(s.policies.size(), 2u);
  ASSERT_EQ(s.cluster_policies.size(), 1u);
  for (const auto& p : s.policies) {
    s.namespaces[p.object.metadata().namespace_()] = kEnforced;
  }
  s.nodes = {Node("node-a"), Node("node-b")};
  TestClock clock;
  PolicyReconciler reconciler(clock.AsClock());

  ReconcileResult first = reconciler.Reconcile(s);
  ASSERT_THAT(first.policies, SizeIs(s.policies.size()));
  EXPECT_EQ(first.stats.compiled, static_cast<int>(s.policies.size()));
  EXPECT_THAT(first.desired.policies, SizeIs(s.policies.size()));
  for (const AgentPolicyResult& r : first.policies) {
    SCOPED_TRACE(r.object.name);
    EXPECT_THAT(Cond(r, kCompiled), IsCondition(kTrue, kReasonCompiled));
    EXPECT_THAT(Cond(r, kCompiled).message(),
                HasSubstr("with the guardrails of ClusterAgentPolicy "
                          "\"baseline\""));
    EXPECT_THAT(Cond(r, kDistributed),
                IsCondition(kFalse, kReasonDistributing));
    EXPECT_THAT(Cond(r, kDistributed).message(),
                HasSubstr("0/2 nodes hold policy " +
                          r.status.policy_hash().substr(0, 12) +
                          "; waiting for node-a, node-b"));
    EXPECT_THAT(Cond(r, kReady), IsCondition(kFalse, kReasonDistributing));
    EXPECT_EQ(r.status.nodes().summary(), "0/2");
    EXPECT_TRUE(r.status_changed);
    // The index names the hash in the status, and the compiled policy is
    // exactly what the compiler's front door makes of the same input.
    EXPECT_EQ(first.desired.index.at({r.object.namespace_, r.object.name}),
              r.status.policy_hash());
    const v1::CompiledPolicy compiled =
        *first.desired.policies.at(r.status.policy_hash())->Unpack();
    for (const auto& p : s.policies) {
      if (p.object.metadata().name() != r.object.name) continue;
      auto direct = compiler::CompileAgentPolicy(
          p.object, {s.cluster_policies[0].object}, kEnforced);
      ASSERT_TRUE(direct.compiled.has_value());
      EXPECT_EQ(compiled.SerializeAsString(),
                direct.compiled->SerializeAsString());
    }
  }
  EXPECT_EQ(std::count_if(first.events.begin(), first.events.end(),
                          [](const Event& e) {
                            return e.reason == kReasonCompiled &&
                                   e.type == "Normal";
                          }),
            static_cast<long>(s.policies.size()));

  WriteBack(first, &s);
  NodesSync(first, &s);
  clock.Advance(absl::Seconds(2));
  ReconcileResult second = reconciler.Reconcile(s);
  EXPECT_EQ(second.stats.compiled, 0);
  EXPECT_EQ(second.stats.cache_hits, static_cast<int>(s.policies.size()));
  for (const AgentPolicyResult& r : second.policies) {
    SCOPED_TRACE(r.object.name);
    EXPECT_THAT(Cond(r, kCompiled), IsCondition(kTrue, kReasonCompiled));
    EXPECT_THAT(Cond(r, kDistributed), IsCondition(kTrue, kReasonDistributed));
    EXPECT_THAT(Cond(r, kReady), IsCondition(kTrue, kReasonReady));
    EXPECT_EQ(r.status.nodes().ready(), 2);
    EXPECT_EQ(r.status.nodes().total(), 2);
    EXPECT_EQ(r.status.nodes().summary(), "2/2");
    EXPECT_EQ(r.status.observed_generation(), 1);
    EXPECT_TRUE(r.status_changed);
  }
  // One "Distributed" event per policy, nothing else.
  EXPECT_THAT(second.events, SizeIs(s.policies.size()));
  for (const Event& e : second.events) {
    EXPECT_EQ(e.reason, kReasonDistributed);
    EXPECT_THAT(e.message, HasSubstr("2/2 nodes hold policy"));
  }
  ASSERT_THAT(second.cluster_policies, SizeIs(1));
  const auto& baseline = second.cluster_policies[0].status;
  EXPECT_EQ(baseline.selected_policies(), static_cast<int>(s.policies.size()));
  EXPECT_EQ(baseline.rejected_policies(), 0);
  EXPECT_EQ(baseline.conditions(0).status(), kTrue);
  EXPECT_EQ(baseline.conditions(0).reason(), kReasonApplied);
}

// --- Compile failures -------------------------------------------------------

TEST(ReconcilerTest, SemanticallyInvalidSpecNamesTheField) {
  AgentPolicyObject p = ExamplePolicy("research-agent.yaml");
  p.object.mutable_spec()->mutable_network()->mutable_egress(0)->set_cidrs(
      1, "198.51.100.10/33");
  p.object.mutable_spec()->mutable_filesystem()->mutable_writable(0)->set_path(
      "/tmp/../etc");
  Snapshot s;
  s.policies = {p};
  s.namespaces["agents"] = {};
  s.nodes = {Node("n1")};
  PolicyReconciler reconciler;
  ReconcileResult r = reconciler.Reconcile(s);
  const AgentPolicyResult& res = r.policies.at(0);
  const v1::Condition& compiled = Cond(res, kCompiled);
  EXPECT_THAT(compiled, IsCondition(kFalse, kReasonInvalidSpec));
  EXPECT_THAT(compiled.message(),
              AllOf(HasSubstr("Generation 1 is invalid: "),
                    HasSubstr("spec.network.egress[0].cidrs[1]: "),
                    HasSubstr("spec.filesystem.writable[0].path: "),
                    HasSubstr("Nothing of this policy is distributed")));
  EXPECT_THAT(Cond(res, kReady), IsCondition(kFalse, kReasonInvalidSpec));
  EXPECT_THAT(Cond(res, kDistributed), IsCondition(kFalse, kReasonNotCompiled));
  EXPECT_EQ(res.status.policy_hash(), "");
  EXPECT_EQ(res.status.nodes().summary(), "0/1");
  EXPECT_THAT(r.desired.policies, IsEmpty());
  EXPECT_THAT(r.desired.index, IsEmpty());
  ASSERT_THAT(r.events, SizeIs(1));
  EXPECT_EQ(r.events[0].type, "Warning");
  EXPECT_EQ(r.events[0].reason, kReasonInvalidSpec);
  EXPECT_EQ(r.events[0].message, compiled.message());
  EXPECT_EQ(r.events[0].object.kind, "AgentPolicy");
  EXPECT_EQ(r.events[0].object.uid, p.object.metadata().uid());
}

TEST(ReconcilerTest, SpecThatDidNotDecodeIsInvalidSpec) {
  AgentPolicyObject p = Simple("agents", "broken");
  p.problems.push_back(
      compiler::Problem{"", 0, "spec.mode", "unsupported value \"Sometimes\""});
  Snapshot s;
  s.policies = {p};
  s.namespaces["agents"] = {};
  PolicyReconciler reconciler;
  ReconcileResult r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kCompiled),
              IsCondition(kFalse, kReasonInvalidSpec));
  EXPECT_THAT(Cond(r.policies[0], kCompiled).message(),
              HasSubstr("spec.mode: unsupported value \"Sometimes\""));
  EXPECT_EQ(r.stats.compiled, 0);
}

TEST(ReconcilerTest, GuardrailViolationNamesTheGuardrail) {
  AgentPolicyObject p = ExamplePolicy("research-agent.yaml");
  p.object.mutable_spec()->mutable_capabilities()->add_add("SYS_ADMIN");
  AgentPolicyObject ok = ExamplePolicy("strict-agent.yaml");
  Snapshot s;
  s.policies = {p, ok};
  s.cluster_policies = {Baseline()};
  s.namespaces["agents"] = kEnforced;
  PolicyReconciler reconciler;
  ReconcileResult r = reconciler.Reconcile(s);
  const AgentPolicyResult& res = Result(r, "agents", "research-agent");
  EXPECT_THAT(Cond(res, kCompiled),
              IsCondition(kFalse, kReasonGuardrailViolation));
  EXPECT_THAT(
      Cond(res, kCompiled).message(),
      AllOf(HasSubstr("asks for more than the guardrails allow"),
            HasSubstr("spec.capabilities.add[0]: capability SYS_ADMIN is "
                      "forbidden by ClusterAgentPolicy \"baseline\" "
                      "(guardrails.allowedCapabilities")));
  EXPECT_THAT(Cond(Result(r, "agents", "strict-agent"), kCompiled),
              IsCondition(kTrue, kReasonCompiled));
  ASSERT_THAT(r.cluster_policies, SizeIs(1));
  EXPECT_EQ(r.cluster_policies[0].status.selected_policies(), 2);
  EXPECT_EQ(r.cluster_policies[0].status.rejected_policies(), 1);
  EXPECT_THAT(r.cluster_policies[0].status.conditions(0).message(),
              HasSubstr("apply to 2 AgentPolicies in 1 namespace; 1 rejected"));
}

TEST(ReconcilerTest, InvalidGuardrailBlocksTheNamespacesItSelects) {
  ClusterAgentPolicyObject bad = Baseline();
  bad.object.mutable_spec()->mutable_guardrails()->add_denied_paths(
      "/var/../etc");
  Snapshot s;
  s.policies = {Simple("agents", "a"), Simple("free", "b")};
  s.cluster_policies = {bad};
  s.namespaces["agents"] = kEnforced;
  s.namespaces["free"] = {};
  PolicyReconciler reconciler;
  ReconcileResult r = reconciler.Reconcile(s);
  const AgentPolicyResult& a = Result(r, "agents", "a");
  EXPECT_THAT(Cond(a, kCompiled), IsCondition(kFalse, kReasonInvalidGuardrail));
  EXPECT_THAT(Cond(a, kCompiled).message(),
              AllOf(HasSubstr("ClusterAgentPolicy \"baseline\""),
                    HasSubstr("spec.guardrails.deniedPaths[1]")));
  EXPECT_THAT(Cond(Result(r, "free", "b"), kCompiled),
              IsCondition(kTrue, kReasonCompiled));
  ASSERT_THAT(r.cluster_policies, SizeIs(1));
  const v1::Condition& ready = r.cluster_policies[0].status.conditions(0);
  EXPECT_EQ(ready.status(), kFalse);
  EXPECT_EQ(ready.reason(), kReasonInvalidGuardrails);
  EXPECT_THAT(ready.message(), HasSubstr("spec.guardrails.deniedPaths[1]"));
  EXPECT_THAT(r.events,
              testing::Contains(
                  AllOf(Field(&Event::reason, kReasonInvalidGuardrails),
                        Field(&Event::type, "Warning"),
                        Field(&Event::object,
                              Field(&ObjectRef::kind, "ClusterAgentPolicy")))));

  // A selector that cannot be evaluated selects every namespace.
  auto* req = bad.object.mutable_spec()
                  ->mutable_namespace_selector()
                  ->add_match_expressions();
  req->set_key("tier");
  req->set_operator_(v1::SELECTOR_OPERATOR_IN);
  s.cluster_policies = {bad};
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(Result(r, "free", "b"), kCompiled),
              IsCondition(kFalse, kReasonInvalidGuardrail));
  EXPECT_THAT(r.cluster_policies[0].status.conditions(0).message(),
              HasSubstr("spec.namespaceSelector.matchExpressions[0].values: "
                        "must not be empty"));
}

TEST(ReconcilerTest, UnknownNamespaceIsNotCompiled) {
  Snapshot s;
  s.policies = {Simple("late", "a")};
  PolicyReconciler reconciler;
  ReconcileResult r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kCompiled),
              IsCondition(kUnknown, kReasonNamespaceUnknown));
  EXPECT_THAT(Cond(r.policies[0], kReady),
              IsCondition(kUnknown, kReasonNamespaceUnknown));
  EXPECT_EQ(r.stats.compiled, 0);
  EXPECT_THAT(r.desired.index, IsEmpty());
  EXPECT_THAT(r.events, IsEmpty());
  s.namespaces["late"] = {};
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kCompiled),
              IsCondition(kTrue, kReasonCompiled));
}

// --- Guardrail changes ------------------------------------------------------

TEST(ReconcilerTest, GuardrailChangeRecompilesEveryPolicyItSelects) {
  Snapshot s;
  for (const char* ns : {"agents", "team-b", "free"}) {
    for (const char* name : {"one", "two"})
      s.policies.push_back(Simple(ns, name));
  }
  s.cluster_policies = {Baseline()};
  s.namespaces["agents"] = kEnforced;
  s.namespaces["team-b"] = kEnforced;
  s.namespaces["free"] = {};
  PolicyReconciler reconciler;
  ReconcileResult before = reconciler.Reconcile(s);
  ASSERT_EQ(before.stats.failed, 0);

  s.cluster_policies[0]
      .object.mutable_spec()
      ->mutable_guardrails()
      ->add_denied_paths("/opt/secrets");
  s.cluster_policies[0].object.mutable_metadata()->set_generation(2);
  ReconcileResult after = reconciler.Reconcile(s);
  EXPECT_EQ(after.stats.compiled, 4);  // the selected ones only
  EXPECT_EQ(after.stats.cache_hits, 2);
  for (const AgentPolicyResult& r : after.policies) {
    SCOPED_TRACE(r.object.namespace_ + "/" + r.object.name);
    const std::string old_hash =
        Result(before, r.object.namespace_, r.object.name).status.policy_hash();
    if (r.object.namespace_ == "free") {
      EXPECT_EQ(r.status.policy_hash(), old_hash);
    } else {
      EXPECT_NE(r.status.policy_hash(), old_hash);
      const v1::CompiledPolicy compiled =
          *after.desired.policies.at(r.status.policy_hash())->Unpack();
      EXPECT_THAT(compiled.effective().filesystem().deny(),
                  testing::Contains("/opt/secrets"));
    }
  }
  EXPECT_EQ(after.cluster_policies[0].status.observed_generation(), 2);

  // Labelling a namespace brings its policies under the guardrail.
  s.namespaces["free"] = kEnforced;
  ReconcileResult labelled = reconciler.Reconcile(s);
  EXPECT_EQ(labelled.stats.compiled, 2);
  EXPECT_NE(Result(labelled, "free", "one").status.policy_hash(),
            Result(after, "free", "one").status.policy_hash());
  EXPECT_EQ(labelled.cluster_policies[0].status.selected_policies(), 6);
}

// --- Updates, last good version, garbage collection ------------------------

TEST(ReconcilerTest, UpdateKeepsTheOldHashWhileAContainerUsesIt) {
  Snapshot s;
  s.policies = {Simple("agents", "a")};
  s.namespaces["agents"] = {};
  s.nodes = {Node("node-a"), Node("node-b")};
  PolicyReconciler reconciler;
  ReconcileResult v1r = reconciler.Reconcile(s);
  const std::string h1 = v1r.policies[0].status.policy_hash();
  NodesSync(v1r, &s);
  s.nodes[0].in_use.insert(h1);  // a container on node-a runs with it

  // Update: generation 2, another spec.
  s.policies[0] = Simple("agents", "a", 2);
  s.policies[0].object.mutable_spec()->mutable_processes()->set_max(16);
  ReconcileResult v2r = reconciler.Reconcile(s);
  const std::string h2 = v2r.policies[0].status.policy_hash();
  ASSERT_NE(h1, h2);
  EXPECT_EQ(v2r.desired.index.at({"agents", "a"}), h2);
  EXPECT_THAT(v2r.desired.policies, SizeIs(2));
  EXPECT_TRUE(v2r.desired.policies.contains(h1));
  EXPECT_EQ(v2r.stats.retained_in_use, 1);
  EXPECT_EQ(v2r.policies[0].status.observed_generation(), 2);
  EXPECT_THAT(Cond(v2r.policies[0], kDistributed),
              IsCondition(kFalse, kReasonDistributing));
  EXPECT_THAT(v2r.events,
              ElementsAre(AllOf(
                  Field(&Event::reason, kReasonCompiled),
                  Field(&Event::message, HasSubstr("Generation 2 compiled")))));

  // Still in use: still desired, however many reconciles.
  NodesSync(v2r, &s);
  ReconcileResult again = reconciler.Reconcile(s);
  EXPECT_TRUE(again.desired.policies.contains(h1));
  EXPECT_NE(again.desired.fingerprint, ReconcileResult().desired.fingerprint);

  // The container is gone: the old hash is dropped, and stays dropped.
  s.nodes[0].in_use.clear();
  ReconcileResult dropped = reconciler.Reconcile(s);
  EXPECT_THAT(dropped.desired.policies, SizeIs(1));
  EXPECT_FALSE(dropped.desired.policies.contains(h1));
  EXPECT_NE(dropped.desired.fingerprint, again.desired.fingerprint);
  s.nodes[0].in_use.insert(h1);
  EXPECT_FALSE(reconciler.Reconcile(s).desired.policies.contains(h1));

  // Delete: the index entry goes at once, the policy once nothing uses it.
  s.nodes[1].in_use.insert(h2);
  s.policies.clear();
  ReconcileResult deleted = reconciler.Reconcile(s);
  EXPECT_THAT(deleted.desired.index, IsEmpty());
  EXPECT_THAT(deleted.desired.policies, SizeIs(1));
  EXPECT_TRUE(deleted.desired.policies.contains(h2));
  s.nodes[1].in_use.clear();
  deleted = reconciler.Reconcile(s);
  EXPECT_THAT(deleted.desired.policies, IsEmpty());
}

TEST(ReconcilerTest,
     FailingUpdateKeepsTheLastGoodVersionUntilGuardrailsChange) {
  Snapshot s;
  s.policies = {Simple("agents", "a")};
  s.cluster_policies = {Baseline()};
  s.namespaces["agents"] = kEnforced;
  s.nodes = {Node("n1")};
  PolicyReconciler reconciler;
  ReconcileResult good = reconciler.Reconcile(s);
  const std::string h1 = good.policies[0].status.policy_hash();
  ASSERT_FALSE(h1.empty());
  NodesSync(good, &s);
  WriteBack(good, &s);
  reconciler.Reconcile(s);

  // Generation 2 asks for a forbidden capability.
  AgentPolicyObject bad = Simple("agents", "a", 2);
  bad.object.mutable_spec()->mutable_capabilities()->add_add("SYS_ADMIN");
  s.policies = {bad};
  ReconcileResult r = reconciler.Reconcile(s);
  const AgentPolicyResult& res = r.policies[0];
  EXPECT_EQ(res.status.policy_hash(), h1);
  EXPECT_EQ(r.desired.index.at({"agents", "a"}), h1);
  EXPECT_EQ(r.stats.kept_last_good, 1);
  EXPECT_THAT(Cond(res, kCompiled),
              IsCondition(kFalse, kReasonGuardrailViolation));
  EXPECT_THAT(Cond(res, kCompiled).message(),
              HasSubstr("The nodes keep policy " + h1.substr(0, 12) +
                        " (generation 1), the last version that compiled."));
  EXPECT_THAT(Cond(res, kDistributed), IsCondition(kTrue, kReasonDistributed));
  EXPECT_THAT(Cond(res, kReady),
              IsCondition(kFalse, kReasonGuardrailViolation));
  EXPECT_THAT(Cond(res, kReady).message(),
              HasSubstr("the nodes keep policy " + h1.substr(0, 12)));
  EXPECT_EQ(res.status.observed_generation(), 2);
  EXPECT_THAT(r.events, ElementsAre(AllOf(
                            Field(&Event::type, "Warning"),
                            Field(&Event::reason, kReasonGuardrailViolation))));

  // The guardrails change: the old version was checked against other ones,
  // so it is no longer distributed (a guardrail is never loosened by
  // keeping an old version).
  s.cluster_policies[0]
      .object.mutable_spec()
      ->mutable_guardrails()
      ->add_denied_paths("/opt/secrets");
  r = reconciler.Reconcile(s);
  EXPECT_EQ(r.policies[0].status.policy_hash(), "");
  EXPECT_THAT(r.desired.index, IsEmpty());
  EXPECT_THAT(Cond(r.policies[0], kCompiled).message(),
              HasSubstr("Nothing of this policy is distributed"));
  EXPECT_THAT(r.events,
              ElementsAre(Field(&Event::reason, kReasonGuardrailViolation)));
  // Fixed: compiles again.
  s.policies = {Simple("agents", "a", 3)};
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kCompiled),
              IsCondition(kTrue, kReasonCompiled));
  EXPECT_NE(r.policies[0].status.policy_hash(), h1);  // other guardrails
}

// --- Distribution -----------------------------------------------------------

TEST(ReconcilerTest, DistributedCountsNodesAndNamesTheMissingOnes) {
  Snapshot s;
  s.policies = {Simple("agents", "a")};
  s.namespaces["agents"] = {};
  PolicyReconciler reconciler;
  ReconcileResult r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kDistributed),
              IsCondition(kUnknown, kReasonNoNodes));
  EXPECT_THAT(Cond(r.policies[0], kReady),
              IsCondition(kUnknown, kReasonNoNodes));
  EXPECT_EQ(r.policies[0].status.nodes().summary(), "0/0");
  const std::string hash = r.policies[0].status.policy_hash();

  for (int i = 0; i < 8; ++i)
    s.nodes.push_back(Node("node-" + std::to_string(i)));
  for (int i : {0, 3, 5}) s.nodes[i].held.insert(hash);
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kDistributed),
              IsCondition(kFalse, kReasonDistributing));
  EXPECT_EQ(Cond(r.policies[0], kDistributed).message(),
            "3/8 nodes hold policy " + hash.substr(0, 12) +
                "; waiting for node-1, node-2, node-4, node-6, node-7.");
  s.nodes.push_back(Node("node-8"));
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kDistributed).message(),
              HasSubstr("3/9 nodes hold policy " + hash.substr(0, 12) +
                        "; waiting for node-1, node-2, node-4, node-6, node-7 "
                        "and 1 more."));
  EXPECT_EQ(r.policies[0].status.nodes().ready(), 3);
  EXPECT_EQ(r.policies[0].status.nodes().total(), 9);
}

TEST(ReconcilerTest, NodeChurnChangesStatusButEmitsNoEvents) {
  Snapshot s;
  s.policies = {Simple("agents", "a")};
  s.namespaces["agents"] = {};
  s.nodes = {Node("n1")};
  PolicyReconciler reconciler;
  NodesSync(reconciler.Reconcile(s), &s);
  ReconcileResult r = reconciler.Reconcile(s);
  EXPECT_THAT(r.events, ElementsAre(Field(&Event::reason, kReasonDistributed)));
  // A node joins: Distributed goes False, quietly.
  s.nodes.push_back(Node("n2"));
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kDistributed),
              IsCondition(kFalse, kReasonDistributing));
  EXPECT_THAT(r.events, IsEmpty());
  // It catches up: True again, and that hash was announced already.
  NodesSync(r, &s);
  r = reconciler.Reconcile(s);
  EXPECT_THAT(Cond(r.policies[0], kDistributed),
              IsCondition(kTrue, kReasonDistributed));
  EXPECT_THAT(r.events, IsEmpty());
}

// --- Idempotence, times, determinism ----------------------------------------

Snapshot Mixed() {
  Snapshot s;
  s.policies.push_back(ExamplePolicy("research-agent.yaml"));
  s.policies.push_back(ExamplePolicy("strict-agent.yaml"));
  AgentPolicyObject bad = Simple("agents", "bad");
  bad.object.mutable_spec()->mutable_capabilities()->add_add("SYS_ADMIN");
  s.policies.push_back(bad);
  AgentPolicyObject invalid = Simple("free", "invalid");
  invalid.object.mutable_spec()->mutable_syscalls()->add_allow("no_such_call");
  s.policies.push_back(invalid);
  for (int i = 0; i < 5; ++i) {
    s.policies.push_back(
        Simple(i % 2 ? "agents" : "free", "p" + std::to_string(i)));
  }
  s.policies.push_back(Simple("nowhere", "x"));
  s.cluster_policies = {Baseline()};
  s.namespaces["agents"] = kEnforced;
  s.namespaces["free"] = {};
  s.nodes = {Node("n1"), Node("n2"), Node("n3")};
  return s;
}

TEST(ReconcilerTest, ReconcilingTwiceChangesNothingAndSaysNothing) {
  Snapshot s = Mixed();
  TestClock clock;
  PolicyReconciler reconciler(clock.AsClock());
  ReconcileResult first = reconciler.Reconcile(s);
  NodesSync(first, &s);
  s.nodes[2].held.clear();  // one node lags
  ReconcileResult second = reconciler.Reconcile(s);
  WriteBack(second, &s);

  clock.Advance(absl::Minutes(5));
  ReconcileResult third = reconciler.Reconcile(s);
  EXPECT_THAT(third.events, IsEmpty());
  EXPECT_EQ(third.desired.fingerprint, second.desired.fingerprint);
  EXPECT_EQ(third.stats.compiled, 0);
  ASSERT_EQ(third.policies.size(), second.policies.size());
  for (size_t i = 0; i < third.policies.size(); ++i) {
    SCOPED_TRACE(third.policies[i].object.name);
    EXPECT_FALSE(third.policies[i].status_changed);
    EXPECT_TRUE(MessageDifferencer::Equals(third.policies[i].status,
                                           second.policies[i].status));
  }
  for (const auto& c : third.cluster_policies) EXPECT_FALSE(c.status_changed);

  // A new operator process (restart, leader failover) reading the statuses
  // written: no events, same times, nothing to write.
  PolicyReconciler restarted(clock.AsClock());
  clock.Advance(absl::Minutes(5));
  ReconcileResult fresh = restarted.Reconcile(s);
  EXPECT_THAT(fresh.events, IsEmpty());
  EXPECT_EQ(fresh.desired.fingerprint, second.desired.fingerprint);
  for (size_t i = 0; i < fresh.policies.size(); ++i) {
    SCOPED_TRACE(fresh.policies[i].object.name);
    EXPECT_FALSE(fresh.policies[i].status_changed)
        << fresh.policies[i].status.DebugString();
  }
}

TEST(ReconcilerTest, TransitionTimeMovesOnlyWhenAConditionStatusChanges) {
  Snapshot s;
  s.policies = {Simple("agents", "a")};
  s.namespaces["agents"] = {};
  s.nodes = {Node("n1")};
  TestClock clock;
  PolicyReconciler reconciler(clock.AsClock());
  const std::string t0 = Rfc3339(clock.Now());
  ReconcileResult r = reconciler.Reconcile(s);
  EXPECT_EQ(Cond(r.policies[0], kCompiled).last_transition_time(), t0);
  EXPECT_EQ(Cond(r.policies[0], kDistributed).last_transition_time(), t0);

  clock.Advance(absl::Seconds(30));
  const std::string t1 = Rfc3339(clock.Now());
  NodesSync(r, &s);
  r = reconciler.Reconcile(s);
  EXPECT_EQ(Cond(r.policies[0], kCompiled).last_transition_time(), t0);
  EXPECT_EQ(Cond(r.policies[0], kDistributed).last_transition_time(), t1);
  EXPECT_EQ(Cond(r.policies[0], kReady).last_transition_time(), t1);

  // A new generation that compiles: Compiled stays True, its time stays;
  // the reason and message say what changed.
  clock.Advance(absl::Seconds(30));
  s.policies[0] = Simple("agents", "a", 2);
  s.policies[0].object.mutable_spec()->mutable_processes()->set_max(8);
  r = reconciler.Reconcile(s);
  EXPECT_EQ(Cond(r.policies[0], kCompiled).last_transition_time(), t0);
  EXPECT_EQ(Cond(r.policies[0], kCompiled).observed_generation(), 2);
  EXPECT_THAT(Cond(r.policies[0], kCompiled).message(),
              HasSubstr("Generation 2 compiled"));
  EXPECT_EQ(Cond(r.policies[0], kDistributed).last_transition_time(),
            Rfc3339(clock.Now()));
}

TEST(ReconcilerTest, OutputIsDeterministicWhateverTheInputOrder) {
  Snapshot a = Mixed();
  Snapshot b = a;
  std::mt19937 rng(42);
  std::shuffle(b.policies.begin(), b.policies.end(), rng);
  std::shuffle(b.nodes.begin(), b.nodes.end(), rng);
  b.cluster_policies.push_back(b.cluster_policies[0]);
  b.cluster_policies[1].object.mutable_metadata()->set_name("another");
  b.cluster_policies[1].object.mutable_metadata()->set_uid("uid-another");
  a.cluster_policies.insert(a.cluster_policies.begin(), b.cluster_policies[1]);
  TestClock clock;
  PolicyReconciler ra(clock.AsClock());
  PolicyReconciler rb(clock.AsClock());
  for (int round = 0; round < 2; ++round) {
    ReconcileResult x = ra.Reconcile(a);
    ReconcileResult y = rb.Reconcile(b);
    EXPECT_EQ(x.desired.fingerprint, y.desired.fingerprint);
    ASSERT_EQ(x.desired.policies.size(), y.desired.policies.size());
    for (const auto& [hash, policy] : x.desired.policies) {
      EXPECT_TRUE(policy->SameContent(*y.desired.policies.at(hash)));
    }
    EXPECT_EQ(x.desired.index, y.desired.index);
    ASSERT_EQ(x.policies.size(), y.policies.size());
    for (size_t i = 0; i < x.policies.size(); ++i) {
      EXPECT_EQ(x.policies[i].object, y.policies[i].object);
      EXPECT_TRUE(MessageDifferencer::Equals(x.policies[i].status,
                                             y.policies[i].status));
    }
    ASSERT_EQ(x.cluster_policies.size(), y.cluster_policies.size());
    for (size_t i = 0; i < x.cluster_policies.size(); ++i) {
      EXPECT_EQ(x.cluster_policies[i].object, y.cluster_policies[i].object);
      EXPECT_TRUE(MessageDifferencer::Equals(x.cluster_policies[i].status,
                                             y.cluster_policies[i].status));
    }
    EXPECT_EQ(x.events, y.events);
    NodesSync(x, &a);
    NodesSync(y, &b);
  }
}

}  // namespace
}  // namespace stockade::controller
