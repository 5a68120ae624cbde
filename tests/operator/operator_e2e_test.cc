// stockade-operator and two stockade-node agents against a real etcd +
// kube-apiserver (tests/support/apiserver_fixture.h): the operator runs as a
// user bound to charts/stockade/files/operator-rbac.yaml and nothing more,
// the node agents keep private stores. kubectl apply of the examples -> every
// policy Compiled and Ready with its hash, held by both stores; invalid specs;
// update and delete; restarts of the operator, a node agent and the
// apiserver; leader failover between two replicas; Agents becoming
// Deployments and NetworkPolicies, following policy changes, blocked by
// workload guardrails.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "stockade/v1/distribution.grpc.pb.h"
#include "store/store.h"
#include "tests/support/apiserver_fixture.h"
#include "tests/support/confined_bed.h"
#include "tests/support/subprocess.h"

namespace stockade {
namespace {

namespace fs = std::filesystem;
using ::stockade::testing::ApiserverFixture;
using ::stockade::testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr char kLeaseNamespace[] = "stockade-system";

// A free TCP port on loopback (bound, then released).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  socklen_t len = sizeof(sin);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  close(fd);
  return ntohs(sin.sin_port);
}

// A child process killed (SIGTERM, then SIGKILL) when it goes out of scope.
class Process {
 public:
  static std::unique_ptr<Process> Spawn(const std::vector<std::string>& argv,
                                        const std::string& log) {
    auto pid = testing::SpawnDaemon(argv, {}, log);
    if (!pid.ok()) {
      ADD_FAILURE() << pid.status();
      return nullptr;
    }
    return std::unique_ptr<Process>(new Process(*pid, log));
  }
  ~Process() { Stop(); }
  void Stop(int sig = SIGTERM) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    if (!testing::WaitForExit(pid_, absl::Seconds(10)).has_value()) {
      kill(pid_, SIGKILL);
      testing::WaitForExit(pid_, absl::Seconds(10));
    }
    pid_ = -1;
  }
  bool running() const { return pid_ > 0 && kill(pid_, 0) == 0; }
  std::string LogTail() const {
    std::ifstream in(log_);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    const size_t from = lines.size() > 30 ? lines.size() - 30 : 0;
    return absl::StrJoin(lines.begin() + from, lines.end(), "\n");
  }

 private:
  Process(pid_t pid, std::string log) : pid_(pid), log_(std::move(log)) {}
  pid_t pid_;
  std::string log_;
};

