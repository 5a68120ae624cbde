// Events against a real kube-apiserver, read back with kubectl as a person
// would.
#include "operator/kube/events.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/testing/kube_testing.h"

namespace stockade::kube {
namespace {

using json = nlohmann::json;
using ::stockade::testing::ApiserverFixture;
using ::stockade::testing::CommandResult;
using testing::AdminClient;
using ::testing::AllOf;
using testing::CreateNamespace;
using ::testing::HasSubstr;
using testing::OperatorClient;
using testing::StartApiserver;

// The events of namespace ns, as kubectl sees them.
json KubectlEvents(const ApiserverFixture& f, const std::string& ns) {
  CommandResult r = f.Kubectl({"get", "events", "-n", ns, "-o", "json"});
  EXPECT_TRUE(r.ok()) << r.ToString();
  absl::StatusOr<json> j = ParseJson(r.out);
  EXPECT_TRUE(j.ok()) << r.out;
  return j.ok() ? (*j)["items"] : json::array();
}

const json* FindByReason(const json& items, const std::string& reason) {
  for (const json& e : items) {
    if (StringAt(e, {"reason"}) == reason) return &e;
  }
  return nullptr;
}

TEST(KubeEventsTest, RecordedEventsAreVisibleWithKubectlAndRepeatsAggregate) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "agents");
  absl::StatusOr<json> policy = c->Create(
      kAgentPolicy, "agents",
      {{"metadata", {{"name", "research"}}}, {"spec", {{"mode", "Enforce"}}}});
  ASSERT_TRUE(policy.ok()) << policy.status();
  absl::StatusOr<json> guard = c->Create(
      kClusterAgentPolicy, "",
      {{"metadata", {{"name", "baseline"}}}, {"spec", json::object()}});
  ASSERT_TRUE(guard.ok()) << guard.status();

  EventRecorder rec(c.get(), "stockade-operator",
                    EventRecorderOptions{.host = "test-node",
                                         .instance = "stockade-operator-0"});
  const ObjectReference ref = ReferenceTo(*policy);
  EXPECT_EQ(ref.kind, "AgentPolicy");
  EXPECT_EQ(ref.api_version, "stockade.dev/v1alpha1");
  ASSERT_TRUE(rec.Record(ref, EventType::kNormal, "Compiled",
                         "compiled to sha256:0123abcd")
                  .ok());
  ASSERT_TRUE(rec.Record(ref, EventType::kWarning, "InvalidSpec",
                         "spec.filesystem.writable[0].path: must be absolute")
                  .ok());
  ASSERT_TRUE(rec.Record(ref, EventType::kNormal, "Compiled",
                         "compiled to sha256:0123abcd")
                  .ok());
  ASSERT_TRUE(rec.Record(ReferenceTo(*guard), EventType::kNormal,
                         "GuardrailsApplied", "selects 0 policies")
                  .ok());

  json items = KubectlEvents(*f, "agents");
  EXPECT_EQ(items.size(), 2u) << Dump(items);  // the repeat was aggregated
  const json* compiled = FindByReason(items, "Compiled");
  ASSERT_NE(compiled, nullptr) << Dump(items);
  EXPECT_EQ((*compiled)["count"], 2);
  EXPECT_EQ(StringAt(*compiled, {"type"}), "Normal");
  EXPECT_EQ(StringAt(*compiled, {"message"}), "compiled to sha256:0123abcd");
  EXPECT_EQ(StringAt(*compiled, {"involvedObject", "kind"}), "AgentPolicy");
  EXPECT_EQ(StringAt(*compiled, {"involvedObject", "name"}), "research");
  EXPECT_EQ(StringAt(*compiled, {"involvedObject", "uid"}), UidOf(*policy));
  EXPECT_EQ(StringAt(*compiled, {"source", "component"}), "stockade-operator");
  EXPECT_EQ(StringAt(*compiled, {"source", "host"}), "test-node");
  EXPECT_EQ(StringAt(*compiled, {"reportingInstance"}), "stockade-operator-0");
  const json* warning = FindByReason(items, "InvalidSpec");
  ASSERT_NE(warning, nullptr);
  EXPECT_EQ(StringAt(*warning, {"type"}), "Warning");

  // What a person types.
  CommandResult table =
      f->Kubectl({"get", "events", "-n", "agents", "--field-selector",
                  "involvedObject.name=research",
                  "--sort-by=.metadata.creationTimestamp"});
  ASSERT_TRUE(table.ok()) << table.ToString();
  EXPECT_THAT(table.out, AllOf(HasSubstr("Compiled"), HasSubstr("InvalidSpec"),
                               HasSubstr("agentpolicy/research"),
                               HasSubstr("spec.filesystem.writable[0].path")));
  CommandResult describe =
      f->Kubectl({"describe", "agentpolicy", "research", "-n", "agents"});
  ASSERT_TRUE(describe.ok()) << describe.ToString();
  EXPECT_THAT(describe.out, AllOf(HasSubstr("Events:"), HasSubstr("Compiled"),
                                  HasSubstr("stockade-operator")));

  // Labels select Events; a value that is not a label value is left out
  // rather than failing the Event.
  ASSERT_TRUE(rec.Record(ref, EventType::kWarning, "Denied", "seccomp denied",
                         {{"stockade.dev/agent", "researcher"},
                          {"stockade.dev/bad", "not a label value"}})
                  .ok());
  CommandResult selected =
      f->Kubectl({"get", "events", "-n", "agents", "-l",
                  "stockade.dev/agent=researcher", "-o", "json"});
  ASSERT_TRUE(selected.ok()) << selected.ToString();
  json by_label = json::parse(selected.out)["items"];
  ASSERT_EQ(by_label.size(), 1u) << selected.out;
  EXPECT_EQ(StringAt(by_label[0], {"reason"}), "Denied");
  EXPECT_FALSE(by_label[0]["metadata"]["labels"].contains("stockade.dev/bad"));

  // A cluster-scoped object's events go to "default".
  json defaults = KubectlEvents(*f, "default");
  const json* applied = FindByReason(defaults, "GuardrailsApplied");
  ASSERT_NE(applied, nullptr) << Dump(defaults);
  EXPECT_EQ(StringAt(*applied, {"involvedObject", "kind"}),
            "ClusterAgentPolicy");

  // If the aggregated event is gone, a repeat creates a new one.
  ASSERT_TRUE(c->Delete(kEvent, "agents", NameOf(*compiled)).ok());
  ASSERT_TRUE(rec.Record(ref, EventType::kNormal, "Compiled",
                         "compiled to sha256:0123abcd")
                  .ok());
  const json after = KubectlEvents(*f, "agents");
  const json* again = FindByReason(after, "Compiled");
  ASSERT_NE(again, nullptr);
  EXPECT_EQ((*again)["count"], 1);

  // Errors come back: the operator's user may not create events yet.
  std::unique_ptr<Client> op = OperatorClient(*f);
  ASSERT_NE(op, nullptr);
  EventRecorder denied(op.get(), "stockade-operator");
  absl::Status s = denied.Record(ref, EventType::kNormal, "Compiled", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
}

}  // namespace
}  // namespace stockade::kube
