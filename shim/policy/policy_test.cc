// ApplyPolicyToBundle and ApplyPolicyToExec against a real node store and
// real bundles on disk: the rewritten config.json, the files written into
// the bundle, and every fail-closed path (which must leave config.json
// byte for byte unchanged).
#include "shim/policy/policy.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/testing/compile_yaml.h"
#include "shim/init/seccomp_loader.h"
#include "shim/policy/egress.h"
#include "store/store.h"

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;
using Json = nlohmann::ordered_json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const char kInit[] = STOCKADE_BIN_DIR "/stockade-init";

std::string SourceDir() {
  if (const char* env = getenv("STOCKADE_SOURCE_DIR")) return env;
  std::string file = __FILE__;  // <source>/shim/policy/policy_test.cc
  return file.substr(0, file.rfind("/shim/policy/"));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

using ::stockade::compiler::testing::CompileYaml;

// A spec as CRI would write it for a container of a pod in "agents".
Json BaseSpec() {
  return Json::parse(R"({
  "ociVersion": "1.0.2-dev",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["/usr/bin/python3", "agent.py", "--flag"],
    "env": ["PATH=/usr/bin:/bin", "HOME=/root"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"],
      "effective": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"],
      "permitted": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    },
    "noNewPrivileges": false
  },
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/.stockade/landlock.binpb", "type": "bind",
     "source": "/tmp/empty", "options": ["bind"]}
  ],
  "annotations": {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-namespace": "agents",
    "stockade.dev/policy": "research-agent"
  },
  "linux": {
    "namespaces": [
      {"type": "pid"},
      {"type": "network", "path": "/var/run/netns/cni-1234"},
      {"type": "mount"}
    ]
  }
})");
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/stockade-policy-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    bundle_ = root_ + "/ctr-1";
    ASSERT_EQ(mkdir(bundle_.c_str(), 0700), 0);
    config_.store_root = root_ + "/store";
    config_.init_binary = kInit;
    config_.seccomp_cache_dir = root_ + "/seccomp-cache";
    ASSERT_TRUE(Exists(kInit)) << kInit << " is not built";

    research_ = CompileYaml(
        ReadFile(SourceDir() + "/examples/policies/research-agent.yaml"));
    absl::StatusOr<store::Store> store = store::Store::Open(config_.store_root);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE(store->Install(research_).ok());
    store_ = std::make_unique<store::Store>(*std::move(store));
  }
  void TearDown() override {
    const std::string cmd = "rm -rf '" + root_ + "'";
    EXPECT_EQ(system(cmd.c_str()), 0);
  }

  void WriteSpec(const Json& spec) {
    WriteFile(bundle_ + "/config.json", spec.dump(2) + "\n");
  }
  std::string Config() const { return ReadFile(bundle_ + "/config.json"); }

  // Applies and expects failure that leaves the bundle untouched.
  absl::Status ExpectFailureUnchanged() {
    const std::string before = Config();
    absl::StatusOr<AppliedPolicy> applied =
        ApplyPolicyToBundle(config_, bundle_, "k8s.io");
    EXPECT_FALSE(applied.ok());
    EXPECT_EQ(Config(), before) << "config.json changed on failure";
    EXPECT_FALSE(Exists(bundle_ + "/stockade"))
        << "files left in the bundle on failure";
    return applied.status();
  }

  std::string root_, bundle_;
  PolicyConfig config_;
  v1::CompiledPolicy research_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(PolicyTest, RewritesConfigForThePolicy) {
  WriteSpec(BaseSpec());
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->namespace_, "agents");
  EXPECT_EQ(applied->name, "research-agent");
  EXPECT_EQ(applied->policy.hash(), research_.hash());
  EXPECT_FALSE(applied->sandbox);
  EXPECT_TRUE(applied->pod_container);
  EXPECT_EQ(applied->ruleset_path, bundle_ + "/stockade/landlock.binpb");

  Json spec = Json::parse(Config());
  EXPECT_EQ(spec["process"]["args"],
            Json({"/.stockade/init", "--ruleset", "/.stockade/landlock.binpb",
                  "--seccomp", "/.stockade/seccomp.bpf", "--",
                  "/usr/bin/python3", "agent.py", "--flag"}));
  EXPECT_EQ(spec["process"]["env"], BaseSpec()["process"]["env"]);
  EXPECT_EQ(spec["root"]["readonly"], true);
  EXPECT_EQ(spec["process"]["noNewPrivileges"], true);
  EXPECT_EQ(spec["process"]["capabilities"]["bounding"], Json::array());
  // The filter is stockade-init's to load, as the program libseccomp makes
  // of the policy's profile; runc gets none.
  EXPECT_FALSE(spec["linux"].contains("seccomp"));
  EXPECT_TRUE(applied->seccomp_in_init);
  absl::StatusOr<OciSeccompFilter> filter =
      OciSeccompFilter::Build(research_.seccomp_json());
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(ReadFile(bundle_ + "/stockade/seccomp.bpf"), *filter->ExportBpf());
  EXPECT_EQ(spec["annotations"]["stockade.dev/policy-hash"], research_.hash());
  // The container's use of the policy is recorded for the node agent's GC.
  EXPECT_EQ(applied->ref_hash, research_.hash());
  auto refs = store::Store::Open(config_.store_root)->ListRefs();
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), 1u);
  EXPECT_EQ((*refs)[0].hash, research_.hash());
  EXPECT_EQ((*refs)[0].container_id, "ctr-1");

  // Mounts: the policy's tmpfs, then the two of stockade-init, last; the
  // spec's mount over the ruleset is gone.
  std::vector<std::string> destinations;
  for (const Json& m : spec["mounts"]) {
    destinations.push_back(m["destination"]);
  }
  EXPECT_THAT(destinations, ElementsAre("/proc", "/tmp/agent", "/.stockade",
                                        "/.stockade/init"));
  const Json& dir = spec["mounts"][2];
  EXPECT_EQ(dir["source"], bundle_ + "/stockade");
  EXPECT_EQ(dir["type"], "bind");
  EXPECT_EQ(dir["options"], Json({"bind", "ro", "nosuid", "nodev", "noexec"}));
  const Json& init = spec["mounts"][3];
  EXPECT_EQ(init["source"], kInit);
  EXPECT_EQ(init["options"], Json({"bind", "ro", "nosuid", "nodev"}));

  // The ruleset file is the policy's, the init mountpoint exists.
  v1::LandlockRuleset ruleset;
  ASSERT_TRUE(ruleset.ParseFromString(ReadFile(applied->ruleset_path)));
  EXPECT_EQ(ruleset.SerializeAsString(),
            research_.landlock().SerializeAsString());
  EXPECT_TRUE(Exists(bundle_ + "/stockade/init"));
  struct stat st;
  ASSERT_EQ(stat(applied->ruleset_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST_F(PolicyTest, ApplyingTwiceIsIdempotent) {
  WriteSpec(BaseSpec());
  ASSERT_TRUE(ApplyPolicyToBundle(config_, bundle_, "k8s.io").ok());
  const std::string once = Config();
  ASSERT_TRUE(ApplyPolicyToBundle(config_, bundle_, "k8s.io").ok());
  EXPECT_EQ(Config(), once);
}

TEST_F(PolicyTest, MissingAnnotationFailsWithExactMessage) {
  Json spec = BaseSpec();
  spec["annotations"].erase("stockade.dev/policy");
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.message(),
            "stockade: container ctr-1 names no policy (annotation "
            "stockade.dev/policy) and the shim has no default policy");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(PolicyTest, DefaultPolicyAppliesWithoutAnnotation) {
  Json spec = BaseSpec();
  spec["annotations"].erase("stockade.dev/policy");
  WriteSpec(spec);
  config_.default_policy = "research-agent";  // in the pod's namespace
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->policy.hash(), research_.hash());

  WriteSpec(spec);
  config_.default_policy = "agents/research-agent";
  applied = ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->namespace_, "agents");

  WriteSpec(spec);
  config_.default_policy = "other/research-agent";
  ASSERT_EQ(system(("rm -rf '" + bundle_ + "/stockade'").c_str()), 0);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_THAT(status.message(),
              HasSubstr("no policy \"other/research-agent\" in store"));
}

