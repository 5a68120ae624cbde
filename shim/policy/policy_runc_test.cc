// The whole chain under a real runc: a busybox bundle rewritten by
// ApplyPolicyToBundle (read-only root, stockade-init bind-mounted and made
// the entrypoint, the Landlock ruleset mounted beside it), created with
// `runc create`, egress rules installed into its network namespace, started
// with `runc start`. Inside, the agent is PID 1 and writes only its writable
// path; the read-only root, Landlock and the exec allowlist each stop what
// they must.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "shim/policy/egress.h"
#include "shim/policy/policy.h"
#include "store/store.h"

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;

const std::string kNftHelper = std::string(STOCKADE_BIN_DIR) + "/stockade-nft";
using Json = nlohmann::ordered_json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const char kInit[] = STOCKADE_BIN_DIR "/stockade-init";
const char kBusybox[] = "/bin/busybox";

constexpr char kPolicy[] = R"(
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: runc-agent, namespace: tests}
spec:
  mode: Enforce
  filesystem:
    readOnlyRoot: true
    writable: [{path: /tmp/agent, sizeLimit: 1Mi}]
  exec:
    allow: [/bin/busybox]
  procfs: Minimal
  sysfs: None
  network:
    dns: true
    egress: [{cidrs: [203.0.113.0/24], ports: [{port: 443}]}]
  syscalls: {baseline: RuntimeDefault}
  processes: {max: 32}
)";

// What the agent runs: each line reports one attempt.
constexpr char kScript[] = R"(
echo pid=$$
echo data > /tmp/agent/ok; echo agent-write=$?
cat /tmp/agent/ok
touch /scratch/x; echo scratch-write=$?
touch /etc/x; echo root-write=$?
/opt/bb echo smuggled; echo exec-copy=$?
touch /.stockade/x; echo stockade-write=$?
echo args="$0" "$1" env=$AGENT_ENV
)";

std::pair<int, std::string> Sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class RuncTest : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "this test needs root";
    ASSERT_EQ(Sh("command -v runc").first, 0) << "runc is needed";
    ASSERT_EQ(access(kBusybox, X_OK), 0) << "busybox-static is needed";
    ASSERT_THAT(Sh(std::string("file -b ") + kBusybox).second,
                HasSubstr("statically linked"));
    std::string tmpl = "/tmp/stockade-runc-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    id_ = absl::StrCat("stockade-policy-", getpid());
    bundle_ = root_ + "/" + id_;
    const std::string rootfs = bundle_ + "/rootfs";
    // A busybox rootfs: one binary for every applet, plus a copy of it
    // elsewhere that the policy does not allow.
    const std::string setup = absl::StrCat(
        "set -e; mkdir -p ", rootfs, "/bin ", rootfs, "/opt ", rootfs, "/tmp ",
        rootfs, "/etc ", rootfs, "/proc ", rootfs, "/sys ", rootfs, "/dev; ",
        "cp ", kBusybox, " ", rootfs, "/bin/busybox; ",
        "for a in sh echo cat touch ls id; do ln -s busybox ", rootfs,
        "/bin/$a; done; cp ", kBusybox, " ", rootfs, "/opt/bb; ", "cd ",
        bundle_, " && runc spec");
    auto [rc, out] = Sh(setup);
    ASSERT_EQ(rc, 0) << out;

    Json spec = Json::parse(ReadFile(bundle_ + "/config.json"));
    spec["process"]["terminal"] = false;
    spec["process"]["args"] = {"/bin/sh", "-c", kScript, "first-arg",
                               "second-arg"};
    spec["process"]["env"].push_back("AGENT_ENV=kept as is");
    spec["root"]["readonly"] = false;
    spec["annotations"]["stockade.dev/policy"] = "runc-agent";
    // A writable volume the policy does not list: only Landlock stops it.
    spec["mounts"].push_back(Json::parse(
        R"({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=1m"]})"));
    std::ofstream(bundle_ + "/config.json") << spec.dump(2);

    compiler::DecodeResult decoded = compiler::DecodeManifests(kPolicy, "t");
    ASSERT_THAT(decoded.problems, IsEmpty());
    compiler::CompileResult compiled = compiler::CompileAgentPolicy(
        std::get<v1::AgentPolicy>(decoded.documents.at(0).object), {}, {});
    ASSERT_THAT(compiled.problems, IsEmpty());
    policy_ = *compiled.compiled;
    config_.store_root = root_ + "/store";
    config_.init_binary = kInit;
    config_.seccomp_cache_dir = root_ + "/seccomp-cache";
    absl::StatusOr<store::Store> store = store::Store::Open(config_.store_root);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE(store->Install(policy_).ok());
  }

  void TearDown() override {
    Sh(absl::StrCat(Runc(), "delete --force ", id_));
    const std::string cmd = "rm -rf '" + root_ + "'";
    EXPECT_EQ(system(cmd.c_str()), 0);
  }

  std::string Runc() const {
    return absl::StrCat("runc --root ", root_, "/runc-root ");
  }

  std::string root_, id_, bundle_;
  PolicyConfig config_;
  v1::CompiledPolicy policy_;
};

