#include "operator/compiler/oci/oci.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsSupersetOf;
using ::testing::Not;

// An effective policy as merge.h produces it: every field set.
EffectivePolicy Policy(const std::string& extra = "") {
  EffectivePolicy p;
  const std::string text = R"pb(
    mode: MODE_ENFORCE
    filesystem {
      read_only_root: true
      writable { path: "/tmp/agent" size_limit: "64Mi" }
    }
    exec { allow: "/usr/bin/python3" }
    procfs: PROCFS_EXPOSURE_MINIMAL
    sysfs: SYSFS_EXPOSURE_NONE
    network { dns: false raw_sockets: false }
    syscalls {
      baseline: SYSCALL_BASELINE_RUNTIME_DEFAULT
      default_action: SYSCALL_ACTION_ERRNO
    }
    processes { max: 64 }
  )pb";
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &p));
  if (!extra.empty()) {
    EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(extra, &p));
  }
  return p;
}

std::vector<std::string> Strings(
    const google::protobuf::RepeatedPtrField<std::string>& r) {
  return {r.begin(), r.end()};
}

bool IsSorted(const std::vector<std::string>& v) {
  for (size_t i = 1; i < v.size(); ++i) {
    if (!(v[i - 1] < v[i])) return false;
  }
  return true;
}

TEST(OciTest, ReadonlyRootFollowsPolicy) {
  EXPECT_TRUE(CompileOciChanges(Policy()).readonly_root());
  EffectivePolicy p = Policy();
  p.mutable_filesystem()->set_read_only_root(false);
  EXPECT_FALSE(CompileOciChanges(p).readonly_root());
}

TEST(OciTest, OneTmpfsPerWritablePath) {
  EffectivePolicy p = Policy(R"pb(
    filesystem { writable { path: "/var/cache/agent" size_limit: "1Gi" } }
  )pb");
  const auto oci = CompileOciChanges(p);
  ASSERT_EQ(oci.mounts_size(), 2);
  EXPECT_EQ(oci.mounts(0).destination(), "/tmp/agent");
  EXPECT_EQ(oci.mounts(0).type(), "tmpfs");
  EXPECT_EQ(oci.mounts(0).source(), "tmpfs");
  EXPECT_THAT(
      Strings(oci.mounts(0).options()),
      ElementsAre("nosuid", "nodev", "noexec", "size=67108864", "mode=1777"));
  EXPECT_EQ(oci.mounts(1).destination(), "/var/cache/agent");
  EXPECT_THAT(Strings(oci.mounts(1).options()), Contains("size=1073741824"));
}

TEST(OciTest, TmpfsIsExecOnlyWhereExecAllowNeedsIt) {
  // Writable directory beneath an allowed directory.
  EffectivePolicy p = Policy(R"pb(
    filesystem { writable { path: "/opt/tools/cache" size_limit: "1Mi" } }
    exec { allow: "/opt/tools/" }
  )pb");
  auto oci = CompileOciChanges(p);
  ASSERT_EQ(oci.mounts_size(), 2);
  EXPECT_EQ(oci.mounts(0).destination(), "/opt/tools/cache");
  EXPECT_THAT(Strings(oci.mounts(0).options()), Not(Contains("noexec")));
  EXPECT_THAT(Strings(oci.mounts(1).options()), Contains("noexec"));

  // An allowed executable beneath the writable directory.
  p = Policy(R"pb(exec { allow: "/tmp/agent/venv/bin/python" })pb");
  oci = CompileOciChanges(p);
  EXPECT_THAT(Strings(oci.mounts(0).options()), Not(Contains("noexec")));

  // A sibling with a common prefix does not count.
  p = Policy(R"pb(exec { allow: "/tmp/agent2/" allow: "/tmp/agentx" })pb");
  oci = CompileOciChanges(p);
  EXPECT_THAT(Strings(oci.mounts(0).options()), Contains("noexec"));

  // An allowed file (no trailing "/") above the writable path does not count.
  p = Policy(R"pb(exec { allow: "/tmp" })pb");
  oci = CompileOciChanges(p);
  EXPECT_THAT(Strings(oci.mounts(0).options()), Contains("noexec"));
}