class OperatorE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(geteuid(), 0u);
    // The garbage collector deletes what a deleted Agent owned.
    auto f = ApiserverFixture::Start({.controllers = {"garbagecollector"}});
    ASSERT_TRUE(f.ok()) << f.status();
    api_ = f->release();
    // The operator's RBAC, bound to the fixture's token user.
    const std::string rbac =
        testing::SourceDir() + "/charts/stockade/files/operator-rbac.yaml";
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{
             {"create", "namespace", kLeaseNamespace},
             {"create", "namespace", "agents"},
             {"label", "namespace", "agents", "stockade.dev/enforce=true"},
             {"apply", "-n", kLeaseNamespace, "-f", rbac},
             {"create", "clusterrolebinding", "stockade-operator",
              "--clusterrole=stockade-operator", "--user=stockade-operator"},
             {"create", "rolebinding", "stockade-operator-leader-election",
              "-n", kLeaseNamespace, "--role=stockade-operator-leader-election",
              "--user=stockade-operator"}}) {
      CommandResult r = api_->Kubectl(args);
      ASSERT_TRUE(r.ok()) << r.ToString();
    }
  }
  static void TearDownTestSuite() {
    if (api_ != nullptr) {
      EXPECT_TRUE(api_->Stop().ok());
      delete api_;
      api_ = nullptr;
    }
  }

  void SetUp() override {
    char tmpl[] = "/tmp/stockade-e2e.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    grpc_port_ = FreePort();
  }
  void TearDown() override {
    nodes_.clear();
    operators_.clear();
    if (HasFailure()) {
      CollectLogs();
      for (const auto& [name, text] : logs_) {
        std::cerr << "---- " << name << "\n" << text << "\n";
      }
    }
    // Leave the cluster clean for the next test.
    // No garbage collector runs here: what Agents own is deleted by hand.
    api_->Kubectl({"delete", "agents", "--all", "-n", "agents"});
    api_->Kubectl(
        {"delete", "deployments,networkpolicies", "--all", "-n", "agents"});
    api_->Kubectl({"delete", "agentpolicies", "--all", "-n", "agents"});
    api_->Kubectl({"delete", "clusteragentpolicies", "--all"});
    api_->Kubectl({"delete", "lease", "--all", "-n", kLeaseNamespace});
    fs::remove_all(dir_);
  }

  // Starts an operator replica (as the RBAC-bound user) on the shared gRPC
  // port, or on its own when `own_port`.
  // Short leases by default (failover tests); the apiserver restart test
  // uses the production defaults, which outlast a restart.
  Process* StartOperator(const std::string& identity, int grpc_port = 0,
                         int lease_seconds = 4, int renew_seconds = 3) {
    if (grpc_port == 0) grpc_port = grpc_port_;
    const std::string log = absl::StrCat(dir_, "/operator-", identity, ".log");
    const int http_port = FreePort();
    http_ports_[identity] = http_port;
    auto p =
        Process::Spawn({std::string(STOCKADE_BIN_DIR) + "/stockade-operator",
                        "--kubeconfig",
                        api_->operator_kubeconfig(),
                        "--insecure",
                        "--grpc-listen",
                        absl::StrCat("127.0.0.1:", grpc_port),
                        "--http-listen",
                        absl::StrCat("127.0.0.1:", http_port),
                        "--lease-namespace",
                        kLeaseNamespace,
                        "--identity",
                        identity,
                        "--lease-duration",
                        absl::StrCat(lease_seconds),
                        "--renew-deadline",
                        absl::StrCat(renew_seconds),
                        "--retry-period",
                        "0.5",
                        "--resync",
                        "5"},
                       log);
    operators_.push_back(std::move(p));
    log_paths_[identity] = log;
    return operators_.back().get();
  }

  Process* StartNode(const std::string& name, int grpc_port = 0) {
    if (grpc_port == 0) grpc_port = grpc_port_;
    const std::string log = absl::StrCat(dir_, "/node-", name, ".log");
    auto p = Process::Spawn(
        {std::string(STOCKADE_BIN_DIR) + "/stockade-node", "--server",
         absl::StrCat("127.0.0.1:", grpc_port), "--insecure", "--node-name",
         name, "--store", StoreDir(name), "--apparmor", "off", "--backoff-max",
         "1s", "--gc-interval", "1s"},
        log);
    nodes_.push_back(std::move(p));
    log_paths_[name] = log;
    return nodes_.back().get();
  }

  std::map<std::string, int> http_ports_;

  std::string StoreDir(const std::string& node) const {
    return dir_ + "/store-" + node;
  }

  // namespace/name -> hash in a node's store.
  std::map<std::string, std::string> StoreIndex(const std::string& node) {
    std::map<std::string, std::string> out;
    auto store = store::Store::Open(StoreDir(node));
    if (!store.ok()) return out;
    auto list = store->List();
    if (!list.ok()) return out;
    for (const store::IndexEntry& e : *list) {
      out[e.namespace_ + "/" + e.name] = e.hash;
    }
    return out;
  }

  Json Get(const std::string& kind, const std::string& name,
           const std::string& ns = "agents") {
    CommandResult r =
        api_->Kubectl({"get", kind, name, "-n", ns, "-o", "json"});
    if (!r.ok()) return Json();
    return Json::parse(r.out, nullptr, false);
  }

  static std::string Condition(const Json& object, const std::string& type,
                               std::string* reason = nullptr,
                               std::string* message = nullptr) {
    if (!object.is_object() || !object.contains("status")) return "";
    for (const Json& c : object["status"].value("conditions", Json::array())) {
      if (c.value("type", "") == type) {
        if (reason) *reason = c.value("reason", "");
        if (message) *message = c.value("message", "");
        return c.value("status", "");
      }
    }
    return "";
  }

  // Polls `check` every 100 ms until it is true or `timeout` passes.
  template <typename F>
  bool Eventually(F check, absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (check()) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return check();
  }

  void CollectLogs() {
    for (const auto& [name, path] : log_paths_) {
      std::ifstream in(path);
      std::stringstream s;
      s << in.rdbuf();
      std::string text = s.str();
      if (text.size() > 6000) text = text.substr(text.size() - 6000);
      logs_[name] = text;
    }
  }

  // Ready with a hash, and that hash in both stores.
  bool PolicyEverywhere(const std::string& name, std::string* hash) {
    Json p = Get("agentpolicy", name);
    if (Condition(p, "Ready") != "True") return false;
    *hash = p["status"].value("policyHash", "");
    if (hash->empty()) return false;
    return StoreIndex("node-a")["agents/" + name] == *hash &&
           StoreIndex("node-b")["agents/" + name] == *hash;
  }

  static inline ApiserverFixture* api_ = nullptr;
  std::string dir_;
  int grpc_port_ = 0;
  std::vector<std::unique_ptr<Process>> operators_, nodes_;
  std::map<std::string, std::string> log_paths_, logs_;
};

TEST_F(OperatorE2ETest, ExamplesCompileDistributeUpdateAndDelete) {
  StartOperator("op-1");
  StartNode("node-a");
  StartNode("node-b");
  const absl::Time applied = absl::Now();
  CommandResult apply = api_->Kubectl(
      {"apply", "-f", testing::SourceDir() + "/examples/policies/"});
  ASSERT_TRUE(apply.ok()) << apply.ToString();
  std::map<std::string, std::string> hashes;
  for (const std::string name : {"research-agent", "strict-agent"}) {
    EXPECT_TRUE(Eventually([&] {
      return PolicyEverywhere(name, &hashes[name]);
    })) << name
        << ": " << Get("agentpolicy", name).dump(2);
  }
  std::cerr << "apply -> Ready in both stores: "
            << absl::FormatDuration(absl::Now() - applied) << "\n";
  Json research = Get("agentpolicy", "research-agent");
  EXPECT_EQ(research["status"]["nodes"].value("summary", ""), "2/2");
  EXPECT_EQ(research["status"].value("observedGeneration", 0),
            research["metadata"].value("generation", -1));
  // An Event says so.
  CommandResult events =
      api_->Kubectl({"get", "events", "-n", "agents", "--field-selector",
                     "involvedObject.name=research-agent", "-o", "json"});
  ASSERT_TRUE(events.ok()) << events.ToString();
  EXPECT_THAT(events.out, HasSubstr("Compiled"));

  // Update: a new hash reaches both stores.
  CommandResult patch = api_->Kubectl({"patch", "agentpolicy", "research-agent",
                                       "-n", "agents", "--type", "merge", "-p",
                                       R"({"spec":{"processes":{"max":77}}})"});
  ASSERT_TRUE(patch.ok()) << patch.ToString();
  std::string updated;
  EXPECT_TRUE(Eventually([&] {
    return PolicyEverywhere("research-agent", &updated) &&
           updated != hashes["research-agent"];
  })) << Get("agentpolicy", "research-agent").dump(2);
  // The old version is collected (no container uses it).
  EXPECT_TRUE(Eventually([&] {
    auto store = store::Store::Open(StoreDir("node-a"));
    auto held = store->ListPolicies();
    return held.ok() && std::find(held->begin(), held->end(),
                                  hashes["research-agent"]) == held->end();
  }));

  // Delete: gone from both indexes.
  ASSERT_TRUE(
      api_->Kubectl({"delete", "agentpolicy", "strict-agent", "-n", "agents"})
          .ok());
  EXPECT_TRUE(Eventually([&] {
    return StoreIndex("node-a").count("agents/strict-agent") == 0 &&
           StoreIndex("node-b").count("agents/strict-agent") == 0;
  }));
}

