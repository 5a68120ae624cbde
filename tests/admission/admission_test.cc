// The ValidatingAdmissionPolicies of charts/stockade/files/admission.yaml
// against a real etcd + kube-apiserver (tests/support/apiserver_fixture.h),
// applied as they are shipped: in a namespace labelled
// stockade.dev/enforce=true a compliant pod is admitted and every
// non-compliant variant is refused with the message a person reads; in an
// unlabelled namespace the same pods are admitted. No kubelet runs: pods are
// only stored.
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/apiserver_fixture.h"
#include "tests/support/subprocess.h"

namespace stockade {
namespace {

using ::stockade::testing::ApiserverFixture;
using ::stockade::testing::CommandResult;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kEnforced[] = "enforced";
constexpr char kFree[] = "free";

// A pod that satisfies every rule in an enforced namespace.
Json CompliantPod(const std::string& name) {
  Json pod = Json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"annotations": {"stockade.dev/policy": "research-agent"}},
    "spec": {
      "runtimeClassName": "stockade",
      "containers": [{"name": "agent", "image": "registry.example/agent:1"}],
      "volumes": [{"name": "scratch", "emptyDir": {}}]
    }
  })");
  pod["metadata"]["name"] = name;
  return pod;
}

class AdmissionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto f = ApiserverFixture::Start();
    ASSERT_TRUE(f.ok()) << f.status();
    api_ = f->release();
    // As in real clusters: without --allow-privileged=true the apiserver
    // itself refuses privileged containers, before any admission policy.
    absl::Status restarted =
        api_->RestartApiserver({"--allow-privileged=true"});
    ASSERT_TRUE(restarted.ok()) << restarted;
    // No controller-manager: the service accounts pods use by default are
    // made here, as is the RuntimeClass the RuntimeClass admission plugin
    // looks up.
    // "runc" too: a pod naming a RuntimeClass that does not exist is
    // refused by the RuntimeClass admission plugin before the policies run.
    const std::string runtime_classes =
        R"({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
             "metadata": {"name": "stockade"}, "handler": "stockade"},
            {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
             "metadata": {"name": "runc"}, "handler": "runc"}]})";
    for (const char* ns : {kEnforced, kFree}) {
      Run({"create", "namespace", ns});
      Run({"create", "serviceaccount", "default", "-n", ns});
    }
    Run({"label", "namespace", kEnforced, "stockade.dev/enforce=true"});
    Run({"create", "-f", "-"}, runtime_classes);
    Run({"apply", "-f",
         testing::SourceDir() + "/charts/stockade/files/admission.yaml"});
    // The policies act once the apiserver has compiled them: until then a
    // non-compliant pod is admitted. Probe with server-side dry runs.
    Json probe = CompliantPod("probe");
    probe["spec"].erase("runtimeClassName");
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    CommandResult r;
    while (absl::Now() < deadline) {
      r = api_->Kubectl(
          {"create", "--dry-run=server", "-n", kEnforced, "-f", "-"},
          std::nullopt, probe.dump());
      if (r.exit_code != 0 &&
          r.err.find("spec.runtimeClassName") != std::string::npos) {
        break;
      }
      usleep(200000);
    }
    ASSERT_NE(r.exit_code, 0)
        << "admission policies not active after 60 s: " << r.ToString();
    ASSERT_THAT(r.err, HasSubstr("spec.runtimeClassName")) << r.ToString();
  }
  static void TearDownTestSuite() {
    if (api_ != nullptr) {
      EXPECT_TRUE(api_->Stop().ok());
      delete api_;
      api_ = nullptr;
    }
  }

  static void Run(const std::vector<std::string>& args,
                  const std::string& stdin_data = "") {
    CommandResult r = api_->Kubectl(args, std::nullopt, stdin_data);
    ASSERT_TRUE(r.ok()) << r.ToString();
  }

 public:
  static CommandResult Create(const std::string& ns, const Json& pod) {
    return api_->Kubectl({"create", "-n", ns, "-f", "-"}, std::nullopt,
                         pod.dump());
  }

 protected:
  static ApiserverFixture* api_;
};

ApiserverFixture* AdmissionTest::api_ = nullptr;