TEST(OciTest, ZeroSizeBecomesReadOnlyTmpfs) {
  EffectivePolicy p = Policy();
  p.mutable_filesystem()->mutable_writable(0)->set_size_limit("0");
  const auto opts = Strings(CompileOciChanges(p).mounts(0).options());
  EXPECT_THAT(opts, Contains("ro"));
  EXPECT_THAT(opts, Not(Contains("size=0")));
}

TEST(OciTest, MaskedPathsMinimal) {
  const auto masked = Strings(CompileOciChanges(Policy()).masked_paths());
  EXPECT_TRUE(IsSorted(masked)) << absl::StrJoin(masked, " ");
  EXPECT_THAT(
      masked,
      IsSupersetOf({"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list",
                    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                    "/sys/firmware", "/sys/devices/virtual/powercap"}));
  EXPECT_THAT(masked, IsSupersetOf({"/proc/kallsyms", "/proc/modules",
                                    "/proc/interrupts", "/proc/slabinfo",
                                    "/proc/vmallocinfo", "/proc/zoneinfo",
                                    "/proc/iomem", "/proc/ioports",
                                    "/proc/config.gz", "/proc/cmdline"}));
  // What runtimes read stays visible; sysctls stay read-only, not masked.
  for (const char* kept : {"/proc/meminfo", "/proc/cpuinfo", "/proc/stat",
                           "/proc/sys", "/proc/net", "/proc/self"}) {
    EXPECT_THAT(masked, Not(Contains(kept)));
  }
  // sysfs None.
  EXPECT_THAT(masked, Contains("/sys"));
}

TEST(OciTest, MaskedPathsFull) {
  const auto masked = Strings(
      CompileOciChanges(Policy("procfs: PROCFS_EXPOSURE_FULL")).masked_paths());
  EXPECT_THAT(masked, Contains("/proc/kcore"));
  EXPECT_THAT(masked, Not(Contains("/proc/kallsyms")));
  EXPECT_THAT(masked, Not(Contains("/proc/cmdline")));
}

TEST(OciTest, MaskedPathsNone) {
  const auto masked = Strings(
      CompileOciChanges(Policy("procfs: PROCFS_EXPOSURE_NONE")).masked_paths());
  EXPECT_TRUE(IsSorted(masked));
  EXPECT_THAT(masked,
              IsSupersetOf({"/proc/kallsyms", "/proc/meminfo", "/proc/cpuinfo",
                            "/proc/sys/vm", "/proc/sys/net", "/proc/version"}));
  // runc reads /proc/sys/kernel/cap_last_cap after masking.
  EXPECT_THAT(masked, Not(Contains("/proc/sys")));
  EXPECT_THAT(masked, Not(Contains("/proc/sys/kernel")));
}

TEST(OciTest, SysfsReadOnly) {
  const auto oci = CompileOciChanges(Policy("sysfs: SYSFS_EXPOSURE_READ_ONLY"));
  EXPECT_THAT(Strings(oci.masked_paths()), Not(Contains("/sys")));
  EXPECT_THAT(Strings(oci.masked_paths()),
              IsSupersetOf({"/sys/firmware", "/sys/kernel/security"}));
  EXPECT_THAT(Strings(oci.readonly_paths()), Contains("/sys"));
  EXPECT_THAT(Strings(CompileOciChanges(Policy()).readonly_paths()),
              Not(Contains("/sys")));
}

