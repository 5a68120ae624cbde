// The Helm chart with the pinned helm (hack/helm): `helm lint`, `helm
// template` over a matrix of values, values.schema.json refusing bad values,
// and `helm install` into a real kube-apiserver, after which the operator and
// node images run in real containers (containerd) with exactly the command,
// arguments, environment, Secrets and ServiceAccount the chart gave them —
// no kubelet runs here, so the test plays its part.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/apiserver_fixture.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/subprocess.h"
#include "yaml-cpp/yaml.h"

namespace stockade::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kNamespace[] = "stockade-system";

std::string Chart() { return SourceDir() + "/charts/stockade"; }

// The helm binary hack/helm built (fails loudly when it has not).
std::string Helm() {
  static const std::string* helm = [] {
    CommandResult r = RunCommand({SourceDir() + "/hack/helm", "--print-path"});
    return new std::string(
        r.ok() ? std::string(absl::StripTrailingAsciiWhitespace(r.out)) : "");
  }();
  return *helm;
}

CommandResult RunHelm(std::vector<std::string> args) {
  args.insert(args.begin(), Helm());
  return RunCommand(args, {.timeout = absl::Seconds(120)});
}

// The rendered objects of `helm template` with `sets`, by "Kind/name".
struct Rendered {
  CommandResult result;
  std::map<std::string, YAML::Node> objects;
  bool Has(const std::string& key) const { return objects.count(key) > 0; }
  const YAML::Node& Get(const std::string& key) const {
    static const YAML::Node* none = new YAML::Node();
    auto it = objects.find(key);
    return it == objects.end() ? *none : it->second;
  }
};

Rendered Template(const std::vector<std::string>& sets) {
  std::vector<std::string> args = {"template", "stockade", Chart(),
                                   "--namespace", kNamespace};
  for (const std::string& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  Rendered r{RunHelm(args), {}};
  if (!r.result.ok()) return r;
  for (const YAML::Node& doc : YAML::LoadAll(r.result.out)) {
    if (!doc.IsMap() || !doc["kind"]) continue;
    r.objects[absl::StrCat(doc["kind"].as<std::string>(), "/",
                           doc["metadata"]["name"].as<std::string>())] = doc;
  }
  return r;
}

// The container `name` of a Deployment's or DaemonSet's pod template.
std::optional<YAML::Node> Container(const YAML::Node& workload,
                                    const std::string& list,
                                    const std::string& name) {
  if (!workload || !workload.IsMap()) return std::nullopt;
  YAML::Node containers = workload["spec"]["template"]["spec"][list];
  if (!containers || !containers.IsSequence()) return std::nullopt;
  for (const YAML::Node& c : containers) {
    if (c["name"].as<std::string>() == name) return c;
  }
  return std::nullopt;
}

std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> out;
  if (list && list.IsSequence()) {
    for (const YAML::Node& n : list) out.push_back(n.as<std::string>());
  }
  return out;
}

class ChartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Helm().empty())
        << "helm is not built for the pinned version: run hack/helm";
  }
};

TEST_F(ChartTest, LintPasses) {
  CommandResult r = RunHelm({"lint", Chart(), "--namespace", kNamespace});
  EXPECT_TRUE(r.ok()) << r.ToString();
  r = RunHelm(
      {"lint", Chart(), "--namespace", kNamespace, "--set",
       "baseline.enabled=true,operator.replicas=1,tls.mode=certManager"});
  EXPECT_TRUE(r.ok()) << r.ToString();
}