TEST_F(PolicyTest, UnknownPolicyFails) {
  Json spec = BaseSpec();
  spec["annotations"]["stockade.dev/policy"] = "no-such-policy";
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("stockade: container ctr-1: policy "
                         "\"agents/no-such-policy\": no policy "
                         "\"agents/no-such-policy\" in store ",
                         config_.store_root));
}

TEST_F(PolicyTest, PolicyOfAnotherNamespaceCannotBeNamed) {
  Json spec = BaseSpec();
  spec["annotations"]["stockade.dev/policy"] = "agents/research-agent";
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("is not a policy name"));
}

// The pod and Agent a container runs for are recorded with its reference:
// what the node's denial reports name.
TEST_F(PolicyTest, TheReferenceNamesThePodAndAgent) {
  Json spec = BaseSpec();
  spec["annotations"]["io.kubernetes.cri.sandbox-name"] = "researcher-7c9-x2";
  spec["annotations"]["io.kubernetes.cri.container-name"] = "agent";
  spec["annotations"]["stockade.dev/agent"] = "researcher";
  WriteSpec(spec);
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  auto refs = store::Store::Open(config_.store_root)->ListRefs();
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), 1u);
  EXPECT_EQ((*refs)[0].pod.namespace_, "agents");
  EXPECT_EQ((*refs)[0].pod.name, "researcher-7c9-x2");
  EXPECT_EQ((*refs)[0].pod.container, "agent");
  EXPECT_EQ((*refs)[0].pod.agent, "researcher");
}