TEST(OciTest, DeniedPathsAreMasked) {
  const auto oci = CompileOciChanges(Policy(R"pb(
    filesystem { deny: "/etc/shadow" deny: "/var/run/secrets" }
  )pb"));
  const auto masked = Strings(oci.masked_paths());
  EXPECT_TRUE(IsSorted(masked));
  EXPECT_THAT(masked, IsSupersetOf({"/etc/shadow", "/var/run/secrets"}));
}

TEST(OciTest, ReadonlyPaths) {
  const auto oci = CompileOciChanges(Policy(R"pb(
    filesystem { read_only: "/etc" read_only: "/srv/data" }
  )pb"));
  const auto ro = Strings(oci.readonly_paths());
  EXPECT_THAT(ro, ElementsAre("/etc", "/proc/bus", "/proc/fs", "/proc/irq",
                              "/proc/sys", "/proc/sysrq-trigger", "/srv/data"));
}

TEST(OciTest, CapabilitiesPrefixedAndSorted) {
  EXPECT_TRUE(CompileOciChanges(Policy()).capabilities().empty());
  const auto oci = CompileOciChanges(Policy(R"pb(
    capabilities { add: "NET_BIND_SERVICE" add: "CHOWN" }
  )pb"));
  EXPECT_THAT(Strings(oci.capabilities()),
              ElementsAre("CAP_CHOWN", "CAP_NET_BIND_SERVICE"));
}

TEST(OciTest, NoNewPrivilegesRlimitsPids) {
  const auto oci = CompileOciChanges(Policy());
  EXPECT_TRUE(oci.no_new_privileges());
  ASSERT_EQ(oci.rlimits_size(), 2);
  EXPECT_EQ(oci.rlimits(0).type(), "RLIMIT_CORE");
  EXPECT_EQ(oci.rlimits(0).hard(), 0u);
  EXPECT_EQ(oci.rlimits(0).soft(), 0u);
  EXPECT_EQ(oci.rlimits(1).type(), "RLIMIT_NPROC");
  EXPECT_EQ(oci.rlimits(1).hard(), 64u);
  EXPECT_EQ(oci.rlimits(1).soft(), 64u);
  EXPECT_EQ(oci.pids_limit(), 64);
}

TEST(OciTest, Deterministic) {
  EffectivePolicy p = Policy(R"pb(
    filesystem { deny: "/etc/shadow" read_only: "/etc" }
    capabilities { add: "NET_RAW" add: "CHOWN" }
  )pb");
  std::string a, b;
  ASSERT_TRUE(CompileOciChanges(p).SerializeToString(&a));
  ASSERT_TRUE(CompileOciChanges(p).SerializeToString(&b));
  EXPECT_EQ(a, b);
}

// --- Enforcement: the options do what they say when the kernel applies
// them (as runc does), in a child with its own mount namespace.

#define REQUIRE_ROOT() \
  ASSERT_EQ(geteuid(), 0u) << "this test mounts and changes uid: run as root"

// Applies an OciMount's options as runc would: flags plus tmpfs data.
int MountTmpfs(const stockade::v1::OciMount& m, const std::string& target) {
  unsigned long flags = 0;
  std::vector<std::string> data;
  for (const std::string& o : m.options()) {
    if (o == "nosuid")
      flags |= MS_NOSUID;
    else if (o == "nodev")
      flags |= MS_NODEV;
    else if (o == "noexec")
      flags |= MS_NOEXEC;
    else if (o == "ro")
      flags |= MS_RDONLY;
    else
      data.push_back(o);
  }
  const std::string joined = absl::StrJoin(data, ",");
  return mount("tmpfs", target.c_str(), "tmpfs", flags, joined.c_str());
}

// Runs fn in a forked child with a private mount namespace; fn returns the
// exit code (0 = success).
template <typename Fn>
int InChild(Fn fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0) _exit(100);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      _exit(101);
    }
    _exit(fn());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

std::string MakeTempDir() {
  char tmpl[] = "/tmp/oci_test.XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "";
}

int CopyFile(const char* from, const std::string& to) {
  int in = open(from, O_RDONLY);
  int out = open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0755);
  if (in < 0 || out < 0) return -1;
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    if (write(out, buf, n) != n) return -1;
  }
  close(in);
  close(out);
  return 0;
}