TEST_F(ChartTest, DefaultsRenderEveryPiece) {
  Rendered r = Template({});
  ASSERT_TRUE(r.result.ok()) << r.result.ToString();
  for (const char* key :
       {"Deployment/stockade-operator", "DaemonSet/stockade-node",
        "RuntimeClass/stockade", "PodDisruptionBudget/stockade-operator",
        "Service/stockade-operator", "Service/stockade-operator-metrics",
        "ServiceAccount/stockade-operator", "ServiceAccount/stockade-node",
        "ClusterRole/stockade-operator", "Secret/stockade-operator-tls",
        "Secret/stockade-node-tls", "ValidatingAdmissionPolicy/stockade-pods",
        "ValidatingAdmissionPolicyBinding/stockade-pods"}) {
    EXPECT_TRUE(r.Has(key)) << key;
  }
  EXPECT_FALSE(r.Has("ClusterAgentPolicy/baseline"));
  const YAML::Node& op = r.Get("Deployment/stockade-operator");
  EXPECT_EQ(op["spec"]["replicas"].as<int>(), 2);
  auto found = Container(op, "containers", "operator");
  ASSERT_TRUE(found);
  YAML::Node operator_c = *found;
  EXPECT_EQ(operator_c["image"].as<std::string>(),
            absl::StrCat("stockade.dev/stockade-operator:", STOCKADE_VERSION));
  EXPECT_THAT(
      Strings(operator_c["args"]),
      ::testing::IsSupersetOf({"--label-leader-pod=true", "--leader-elect=true",
                               "--tls-client-ca=/etc/stockade/tls/ca.crt"}));
  EXPECT_TRUE(operator_c["securityContext"]["runAsNonRoot"].as<bool>());
  // The gRPC Service reaches the leader only.
  EXPECT_EQ(r.Get("Service/stockade-operator")["spec"]["selector"]
                                              ["stockade.dev/leader"]
                                                  .as<std::string>(),
            "true");
  EXPECT_EQ(r.Get("RuntimeClass/stockade")["handler"].as<std::string>(),
            "stockade");
  // No shell in the images: every container names its binary.
  for (const auto& [key, obj] : r.objects) {
    const std::string kind = obj["kind"].as<std::string>();
    if (kind != "Pod" && kind != "Deployment" && kind != "DaemonSet") continue;
    for (const char* list : {"containers", "initContainers"}) {
      YAML::Node spec =
          kind == "Pod" ? obj["spec"] : obj["spec"]["template"]["spec"];
      if (!spec[list]) continue;
      for (const YAML::Node& c : spec[list]) {
        ASSERT_TRUE(c["command"]) << key << " " << c["name"];
        EXPECT_TRUE(absl::StartsWith(c["command"][0].as<std::string>(), "/"))
            << key;
      }
    }
  }
  const YAML::Node& ds = r.Get("DaemonSet/stockade-node");
  auto found_install = Container(ds, "initContainers", "install");
  ASSERT_TRUE(found_install);
  YAML::Node install = *found_install;
  EXPECT_THAT(Strings(install["args"]),
              ::testing::Contains("--restart-containerd=false"));
  EXPECT_FALSE(install["securityContext"]["privileged"] &&
               install["securityContext"]["privileged"].as<bool>());
  EXPECT_TRUE(Container(ds, "containers", "cleanup").has_value());
  // The certificates the chart generated form a chain.
  for (const char* secret :
       {"Secret/stockade-operator-tls", "Secret/stockade-node-tls"}) {
    for (const char* key : {"ca.crt", "tls.crt", "tls.key"}) {
      EXPECT_FALSE(r.Get(secret)["data"][key].as<std::string>("").empty())
          << secret << " " << key;
    }
  }
}

