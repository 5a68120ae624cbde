#include "operator/compiler/landlock/landlock.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A defaulted effective policy, as merge produces it, plus `extra`.
EffectivePolicy Policy(const std::string& extra = "") {
  EffectivePolicy p;
  const std::string text = R"pb(
    mode: MODE_ENFORCE
    filesystem { read_only_root: true }
    procfs: PROCFS_EXPOSURE_MINIMAL
    sysfs: SYSFS_EXPOSURE_NONE
    network { dns: false raw_sockets: false }
    syscalls {
      baseline: SYSCALL_BASELINE_RUNTIME_DEFAULT
      default_action: SYSCALL_ACTION_ERRNO
    }
    processes { max: 128 }
  )pb";
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &p));
  EffectivePolicy more;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(extra, &more));
  p.MergeFrom(more);
  return p;
}

std::vector<const v1::LandlockPathRule*> RulesFor(const v1::LandlockRuleset& rs,
                                                  const std::string& path) {
  std::vector<const v1::LandlockPathRule*> out;
  for (const auto& r : rs.path_rules()) {
    if (r.path() == path) out.push_back(&r);
  }
  return out;
}

std::vector<int> Access(const v1::LandlockPathRule& r) {
  return std::vector<int>(r.access().begin(), r.access().end());
}

bool AnyNoteContains(const std::vector<std::string>& notes,
                     const std::string& text) {
  for (const auto& n : notes) {
    if (n.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(CompileLandlockTest, HandlesEveryFsRightUpToAbi5AndScopes) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(Policy(), &notes);
  ASSERT_EQ(rs.handled_fs_size(), 16);
  EXPECT_EQ(rs.handled_fs(0), v1::LANDLOCK_FS_EXECUTE);
  EXPECT_EQ(rs.handled_fs(15), v1::LANDLOCK_FS_IOCTL_DEV);
  EXPECT_TRUE(rs.scope_abstract_unix_socket());
  EXPECT_TRUE(rs.scope_signal());
  EXPECT_TRUE(rs.restrict_tcp_bind());
  EXPECT_EQ(rs.min_abi(), 6);
}

TEST(CompileLandlockTest, ReadRootExceptDeniedAndHiddenSysfs) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(filesystem { deny: "/etc/shadow" deny: "/run/secrets" })pb"),
      &notes);
  auto root = RulesFor(rs, "/");
  ASSERT_EQ(root.size(), 1u);  // read-only root: no write rule on /
  EXPECT_THAT(Access(*root[0]),
              ElementsAre(v1::LANDLOCK_FS_READ_FILE, v1::LANDLOCK_FS_READ_DIR));
  // procfs Minimal stays readable; sysfs None is left to the OCI mask, so
  // "/" stays listable.
  EXPECT_THAT(root[0]->except(), ElementsAre("/etc/shadow", "/run/secrets"));
  EXPECT_FALSE(root[0]->with_interpreter());
}

TEST(CompileLandlockTest, ProcfsNoneExceptsProc) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs =
      CompileLandlock(Policy(R"pb(procfs: PROCFS_EXPOSURE_NONE
                                  sysfs: SYSFS_EXPOSURE_READ_ONLY
                                  filesystem { deny: "/proc/kcore" })pb"),
                      &notes);
  // /proc/kcore is inside /proc, which is excepted whole.
  EXPECT_THAT(RulesFor(rs, "/")[0]->except(), ElementsAre("/proc"));
}

TEST(CompileLandlockTest, WritablePathsGetWriteAndReadExceptNested) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(filesystem {
                    writable { path: "/tmp" size_limit: "64Mi" }
                    writable { path: "/work" size_limit: "64Mi" }
                    read_only: "/work/config"
                    deny: "/work/secret"
                  })pb"),
      &notes);
  auto work = RulesFor(rs, "/work");
  ASSERT_EQ(work.size(), 1u);
  EXPECT_THAT(work[0]->except(), ElementsAre("/work/config", "/work/secret"));
  std::vector<int> access = Access(*work[0]);
  // Every right except EXECUTE and IOCTL_DEV.
  EXPECT_EQ(access.size(), 14u);
  EXPECT_THAT(access, Not(::testing::Contains(v1::LANDLOCK_FS_EXECUTE)));
  EXPECT_THAT(access, Not(::testing::Contains(v1::LANDLOCK_FS_IOCTL_DEV)));
  EXPECT_THAT(access, ::testing::Contains(v1::LANDLOCK_FS_REFER));
  EXPECT_THAT(access, ::testing::Contains(v1::LANDLOCK_FS_TRUNCATE));
  EXPECT_THAT(RulesFor(rs, "/tmp")[0]->except(), IsEmpty());
  EXPECT_TRUE(AnyNoteContains(notes, "/work holds read-only or denied paths"));
  EXPECT_FALSE(AnyNoteContains(notes, "/tmp holds"));
}