TEST_F(AdmissionTest, CompliantPodIsAdmitted) {
  CommandResult r = Create(kEnforced, CompliantPod("compliant"));
  EXPECT_TRUE(r.ok()) << r.ToString();
  CommandResult got =
      api_->Kubectl({"get", "pod", "compliant", "-n", kEnforced, "-o",
                     "jsonpath={.spec.runtimeClassName}"});
  ASSERT_TRUE(got.ok()) << got.ToString();
  EXPECT_EQ(got.out, "stockade");
}

struct Variant {
  std::string name;
  std::function<void(Json&)> change;
  std::vector<std::string> message;  // substrings of the refusal
};

Json PrivilegedContext() { return {{"privileged", true}}; }

std::vector<Variant> NonCompliantVariants() {
  const std::string enforce =
      "in namespaces labelled stockade.dev/enforce=true";
  return {
      {"no-runtime-class",
       [](Json& p) { p["spec"].erase("runtimeClassName"); },
       {"spec.runtimeClassName is not set",
        "must set runtimeClassName: "
        "stockade"}},
      {"runc",
       [](Json& p) { p["spec"]["runtimeClassName"] = "runc"; },
       {"spec.runtimeClassName is \"runc\"", "runtimeClassName: stockade"}},
      {"no-policy",
       [](Json& p) { p["metadata"].erase("annotations"); },
       {"metadata.annotations[\"stockade.dev/policy\"] is missing",
        "must name the AgentPolicy of their namespace"}},
      {"empty-policy",
       [](Json& p) {
         p["metadata"]["annotations"]["stockade.dev/policy"] = "";
       },
       {"metadata.annotations[\"stockade.dev/policy\"] is empty"}},
      {"other-namespace",
       [](Json& p) {
         p["metadata"]["annotations"]["stockade.dev/policy"] =
             "kube-system/research-agent";
       },
       {"metadata.annotations[\"stockade.dev/policy\"] is "
        "\"kube-system/research-agent\"",
        "only name an AgentPolicy of its own namespace",
        "never a policy of another namespace"}},
      {"bad-name",
       [](Json& p) {
         p["metadata"]["annotations"]["stockade.dev/policy"] = "Research_Agent";
       },
       {"metadata.annotations[\"stockade.dev/policy\"] is \"Research_Agent\"",
        "not an AgentPolicy name"}},
      {"privileged",
       [](Json& p) {
         p["spec"]["containers"][0]["securityContext"] = PrivilegedContext();
       },
       {"spec.containers[name=\"agent\"].securityContext.privileged is true",
        "privileged containers are refused " + enforce}},
      {"privileged-init",
       [](Json& p) {
         p["spec"]["initContainers"] =
             Json::array({{{"name", "setup"},
                           {"image", "registry.example/setup:1"},
                           {"securityContext", PrivilegedContext()}}});
       },
       {"spec.initContainers[name=\"setup\"].securityContext.privileged is "
        "true"}},
      {"host-pid",
       [](Json& p) { p["spec"]["hostPID"] = true; },
       {"spec.hostPID is true", "host's process namespace"}},
      {"host-network",
       [](Json& p) { p["spec"]["hostNetwork"] = true; },
       {"spec.hostNetwork is true", "host's network namespace is refused"}},
      {"host-ipc",
       [](Json& p) { p["spec"]["hostIPC"] = true; },
       {"spec.hostIPC is true", "host's IPC namespace"}},
      {"host-path",
       [](Json& p) {
         p["spec"]["volumes"].push_back(
             {{"name", "root"}, {"hostPath", {{"path", "/"}}}});
       },
       {"spec.volumes[name=\"root\"].hostPath is set",
        "hostPath volumes are refused " + enforce}},
  };
}

// Creates the compliant pod changed as `v` says, named after it.
CommandResult CreateVariant(const std::string& ns, const Variant& v) {
  Json pod = CompliantPod(v.name);
  v.change(pod);
  return AdmissionTest::Create(ns, pod);
}

