// The DenialRecorder against a real apiserver: counters in status (per
// layer, pids included), Events labelled with the Agent, and the counters of
// a deleted policy forgotten.
#include "operator/manager/denial_recorder.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/client.h"
#include "operator/kube/events.h"
#include "operator/kube/testing/kube_testing.h"
#include "prometheus/registry.h"

namespace stockade::manager {
namespace {

using json = nlohmann::json;
using kube::testing::AdminClient;
using kube::testing::CreateNamespace;
using kube::testing::StartApiserver;
using kube::testing::WaitFor;

v1::NodeDenial Denied(const std::string& policy, const std::string& layer) {
  v1::NodeDenial d;
  d.set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
  d.set_pod_namespace("agents");
  d.set_pod_name("researcher-5d8-x2k");
  d.set_container_name("agent");
  d.set_agent("researcher");
  d.set_policy_namespace("agents");
  d.set_policy_name(policy);
  d.set_layer(layer);
  d.set_mode("enforced");
  if (layer == "pids") {
    d.set_operation("fork");
    d.set_access("pids.max 32");
  }
  if (layer == "seccomp") d.set_syscall("keyctl");
  return d;
}

google::protobuf::RepeatedPtrField<v1::NodeDenial> Batch(
    std::initializer_list<v1::NodeDenial> denials) {
  google::protobuf::RepeatedPtrField<v1::NodeDenial> out;
  for (const v1::NodeDenial& d : denials) *out.Add() = d;
  return out;
}

TEST(DenialRecorderTest, CountsLabelsAndForgetsDeletedPolicies) {
  std::unique_ptr<testing::ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<kube::Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "agents");
  for (const char* name : {"research", "doomed"}) {
    absl::StatusOr<json> p = c->Create(
        kube::kAgentPolicy, "agents",
        {{"metadata", {{"name", name}}}, {"spec", {{"mode", "Enforce"}}}});
    ASSERT_TRUE(p.ok()) << p.status();
  }
  prometheus::Registry registry;
  OperatorMetrics metrics(registry);
  kube::EventRecorder events(c.get(), "stockade-operator");
  DenialRecorder recorder(
      c.get(), &events, &metrics,
      [](distribution::LogLevel, std::string_view, const auto&) {},
      absl::Milliseconds(100));

  recorder.Add("node-a",
               Batch({Denied("research", "pids"), Denied("research", "seccomp"),
                      Denied("doomed", "seccomp")}));
  auto denials = [&](const char* name) {
    absl::StatusOr<json> p = c->Get(kube::kAgentPolicy, "agents", name);
    return p.ok() && p->contains("status")
               ? (*p)["status"].value("denials", json())
               : json();
  };
  ASSERT_TRUE(WaitFor(
      [&] {
        json d = denials("research");
        return d.is_object() && d.value("total", 0) == 2 &&
               d.value("pids", 0) == 1 && d.value("seccomp", 0) == 1;
      },
      absl::Seconds(10)))
      << denials("research").dump();
  ASSERT_TRUE(WaitFor([&] { return denials("doomed").is_object(); },
                      absl::Seconds(10)));
  EXPECT_EQ(recorder.tracked_policies(), 2u);

  // The pids Event says what was refused and carries the Agent's label.
  absl::StatusOr<kube::ObjectList> labelled =
      c->ListAll(kube::kEvent, "agents",
                 {.label_selector = "stockade.dev/agent=researcher"});
  ASSERT_TRUE(labelled.ok()) << labelled.status();
  bool pids_event = false;
  for (const json& e : labelled->items) {
    if (e.value("message", "") ==
        "pids denied fork (pids.max 32) in container agent (Agent "
        "researcher, policy agents/research) on node node-a") {
      pids_event = true;
    }
  }
  EXPECT_TRUE(pids_event) << json(labelled->items).dump();

  // A deleted policy's counters are dropped at the next flush that finds it
  // gone; the others stay.
  ASSERT_TRUE(c->Delete(kube::kAgentPolicy, "agents", "doomed").ok());
  recorder.Add("node-a", Batch({Denied("doomed", "seccomp")}));
  ASSERT_TRUE(WaitFor([&] { return recorder.tracked_policies() == 1u; },
                      absl::Seconds(10)))
      << recorder.tracked_policies();
  // Made again, the policy counts from zero.
  ASSERT_TRUE(c->Create(kube::kAgentPolicy, "agents",
                        {{"metadata", {{"name", "doomed"}}},
                         {"spec", {{"mode", "Enforce"}}}})
                  .ok());
  recorder.Add("node-a", Batch({Denied("doomed", "seccomp")}));
  EXPECT_TRUE(WaitFor(
      [&] {
        json d = denials("doomed");
        return d.is_object() && d.value("total", 0) == 1;
      },
      absl::Seconds(10)))
      << denials("doomed").dump();
}

}  // namespace
}  // namespace stockade::manager