TEST(CompileLandlockTest, DenyInsideVisibleProcIsLeftToOci) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(procfs: PROCFS_EXPOSURE_FULL
                  filesystem { deny: "/proc/kcore" deny: "/etc/shadow" })pb"),
      &notes);
  EXPECT_THAT(RulesFor(rs, "/")[0]->except(), ElementsAre("/etc/shadow"));
  EXPECT_TRUE(AnyNoteContains(notes, "deny /proc/kcore is not enforced"));
}

TEST(CompileLandlockTest, WritableRootExceptsReadOnlyDeniedProcSys) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(Policy(R"pb(filesystem {
                                                         read_only_root: false
                                                         read_only: "/etc"
                                                         deny: "/root"
                                                       })pb"),
                                           &notes);
  auto root = RulesFor(rs, "/");
  ASSERT_EQ(root.size(), 2u);
  EXPECT_THAT(root[0]->except(), ElementsAre("/root"));  // read
  EXPECT_THAT(root[1]->except(), ElementsAre("/etc", "/proc", "/root", "/sys"));
  EXPECT_THAT(Access(*root[1]),
              Not(::testing::Contains(v1::LANDLOCK_FS_READ_FILE)));
  EXPECT_THAT(Access(*root[1]),
              ::testing::Contains(v1::LANDLOCK_FS_WRITE_FILE));
}

TEST(CompileLandlockTest, ExecAllowGetsExecuteWithInterpreter) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(exec { allow: "/opt/tools/" allow: "/usr/bin/python3" })pb"),
      &notes);
  auto py = RulesFor(rs, "/usr/bin/python3");
  ASSERT_EQ(py.size(), 1u);
  EXPECT_THAT(Access(*py[0]),
              ElementsAre(v1::LANDLOCK_FS_EXECUTE, v1::LANDLOCK_FS_READ_FILE));
  EXPECT_TRUE(py[0]->with_interpreter());
  auto dir = RulesFor(rs, "/opt/tools");  // trailing "/" dropped
  ASSERT_EQ(dir.size(), 1u);
  EXPECT_THAT(Access(*dir[0]), ::testing::Contains(v1::LANDLOCK_FS_EXECUTE));
  // Nothing else may execute.
  for (const auto& r : rs.path_rules()) {
    if (r.path() == "/usr/bin/python3" || r.path() == "/opt/tools") continue;
    EXPECT_THAT(Access(r), Not(::testing::Contains(v1::LANDLOCK_FS_EXECUTE)))
        << r.path();
  }
}

TEST(CompileLandlockTest, ExecInsideDeniedPathIsNoted) {
  std::vector<std::string> notes;
  CompileLandlock(Policy(R"pb(filesystem { deny: "/opt" }
                              exec { allow: "/opt/x" })pb"),
                  &notes);
  EXPECT_TRUE(AnyNoteContains(notes, "exec.allow /opt/x lies in denied"));
}

TEST(CompileLandlockTest, DeviceRules) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(Policy(), &notes);
  EXPECT_THAT(Access(*RulesFor(rs, "/dev/null")[0]),
              ElementsAre(v1::LANDLOCK_FS_WRITE_FILE, v1::LANDLOCK_FS_READ_FILE,
                          v1::LANDLOCK_FS_TRUNCATE));
  EXPECT_THAT(Access(*RulesFor(rs, "/dev/tty")[0]),
              ::testing::Contains(v1::LANDLOCK_FS_IOCTL_DEV));
  EXPECT_THAT(Access(*RulesFor(rs, "/dev/pts")[0]),
              ::testing::Contains(v1::LANDLOCK_FS_IOCTL_DEV));
  EXPECT_THAT(Access(*RulesFor(rs, "/dev/shm")[0]),
              ::testing::Contains(v1::LANDLOCK_FS_MAKE_REG));
  EXPECT_THAT(Access(*RulesFor(rs, "/dev/zero")[0]),
              Not(::testing::Contains(v1::LANDLOCK_FS_IOCTL_DEV)));
  for (const char* dev : {"/dev/full", "/dev/random", "/dev/urandom"}) {
    EXPECT_EQ(RulesFor(rs, dev).size(), 1u) << dev;
  }
  // A denied device is not granted.
  rs =
      CompileLandlock(Policy(R"pb(filesystem { deny: "/dev/shm" })pb"), &notes);
  EXPECT_THAT(RulesFor(rs, "/dev/shm"), IsEmpty());
}