TEST_F(ChartTest, ValuesMatrix) {
  struct Case {
    std::vector<std::string> sets;
    std::vector<std::string> present, absent;
  };
  const std::vector<Case> cases = {
      {{"operator.replicas=1"}, {}, {"PodDisruptionBudget/stockade-operator"}},
      {{"tls.mode=secret", "tls.operatorSecret=op-tls",
        "tls.nodeSecret=node-tls"},
       {},
       {"Secret/stockade-operator-tls", "Secret/stockade-node-tls"}},
      {{"tls.mode=certManager"},
       {"Certificate/stockade-operator", "Certificate/stockade-node"},
       {"Secret/stockade-operator-tls"}},
      {{"admission.enabled=false"},
       {},
       {"ValidatingAdmissionPolicy/stockade-pods"}},
      {{"baseline.enabled=true"}, {"ClusterAgentPolicy/baseline"}, {}},
      {{"runtimeClass.create=false"}, {}, {"RuntimeClass/stockade"}},
      {{"fullnameOverride=guard"},
       {"Deployment/guard-operator", "DaemonSet/guard-node"},
       {"Deployment/stockade-operator"}},
  };
  for (const Case& c : cases) {
    Rendered r = Template(c.sets);
    ASSERT_TRUE(r.result.ok()) << absl::StrJoin(c.sets, ",") << "\n"
                               << r.result.ToString();
    for (const std::string& key : c.present) {
      EXPECT_TRUE(r.Has(key)) << absl::StrJoin(c.sets, ",") << ": " << key;
    }
    for (const std::string& key : c.absent) {
      EXPECT_FALSE(r.Has(key)) << absl::StrJoin(c.sets, ",") << ": " << key;
    }
  }
  // restartContainerd needs the host's namespaces: privileged, hostPID.
  Rendered restart = Template({"node.restartContainerd=true"});
  ASSERT_TRUE(restart.result.ok()) << restart.result.ToString();
  const YAML::Node& ds = restart.Get("DaemonSet/stockade-node");
  auto found = Container(ds, "initContainers", "install");
  ASSERT_TRUE(found);
  YAML::Node install = *found;
  EXPECT_THAT(Strings(install["args"]),
              ::testing::Contains("--restart-containerd=true"));
  EXPECT_TRUE(install["securityContext"]["privileged"].as<bool>());
  // Denials: the node reads audit records in the host's network namespace
  // with AUDIT_READ; off, neither.
  {
    const YAML::Node on = Template({}).Get("DaemonSet/stockade-node");
    EXPECT_TRUE(on["spec"]["template"]["spec"]["hostNetwork"].as<bool>());
    Rendered off_r = Template({"node.denials.enabled=false"});
    ASSERT_TRUE(off_r.result.ok()) << off_r.result.ToString();
    const YAML::Node& off = off_r.Get("DaemonSet/stockade-node");
    EXPECT_FALSE(off["spec"]["template"]["spec"]["hostNetwork"]);
    auto node_off = Container(off, "containers", "node");
    ASSERT_TRUE(node_off);
    EXPECT_THAT(Strings((*node_off)["args"]),
                ::testing::Contains("--denials=off"));
    EXPECT_THAT(Strings((*node_off)["securityContext"]["capabilities"]["add"]),
                ::testing::Not(::testing::Contains("AUDIT_READ")));
  }
  // Without uninstallOnDelete no cleanup container and no token.
  Rendered keep = Template({"node.uninstallOnDelete=false"});
  ASSERT_TRUE(keep.result.ok()) << keep.result.ToString();
  EXPECT_FALSE(
      Container(keep.Get("DaemonSet/stockade-node"), "containers", "cleanup")
          .has_value());
  // Other paths reach every container that uses them.
  Rendered paths = Template(
      {"node.store=/srv/stockade", "image.registry=registry.example.com/sec"});
  ASSERT_TRUE(paths.result.ok()) << paths.result.ToString();
  auto found_node =
      Container(paths.Get("DaemonSet/stockade-node"), "containers", "node");
  ASSERT_TRUE(found_node);
  YAML::Node node = *found_node;
  EXPECT_THAT(Strings(node["args"]),
              ::testing::Contains("--store=/srv/stockade"));
  EXPECT_EQ(node["image"].as<std::string>(),
            absl::StrCat("registry.example.com/sec/stockade-node:",
                         STOCKADE_VERSION));
}

TEST_F(ChartTest, SchemaRefusesBadValuesNamingTheField) {
  struct Bad {
    std::string set;
    std::string expect;  // in helm's message
  };
  for (const Bad& bad :
       std::vector<Bad>{{"operator.replicas=0", "replicas"},
                        {"tls.mode=bogus", "mode"},
                        {"operater.replicas=2", "operater"},
                        {"node.apparmor=maybe", "apparmor"},
                        {"node.store=relative/path", "store"},
                        {"operator.logLevel=chatty", "logLevel"}}) {
    Rendered r = Template({bad.set});
    EXPECT_FALSE(r.result.ok()) << bad.set;
    EXPECT_THAT(r.result.err, HasSubstr(bad.expect)) << bad.set;
  }
  Rendered r = Template({"tls.mode=secret"});
  EXPECT_FALSE(r.result.ok());
  EXPECT_THAT(r.result.err, HasSubstr("tls.operatorSecret"));
}

// ---------------------------------------------------------------------------
// helm install into a real apiserver; the images run in real containers.

class ChartInstallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(geteuid(), 0) << "the chart install test needs root (containerd)";
    ASSERT_FALSE(Helm().empty()) << "run hack/helm";
    auto api = ApiserverFixture::Start();
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = api->release();
    auto containerd = ContainerdFixture::Start();
    ASSERT_TRUE(containerd.ok()) << containerd.status();
    containerd_ = containerd->release();
    for (const char* image : {"stockade-operator", "stockade-node"}) {
      CommandResult r =
          containerd_->Ctr({"image", "import",
                            absl::StrCat(STOCKADE_IMAGES_DIR, "/", image, "-",
                                         STOCKADE_VERSION, ".tar")});
      ASSERT_TRUE(r.ok()) << r.ToString();
    }
  }
  static void TearDownTestSuite() {
    delete containerd_;
    containerd_ = nullptr;
    delete api_;
    api_ = nullptr;
  }

  static CommandResult Kubectl(const std::vector<std::string>& args) {
    return api_->Kubectl(args);
  }

  // The object as the apiserver holds it.
  static YAML::Node Get(const std::string& what, const std::string& ns = "") {
    std::vector<std::string> args = {"get", what, "-o", "json"};
    if (!ns.empty()) args = {"-n", ns, "get", what, "-o", "json"};
    CommandResult r = Kubectl(args);
    if (!r.ok()) return YAML::Node(YAML::NodeType::Undefined);
    return YAML::Load(r.out);
  }

  // Writes each key of a Secret into dir (readable by the non-root images).
  static void WriteSecret(const std::string& name, const std::string& dir) {
    YAML::Node secret = Get("secret/" + name, kNamespace);
    ASSERT_TRUE(secret) << name;
    fs::create_directories(dir);
    chmod(dir.c_str(), 0755);
    for (const auto& kv : secret["data"]) {
      std::string data;
      ASSERT_TRUE(absl::Base64Unescape(kv.second.as<std::string>(), &data));
      std::string path = absl::StrCat(dir, "/", kv.first.as<std::string>());
      std::ofstream(path) << data;
      chmod(path.c_str(), 0644);
    }
  }

  // The container's env as the chart wrote it, fieldRefs filled in the way
  // the kubelet would for pod `pod` on node `node`.
  static std::vector<std::string> Env(const YAML::Node& c,
                                      const std::string& pod,
                                      const std::string& node) {
    std::vector<std::string> env;
    for (const YAML::Node& e : c["env"]) {
      std::string name = e["name"].as<std::string>();
      if (e["value"]) {
        env.push_back(absl::StrCat(name, "=", e["value"].as<std::string>()));
        continue;
      }
      std::string field =
          e["valueFrom"]["fieldRef"]["fieldPath"].as<std::string>("");
      std::string value = field == "metadata.name"        ? pod
                          : field == "metadata.namespace" ? kNamespace
                          : field == "spec.nodeName"      ? node
                                                          : "";
      env.push_back(absl::StrCat(name, "=", value));
    }
    return env;
  }

  // Runs container `c` of the chart in a real container from its image,
  // detached, on the host network, with `mounts` (host dir -> path).
  static CommandResult RunChartContainer(
      const std::string& id, const YAML::Node& c,
      const std::vector<std::string>& env,
      const std::vector<std::pair<std::string, std::string>>& mounts,
      const std::vector<std::string>& args, bool detach = true) {
    RunSpec spec;
    spec.id = id;
    spec.image = c["image"].as<std::string>();
    spec.detach = detach;
    spec.env = env;
    spec.extra_args = {"--net-host"};
    if (detach) {
      spec.extra_args.push_back(absl::StrCat("--log-uri=file://", LogPath(id)));
    }
    for (const auto& [src, dst] : mounts) {
      spec.extra_args.push_back("--mount");
      spec.extra_args.push_back(
          absl::StrCat("type=bind,src=", src, ",dst=", dst, ",options=rbind"));
    }
    // $(NAME) in the command line is the container's variable, as the
    // kubelet expands it.
    std::vector<std::pair<std::string, std::string>> vars;
    for (const std::string& e : env) {
      size_t eq = e.find('=');
      vars.push_back(
          {absl::StrCat("$(", e.substr(0, eq), ")"), e.substr(eq + 1)});
    }
    spec.cmd = Strings(c["command"]);
    for (const std::string& a : args) spec.cmd.push_back(a);
    for (std::string& a : spec.cmd) a = absl::StrReplaceAll(a, vars);
    return containerd_->Run(spec, absl::Seconds(60));
  }

  static std::string LogPath(const std::string& id) {
    return absl::StrCat(containerd_->dir(), "/", id, ".log");
  }
  // What a detached chart container wrote.
  static std::string Logs(const std::string& id) {
    std::ifstream in(LogPath(id));
    std::stringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
  }

  static bool WaitFor(const std::function<bool()>& done,
                      absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return done();
  }

  static inline ApiserverFixture* api_ = nullptr;
  static inline ContainerdFixture* containerd_ = nullptr;
};

