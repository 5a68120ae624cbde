// `kubectl stockade` as a person runs it: the real kubectl finds the stockade
// binary as kubectl-stockade on $PATH (a symlink, as docs/cli.md installs it)
// and runs it against a real etcd + kube-apiserver
// (tests/support/apiserver_fixture.h) holding the example policies, the
// guardrails and an Agent. No operator runs: statuses are written here as the
// operator writes them.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/apiserver_fixture.h"
#include "tests/support/subprocess.h"

namespace stockade {
namespace {

namespace fs = std::filesystem;
using ::stockade::testing::ApiserverFixture;
using ::stockade::testing::CommandResult;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

std::string Examples() { return testing::SourceDir() + "/examples/policies/"; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class KubectlPluginTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto f = ApiserverFixture::Start();
    ASSERT_TRUE(f.ok()) << f.status();
    api_ = f->release();
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{
             {"create", "namespace", "agents"},
             {"label", "namespace", "agents", "stockade.dev/enforce=true"},
             {"create", "namespace", "empty"},
             {"apply", "-f", Examples()}}) {
      CommandResult r = api_->Kubectl(args);
      ASSERT_TRUE(r.ok()) << r.ToString();
    }
    // The plugin dir: only kubectl-stockade, a symlink to the built binary.
    dir_ = new std::string(api_->dir() + "/plugins");
    fs::create_directories(*dir_);
    fs::create_symlink(std::string(STOCKADE_BIN_DIR) + "/stockade",
                       *dir_ + "/kubectl-stockade");
    fs::create_directories(*dir_ + "/home");
  }
  static void TearDownTestSuite() {
    if (api_ != nullptr) {
      EXPECT_TRUE(api_->Stop().ok());
      delete api_;
      api_ = nullptr;
    }
    delete dir_;
    dir_ = nullptr;
  }