TEST_F(PolicyTest, AnInvalidAgentAnnotationFailsNamingIt) {
  Json spec = BaseSpec();
  spec["annotations"]["stockade.dev/agent"] = "Not/An Agent";
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("annotation stockade.dev/agent \"Not/An Agent\" is "
                        "not an Agent name"));
  EXPECT_TRUE(store::Store::Open(config_.store_root)->ListRefs()->empty());
}

TEST_F(PolicyTest, NamespaceFallsBackToContainerdNamespace) {
  Json spec = BaseSpec();
  spec["annotations"].erase("io.kubernetes.cri.sandbox-namespace");
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_THAT(status.message(), HasSubstr("\"k8s.io/research-agent\""));
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "agents");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->namespace_, "agents");
}

TEST_F(PolicyTest, TamperedStoreFailsAndLeavesConfigUnchanged) {
  WriteSpec(BaseSpec());
  const std::string path = store_->PolicyPath(research_.hash());
  std::string bytes = ReadFile(path);
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] ^= 0x01;
  WriteFile(path, bytes);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(),
              HasSubstr("stockade: container ctr-1: policy "
                        "\"agents/research-agent\": policy file " +
                        path + " is corrupt"));
}

TEST_F(PolicyTest, MissingInitBinaryFails) {
  WriteSpec(BaseSpec());
  config_.init_binary = root_ + "/no-init";
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_THAT(status.message(), HasSubstr("stockade-init not found at"));
}

// Where the kernel has AppArmor the spec names the policy's profile, which
// the shim loads first when it is not loaded yet (here compiled only: this
// kernel has no AppArmor); a profile that cannot be loaded stops the create.
TEST_F(PolicyTest, AppArmorProfileIsLoadedAndNamedWhereEnabled) {
  WriteSpec(BaseSpec());
  config_.apparmor_enabled = true;
  config_.apparmor.profiles_file = root_ + "/aa-profiles";
  WriteFile(config_.apparmor.profiles_file, "");
  config_.apparmor.command = {"apparmor_parser", "-Q", "-K"};
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(Json::parse(Config())["process"]["apparmorProfile"],
            research_.apparmor().name());
}