TEST_F(OperatorE2ETest, InvalidSpecsAndGuardrailViolationsAreReported) {
  StartOperator("op-1");
  StartNode("node-a");
  ASSERT_TRUE(api_->Kubectl({"apply", "-f",
                             testing::SourceDir() +
                                 "/examples/policies/cluster-guardrails.yaml"})
                  .ok());
  // Rejected by the CRD schema at apply.
  CommandResult bad =
      api_->Kubectl({"apply", "-f", "-"}, std::nullopt,
                    "apiVersion: stockade.dev/v1alpha1\nkind: AgentPolicy\n"
                    "metadata: {name: bad-enum, namespace: agents}\n"
                    "spec: {syscalls: {baseline: Loose}}\n");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.err, HasSubstr("spec.syscalls.baseline"));
  // Accepted by the schema, refused by the compiler: the field is named.
  ASSERT_TRUE(api_->Kubectl({"apply", "-f", "-"}, std::nullopt,
                            "apiVersion: stockade.dev/v1alpha1\n"
                            "kind: AgentPolicy\n"
                            "metadata: {name: unknown-syscall, namespace: "
                            "agents}\n"
                            "spec: {syscalls: {allow: [not_a_syscall]}}\n")
                  .ok());
  // Loosens the guardrail: pip is a denied executable.
  ASSERT_TRUE(api_->Kubectl({"apply", "-f", "-"}, std::nullopt,
                            "apiVersion: stockade.dev/v1alpha1\n"
                            "kind: AgentPolicy\n"
                            "metadata: {name: wants-pip, namespace: agents}\n"
                            "spec:\n"
                            "  filesystem: {readOnlyRoot: true}\n"
                            "  exec: {allow: [/usr/bin/pip]}\n")
                  .ok());
  std::string reason, message;
  EXPECT_TRUE(Eventually([&] {
    return Condition(Get("agentpolicy", "unknown-syscall"), "Compiled", &reason,
                     &message) == "False";
  }));
  EXPECT_EQ(reason, "InvalidSpec");
  EXPECT_THAT(message, HasSubstr("spec.syscalls.allow[0]"));
  EXPECT_THAT(message, HasSubstr("not_a_syscall"));
  EXPECT_TRUE(Eventually([&] {
    return Condition(Get("agentpolicy", "wants-pip"), "Compiled", &reason,
                     &message) == "False";
  }));
  EXPECT_EQ(reason, "GuardrailViolation");
  EXPECT_THAT(message, HasSubstr("baseline"));
  EXPECT_THAT(message, HasSubstr("/usr/bin/pip"));
  EXPECT_EQ(Condition(Get("agentpolicy", "wants-pip"), "Ready"), "False");
  // Nothing of either reaches the node, which does receive a valid policy
  // applied after them (so an empty store is not mistaken for a refusal).
  ASSERT_TRUE(api_->Kubectl({"apply", "-f",
                             testing::SourceDir() +
                                 "/examples/policies/strict-agent.yaml"})
                  .ok());
  EXPECT_TRUE(Eventually(
      [&] { return StoreIndex("node-a").count("agents/strict-agent") == 1; }));
  EXPECT_EQ(StoreIndex("node-a").count("agents/wants-pip"), 0u);
  EXPECT_EQ(StoreIndex("node-a").count("agents/unknown-syscall"), 0u);
}