TEST_F(ChartInstallTest, InstalledChartRunsAndDistributesAPolicy) {
  const std::string dir = containerd_->dir() + "/chart";
  CommandResult install =
      RunHelm({"install", "stockade", Chart(), "--namespace", kNamespace,
               "--create-namespace", "--kubeconfig", api_->kubeconfig()});
  ASSERT_TRUE(install.ok()) << install.ToString();
  EXPECT_THAT(install.out, HasSubstr("kubectl stockade status"));  // NOTES

  // Every object was accepted by the apiserver (schemas, RBAC escalation
  // checks, CEL of the admission policies).
  for (const char* what :
       {"deployment/stockade-operator", "daemonset/stockade-node",
        "service/stockade-operator", "service/stockade-operator-metrics",
        "secret/stockade-operator-tls", "secret/stockade-node-tls",
        "serviceaccount/stockade-operator", "serviceaccount/stockade-node",
        "poddisruptionbudget/stockade-operator", "role/stockade-operator",
        "rolebinding/stockade-operator"}) {
    EXPECT_TRUE(Get(what, kNamespace)) << what;
  }
  for (const char* what :
       {"runtimeclass/stockade", "clusterrole/stockade-operator",
        "clusterrolebinding/stockade-operator",
        "validatingadmissionpolicy/stockade-pods",
        "validatingadmissionpolicybinding/stockade-pods",
        "crd/agentpolicies.stockade.dev"}) {
    EXPECT_TRUE(Get(what)) << what;
  }

  // The operator: a Pod object for it to label (no kubelet makes one), its
  // ServiceAccount's token, its Secret, the rendered command line.
  YAML::Node deployment = Get("deployment/stockade-operator", kNamespace);
  auto found_op = Container(deployment, "containers", "operator");
  ASSERT_TRUE(found_op);
  YAML::Node op = *found_op;
  const std::string pod = "stockade-operator-test-0";
  // (Its own ServiceAccount: no controller here creates "default".)
  CommandResult made = Kubectl(
      {"-n", kNamespace, "run", pod, "--image", op["image"].as<std::string>(),
       "--restart=Never",
       "--overrides={\"spec\":{\"serviceAccountName\":\"stockade-operator\","
       "\"automountServiceAccountToken\":false}}"});
  ASSERT_TRUE(made.ok()) << made.ToString();
  const std::string sa_dir = dir + "/operator-sa";
  fs::create_directories(sa_dir);
  chmod(sa_dir.c_str(), 0755);
  CommandResult token =
      Kubectl({"-n", kNamespace, "create", "token", "stockade-operator"});
  ASSERT_TRUE(token.ok()) << token.ToString();
  std::ofstream(sa_dir + "/token")
      << absl::StripTrailingAsciiWhitespace(token.out);
  fs::copy_file(api_->ca_file(), sa_dir + "/ca.crt");
  std::ofstream(sa_dir + "/namespace") << kNamespace;
  for (const char* f : {"/token", "/ca.crt", "/namespace"}) {
    chmod((sa_dir + f).c_str(), 0644);
  }
  WriteSecret("stockade-operator-tls", dir + "/operator-tls");
  std::string port = api_->server().substr(api_->server().rfind(':') + 1);
  std::vector<std::string> env = Env(op, pod, "");
  env.push_back("KUBERNETES_SERVICE_HOST=127.0.0.1");
  env.push_back("KUBERNETES_SERVICE_PORT=" + port);
  CommandResult started = RunChartContainer(
      "operator", op, env,
      {{dir + "/operator-tls", "/etc/stockade/tls"},
       {sa_dir, "/var/run/secrets/kubernetes.io/serviceaccount"}},
      Strings(op["args"]));
  ASSERT_TRUE(started.ok()) << started.ToString();

  // It leads and says so on its Pod (what the gRPC Service selects).
  EXPECT_TRUE(WaitFor(
      [&] {
        CommandResult r =
            Kubectl({"-n", kNamespace, "get", "pod", pod, "-o",
                     "jsonpath={.metadata.labels.stockade\\.dev/leader}"});
        return r.ok() && r.out == "true";
      },
      absl::Seconds(30)))
      << containerd_->Ctr({"task", "ls"}).out;

  // The chart's `helm test` command, run from the operator image, against
  // the operator's port on this host.
  CommandResult hooks =
      RunHelm({"get", "hooks", "stockade", "--namespace", kNamespace,
               "--kubeconfig", api_->kubeconfig()});
  ASSERT_TRUE(hooks.ok()) << hooks.ToString();
  YAML::Node test_pod;
  for (const YAML::Node& doc : YAML::LoadAll(hooks.out)) {
    if (doc["kind"] && doc["kind"].as<std::string>() == "Pod") test_pod = doc;
  }
  ASSERT_TRUE(test_pod) << hooks.out;
  YAML::Node probe = test_pod["spec"]["containers"][0];
  std::vector<std::string> probe_args;
  for (std::string a : Strings(probe["args"])) {
    // The Service's DNS name is this host here.
    size_t at = a.find("://");
    if (at != std::string::npos) {
      size_t colon = a.find(':', at + 3);
      a = absl::StrCat(a.substr(0, at + 3), "127.0.0.1", a.substr(colon));
    }
    probe_args.push_back(a);
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        static int n = 0;
        YAML::Node c = probe;
        return RunChartContainer(absl::StrCat("helm-test-", n++), c, {}, {},
                                 probe_args, /*detach=*/false)
            .ok();
      },
      absl::Seconds(20)));

  // The node: the install init container against a host root of its own,
  // then the node agent, each from the node image with the rendered args.
  YAML::Node ds = Get("daemonset/stockade-node", kNamespace);
  const std::string host = dir + "/host";
  std::vector<std::pair<std::string, std::string>> host_mounts;
  for (const char* path : {"/opt/stockade", "/etc/containerd", "/etc/stockade",
                           "/var/lib/stockade"}) {
    fs::create_directories(host + path);
    host_mounts.push_back({host + path, absl::StrCat("/host", path)});
  }
  auto found_install = Container(ds, "initContainers", "install");
  ASSERT_TRUE(found_install);
  YAML::Node install_c = *found_install;
  CommandResult installed = RunChartContainer(
      "node-install", install_c, Env(install_c, "n", "node-a"), host_mounts,
      Strings(install_c["args"]), false);
  ASSERT_TRUE(installed.ok()) << installed.ToString();
  EXPECT_THAT(installed.out, HasSubstr("install done"));
  EXPECT_TRUE(
      fs::exists(host + "/opt/stockade/bin/containerd-shim-stockade-v1"));
  {
    std::ifstream in(host + "/etc/containerd/config.toml");
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_THAT(text.str(), HasSubstr("runtime_path = "
                                      "\"/opt/stockade/bin/"
                                      "containerd-shim-stockade-v1\""));
  }

  auto found_node = Container(ds, "containers", "node");
  ASSERT_TRUE(found_node);
  YAML::Node node_c = *found_node;
  WriteSecret("stockade-node-tls", dir + "/node-tls");
  std::vector<std::string> node_args;
  std::string server_name;
  for (const std::string& a : Strings(node_c["args"])) {
    if (absl::StartsWith(a, "--server=")) {
      // The Service's DNS name resolves to this host; the certificate is
      // still checked against that name.
      std::string target = a.substr(strlen("--server="));
      server_name = target.substr(0, target.rfind(':'));
      node_args.push_back(
          absl::StrCat("--server=127.0.0.1", target.substr(target.rfind(':'))));
      continue;
    }
    node_args.push_back(a);
  }
  node_args.push_back("--tls-server-name=" + server_name);
  EXPECT_EQ(server_name, "stockade-operator.stockade-system.svc");
  ASSERT_TRUE(
      RunChartContainer("node", node_c, Env(node_c, "n", "node-a"),
                        {{dir + "/node-tls", "/etc/stockade/tls"},
                         {host + "/var/lib/stockade", "/var/lib/stockade"}},
                        node_args)
          .ok());

  // A policy applied to the cluster reaches the node's store.
  ASSERT_TRUE(Kubectl({"create", "namespace", "agents"}).ok());
  CommandResult applied = Kubectl(
      {"apply", "-f", SourceDir() + "/examples/policies/research-agent.yaml"});
  ASSERT_TRUE(applied.ok()) << applied.ToString();
  EXPECT_TRUE(WaitFor(
      [&] {
        CommandResult r = Kubectl(
            {"-n", "agents", "get", "agentpolicy", "research-agent", "-o",
             "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} "
             "{.status.nodes.ready}/{.status.nodes.total}"});
        return r.ok() && r.out == "True 1/1";
      },
      absl::Seconds(60)))
      << Kubectl({"-n", "agents", "get", "agentpolicy", "research-agent", "-o",
                  "yaml"})
             .out
      << "\noperator:\n"
      << Logs("operator") << "\nnode:\n"
      << Logs("node");

  // The cleanup container: a SIGTERM while the DaemonSet stays (an update,
  // a drain) leaves the runtime installed; after `helm uninstall` it removes
  // it. It runs with the node's ServiceAccount token, as in the pod.
  auto found_cleanup = Container(ds, "containers", "cleanup");
  ASSERT_TRUE(found_cleanup);
  YAML::Node cleanup_c = *found_cleanup;
  const std::string node_sa = dir + "/node-sa";
  fs::create_directories(node_sa);
  CommandResult node_token =
      Kubectl({"-n", kNamespace, "create", "token", "stockade-node"});
  ASSERT_TRUE(node_token.ok()) << node_token.ToString();
  std::ofstream(node_sa + "/token")
      << absl::StripTrailingAsciiWhitespace(node_token.out);
  fs::copy_file(api_->ca_file(), node_sa + "/ca.crt");
  std::ofstream(node_sa + "/namespace") << kNamespace;
  std::vector<std::string> cleanup_env = Env(cleanup_c, "n", "node-a");
  cleanup_env.push_back("KUBERNETES_SERVICE_HOST=127.0.0.1");
  cleanup_env.push_back("KUBERNETES_SERVICE_PORT=" + port);
  auto cleanup_mounts = host_mounts;
  cleanup_mounts.push_back(
      {node_sa, "/var/run/secrets/kubernetes.io/serviceaccount"});
  auto run_cleanup = [&](const std::string& id) {
    CommandResult r = RunChartContainer(
        id, cleanup_c, cleanup_env, cleanup_mounts, Strings(cleanup_c["args"]));
    EXPECT_TRUE(r.ok()) << r.ToString();
    EXPECT_TRUE(WaitFor([&] { return absl::StrContains(Logs(id), "watching"); },
                        absl::Seconds(20)))
        << Logs(id);
  };
  auto stop = [&](const std::string& id) {
    EXPECT_TRUE(containerd_->Ctr({"task", "kill", "-s", "SIGTERM", id}).ok());
    EXPECT_TRUE(
        containerd_->WaitForTaskStatus(id, "STOPPED", absl::Seconds(30)))
        << Logs(id);
  };
  run_cleanup("cleanup-update");
  stop("cleanup-update");
  EXPECT_THAT(Logs("cleanup-update"),
              HasSubstr("leaving the runtime installed"));
  EXPECT_TRUE(fs::exists(host + "/etc/containerd/config.toml"));
  run_cleanup("cleanup-uninstall");

  // helm uninstall takes the objects away.
  CommandResult uninstall =
      RunHelm({"uninstall", "stockade", "--namespace", kNamespace,
               "--kubeconfig", api_->kubeconfig()});
  ASSERT_TRUE(uninstall.ok()) << uninstall.ToString();
  EXPECT_FALSE(Get("deployment/stockade-operator", kNamespace));
  EXPECT_FALSE(Get("runtimeclass/stockade"));
  stop("cleanup-uninstall");
  EXPECT_THAT(Logs("cleanup-uninstall"), HasSubstr("uninstall done"));
  // The installer had created containerd's configuration: it is gone again,
  // with the binaries and the shim configuration; the store stays.
  EXPECT_FALSE(fs::exists(host + "/etc/containerd/config.toml"));
  EXPECT_FALSE(
      fs::exists(host + "/opt/stockade/bin/containerd-shim-stockade-v1"));
  EXPECT_FALSE(fs::exists(host + "/etc/stockade/shim.yaml"));
  EXPECT_TRUE(fs::exists(host + "/var/lib/stockade"));
}

}  // namespace
}  // namespace stockade::testing