TEST_F(PolicyTest, AnAppArmorProfileThatCannotBeLoadedFails) {
  WriteSpec(BaseSpec());
  config_.apparmor_enabled = true;
  config_.apparmor.profiles_file = root_ + "/aa-profiles";
  WriteFile(config_.apparmor.profiles_file, "");
  config_.apparmor.command = {"false"};
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("loading AppArmor profile " +
                                          research_.apparmor().name()));
  // Failed after the reference was recorded: it is gone again.
  EXPECT_TRUE(store::Store::Open(config_.store_root)->ListRefs()->empty());
}

TEST_F(PolicyTest, MalformedSpecFails) {
  WriteFile(bundle_ + "/config.json", "{not json");
  EXPECT_EQ(ExpectFailureUnchanged().code(),
            absl::StatusCode::kInvalidArgument);
  Json spec = BaseSpec();
  spec["process"]["args"] = Json::array();
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_THAT(status.message(), HasSubstr("no program to run"));
}

TEST_F(PolicyTest, SandboxGetsTheBuiltInPolicy) {
  Json spec = BaseSpec();
  spec["annotations"]["io.kubernetes.cri.container-type"] = "sandbox";
  spec["process"]["args"] = {"/pause"};
  WriteSpec(spec);
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_TRUE(applied->sandbox);
  EXPECT_FALSE(applied->pod_container);
  // Named after the pod's policy (messages), confined by the built-in one.
  EXPECT_EQ(applied->name, "research-agent");
  const v1::CompiledPolicy& p = applied->policy;
  EXPECT_NE(p.hash(), research_.hash());
  EXPECT_EQ(p.source().kind(), "Sandbox");
  EXPECT_THAT(p.effective().exec().allow(), ElementsAre("/pause"));
  EXPECT_TRUE(p.effective().filesystem().read_only_root());
  EXPECT_THAT(p.effective().filesystem().writable(), IsEmpty());
  EXPECT_THAT(p.effective().capabilities().add(), IsEmpty());
  EXPECT_EQ(p.effective().syscalls().baseline(), v1::SYSCALL_BASELINE_STRICT);
  EXPECT_EQ(p.effective().procfs(), v1::PROCFS_EXPOSURE_NONE);
  EXPECT_EQ(p.oci().pids_limit(), 8);
  for (const v1::OciRlimit& r : p.oci().rlimits()) {
    EXPECT_NE(r.type(), "RLIMIT_NPROC");
  }
  // The sandbox holds the pod's network namespace: the pod's egress rules.
  EXPECT_EQ(p.nftables(), research_.nftables());

  Json out = Json::parse(Config());
  EXPECT_EQ(out["process"]["args"],
            Json({"/.stockade/init", "--ruleset", "/.stockade/landlock.binpb",
                  "--seccomp", "/.stockade/seccomp.bpf", "--", "/pause"}));
  EXPECT_EQ(out["root"]["readonly"], true);
  EXPECT_FALSE(out["linux"].contains("seccomp"));
  EXPECT_EQ(ReadFile(bundle_ + "/stockade/seccomp.bpf"),
            *OciSeccompFilter::Build(p.seccomp_json())->ExportBpf());
  EXPECT_EQ(out["process"]["capabilities"]["effective"], Json::array());

  // Its egress rules go into the pod's network namespace.
  absl::StatusOr<EgressPlan> plan = applied->egress;
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->install);
}