TEST_F(OperatorE2ETest, RestartsOfOperatorNodeAgentAndApiserver) {
  Process* op = StartOperator("op-1", 0, 15, 10);
  Process* node = StartNode("node-a");
  StartNode("node-b");
  ASSERT_TRUE(api_->Kubectl({"apply", "-f",
                             testing::SourceDir() +
                                 "/examples/policies/research-agent.yaml"})
                  .ok());
  std::string hash;
  ASSERT_TRUE(
      Eventually([&] { return PolicyEverywhere("research-agent", &hash); }));

  // Operator restart: the stores keep serving meanwhile; it resyncs.
  op->Stop();
  EXPECT_EQ(StoreIndex("node-a")["agents/research-agent"], hash);
  // (The first replica released its lease on SIGTERM: no wait.)
  Process* op2 = StartOperator("op-2", 0, 15, 10);
  EXPECT_TRUE(
      Eventually([&] { return PolicyEverywhere("research-agent", &hash); }));

  // Node agent restart with its store intact.
  node->Stop();
  EXPECT_EQ(StoreIndex("node-a")["agents/research-agent"], hash);
  StartNode("node-a");
  EXPECT_TRUE(Eventually([&] {
    Json p = Get("agentpolicy", "research-agent");
    return p.contains("status") &&
           p["status"]["nodes"].value("summary", "") == "2/2";
  }));

  // Apiserver restart: watches break and resume; a later change arrives.
  ASSERT_TRUE(api_->RestartApiserver().ok());
  ASSERT_TRUE(api_->Kubectl({"patch", "agentpolicy", "research-agent", "-n",
                             "agents", "--type", "merge", "-p",
                             R"({"spec":{"processes":{"max":55}}})"})
                  .ok());
  std::string after;
  EXPECT_TRUE(Eventually(
      [&] {
        return PolicyEverywhere("research-agent", &after) && after != hash;
      },
      absl::Seconds(60)));
  EXPECT_TRUE(op2->running()) << "the operator did not outlast the restart";
}

TEST_F(OperatorE2ETest, LeaderFailover) {
  // Two replicas, each with its own gRPC port; the nodes use the first.
  Process* first = StartOperator("op-a");
  ASSERT_TRUE(Eventually([&] {
    Json lease = Get("lease", "stockade-operator", kLeaseNamespace);
    return lease.is_object() &&
           lease["spec"].value("holderIdentity", "") == "op-a";
  }));
  const int second_port = FreePort();
  StartOperator("op-b", second_port);
  StartNode("node-a", second_port);
  StartNode("node-b", second_port);
  ASSERT_TRUE(api_->Kubectl({"apply", "-f",
                             testing::SourceDir() +
                                 "/examples/policies/research-agent.yaml"})
                  .ok());
  // op-a leads (status written) but the nodes talk to op-b, a follower.
  std::string reason;
  EXPECT_TRUE(Eventually([&] {
    return Condition(Get("agentpolicy", "research-agent"), "Compiled") ==
           "True";
  }));
  const absl::Time killed = absl::Now();
  first->Stop(SIGKILL);  // no release: op-b waits out the lease
  std::string hash;
  EXPECT_TRUE(
      Eventually([&] { return PolicyEverywhere("research-agent", &hash); },
                 absl::Seconds(30)));
  const absl::Duration takeover = absl::Now() - killed;
  std::cerr << "failover to Ready on op-b's nodes: "
            << absl::FormatDuration(takeover) << "\n";
  EXPECT_LT(takeover, absl::Seconds(4 + 10));
  Json lease = Get("lease", "stockade-operator", kLeaseNamespace);
  EXPECT_EQ(lease["spec"].value("holderIdentity", ""), "op-b");
}

constexpr char kDigest[] =
    "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

std::string AgentYaml(const std::string& name, const std::string& image,
                      const std::string& policy_part) {
  return absl::StrCat(
      "apiVersion: stockade.dev/v1alpha1\nkind: Agent\n"
      "metadata: {name: ",
      name,
      ", namespace: agents}\n"
      "spec:\n  image: ",
      image,
      "\n  replicas: 2\n"
      "  resources: {limits: {cpu: \"1\", memory: 256Mi}}\n",
      policy_part);
}

// The value of a pod-template annotation of Deployment `name`.
std::string TemplateAnnotation(const Json& deployment, const std::string& key) {
  if (!deployment.is_object()) return "";
  return deployment["spec"]["template"]["metadata"]
      .value("annotations", Json::object())
      .value(key, "");
}

