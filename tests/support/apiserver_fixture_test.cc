#include "tests/support/apiserver_fixture.h"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr const char* kCrds[] = {
    "agentpolicies.stockade.dev",
    "clusteragentpolicies.stockade.dev",
    "agents.stockade.dev",
};

// Whether `pid` is a live process (not a zombie: the daemons are not this
// process's children, so nobody here reaps them).
bool Alive(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z';
}

std::unique_ptr<ApiserverFixture> StartOrDie() {
  absl::StatusOr<std::unique_ptr<ApiserverFixture>> f =
      ApiserverFixture::Start();
  if (!f.ok()) {
    ADD_FAILURE() << f.status();
    return nullptr;
  }
  return *std::move(f);
}

TEST(ApiserverFixtureTest, ServesCrdsAcceptsExamplesRejectsInvalid) {
  std::unique_ptr<ApiserverFixture> f = StartOrDie();
  ASSERT_NE(f, nullptr);
  fprintf(stderr, "control plane up in %s at %s\n",
          absl::FormatDuration(f->start_duration()).c_str(),
          f->server().c_str());

  CommandResult ready = f->Kubectl({"get", "--raw", "/readyz"});
  ASSERT_TRUE(ready.ok()) << ready.ToString();
  EXPECT_EQ(ready.out, "ok");

  for (const char* crd : kCrds) {
    CommandResult r = f->Kubectl(
        {"get", "crd", crd, "-o",
         "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"});
    ASSERT_TRUE(r.ok()) << crd << ": " << r.ToString();
    EXPECT_EQ(r.out, "True") << crd;
  }

  CommandResult ns = f->Kubectl({"create", "namespace", "agents"});
  ASSERT_TRUE(ns.ok()) << ns.ToString();
  const std::string examples = SourceDir() + "/examples/policies/";
  CommandResult apply = f->Kubectl({"apply", "-f", examples});
  ASSERT_TRUE(apply.ok()) << apply.ToString();
  CommandResult policies =
      f->Kubectl({"get", "agentpolicies", "-n", "agents", "-o", "name",
                  "--sort-by=.metadata.name"});
  ASSERT_TRUE(policies.ok()) << policies.ToString();
  EXPECT_EQ(policies.out,
            "agentpolicy.stockade.dev/research-agent\n"
            "agentpolicy.stockade.dev/strict-agent\n");
  CommandResult cluster =
      f->Kubectl({"get", "clusteragentpolicy", "baseline", "-o", "name"});
  EXPECT_TRUE(cluster.ok()) << cluster.ToString();
  CommandResult agent =
      f->Kubectl({"get", "agent", "researcher", "-n", "agents", "-o", "name"});
  EXPECT_TRUE(agent.ok()) << agent.ToString();

  // The CRD's OpenAPI schema rejects a bad enum value and names the field.
  const std::string bad =
      "apiVersion: stockade.dev/v1alpha1\n"
      "kind: AgentPolicy\n"
      "metadata: {name: bad, namespace: agents}\n"
      "spec:\n"
      "  mode: Sometimes\n";
  CommandResult rejected = f->Kubectl({"apply", "-f", "-"}, std::nullopt, bad);
  EXPECT_NE(rejected.exit_code, 0) << rejected.ToString();
  EXPECT_THAT(rejected.err,
              AllOf(HasSubstr("spec.mode"), HasSubstr("Unsupported value"),
                    HasSubstr("Sometimes")));
  CommandResult absent =
      f->Kubectl({"get", "agentpolicy", "bad", "-n", "agents"});
  EXPECT_NE(absent.exit_code, 0) << "the invalid object was stored";

  // The operator's token authenticates, and RBAC gives it nothing until a
  // binding does.
  CommandResult whoami = f->KubectlAsOperator(
      {"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"});
  ASSERT_TRUE(whoami.ok()) << whoami.ToString();
  EXPECT_EQ(whoami.out, "stockade-operator");
  CommandResult forbidden =
      f->KubectlAsOperator({"get", "agentpolicies", "-n", "agents"});
  EXPECT_NE(forbidden.exit_code, 0);
  EXPECT_THAT(forbidden.err, HasSubstr("forbidden"));
  CommandResult role =
      f->Kubectl({"create", "clusterrole", "stockade-test-reader",
                  "--verb=get,list", "--resource=agentpolicies.stockade.dev"});
  ASSERT_TRUE(role.ok()) << role.ToString();
  CommandResult binding = f->Kubectl(
      {"create", "clusterrolebinding", "stockade-test-reader",
       "--clusterrole=stockade-test-reader", "--user=stockade-operator"});
  ASSERT_TRUE(binding.ok()) << binding.ToString();
  CommandResult allowed;
  for (int i = 0; i < 50; ++i) {  // RBAC changes apply within moments
    allowed = f->KubectlAsOperator(
        {"get", "agentpolicies", "-n", "agents", "-o", "name"});
    if (allowed.ok()) break;
    usleep(100000);
  }
  EXPECT_TRUE(allowed.ok()) << allowed.ToString();

  const std::string dir = f->dir();
  const pid_t etcd = f->etcd_pid(), apiserver = f->apiserver_pid();
  ASSERT_TRUE(f->Stop().ok());
  EXPECT_FALSE(Alive(etcd)) << "etcd " << etcd;
  EXPECT_FALSE(Alive(apiserver)) << "kube-apiserver " << apiserver;
  EXPECT_THAT(ProcessesOf(dir, ""), ::testing::IsEmpty());
  EXPECT_NE(access(dir.c_str(), F_OK), 0) << dir << " left behind";
}

// A test process that dies without stopping its control plane: the watcher
// started by `hack/apiserver up --owner-pid` takes it down.
TEST(ApiserverFixtureTest, WatcherStopsItWhenTheOwnerDies) {
  absl::StatusOr<std::string> bin_dir = KubeToolsBinDir();
  ASSERT_TRUE(bin_dir.ok()) << bin_dir.status();
  char tmpl[] = "/tmp/stockade-kube-owner-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  absl::StatusOr<pid_t> owner =
      SpawnDaemon({"/bin/sleep", "600"}, {}, "/dev/null");
  ASSERT_TRUE(owner.ok()) << owner.status();
  CommandResult up = RunCommand({SourceDir() + "/hack/apiserver", "up", "--dir",
                                 dir, "--owner-pid", absl::StrCat(*owner)},
                                {.timeout = absl::Seconds(180)});
  ASSERT_TRUE(up.ok()) << up.ToString();
  EXPECT_FALSE(ProcessesOf(dir, "").empty());

  kill(*owner, SIGKILL);
  WaitForExit(*owner, absl::Seconds(10));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline &&
         (access(dir.c_str(), F_OK) == 0 || !ProcessesOf(dir, "").empty())) {
    usleep(100000);
  }
  EXPECT_THAT(ProcessesOf(dir, ""), ::testing::IsEmpty());
  EXPECT_NE(access(dir.c_str(), F_OK), 0) << dir << " left behind";
  if (access(dir.c_str(), F_OK) == 0) {  // do not leak it past a failure
    RunCommand({SourceDir() + "/hack/apiserver", "down", "--dir", dir});
  }
}

}  // namespace
}  // namespace stockade::testing