  // `kubectl stockade args...` with `kubeconfig` in $KUBECONFIG ("" unset)
  // and an empty $HOME (no ~/.kube/config).
  static CommandResult Plugin(const std::vector<std::string>& args,
                              const std::string& kubeconfig) {
    std::vector<std::string> argv = {api_->kubectl(), "stockade"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env = {
        absl::StrCat("PATH=", *dir_, ":/usr/bin:/bin"),
        absl::StrCat("HOME=", *dir_, "/home")};
    if (!kubeconfig.empty()) env.push_back("KUBECONFIG=" + kubeconfig);
    return testing::RunCommand(argv, {.env = env});
  }
  static CommandResult Plugin(const std::vector<std::string>& args) {
    return Plugin(args, api_->kubeconfig());
  }
  // The local `stockade` command (no cluster).
  static CommandResult Local(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {std::string(STOCKADE_BIN_DIR) +
                                     "/stockade"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv);
  }
  static std::string Write(const std::string& name, const std::string& text) {
    const std::string path = *dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // Writes a status as the operator does (the /status subresource).
  static void PatchStatus(const std::string& resource, const std::string& ns,
                          const std::string& name, const Json& status) {
    std::vector<std::string> args = {"patch",
                                     resource,
                                     name,
                                     "--subresource=status",
                                     "--type=merge",
                                     "-p",
                                     Json{{"status", status}}.dump()};
    if (!ns.empty()) args.insert(args.end(), {"-n", ns});
    CommandResult r = api_->Kubectl(args);
    ASSERT_TRUE(r.ok()) << r.ToString();
  }
  static Json Condition(const std::string& type, const std::string& status,
                        const std::string& reason, const std::string& message) {
    return {{"type", type},
            {"status", status},
            {"reason", reason},
            {"message", message},
            {"lastTransitionTime", "2026-01-01T00:00:00Z"}};
  }
  // The hash the compiler gives research-agent under the baseline guardrails.
  static std::string ResearchHash() {
    CommandResult r =
        Local({"compile", "--namespace-labels", "stockade.dev/enforce=true",
               "--guardrails", Examples() + "cluster-guardrails.yaml",
               Examples() + "research-agent.yaml"});
    EXPECT_TRUE(r.ok()) << r.ToString();
    return Json::parse(r.out, nullptr, false).value("hash", "");
  }

  static ApiserverFixture* api_;
  static std::string* dir_;
};

ApiserverFixture* KubectlPluginTest::api_ = nullptr;
std::string* KubectlPluginTest::dir_ = nullptr;

TEST_F(KubectlPluginTest, KubectlFindsThePlugin) {
  CommandResult r = Plugin({"--help"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, AllOf(HasSubstr("kubectl stockade status"),
                           HasSubstr("kubectl stockade explain"),
                           HasSubstr("kubectl stockade diff")));
  CommandResult help = Plugin({"explain", "--help"});
  EXPECT_THAT(help.out, HasSubstr("effective policy"));
  // The local commands work under the plugin's name too.
  CommandResult validate = Plugin({"validate", Examples() + "agent.yaml"});
  EXPECT_TRUE(validate.ok()) << validate.ToString();
}

TEST_F(KubectlPluginTest, StatusShowsPoliciesGuardrailsAndAgents) {
  CommandResult before = Plugin({"status", "-n", "agents"});
  ASSERT_TRUE(before.ok()) << before.ToString();
  EXPECT_THAT(before.out, HasSubstr("not seen by the operator yet"));

  const std::string hash = ResearchHash();
  ASSERT_EQ(hash.size(), 64u);
  PatchStatus("agentpolicy", "agents", "research-agent",
              {{"observedGeneration", 1},
               {"policyHash", hash},
               {"nodes", {{"ready", 2}, {"total", 2}, {"summary", "2/2"}}},
               {"conditions",
                {Condition("Compiled", "True", "Compiled", "compiled"),
                 Condition("Ready", "True", "Ready", "on 2 of 2 nodes")}}});
  PatchStatus("agentpolicy", "agents", "strict-agent",
              {{"observedGeneration", 1},
               {"nodes", {{"ready", 0}, {"total", 2}, {"summary", "0/2"}}},
               {"conditions",
                {Condition("Compiled", "False", "GuardrailViolation",
                           "spec.exec.allow[0]: denied by baseline"),
                 Condition("Ready", "False", "NotCompiled", "not compiled")}}});
  PatchStatus("agent", "agents", "researcher",
              {{"readyReplicas", 1}, {"policyHash", hash}});

  CommandResult r = Plugin({"status", "-n", "agents"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  fprintf(stderr, "%s", r.out.c_str());
  const std::string short_hash = hash.substr(0, 12);
  EXPECT_THAT(
      r.out,
      AllOf(HasSubstr("AgentPolicies in namespace agents:\n"
                      "NAMESPACE   NAME             HASH           COMPILED"),
            HasSubstr(absl::StrCat("agents      research-agent   ", short_hash,
                                   "   True                         True  ")),
            HasSubstr("strict-agent     <none>         False "
                      "(GuardrailViolation)   False (NotCompiled)   0/2     "
                      "spec.exec.allow[0]: denied by baseline"),
            HasSubstr("ClusterAgentPolicies:\n"),
            HasSubstr("baseline   stockade.dev/enforce=true"),
            HasSubstr("Agents in namespace agents:\n"),
            HasSubstr(absl::StrCat("agents      researcher   research-agent   ",
                                   short_hash, "   1/2"))));

  CommandResult json = Plugin({"status", "-n", "agents", "-o", "json"});
  ASSERT_TRUE(json.ok()) << json.ToString();
  Json j = Json::parse(json.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json.out;
  EXPECT_EQ(j["agentPolicies"][0]["name"], "research-agent");
  EXPECT_EQ(j["agentPolicies"][0]["hash"], hash);
  EXPECT_EQ(j["agentPolicies"][0]["nodesReady"], 2);
  EXPECT_EQ(j["agents"][0]["readyReplicas"], 1);
  EXPECT_EQ(j["agents"][0]["replicas"], 2);

  CommandResult empty = Plugin({"status", "-n", "empty"});
  ASSERT_TRUE(empty.ok()) << empty.ToString();
  EXPECT_THAT(empty.out, AllOf(HasSubstr("No AgentPolicies in namespace "
                                         "empty.\n"),
                               HasSubstr("No Agents in namespace empty.\n"),
                               HasSubstr("baseline")));
  CommandResult all = Plugin({"status", "-A"});
  EXPECT_THAT(all.out, HasSubstr("AgentPolicies in any namespace:"));
}

TEST_F(KubectlPluginTest, ExplainShowsTheEffectivePolicyAndItsGuardrails) {
  CommandResult r = Plugin({"explain", "-n", "agents", "researcher"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  fprintf(stderr, "%s", r.out.c_str());
  EXPECT_THAT(
      r.out,
      AllOf(HasSubstr("Agent agents/researcher, confined by AgentPolicy "
                      "agents/research-agent\n"),
            HasSubstr("Namespace agents: labels "),
            HasSubstr("stockade.dev/enforce=true"),
            HasSubstr("Guardrails that shaped it:\n"
                      "  ClusterAgentPolicy baseline\n    guardrails:\n"),
            HasSubstr("      deniedExecutables: [/usr/bin/pip, /usr/bin/pip3"),
            HasSubstr("    defaults:\n")));
  // The effective policy is what `stockade explain` says offline for the same
  // policy, guardrails and namespace labels.
  CommandResult local =
      Local({"explain", "--namespace-labels", "stockade.dev/enforce=true",
             "--guardrails", Examples() + "cluster-guardrails.yaml",
             Examples() + "research-agent.yaml"});
  ASSERT_TRUE(local.ok()) << local.ToString();
  EXPECT_THAT(r.out, HasSubstr("\n\n" + local.out));
  EXPECT_TRUE(r.out.size() >= local.out.size() &&
              r.out.compare(r.out.size() - local.out.size(), local.out.size(),
                            local.out) == 0);

  // The same by the policy's name, and with kubectl's kind prefix.
  CommandResult policy = Plugin({"explain", "-n", "agents", "research-agent"});
  ASSERT_TRUE(policy.ok()) << policy.ToString();
  EXPECT_THAT(policy.out,
              HasSubstr("AgentPolicy agents/research-agent\nNamespace"));
  CommandResult prefixed =
      Plugin({"explain", "--namespace=agents", "agentpolicy/strict-agent"});
  ASSERT_TRUE(prefixed.ok()) << prefixed.ToString();
  EXPECT_THAT(prefixed.out,
              HasSubstr("Policy AgentPolicy agents/strict-agent"));
}

TEST_F(KubectlPluginTest, ExplainNamesWhatIsMissingOrInvalid) {
  CommandResult missing = Plugin({"explain", "-n", "agents", "nobody"});
  EXPECT_EQ(missing.exit_code, 1) << missing.ToString();
  EXPECT_EQ(missing.err,
            "kubectl stockade explain: no Agent or AgentPolicy nobody in "
            "namespace agents\n");

  // An Agent with a policy written in it that asks for a denied executable.
  const std::string agent =
      "apiVersion: stockade.dev/v1alpha1\n"
      "kind: Agent\n"
      "metadata: {name: curler, namespace: agents}\n"
      "spec:\n"
      "  image: registry.example/curler:1\n"
      "  policy:\n"
      "    exec: {allow: [/usr/bin/curl]}\n";
  CommandResult applied =
      api_->Kubectl({"apply", "-f", "-"}, std::nullopt, agent);
  ASSERT_TRUE(applied.ok()) << applied.ToString();
  CommandResult invalid = Plugin({"explain", "-n", "agents", "curler"});
  EXPECT_EQ(invalid.exit_code, 1) << invalid.ToString();
  EXPECT_THAT(invalid.err,
              AllOf(HasSubstr("Agent agents/curler does not compile:\n"),
                    HasSubstr("  spec.policy.exec.allow[0]: "),
                    HasSubstr("/usr/bin/curl"), HasSubstr("baseline")));

  // An Agent whose policyRef names no policy.
  CommandResult dangling = api_->Kubectl(
      {"apply", "-f", "-"}, std::nullopt,
      absl::StrReplaceAll(agent, {{"curler", "dangling"},
                                  {"  policy:\n    exec: {allow: "
                                   "[/usr/bin/curl]}\n",
                                   "  policyRef: {name: gone}\n"}}));
  ASSERT_TRUE(dangling.ok()) << dangling.ToString();
  CommandResult ref = Plugin({"explain", "-n", "agents", "agent/dangling"});
  EXPECT_EQ(ref.exit_code, 1) << ref.ToString();
  EXPECT_THAT(ref.err, HasSubstr("Agent agents/dangling names AgentPolicy "
                                 "gone (spec.policyRef.name), which does "
                                 "not exist in namespace agents"));
}

TEST_F(KubectlPluginTest, DiffComparesAFileWithTheDeployedPolicy) {
  const std::string deployed = ReadFile(Examples() + "research-agent.yaml");
  CommandResult same = Plugin({"diff", Examples() + "research-agent.yaml"});
  EXPECT_EQ(same.exit_code, 0) << same.ToString();
  EXPECT_THAT(same.out,
              AllOf(HasSubstr("--- AgentPolicy agents/research-agent "
                              "(deployed, hash "),
                    HasSubstr("No difference in what the agent may do.")));

  // More processes and another destination: what the change would allow.
  std::string changed =
      absl::StrReplaceAll(deployed, {{"max: 64", "max: 100"},
                                     {"- 2001:db8:10::/48",
                                      "- 2001:db8:10::/48\n          - "
                                      "10.1.2.0/24"}});
  ASSERT_NE(changed, deployed);
  CommandResult d = Plugin({"diff", Write("changed.yaml", changed)});
  EXPECT_EQ(d.exit_code, 1) << d.ToString();
  fprintf(stderr, "%s", d.out.c_str());
  EXPECT_THAT(d.out, AllOf(HasSubstr("The agent may now (could not before):"),
                           HasSubstr("10.1.2.0/24")));

  // A change the guardrails refuse is reported as the operator would.
  std::string denied =
      absl::StrReplaceAll(deployed, {{"- /usr/bin/python3.11",
                                      "- /usr/bin/python3.11\n      - "
                                      "/usr/bin/pip3"}});
  CommandResult refused = Plugin({"diff", Write("denied.yaml", denied)});
  EXPECT_EQ(refused.exit_code, 1) << refused.ToString();
  EXPECT_THAT(refused.err,
              AllOf(HasSubstr("denied.yaml:"), HasSubstr("spec.exec.allow"),
                    HasSubstr("/usr/bin/pip3")));

  // Nothing deployed under that name.
  CommandResult absent =
      Plugin({"diff", Write("new.yaml", absl::StrReplaceAll(
                                            deployed, {{"name: research-agent",
                                                        "name: brand-new"}}))});
  EXPECT_EQ(absent.exit_code, 1) << absent.ToString();
  EXPECT_THAT(absent.err, HasSubstr("no AgentPolicy brand-new in namespace "
                                    "agents"));
}

TEST_F(KubectlPluginTest, ClearErrorsWithoutACluster) {
  CommandResult none = Plugin({"status"}, "");
  EXPECT_EQ(none.exit_code, 3) << none.ToString();
  EXPECT_THAT(none.err, AllOf(HasSubstr("kubectl stockade status: no cluster "
                                        "to talk to: no --kubeconfig, "
                                        "$KUBECONFIG is not set"),
                              HasSubstr("/home/.kube/config does not exist")));

  // An apiserver that does not answer: port 1 on loopback.
  const std::string unreachable =
      Write("unreachable.kubeconfig",
            absl::StrReplaceAll(ReadFile(api_->kubeconfig()),
                                {{api_->server(), "https://127.0.0.1:1"}}));
  CommandResult down = Plugin({"status"}, unreachable);
  EXPECT_EQ(down.exit_code, 3) << down.ToString();
  EXPECT_THAT(down.err,
              HasSubstr("kubectl stockade status: cannot reach the apiserver "
                        "at https://127.0.0.1:1 (kubeconfig "));

  CommandResult context =
      Plugin({"status", "--context", "nowhere"}, api_->kubeconfig());
  EXPECT_NE(context.exit_code, 0);
  EXPECT_THAT(context.err, HasSubstr("nowhere"));

  // The operator's token user has no rights: the apiserver says so.
  CommandResult forbidden =
      Plugin({"status", "-n", "agents"}, api_->operator_kubeconfig());
  EXPECT_EQ(forbidden.exit_code, 3) << forbidden.ToString();
  EXPECT_THAT(forbidden.err,
              AllOf(HasSubstr("403"), HasSubstr("stockade-operator"),
                    HasSubstr("cannot list")));
  EXPECT_THAT(forbidden.err, Not(HasSubstr("cannot reach")));
}

}  // namespace
}  // namespace stockade