TEST_F(OperatorE2ETest, AgentBecomesADeploymentAndNetworkPolicy) {
  StartOperator("op-1");
  StartNode("node-a");
  ASSERT_TRUE(api_->Kubectl({"apply", "-f",
                             testing::SourceDir() +
                                 "/examples/policies/research-agent.yaml"})
                  .ok());
  std::string hash;
  ASSERT_TRUE(Eventually([&] {
    Json p = Get("agentpolicy", "research-agent");
    hash = p.is_object() && p.contains("status")
               ? p["status"].value("policyHash", "")
               : "";
    return Condition(p, "Ready") == "True";
  })) << Get("agentpolicy", "research-agent").dump(2);
  const absl::Time applied = absl::Now();
  ASSERT_TRUE(
      api_->Kubectl({"apply", "-f",
                     testing::SourceDir() + "/examples/policies/agent.yaml"})
          .ok());
  Json deployment;
  ASSERT_TRUE(Eventually([&] {
    deployment = Get("deployment", "researcher");
    return deployment.is_object();
  })) << Get("agent", "researcher").dump(2);
  std::cerr << "Agent apply -> Deployment: "
            << absl::FormatDuration(absl::Now() - applied) << "\n";
  const Json agent = Get("agent", "researcher");
  const std::string uid = agent["metadata"].value("uid", "");
  ASSERT_FALSE(uid.empty());

  // The Deployment: confined pods, owned by the Agent.
  EXPECT_EQ(deployment["spec"].value("replicas", 0), 2);
  const Json& pod = deployment["spec"]["template"]["spec"];
  EXPECT_EQ(pod.value("runtimeClassName", ""), "stockade");
  EXPECT_EQ(pod.value("automountServiceAccountToken", true), false);
  EXPECT_EQ(TemplateAnnotation(deployment, "stockade.dev/policy"),
            "research-agent");
  EXPECT_EQ(TemplateAnnotation(deployment, "stockade.dev/policy-hash"), hash);
  EXPECT_EQ(TemplateAnnotation(deployment, "stockade.dev/agent"), "researcher");
  const Json& container = pod["containers"][0];
  EXPECT_EQ(container.value("image", ""),
            std::string("registry.example.com/agents/researcher@") + kDigest);
  EXPECT_EQ(container["command"],
            Json({"/usr/bin/python3", "-m", "researcher"}));
  EXPECT_EQ(container["resources"]["limits"]["memory"], "512Mi");
  EXPECT_EQ(container["securityContext"]["capabilities"]["drop"],
            Json({"ALL"}));
  EXPECT_EQ(
      container["securityContext"].value("allowPrivilegeEscalation", true),
      false);
  EXPECT_EQ(container["securityContext"].value("readOnlyRootFilesystem", false),
            true);
  // Deleting the Agent deletes these (the garbage collector follows the
  // controller reference; checked at the end).
  const Json owner = Json::parse(
      absl::StrCat(R"([{"apiVersion":"stockade.dev/v1alpha1","kind":"Agent",)",
                   R"("name":"researcher","uid":")", uid,
                   R"(","controller":true,"blockOwnerDeletion":true}])"));
  EXPECT_EQ(deployment["metadata"]["ownerReferences"], owner);
  // Applied server-side by the operator's field manager.
  EXPECT_THAT(api_->Kubectl({"get", "deployment", "researcher", "-n", "agents",
                             "--show-managed-fields", "-o",
                             "jsonpath={.metadata.managedFields[*].manager}"})
                  .out,
              HasSubstr("stockade-operator"));

  // The NetworkPolicy: the policy's egress, DNS, nothing else.
  Json np;
  ASSERT_TRUE(Eventually([&] {
    np = Get("networkpolicy", "researcher");
    return np.is_object();
  }));
  EXPECT_EQ(np["metadata"]["ownerReferences"], owner);
  EXPECT_EQ(np["spec"]["policyTypes"], Json({"Ingress", "Egress"}));
  const std::string egress = np["spec"]["egress"].dump();
  EXPECT_THAT(egress, HasSubstr(R"({"ipBlock":{"cidr":"203.0.113.0/24"}})"));
  EXPECT_THAT(egress, HasSubstr(R"("port":443,"protocol":"TCP")"));
  EXPECT_THAT(egress, HasSubstr(R"("k8s-app":"kube-dns")"));
  EXPECT_THAT(egress, HasSubstr(R"("port":53,"protocol":"UDP")"));

  // Status: the policy is ready; no pod runs (no controller-manager here),
  // so the rollout is in progress. Then the Deployment's status, written
  // here as its controller would, shows up in the Agent's.
  std::string reason;
  EXPECT_TRUE(Eventually([&] {
    return Condition(Get("agent", "researcher"), "PolicyReady") == "True";
  }));
  EXPECT_EQ(Condition(Get("agent", "researcher"), "Progressing", &reason),
            "True");
  EXPECT_EQ(reason, "RollingOut");
  const int64_t generation = deployment["metadata"].value("generation", 1);
  CommandResult patched = api_->Kubectl(
      {"patch", "deployment", "researcher", "-n", "agents", "--subresource",
       "status", "--type", "merge", "-p",
       absl::StrCat(R"({"status":{"observedGeneration":)", generation,
                    R"(,"replicas":2,"updatedReplicas":2,"readyReplicas":2,)",
                    R"("availableReplicas":2}})")});
  ASSERT_TRUE(patched.ok()) << patched.ToString();
  EXPECT_TRUE(Eventually([&] {
    Json a = Get("agent", "researcher");
    return Condition(a, "Available") == "True" &&
           a["status"].value("readyReplicas", 0) == 2;
  })) << Get("agent", "researcher").dump(2);
  Json a = Get("agent", "researcher");
  EXPECT_EQ(a["status"].value("replicas", 0), 2);
  EXPECT_EQ(a["status"].value("policyHash", ""), hash);
  EXPECT_EQ(a["status"].value("policy", ""), "research-agent");
  EXPECT_EQ(a["status"].value("observedGeneration", 0),
            a["metadata"].value("generation", -1));
  EXPECT_EQ(Condition(a, "Progressing", &reason), "False");
  EXPECT_EQ(reason, "RolledOut");
  // kubectl get shows it.
  CommandResult table = api_->Kubectl({"get", "agents", "-n", "agents"});
  ASSERT_TRUE(table.ok()) << table.ToString();
  std::cerr << table.out;
  EXPECT_THAT(table.out, HasSubstr("AVAILABLE"));
  EXPECT_THAT(table.out, HasSubstr("research-agent"));
  EXPECT_THAT(table.out, HasSubstr(hash.substr(0, 12)));

  // A policy change rolls the Deployment to the new hash.
  ASSERT_TRUE(api_->Kubectl({"patch", "agentpolicy", "research-agent", "-n",
                             "agents", "--type", "merge", "-p",
                             R"({"spec":{"processes":{"max":77}}})"})
                  .ok());
  std::string rolled;
  EXPECT_TRUE(Eventually([&] {
    rolled = TemplateAnnotation(Get("deployment", "researcher"),
                                "stockade.dev/policy-hash");
    return !rolled.empty() && rolled != hash;
  })) << Get("agent", "researcher").dump(2);
  Json updated = Get("agentpolicy", "research-agent");
  EXPECT_EQ(rolled, updated["status"].value("policyHash", ""));
  EXPECT_TRUE(Eventually([&] {
    return Condition(Get("agent", "researcher"), "Progressing", &reason) ==
               "True" &&
           reason == "RollingOut";
  }));

  // An inline policy becomes an AgentPolicy the Agent owns.
  ASSERT_TRUE(
      api_->Kubectl({"apply", "-f", "-"}, std::nullopt,
                    AgentYaml("inline", std::string("python@") + kDigest,
                              "  policy:\n"
                              "    network: {egress: [{cidrs: "
                              "[192.0.2.0/24]}]}\n"))
          .ok());
  EXPECT_TRUE(Eventually([&] {
    return TemplateAnnotation(Get("deployment", "inline"),
                              "stockade.dev/policy") == "inline";
  })) << Get("agent", "inline").dump(2);
  Json own = Get("agentpolicy", "inline");
  ASSERT_TRUE(own.is_object());
  EXPECT_EQ(own["metadata"]["ownerReferences"][0].value("uid", ""),
            Get("agent", "inline")["metadata"].value("uid", "-"));

  // Settled, a resync (every 5 s here) reconciles each Agent without
  // applying anything again: their objects are what the last apply made.
  auto metric = [&](const std::string& name) {
    CommandResult m = testing::RunCommand(
        {"curl", "-sf",
         absl::StrCat("http://127.0.0.1:", http_ports_["op-1"], "/metrics")});
    for (absl::string_view line : absl::StrSplit(m.out, '\n')) {
      if (absl::ConsumePrefix(&line, name + " ")) {
        double v = -1;
        return absl::SimpleAtod(line, &v) ? v : -1.0;
      }
    }
    return -1.0;
  };
  absl::SleepFor(absl::Seconds(3));
  const double applies = metric("stockade_agent_applies_total");
  const double reconciles = metric("stockade_agent_reconciles_total");
  ASSERT_GE(applies, 4) << "the metric is exported, and counted the applies";
  absl::SleepFor(absl::Seconds(6));
  EXPECT_GE(metric("stockade_agent_reconciles_total"), reconciles + 2);
  EXPECT_EQ(metric("stockade_agent_applies_total"), applies);
  // Someone else's edit of the Deployment's spec is put right at the next
  // reconcile (its generation changed).
  ASSERT_TRUE(api_->Kubectl({"scale", "deployment", "researcher", "-n",
                             "agents", "--replicas", "5"})
                  .ok());
  EXPECT_TRUE(Eventually([&] {
    return Get("deployment", "researcher")["spec"].value("replicas", 0) == 2;
  })) << Get("deployment", "researcher").dump(2);

  // Deleting an Agent deletes all it made (kube-controller-manager's garbage
  // collector, following the owner references); a policy it only names
  // stays.
  ASSERT_TRUE(api_->Kubectl({"delete", "agent", "researcher", "inline", "-n",
                             "agents", "--wait=false"})
                  .ok());
  const absl::Time deleted = absl::Now();
  EXPECT_TRUE(Eventually(
      [&] {
        for (const char* kind : {"deployment", "networkpolicy"}) {
          for (const char* name : {"researcher", "inline"}) {
            if (Get(kind, name).is_object()) return false;
          }
        }
        return !Get("agentpolicy", "inline").is_object();
      },
      absl::Seconds(60)))
      << "still there: " << Get("deployment", "researcher").dump(2)
      << Get("agentpolicy", "inline").dump(2);
  std::cerr << "Agent deleted -> everything it made gone: "
            << absl::FormatDuration(absl::Now() - deleted) << "\n";
  EXPECT_TRUE(Get("agentpolicy", "research-agent").is_object());
}