TEST_F(AdmissionTest, NonCompliantPodsAreRefusedWithTheReason) {
  for (const Variant& v : NonCompliantVariants()) {
    SCOPED_TRACE(v.name);
    CommandResult r = CreateVariant(kEnforced, v);
    EXPECT_NE(r.exit_code, 0) << r.ToString();
    EXPECT_THAT(r.err, HasSubstr("ValidatingAdmissionPolicy 'stockade-pods'"));
    for (const std::string& m : v.message) EXPECT_THAT(r.err, HasSubstr(m));
    fprintf(stderr, "%s: %s", v.name.c_str(), r.err.c_str());
    CommandResult absent =
        api_->Kubectl({"get", "pod", v.name, "-n", kEnforced});
    EXPECT_NE(absent.exit_code, 0) << "refused pod was stored";
  }
}

TEST_F(AdmissionTest, TheFirstViolationIsReported) {
  Json pod = CompliantPod("many");
  pod["spec"].erase("runtimeClassName");
  pod["spec"]["hostNetwork"] = true;
  pod["spec"]["containers"][0]["securityContext"] = PrivilegedContext();
  CommandResult r = Create(kEnforced, pod);
  EXPECT_NE(r.exit_code, 0);
  // The apiserver reports the first failed validation: the person fixes one
  // thing at a time, each named by its field.
  EXPECT_THAT(r.err, HasSubstr("spec.runtimeClassName is not set"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("spec.hostNetwork")));
}

TEST_F(AdmissionTest, UnlabelledNamespaceIsNotEnforced) {
  for (const Variant& v : NonCompliantVariants()) {
    SCOPED_TRACE(v.name);
    CommandResult r = CreateVariant(kFree, v);
    EXPECT_TRUE(r.ok()) << r.ToString();
  }
}

TEST_F(AdmissionTest, PolicyAnnotationCannotChangeOnAnExistingPod) {
  CommandResult created = Create(kEnforced, CompliantPod("steady"));
  ASSERT_TRUE(created.ok()) << created.ToString();
  CommandResult changed =
      api_->Kubectl({"annotate", "--overwrite", "pod", "steady", "-n",
                     kEnforced, "stockade.dev/policy=strict-agent"});
  EXPECT_NE(changed.exit_code, 0) << changed.ToString();
  EXPECT_THAT(changed.err,
              AllOf(HasSubstr("ValidatingAdmissionPolicy "
                              "'stockade-pod-updates'"),
                    HasSubstr("cannot change on an existing pod (it was "
                              "\"research-agent\", the update sets "
                              "\"strict-agent\")")));
  // Other metadata changes go through.
  CommandResult labelled = api_->Kubectl(
      {"label", "pod", "steady", "-n", kEnforced, "team=research"});
  EXPECT_TRUE(labelled.ok()) << labelled.ToString();
}

TEST_F(AdmissionTest, PrivilegedEphemeralContainerIsRefused) {
  CommandResult created = Create(kEnforced, CompliantPod("debugged"));
  ASSERT_TRUE(created.ok()) << created.ToString();
  // What `kubectl debug --profile=sysadmin` sends: the pods/ephemeralcontainers
  // subresource with a privileged container.
  const auto add = [](const std::string& name, bool privileged) {
    Json c = {{"name", name},
              {"image", "registry.example/debug:1"},
              {"targetContainerName", "agent"}};
    if (privileged) c["securityContext"] = PrivilegedContext();
    return c;
  };
  CommandResult refused = api_->Kubectl(
      {"patch", "pod", "debugged", "-n", kEnforced,
       "--subresource=ephemeralcontainers", "--type=strategic", "-p",
       Json{{"spec", {{"ephemeralContainers", {add("root", true)}}}}}.dump()});
  EXPECT_NE(refused.exit_code, 0) << refused.ToString();
  EXPECT_THAT(refused.err, HasSubstr("spec.ephemeralContainers[name=\"root\"]."
                                     "securityContext.privileged is true"));
  CommandResult plain = api_->Kubectl(
      {"patch", "pod", "debugged", "-n", kEnforced,
       "--subresource=ephemeralcontainers", "--type=strategic", "-p",
       Json{{"spec", {{"ephemeralContainers", {add("look", false)}}}}}.dump()});
  EXPECT_TRUE(plain.ok()) << plain.ToString();
}

}  // namespace
}  // namespace stockade
