// The attack matrix, each attack run inside a real container created by a
// real containerd through containerd-shim-stockade-v1, and fail-closed
// creation. Each check names the layer expected to stop the attack.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/confined_bed.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/netns.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: NAME, namespace: NS}
spec:
  filesystem:
    writable: [{path: /tmp/agent, sizeLimit: 1Mi}]
  exec:
    allow: [/bin/busybox, /bin/probe]
  network:
    egress: [{cidrs: [127.0.0.1/32], ports: [{port: 8080}]}]
  processes: {max: 32}
)";

// Egress to one test host (NetnsPair subnet 91: the remote side answers on
// 169.254.91.2 and .3), port 8080 only.
constexpr char kEgressPolicy[] = R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: egress, namespace: NS}
spec:
  exec:
    allow: [/bin/busybox, /bin/probe]
  network:
    egress: [{cidrs: [169.254.91.2/32], ports: [{port: 8080}]}]
)";

class AttackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(geteuid(), 0) << "the containerd tests need root";
    auto bed = ConfinedBed::Start("attack");
    ASSERT_TRUE(bed.ok()) << bed.status();
    bed_ = bed->release();
    for (const char* name : {"agent", "tampered"}) {
      auto hash = bed_->Install(absl::StrReplaceAll(kPolicy, {{"NAME", name}}));
      ASSERT_TRUE(hash.ok()) << hash.status();
      if (std::string(name) == "tampered")
        tampered_hash_ = new std::string(*hash);
    }
    ASSERT_TRUE(bed_->Install(kEgressPolicy).ok());
  }

  static void TearDownTestSuite() {
    delete bed_;
    bed_ = nullptr;
  }

  CommandResult Run(const std::string& id, std::vector<std::string> cmd,
                    const std::string& policy = "agent", bool detach = false) {
    RunSpec spec;
    spec.id = id;
    spec.cmd = std::move(cmd);
    spec.detach = detach;
    return bed_->Run(spec, policy);
  }

  static inline ConfinedBed* bed_ = nullptr;
  static inline std::string* tampered_hash_ = nullptr;
};