TEST_F(OperatorE2ETest, AgentBreakingAWorkloadGuardrailIsBlocked) {
  StartOperator("op-1");
  StartNode("node-a");
  for (const char* file : {"cluster-guardrails.yaml", "research-agent.yaml"}) {
    ASSERT_TRUE(
        api_->Kubectl({"apply", "-f",
                       testing::SourceDir() + "/examples/policies/" + file})
            .ok());
  }
  // Not pinned by digest, from Docker Hub, in a namespace whose guardrails
  // require digests from registry.example.com.
  ASSERT_TRUE(api_->Kubectl({"apply", "-f", "-"}, std::nullopt,
                            AgentYaml("unpinned", "python:3.12",
                                      "  policyRef: {name: research-agent}\n"))
                  .ok());
  std::string reason, message;
  EXPECT_TRUE(Eventually([&] {
    return Condition(Get("agent", "unpinned"), "PolicyReady", &reason,
                     &message) == "False" &&
           reason == "GuardrailViolation";
  })) << Get("agent", "unpinned").dump(2);
  EXPECT_THAT(message, HasSubstr("spec.image: image \"python:3.12\" is not "
                                 "pinned by digest (ClusterAgentPolicy "
                                 "\"baseline\": "
                                 "guardrails.requireImageDigest)"));
  EXPECT_THAT(message, HasSubstr("guardrails.allowedRegistries"));
  EXPECT_EQ(Condition(Get("agent", "unpinned"), "Available", &reason), "False");
  EXPECT_EQ(reason, "GuardrailViolation");
  CommandResult events =
      api_->Kubectl({"get", "events", "-n", "agents", "--field-selector",
                     "involvedObject.name=unpinned", "-o", "json"});
  EXPECT_THAT(events.out, HasSubstr("GuardrailViolation"));
  // Blocked: nothing made. Pinned by digest from the allowed registry, it
  // runs.
  EXPECT_FALSE(Get("deployment", "unpinned").is_object());
  EXPECT_FALSE(Get("networkpolicy", "unpinned").is_object());
  ASSERT_TRUE(
      api_->Kubectl(
              {"apply", "-f", "-"}, std::nullopt,
              AgentYaml("unpinned",
                        std::string("registry.example.com/agents/x@") + kDigest,
                        "  policyRef: {name: research-agent}\n"))
          .ok());
  EXPECT_TRUE(Eventually([&] {
    return Get("deployment", "unpinned").is_object();
  })) << Get("agent", "unpinned").dump(2);
  EXPECT_EQ(Condition(Get("agent", "unpinned"), "PolicyReady"), "True");
}

}  // namespace
// Denials a node reports (NodeReport.denials, as stockade-node sends what
// its collector logged) become an Event on the pod (repeats aggregated),
// the policy's status.denials counters and stockade_denials_total. The
// "node" here is a gRPC client speaking the node agent's protocol: the
// collection itself is tested in real containers (tests/containerd/
// denials_test.cc).
TEST_F(OperatorE2ETest, ReportedDenialsBecomeEventsCountersAndMetrics) {
  StartOperator("op-1");
  CommandResult applied = api_->Kubectl(
      {"apply", "-f",
       testing::SourceDir() + "/examples/policies/research-agent.yaml"});
  ASSERT_TRUE(applied.ok()) << applied.ToString();
  ASSERT_TRUE(Eventually([&] {
    return Condition(Get("agentpolicy", "research-agent"), "Compiled") ==
           "True";
  }));

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port_),
                                     grpc::InsecureChannelCredentials());
  auto stub = stockade::v1::PolicyDistribution::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->Sync(&context);
  stockade::v1::NodeReport hello;
  hello.mutable_hello()->set_node_name("node-d");
  hello.mutable_hello()->set_agent_version("test");
  ASSERT_TRUE(stream->Write(hello));
  auto denial = [](const std::string& layer) {
    stockade::v1::NodeDenial d;
    d.set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
    d.set_pod_namespace("agents");
    d.set_pod_name("researcher-0");
    d.set_container_name("agent");
    d.set_container_id("c0ffee");
    d.set_policy_namespace("agents");
    d.set_policy_name("research-agent");
    d.set_layer(layer);
    d.set_mode("enforced");
    if (layer == "seccomp") {
      d.set_syscall("keyctl");
      d.set_agent("researcher");  // the pod's stockade.dev/agent
    }
    if (layer == "landlock") {
      d.set_access("fs.execute");
      d.set_path("/usr/bin/pip");
    }
    return d;
  };
  stockade::v1::NodeReport report;
  *report.add_denials() = denial("seccomp");
  *report.add_denials() = denial("landlock");
  ASSERT_TRUE(stream->Write(report));

  // The counters in status.
  auto counts = [&] {
    Json p = Get("agentpolicy", "research-agent");
    if (!p.is_object() || !p.contains("status") ||
        !p["status"].contains("denials")) {
      return Json();
    }
    return p["status"]["denials"];
  };
  EXPECT_TRUE(Eventually([&] {
    Json c = counts();
    return c.is_object() && c.value("total", 0) == 2 &&
           c.value("seccomp", 0) == 1 && c.value("landlock", 0) == 1;
  })) << counts().dump();

  // One Event per pod and attempt; a repeat bumps its count.
  auto events = [&] {
    CommandResult r = api_->Kubectl(
        {"get", "events", "-n", "agents", "--field-selector",
         "involvedObject.name=researcher-0,reason=Denied", "-o", "json"});
    return r.ok() ? Json::parse(r.out, nullptr, false) : Json();
  };
  EXPECT_TRUE(Eventually([&] {
    Json e = events();
    return e.is_object() && e["items"].size() == 2;
  })) << events().dump();
  bool seccomp_event = false;
  const Json listed = events();
  for (const Json& e : listed["items"]) {
    const std::string message = e.value("message", "");
    EXPECT_EQ(e["involvedObject"].value("kind", ""), "Pod");
    EXPECT_EQ(e.value("type", ""), "Warning");
    if (message.find("seccomp denied syscall keyctl in container agent "
                     "(Agent researcher, policy agents/research-agent) on "
                     "node node-d") != std::string::npos) {
      seccomp_event = true;
      EXPECT_EQ(e["metadata"]["labels"].value("stockade.dev/agent", ""),
                "researcher");
    }
  }
  EXPECT_TRUE(seccomp_event) << events().dump();
  stockade::v1::NodeReport again;
  *again.add_denials() = denial("seccomp");
  ASSERT_TRUE(stream->Write(again));
  EXPECT_TRUE(Eventually([&] {
    const Json now = events();
    for (const Json& e : now["items"]) {
      if (e.value("message", "").find("keyctl") != std::string::npos &&
          e.value("count", 0) == 2) {
        return true;
      }
    }
    return false;
  })) << events().dump();
  EXPECT_TRUE(Eventually([&] { return counts().value("total", 0) == 3; }))
      << counts().dump();

  // kubectl stockade denials shows them (the plugin binary, as kubectl runs
  // it), for the namespace and for the Agent whose pods they are.
  const std::string plugin =
      std::string(STOCKADE_BIN_DIR) + "/kubectl-stockade";
  CommandResult shown = testing::RunCommand(
      {plugin, "denials", "-n", "agents", "--kubeconfig", api_->kubeconfig()});
  ASSERT_TRUE(shown.ok()) << shown.ToString();
  EXPECT_THAT(shown.out, HasSubstr("COUNT"));
  EXPECT_THAT(shown.out, HasSubstr("agents/researcher-0"));
  EXPECT_THAT(shown.out, HasSubstr("seccomp denied syscall keyctl"));
  EXPECT_THAT(shown.out, HasSubstr("landlock denied fs.execute /usr/bin/pip"));
  // By Agent: the Events labelled with its name.
  CommandResult mine =
      testing::RunCommand({plugin, "denials", "-n", "agents", "--agent",
                           "researcher", "--kubeconfig", api_->kubeconfig()});
  ASSERT_TRUE(mine.ok()) << mine.ToString();
  EXPECT_THAT(mine.out, HasSubstr("seccomp denied syscall keyctl"));
  EXPECT_THAT(mine.out, Not(HasSubstr("/usr/bin/pip")));
  CommandResult other =
      testing::RunCommand({plugin, "denials", "-n", "agents", "--agent",
                           "coder", "--kubeconfig", api_->kubeconfig()});
  ASSERT_TRUE(other.ok()) << other.ToString();
  EXPECT_THAT(other.out, HasSubstr("No denials reported"));
  CommandResult bad =
      testing::RunCommand({plugin, "denials", "-n", "agents", "--agent", "a,b",
                           "--kubeconfig", api_->kubeconfig()});
  EXPECT_EQ(bad.exit_code, 2) << bad.ToString();
  EXPECT_THAT(bad.err, HasSubstr("--agent a,b: want an Agent name"));

  // The metric, by namespace, policy, layer and mode.
  CommandResult metrics = testing::RunCommand(
      {"curl", "-sf",
       absl::StrCat("http://127.0.0.1:", http_ports_["op-1"], "/metrics")});
  ASSERT_TRUE(metrics.ok()) << metrics.ToString();
  EXPECT_THAT(metrics.out,
              ::testing::HasSubstr(
                  "stockade_denials_total{layer=\"seccomp\",mode=\"enforced\","
                  "namespace=\"agents\",policy=\"research-agent\"} 2"));
  context.TryCancel();
  stream->Finish();
}