// Runs the bundle as the shim does: ApplyPolicyToBundle, runc create,
// AppliedPolicy.egress + InstallEgress (checked with nft inside the container's
// namespace), runc start; returns the container's stdout and stderr.
std::string RunConfined(RuncTest* t, AppliedPolicy* applied_out) {
  absl::StatusOr<AppliedPolicy> applied =
      ApplyPolicyToBundle(t->config_, t->bundle_, "tests");
  EXPECT_TRUE(applied.ok()) << applied.status();
  if (!applied.ok()) return "";
  *applied_out = *applied;

  // runc create, with the container's stdout and stderr on one pipe.
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const std::string pid_file = t->bundle_ + "/init.pid";
  pid_t runc = fork();
  if (runc == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    close(out[0]);
    close(out[1]);
    const std::string state = t->root_ + "/runc-root";
    execlp("runc", "runc", "--root", state.c_str(), "create", "--bundle",
           t->bundle_.c_str(), "--pid-file", pid_file.c_str(), t->id_.c_str(),
           nullptr);
    _exit(127);
  }
  close(out[1]);
  int status = 0;
  EXPECT_EQ(waitpid(runc, &status, 0), runc);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char buf[8192];
    ssize_t n = read(out[0], buf, sizeof(buf));
    close(out[0]);
    ADD_FAILURE() << "runc create failed: " << std::string(buf, n > 0 ? n : 0);
    return "";
  }
  int pid = 0;
  EXPECT_TRUE(
      absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(pid_file)), &pid));

  // Egress into the container's own network namespace, before it starts.
  absl::StatusOr<EgressPlan> plan = applied->egress;
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (plan.ok()) {
    EXPECT_TRUE(plan->install) << plan->reason;
    absl::Status egress =
        InstallEgress(pid, applied->policy.nftables(), kNftHelper);
    EXPECT_TRUE(egress.ok()) << egress;
    auto [nft_rc, nft] = Sh(absl::StrCat(
        "nsenter --net=/proc/", pid, "/ns/net nft list table inet stockade"));
    EXPECT_EQ(nft_rc, 0) << nft;
    EXPECT_THAT(nft, HasSubstr("policy drop"));
    EXPECT_THAT(nft, HasSubstr("203.0.113.0/24"));
  }

  auto [start_rc, start_out] = Sh(absl::StrCat(t->Runc(), "start ", t->id_));
  EXPECT_EQ(start_rc, 0) << start_out;

  // Read until the container exits (EOF), 60 s at most.
  std::string output;
  const time_t deadline = time(nullptr) + 60;
  for (;;) {
    struct pollfd p = {out[0], POLLIN, 0};
    if (poll(&p, 1, 1000) > 0) {
      char buf[4096];
      ssize_t n = read(out[0], buf, sizeof(buf));
      if (n <= 0) break;
      output.append(buf, n);
    }
    if (time(nullptr) > deadline) {
      ADD_FAILURE() << "container still running: " << output;
      break;
    }
  }
  close(out[0]);
  return output;
}