TEST_F(PolicyTest, SandboxOfAPodWithoutPolicyFails) {
  Json spec = BaseSpec();
  spec["annotations"]["io.kubernetes.cri.container-type"] = "sandbox";
  spec["annotations"].erase("stockade.dev/policy");
  spec["process"]["args"] = {"/pause"};
  WriteSpec(spec);
  EXPECT_THAT(ExpectFailureUnchanged().message(),
              HasSubstr("names no policy (annotation stockade.dev/policy)"));
}

TEST_F(PolicyTest, HostNetworkFailsClosedForEnforcedEgress) {
  Json spec = BaseSpec();
  spec["linux"]["namespaces"] = Json::parse(R"([{"type": "pid"}])");
  WriteSpec(spec);
  absl::Status status = ExpectFailureUnchanged();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(),
              HasSubstr("uses the host's network (no network namespace)"));
  EXPECT_THAT(status.message(), HasSubstr("agents/research-agent"));
}

TEST_F(PolicyTest, ExecIsWrappedAndTightened) {
  WriteSpec(BaseSpec());
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(config_, bundle_, "k8s.io");
  ASSERT_TRUE(applied.ok()) << applied.status();
  const std::string process = R"({
    "args": ["sh", "-c", "id"],
    "env": ["A=1"],
    "cwd": "/",
    "terminal": true,
    "capabilities": {"bounding": ["CAP_SYS_ADMIN"],
                     "effective": ["CAP_SYS_ADMIN"]}
  })";
  absl::StatusOr<std::string> out = ApplyPolicyToExec(*applied, process);
  ASSERT_TRUE(out.ok()) << out.status();
  Json p = Json::parse(*out);
  EXPECT_EQ(
      p["args"],
      Json({"/.stockade/init", "--ruleset", "/.stockade/landlock.binpb",
            "--seccomp", "/.stockade/seccomp.bpf", "--", "sh", "-c", "id"}));
  EXPECT_EQ(p["env"], Json({"A=1"}));
  EXPECT_EQ(p["terminal"], true);
  EXPECT_EQ(p["noNewPrivileges"], true);
  EXPECT_EQ(p["capabilities"]["bounding"], Json::array());
  EXPECT_EQ(p["capabilities"]["effective"], Json::array());

  EXPECT_FALSE(ApplyPolicyToExec(*applied, "[1]").ok());
  EXPECT_FALSE(ApplyPolicyToExec(*applied, R"({"args": []})").ok());
}

TEST(WrapArgsTest, WrapsOnce) {
  const std::vector<std::string> wrapped =
      WrapArgs({"/bin/sh", "-c", "echo hi"}, false);
  EXPECT_THAT(wrapped, ElementsAre("/.stockade/init", "--ruleset",
                                   "/.stockade/landlock.binpb", "--", "/bin/sh",
                                   "-c", "echo hi"));
  EXPECT_EQ(WrapArgs(wrapped, false), wrapped);

  const std::vector<std::string> with_seccomp =
      WrapArgs({"/bin/sh", "-c", "echo hi"}, true);
  EXPECT_THAT(with_seccomp, ElementsAre("/.stockade/init", "--ruleset",
                                        "/.stockade/landlock.binpb",
                                        "--seccomp", "/.stockade/seccomp.bpf",
                                        "--", "/bin/sh", "-c", "echo hi"));
  EXPECT_EQ(WrapArgs(with_seccomp, true), with_seccomp);
}

TEST(WrapArgsTest, APrefixWithoutTheSeccompFilterIsWrappedAgain) {
  // An exec request cannot skip the filter by naming the init itself.
  const std::vector<std::string> sneaky = {"/.stockade/init", "--ruleset",
                                           "/.stockade/landlock.binpb", "--",
                                           "/bin/sh"};
  const std::vector<std::string> wrapped = WrapArgs(sneaky, true);
  ASSERT_EQ(wrapped.size(), 6 + sneaky.size());
  EXPECT_EQ(wrapped[3], "--seccomp");
}

}  // namespace
}  // namespace stockade::shim