// The whole path of a denial: an attack in a real container under the real
// containerd and shim, on the policy the operator compiled and the node
// agent put in the node's store; the node agent's collector attributes it
// and sends it up the node's stream; the operator records it on the pod,
// labelled with the Agent, and counts it in the policy's status.
TEST_F(OperatorE2ETest, AContainersDenialReachesItsPodAndPolicy) {
  auto bed = testing::ConfinedBed::Start("e2e-denials");
  ASSERT_TRUE(bed.ok()) << bed.status();
  StartOperator("op-1");
  const std::string log = absl::StrCat(dir_, "/node-node-d.log");
  nodes_.push_back(Process::Spawn(
      {std::string(STOCKADE_BIN_DIR) + "/stockade-node", "--server",
       absl::StrCat("127.0.0.1:", grpc_port_), "--insecure", "--node-name",
       "node-d", "--store", (*bed)->store(), "--apparmor", "off",
       "--backoff-max", "1s"},
      log));
  log_paths_["node-d"] = log;

  const std::string policy = dir_ + "/probe-agent.yaml";
  std::ofstream(policy) << R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: probe-agent, namespace: agents}
spec:
  exec:
    allow: [/bin/busybox, /bin/probe]
)";
  CommandResult applied = api_->Kubectl({"apply", "-f", policy});
  ASSERT_TRUE(applied.ok()) << applied.ToString();
  ASSERT_TRUE(Eventually([&] {
    auto store = store::Store::Open((*bed)->store());
    return store.ok() && store->Resolve("agents", "probe-agent").ok();
  })) << "the policy never reached the node's store";

  // A pod's container, as CRI creates it.
  testing::RunSpec spec;
  spec.id = "researcher-0-agent";
  spec.cmd = {"/bin/probe", "keyctl", "wait:300"};
  spec.annotations = {{"io.kubernetes.cri.sandbox-namespace", "agents"},
                      {"io.kubernetes.cri.sandbox-name", "researcher-0"},
                      {"io.kubernetes.cri.container-name", "agent"},
                      {"stockade.dev/agent", "researcher"}};
  CommandResult run = (*bed)->Run(spec, "probe-agent");
  ASSERT_TRUE(run.ok()) << run.ToString();
  EXPECT_THAT(run.out, HasSubstr("keyctl: EPERM"));

  auto events = [&] {
    CommandResult r = api_->Kubectl(
        {"get", "events", "-n", "agents", "-l", "stockade.dev/agent=researcher",
         "--field-selector", "involvedObject.name=researcher-0,reason=Denied",
         "-o", "json"});
    return r.ok() ? Json::parse(r.out, nullptr, false) : Json();
  };
  EXPECT_TRUE(Eventually([&] {
    for (const Json& e : events().value("items", Json::array())) {
      if (e.value("message", "") ==
          "seccomp denied syscall keyctl in container agent (Agent "
          "researcher, policy agents/probe-agent) on node node-d") {
        return true;
      }
    }
    return false;
  })) << events().dump();
  EXPECT_TRUE(Eventually([&] {
    Json p = Get("agentpolicy", "probe-agent");
    return p.is_object() && p.contains("status") &&
           p["status"].contains("denials") &&
           p["status"]["denials"].value("seccomp", 0) == 1;
  })) << Get("agentpolicy", "probe-agent").dump();
}

}  // namespace stockade