TEST_F(RuncTest, ConfinedBusyboxUnderReadOnlyRoot) {
  AppliedPolicy applied;
  const std::string output = RunConfined(this, &applied);
  SCOPED_TRACE("container output:\n" + output);
  EXPECT_EQ(applied.policy.hash(), policy_.hash());

  // stockade-init exec'd the agent: it is PID 1, argv and env unchanged.
  EXPECT_THAT(output, HasSubstr("pid=1\n"));
  EXPECT_THAT(output, HasSubstr("args=first-arg second-arg env=kept as is\n"));
  // The writable path works.
  EXPECT_THAT(output, HasSubstr("agent-write=0\ndata\n"));
  // A writable mount the policy does not list: Landlock (EACCES).
  EXPECT_THAT(output, HasSubstr("touch: /scratch/x: Permission denied\n"
                                "scratch-write=1\n"));
  // The root: read-only (EROFS) before Landlock is even asked.
  EXPECT_THAT(output, HasSubstr("touch: /etc/x: Read-only file system\n"
                                "root-write=1\n"));
  // A copy of the allowed binary elsewhere cannot be executed.
  EXPECT_THAT(output, HasSubstr("/opt/bb: Permission denied"));
  EXPECT_THAT(output, HasSubstr("exec-copy=126\n"));
  EXPECT_THAT(output, Not(HasSubstr("smuggled")));
  // stockade-init's directory is a read-only mount.
  EXPECT_THAT(output, HasSubstr("touch: /.stockade/x: Read-only file system\n"
                                "stockade-write=1\n"));
  EXPECT_THAT(output, Not(HasSubstr("stockade-init:")));

  // runc created the /.stockade mountpoint before making the root read-only.
  struct stat st;
  EXPECT_EQ(stat((bundle_ + "/rootfs/.stockade").c_str(), &st), 0);
}

// The built-in sandbox policy under runc: stockade-init and the entrypoint
// start under its Strict seccomp baseline, nothing else can be executed,
// nothing written.
TEST_F(RuncTest, SandboxPolicyRunsItsEntrypointOnly) {
  Json spec = Json::parse(ReadFile(bundle_ + "/config.json"));
  spec["annotations"]["io.kubernetes.cri.container-type"] = "sandbox";
  spec["annotations"]["io.kubernetes.cri.sandbox-namespace"] = "tests";
  spec["process"]["args"] = {
      "/bin/busybox", "sh", "-c",
      "echo sandbox-up; /opt/bb true; echo exec=$?; "
      "echo x > /scratch/x; echo write=$?; cat /proc/self/status >/dev/null; "
      "echo proc=$?"};
  std::ofstream(bundle_ + "/config.json") << spec.dump(2);
  AppliedPolicy applied;
  const std::string output = RunConfined(this, &applied);
  SCOPED_TRACE("container output:\n" + output);
  EXPECT_TRUE(applied.sandbox);
  EXPECT_EQ(applied.policy.effective().syscalls().baseline(),
            v1::SYSCALL_BASELINE_STRICT);
  EXPECT_THAT(output, HasSubstr("sandbox-up\n"));
  EXPECT_THAT(output, HasSubstr("exec=126\n"));
  EXPECT_THAT(output, HasSubstr("write=1\n"));
  EXPECT_THAT(output, HasSubstr("proc=1\n"));
  EXPECT_THAT(output, Not(HasSubstr("stockade-init:")));
}

}  // namespace
}  // namespace stockade::shim