TEST_F(AttackTest, ConfinedContainerRunsAndExitCodesPropagate) {
  CommandResult r = Run("hello", {"/bin/busybox", "echo", "hello"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(r.out, "hello\n");
  EXPECT_EQ(Run("exit3", {"/bin/sh", "-c", "exit 3"}).exit_code, 3);
}

TEST_F(AttackTest, WritesOutsideWritablePathsFail) {
  // OCI read-only root (EROFS); Landlock would answer EACCES beneath it.
  CommandResult r = Run("write", {"/bin/probe", "write:/etc/passwd",
                                  "write:/tmp/x", "write:/tmp/agent/ok"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("write:/etc/passwd: EROFS"));
  EXPECT_THAT(r.out, HasSubstr("write:/tmp/x: EROFS"));
  EXPECT_THAT(r.out, HasSubstr("write:/tmp/agent/ok: OK"));
}

TEST_F(AttackTest, WritableTmpfsStopsAtSizeLimit) {
  // OCI tmpfs size=1Mi.
  CommandResult r =
      Run("fill", {"/bin/sh", "-c",
                   "dd if=/dev/zero of=/tmp/agent/big bs=1024 count=4096"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out + r.err, HasSubstr("No space left on device"));
}

TEST_F(AttackTest, ExecOfAnythingNotAllowedFails) {
  // Landlock EXECUTE (AppArmor ix where the kernel has it).
  CommandResult r =
      Run("exec", {"/bin/probe", "exec:/usr/bin/pip", "exec:/bin/busybox"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("exec:/usr/bin/pip: EACCES"));
  EXPECT_THAT(r.out, HasSubstr("exec:/bin/busybox: OK"));
}

TEST_F(AttackTest, ForkBombIsCappedByThePidsLimit) {
  // OCI pids limit and RLIMIT_NPROC (processes.max 32).
  CommandResult r = Run("forkbomb", {"/bin/sh", "-c",
                                     "i=0; while [ $i -lt 100 ]; do sleep 3 & "
                                     "i=$((i+1)); done; wait; echo survived"});
  EXPECT_THAT(r.out + r.err, HasSubstr("can't fork"));
  // The host is fine and the next container starts normally.
  EXPECT_TRUE(Run("after-bomb", {"/bin/busybox", "true"}).ok());
}

TEST_F(AttackTest, DangerousSyscallsFailWithEperm) {
  // seccomp (RuntimeDefault), no capabilities.
  CommandResult r = Run("syscalls", {"/bin/probe", "unshare", "mount", "ptrace",
                                     "keyctl", "add_key", "bpf", "io_uring",
                                     "raw_socket", "packet_socket"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  for (const char* call : {"unshare", "mount", "ptrace", "keyctl", "add_key",
                           "bpf", "io_uring", "raw_socket", "packet_socket"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat(call, ": EPERM"))) << r.out;
  }
}

TEST_F(AttackTest, KernelInterfacesAreHidden) {
  // OCI maskedPaths / readonlyPaths (procfs Minimal, sysfs None).
  CommandResult r =
      Run("kernel", {"/bin/probe", "write:/proc/sys/kernel/hostname",
                     "write:/proc/sysrq-trigger", "read:/sys/firmware",
                     "read:/sys/kernel/mm"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("write:/proc/sys/kernel/hostname: EROFS"));
  EXPECT_THAT(r.out,
              ::testing::Not(HasSubstr("write:/proc/sysrq-trigger: OK")));
  EXPECT_THAT(r.out, HasSubstr("read:/sys/firmware: ENOENT"));
  EXPECT_THAT(r.out, HasSubstr("read:/sys/kernel/mm: ENOENT"));
}

TEST_F(AttackTest, TcpConnectOnlyToAllowedPorts) {
  // Landlock TCP connect: port 8080 is allowed (nothing listens: refused),
  // 9090 is not (EACCES before any packet leaves).
  CommandResult r = Run("connect", {"/bin/probe", "connect:127.0.0.1:8080",
                                    "connect:127.0.0.1:9090"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("connect:127.0.0.1:8080: ECONNREFUSED"));
  EXPECT_THAT(r.out, HasSubstr("connect:127.0.0.1:9090: EACCES"));
}

TEST_F(AttackTest, EgressRulesAreInstalledInTheContainersNetns) {
  ASSERT_TRUE(
      Run("netns", {"/bin/busybox", "sleep", "30"}, "agent", true).ok());
  CommandResult ps = bed_->containerd().Ctr({"task", "ps", "netns"});
  ASSERT_TRUE(ps.ok()) << ps.ToString();
  std::vector<std::string> lines =
      absl::StrSplit(ps.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << ps.out;
  const std::string pid = std::vector<std::string>(
      absl::StrSplit(lines[1], ' ', absl::SkipEmpty()))[0];
  CommandResult nft = RunCommand(
      {"nsenter", "-t", pid, "-n", "nft", "list", "table", "inet", "stockade"});
  EXPECT_TRUE(nft.ok()) << nft.ToString();
  EXPECT_THAT(nft.out, HasSubstr("policy drop"));
  EXPECT_THAT(nft.out, HasSubstr("127.0.0.1"));
  bed_->containerd().Ctr({"task", "kill", "-s", "SIGKILL", "netns"});
  bed_->containerd().Ctr({"task", "delete", "netns"}, absl::Seconds(20));
  bed_->containerd().Ctr({"container", "delete", "netns"});
}

// Data exfiltration to a host the policy does not name: the container (in a
// network namespace wired by veth to a test host) reaches the allowed
// host:port; the same port on another address of the host is dropped by the
// nftables rules the shim installed; another port is refused by Landlock.
TEST_F(AttackTest, EgressToAnotherHostOrPortIsBlocked) {
  NetnsPair::Options options;
  options.subnet = 91;
  absl::StatusOr<std::unique_ptr<NetnsPair>> pair = NetnsPair::Create(options);
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE((*pair)->Listen({8080, 8081}).ok());
  const std::vector<std::string> hosts = (*pair)->remote_ips();
  ASSERT_GE(hosts.size(), 2u);
  ASSERT_EQ(hosts[0], "169.254.91.2");
  RunSpec spec;
  spec.id = "exfil";
  spec.cmd = {"/bin/probe", "connect:" + hosts[0] + ":8080",
              "connect:" + hosts[1] + ":8080", "connect:" + hosts[0] + ":8081"};
  spec.netns_path = (*pair)->client_path();
  CommandResult r = bed_->Run(spec, "egress");
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("connect:" + hosts[0] + ":8080: OK"));
  // Landlock allows port 8080 (the first line): only the nftables rules can
  // stop this one. They drop the SYN silently, so the probe's connect times
  // out, and nothing reaches the host.
  EXPECT_THAT(r.out, HasSubstr("connect:" + hosts[1] + ":8080: ETIMEDOUT"));
  EXPECT_THAT(r.out, HasSubstr("connect:" + hosts[0] + ":8081: EACCES"));
  EXPECT_EQ((*pair)->Connections(8080), 1);
  EXPECT_EQ((*pair)->Connections(8081), 0);
}

TEST_F(AttackTest, NoPolicyAnnotationFailsClosed) {
  CommandResult r = Run("nopolicy", {"/bin/busybox", "true"}, "");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("names no policy"));
  EXPECT_THAT(bed_->containerd().Tasks(),
              ::testing::Not(::testing::Contains("nopolicy")));
}

TEST_F(AttackTest, UnknownPolicyFailsClosed) {
  CommandResult r = Run("unknown", {"/bin/busybox", "true"}, "missing");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("missing"));
  EXPECT_THAT(bed_->containerd().Tasks(),
              ::testing::Not(::testing::Contains("unknown")));
}

TEST_F(AttackTest, TamperedStoreFailsClosed) {
  const std::string file =
      bed_->store() + "/v1/policies/" + *tampered_hash_ + ".binpb";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f);
  f.seekg(20);
  char c = 0;
  f.read(&c, 1);
  f.seekp(20);
  c ^= 0x5a;
  f.write(&c, 1);
  f.close();
  CommandResult r = Run("tampered", {"/bin/busybox", "true"}, "tampered");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("tampered"));
  EXPECT_THAT(bed_->containerd().Tasks(),
              ::testing::Not(::testing::Contains("tampered")));
}

}  // namespace
}  // namespace stockade::testing