TEST(CompileLandlockTest, RulesSortedByPath) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(filesystem { writable { path: "/a" } }
                  exec { allow: "/usr/bin/z" allow: "/bin/b" })pb"),
      &notes);
  for (int i = 1; i < rs.path_rules_size(); ++i) {
    EXPECT_LE(rs.path_rules(i - 1).path(), rs.path_rules(i).path());
  }
}

TEST(CompileLandlockTest, Deterministic) {
  const std::string extra = R"pb(
    filesystem {
      writable { path: "/tmp" }
      deny: "/etc/shadow"
    }
    exec { allow: "/usr/bin/python3" }
    network {
      dns: true
      egress {
        cidrs: "10.0.0.0/8"
        ports { port: 443 protocol: PROTOCOL_TCP }
      }
    }
  )pb";
  std::vector<std::string> n1, n2;
  std::string a, b;
  ASSERT_TRUE(CompileLandlock(Policy(extra), &n1).SerializeToString(&a));
  ASSERT_TRUE(CompileLandlock(Policy(extra), &n2).SerializeToString(&b));
  EXPECT_EQ(a, b);
  EXPECT_EQ(n1, n2);
}

TEST(CompileLandlockTest, ConnectPortsFromEgressAndDns) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(
        network {
          dns: true
          egress {
            cidrs: "10.0.0.0/8"
            ports { port: 8000 end_port: 8002 protocol: PROTOCOL_TCP }
            ports { port: 443 protocol: PROTOCOL_TCP }
            ports { port: 5000 protocol: PROTOCOL_UDP }
          }
          egress {
            cidrs: "2001:db8::/32"
            ports { port: 443 protocol: PROTOCOL_TCP }
          }
        }
      )pb"),
      &notes);
  EXPECT_TRUE(rs.restrict_tcp_connect());
  EXPECT_THAT(rs.connect_ports(), ElementsAre(53, 443, 8000, 8001, 8002));
  EXPECT_TRUE(AnyNoteContains(notes, "UDP cannot be restricted"));
  EXPECT_TRUE(AnyNoteContains(
      notes, "destination addresses are enforced by nftables, not Landlock"));
  EXPECT_TRUE(AnyNoteContains(notes, "not even port 0"));
}

TEST(CompileLandlockTest, NoEgressDeniesEveryConnect) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(Policy(), &notes);
  EXPECT_TRUE(rs.restrict_tcp_connect());
  EXPECT_THAT(rs.connect_ports(), IsEmpty());
  EXPECT_FALSE(AnyNoteContains(notes, "UDP"));
  EXPECT_FALSE(AnyNoteContains(notes, "destination addresses"));
}

TEST(CompileLandlockTest, RuleWithoutPortsCannotRestrictConnect) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(network { egress { cidrs: "10.1.2.0/24" } })pb"), &notes);
  EXPECT_FALSE(rs.restrict_tcp_connect());
  EXPECT_THAT(rs.connect_ports(), IsEmpty());
  EXPECT_TRUE(AnyNoteContains(notes, "allows every port"));
  EXPECT_EQ(rs.min_abi(), 6);
}

TEST(CompileLandlockTest, TooManyPortsCannotRestrictConnect) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs = CompileLandlock(
      Policy(R"pb(
        network {
          egress {
            cidrs: "10.0.0.0/8"
            ports { port: 1000 end_port: 2024 protocol: PROTOCOL_TCP }
          }
        }
      )pb"),
      &notes);
  EXPECT_FALSE(rs.restrict_tcp_connect());
  EXPECT_THAT(rs.connect_ports(), IsEmpty());
  EXPECT_TRUE(AnyNoteContains(notes, "1025 TCP ports"));
  EXPECT_TRUE(AnyNoteContains(notes, "nftables still enforces"));

  // Exactly 1024 still fits.
  notes.clear();
  rs = CompileLandlock(
      Policy(R"pb(
        network {
          egress {
            cidrs: "10.0.0.0/8"
            ports { port: 1000 end_port: 2023 protocol: PROTOCOL_TCP }
          }
        }
      )pb"),
      &notes);
  EXPECT_TRUE(rs.restrict_tcp_connect());
  EXPECT_EQ(rs.connect_ports_size(), 1024);
}

TEST(CompileLandlockTest, ComplainModeAppliesNothing) {
  std::vector<std::string> notes;
  v1::LandlockRuleset rs =
      CompileLandlock(Policy(R"pb(mode: MODE_COMPLAIN)pb"), &notes);
  EXPECT_EQ(rs.handled_fs_size(), 0);
  EXPECT_EQ(rs.path_rules_size(), 0);
  EXPECT_FALSE(rs.restrict_tcp_connect());
  EXPECT_EQ(rs.min_abi(), 0);
  EXPECT_TRUE(AnyNoteContains(notes, "no complain mode"));
}

}  // namespace
}  // namespace stockade::compiler