TEST(OciEnforceTest, TmpfsSizeAndNoexecHold) {
  REQUIRE_ROOT();
  EffectivePolicy p = Policy();
  p.mutable_filesystem()->mutable_writable(0)->set_size_limit("256Ki");
  const auto m = CompileOciChanges(p).mounts(0);
  const std::string dir = MakeTempDir();
  const int rc = InChild([&]() {
    if (MountTmpfs(m, dir) != 0) return 1;
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || (st.st_mode & 07777) != 01777) {
      return 2;
    }
    // Writing past the size limit fails with ENOSPC.
    int fd = open((dir + "/big").c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd < 0) return 3;
    std::string chunk(4096, 'x');
    int err = 0;
    for (int i = 0; i < 1024; ++i) {
      if (write(fd, chunk.data(), chunk.size()) < 0) {
        err = errno;
        break;
      }
    }
    close(fd);
    if (err != ENOSPC) return 4;
    unlink((dir + "/big").c_str());
    // Executing from the noexec tmpfs fails with EACCES.
    const std::string exe = dir + "/true";
    if (CopyFile("/bin/true", exe) != 0) return 5;
    char* argv[] = {const_cast<char*>(exe.c_str()), nullptr};
    execv(exe.c_str(), argv);
    return errno == EACCES ? 0 : 6;
  });
  EXPECT_EQ(rc, 0);
  rmdir(dir.c_str());
}

TEST(OciEnforceTest, ExecAllowedTmpfsRunsPrograms) {
  REQUIRE_ROOT();
  EffectivePolicy p = Policy(R"pb(exec { allow: "/tmp/agent/bin/" })pb");
  const auto m = CompileOciChanges(p).mounts(0);
  const std::string dir = MakeTempDir();
  const int rc = InChild([&]() {
    if (MountTmpfs(m, dir) != 0) return 1;
    const std::string exe = dir + "/true";
    if (CopyFile("/bin/true", exe) != 0) return 5;
    char* argv[] = {const_cast<char*>(exe.c_str()), nullptr};
    execv(exe.c_str(), argv);
    return 7;  // exec failed
  });
  EXPECT_EQ(rc, 0);
  rmdir(dir.c_str());
}

TEST(OciEnforceTest, RlimitsStopForkBombAndCores) {
  REQUIRE_ROOT();
  EffectivePolicy p = Policy();
  p.mutable_processes()->set_max(8);
  const auto oci = CompileOciChanges(p);
  const int rc = InChild([&]() {
    for (const auto& r : oci.rlimits()) {
      struct rlimit lim = {static_cast<rlim_t>(r.soft()),
                           static_cast<rlim_t>(r.hard())};
      const int res = r.type() == "RLIMIT_NPROC"  ? RLIMIT_NPROC
                      : r.type() == "RLIMIT_CORE" ? RLIMIT_CORE
                                                  : -1;
      if (res < 0 || setrlimit(res, &lim) != 0) return 1;
    }
    // An otherwise unused uid, as a non-root agent runs (uid 0 is exempt
    // from RLIMIT_NPROC).
    if (setgid(64123) != 0 || setuid(64123) != 0) return 2;
    std::vector<pid_t> children;
    int err = 0;
    for (int i = 0; i < 64; ++i) {
      pid_t c = fork();
      if (c == 0) {
        pause();
        _exit(0);
      }
      if (c < 0) {
        err = errno;
        break;
      }
      children.push_back(c);
    }
    for (pid_t c : children) kill(c, SIGKILL);
    for (pid_t c : children) waitpid(c, nullptr, 0);
    // This process counts too: 8 in all.
    if (err != EAGAIN) return 3;
    if (children.size() != 7) return 10 + static_cast<int>(children.size());
    struct rlimit core;
    if (getrlimit(RLIMIT_CORE, &core) != 0 || core.rlim_max != 0) return 4;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "exit codes: 3 = fork never failed with EAGAIN, "
                      "10+n = n children forked";
}

}  // namespace
}  // namespace stockade::compiler
