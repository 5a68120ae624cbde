// Enforcement: compiled profiles are loaded (through the runc-equivalent
// loader) into forked children, which then attempt what the profile forbids
// and the work it must still allow; real python3 and node agents run under
// the Strict profile.
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/seccomp/seccomp.h"
#include "shim/init/seccomp_loader.h"

namespace stockade::compiler {
namespace {

constexpr int kMarkerErrno = 133;  // EHWPOISON: nothing else returns it here.

// Ends a child without the sanitizers' exit hooks (their leak check needs
// calls the filter under test may refuse, and would change the status). Not
// [[noreturn]]: ASan would run its no-return hook (sigaltstack, gettid) first.
void ExitNow(int code) {
  syscall(SYS_exit_group, code);
  __builtin_unreachable();
}

EffectivePolicy Policy(
    v1::SyscallBaseline baseline = v1::SYSCALL_BASELINE_RUNTIME_DEFAULT) {
  EffectivePolicy p;
  p.set_mode(v1::MODE_ENFORCE);
  p.mutable_syscalls()->set_baseline(baseline);
  p.mutable_syscalls()->set_default_action(v1::SYSCALL_ACTION_ERRNO);
  p.mutable_network()->set_raw_sockets(false);
  p.mutable_network()->set_dns(false);
  return p;
}

std::string Compile(const EffectivePolicy& p) {
  absl::StatusOr<std::string> json = CompileSeccomp(p);
  EXPECT_TRUE(json.ok()) << json.status();
  return json.value_or("");
}

// A raw system call: its result, or -errno.
template <typename... A>
long Sys(long nr, A... args) {
  long r = syscall(nr, (long)args...);
  return r < 0 ? -errno : r;
}

// Closes what a successful probe opened.
long Fd(long r) {
  if (r >= 0) close(static_cast<int>(r));
  return r;
}

struct Probe {
  std::string name;
  std::function<long()> run;  // >= 0: worked; < 0: -errno.
};

struct ChildReport {
  pid_t pid = 0;
  int status = 0;
  std::map<std::string, long> results;
};

// Forks; the child sets no_new_privs, loads the profile and runs every probe,
// reporting each result through a pipe.
ChildReport RunProbes(const std::string& json,
                      const std::vector<Probe>& probes) {
  ChildReport report;
  absl::StatusOr<shim::OciSeccompFilter> filter =
      shim::OciSeccompFilter::Build(json);
  EXPECT_TRUE(filter.ok()) << filter.status();
  if (!filter.ok()) return report;
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ExitNow(120);
    alarm(60);  // A probe that hangs fails the test, not the suite.
    if (!filter->Load().ok()) ExitNow(121);
    for (const Probe& probe : probes) {
      long r = probe.run();
      std::string line = probe.name + "\t" + std::to_string(r) + "\n";
      if (write(fds[1], line.data(), line.size()) < 0) ExitNow(122);
    }
    ExitNow(0);
  }
  close(fds[1]);
  report.pid = pid;
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  EXPECT_EQ(waitpid(pid, &report.status, 0), pid);
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    size_t tab = line.find('\t');
    report.results[line.substr(0, tab)] = std::stol(line.substr(tab + 1));
  }
  return report;
}

std::string Describe(long r) {
  return r >= 0 ? "success (" + std::to_string(r) + ")"
                : std::string(std::strerror(static_cast<int>(-r))) + " (" +
                      std::to_string(-r) + ")";
}

void ExpectErrno(const ChildReport& report, const std::string& probe, int err) {
  auto it = report.results.find(probe);
  ASSERT_NE(it, report.results.end()) << probe << " did not run";
  EXPECT_EQ(it->second, -err) << probe << ": expected " << std::strerror(err)
                              << ", got " << Describe(it->second);
}

void ExpectWorks(const ChildReport& report, const std::string& probe) {
  auto it = report.results.find(probe);
  ASSERT_NE(it, report.results.end()) << probe << " did not run";
  EXPECT_GE(it->second, 0) << probe << " failed: " << Describe(it->second);
}

void ExpectExitedZero(const ChildReport& report) {
  EXPECT_TRUE(WIFEXITED(report.status) && WEXITSTATUS(report.status) == 0)
      << "child status " << report.status;
}

// Forks a child that waits to be killed, returns its pid.
pid_t SpawnSleeper() {
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  return pid;
}

void Reap(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// clone(2) with these flags, fork-style (no new stack).
long CloneWith(long flags) {
  long r = Sys(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (r == 0) ExitNow(0);
  if (r > 0) waitpid(static_cast<pid_t>(r), nullptr, 0);
  return r;
}

// What an agent must not be able to do. Each is harmless even if it works
// (nonexistent paths, invalid arguments, our own processes).
std::vector<Probe> Attacks() {
  return {
      {"unshare(CLONE_NEWUSER)",
       [] { return Sys(SYS_unshare, CLONE_NEWUSER); }},
      {"unshare(CLONE_NEWNS)", [] { return Sys(SYS_unshare, CLONE_NEWNS); }},
      {"clone(CLONE_NEWNS)", [] { return CloneWith(CLONE_NEWNS); }},
      {"clone(CLONE_NEWUSER)", [] { return CloneWith(CLONE_NEWUSER); }},
      {"clone(CLONE_NEWNET)", [] { return CloneWith(CLONE_NEWNET); }},
      {"setns", [] { return Sys(SYS_setns, -1, 0); }},
      {"mount",
       [] {
         return Sys(SYS_mount, "none", "/nonexistent-stockade", "tmpfs", 0, 0);
       }},
      {"umount2", [] { return Sys(SYS_umount2, "/nonexistent-stockade", 0); }},
      {"pivot_root",
       [] { return Sys(SYS_pivot_root, "/nonexistent-a", "/nonexistent-b"); }},
      {"chroot", [] { return Sys(SYS_chroot, "/nonexistent-stockade"); }},
      {"ptrace(PTRACE_ATTACH)",
       [] {
         pid_t sleeper = SpawnSleeper();
         long r = Sys(SYS_ptrace, PTRACE_ATTACH, sleeper, 0, 0);
         Reap(sleeper);
         return r;
       }},
      {"process_vm_readv",
       [] {
         char src[4] = "abc", dst[4];
         iovec local{dst, sizeof(dst)}, remote{src, sizeof(src)};
         return Sys(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0);
       }},
      {"keyctl", [] { return Sys(SYS_keyctl, 0 /*GET_KEYRING_ID*/, -3, 0); }},
      {"add_key",
       [] { return Sys(SYS_add_key, "user", "stockade-test", "x", 1, -2); }},
      {"request_key",
       [] { return Sys(SYS_request_key, "user", "stockade-none", 0, -2); }},
      {"bpf", [] { return Fd(Sys(SYS_bpf, 0 /*MAP_CREATE*/, 0, 0)); }},
      {"perf_event_open",
       [] { return Fd(Sys(SYS_perf_event_open, 0, 0, -1, -1, 0)); }},
      {"kexec_load", [] { return Sys(SYS_kexec_load, 0, 0, 0, 0xdead0000); }},
      {"init_module", [] { return Sys(SYS_init_module, 0, 0, ""); }},
      {"reboot", [] { return Sys(SYS_reboot, 0, 0, 0, 0); }},
      {"swapon", [] { return Sys(SYS_swapon, "/nonexistent-stockade", 0); }},
      {"open_by_handle_at",
       [] { return Fd(Sys(SYS_open_by_handle_at, AT_FDCWD, 0, O_RDONLY)); }},
      {"io_uring_setup",
       [] {
         char params[120] = {};  // struct io_uring_params
         return Fd(Sys(SYS_io_uring_setup, 1, params));
       }},
      {"userfaultfd", [] { return Fd(Sys(SYS_userfaultfd, O_CLOEXEC)); }},
      {"socket(AF_PACKET)",
       [] {
         return Fd(Sys(SYS_socket, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
       }},
      {"socket(AF_PACKET|1<<32)",
       [] {
         return Fd(Sys(SYS_socket, (1L << 32) | AF_PACKET, SOCK_RAW,
                       htons(ETH_P_ALL)));
       }},
      {"socket(AF_INET, SOCK_RAW)",
       [] { return Fd(Sys(SYS_socket, AF_INET, SOCK_RAW, IPPROTO_ICMP)); }},
      {"socket(AF_INET6, SOCK_RAW|SOCK_CLOEXEC)",
       [] {
         return Fd(Sys(SYS_socket, AF_INET6, SOCK_RAW | SOCK_CLOEXEC,
                       IPPROTO_ICMPV6));
       }},
      {"socket(AF_ALG)",
       [] { return Fd(Sys(SYS_socket, AF_ALG, SOCK_SEQPACKET, 0)); }},
      {"socket(AF_VSOCK)",
       [] { return Fd(Sys(SYS_socket, AF_VSOCK, SOCK_STREAM, 0)); }},
      {"personality(ADDR_NO_RANDOMIZE)",
       [] { return Sys(SYS_personality, ADDR_NO_RANDOMIZE); }},
  };
}

void* ThreadBody(void* arg) {
  *static_cast<int*>(arg) = 42;
  return nullptr;
}

// Work an agent must still be able to do.
std::vector<Probe> Work() {
  return {
      {"getpid", [] { return Sys(SYS_getpid); }},
      {"file write+read",
       [] {
         char path[] = "/tmp/stockade-seccomp-XXXXXX";
         int fd = mkstemp(path);
         if (fd < 0) return -long{errno};
         long r = 0;
         char buf[6] = {};
         if (write(fd, "hello", 5) != 5 || lseek(fd, 0, SEEK_SET) != 0 ||
             read(fd, buf, 5) != 5 || std::strcmp(buf, "hello") != 0) {
           r = -long{EIO};
         }
         close(fd);
         if (unlink(path) != 0) r = -long{errno};
         return r;
       }},
      {"socket(AF_INET, SOCK_STREAM)",
       [] { return Fd(Sys(SYS_socket, AF_INET, SOCK_STREAM, 0)); }},
      {"socket(AF_INET6, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC)",
       [] {
         return Fd(Sys(SYS_socket, AF_INET6,
                       SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
       }},
      {"socket(AF_UNIX, SOCK_STREAM)",
       [] { return Fd(Sys(SYS_socket, AF_UNIX, SOCK_STREAM, 0)); }},
      {"socket(AF_NETLINK, SOCK_RAW)",  // getaddrinfo/getifaddrs need it.
       [] { return Fd(Sys(SYS_socket, AF_NETLINK, SOCK_RAW, 0)); }},
      {"tcp connect 127.0.0.1",
       [] {
         int srv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
         if (srv < 0) return -long{errno};
         sockaddr_in addr{};
         addr.sin_family = AF_INET;
         addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
         socklen_t len = sizeof(addr);
         long r = 0;
         int cli = -1, conn = -1;
         if (bind(srv, (sockaddr*)&addr, sizeof(addr)) != 0 ||
             listen(srv, 1) != 0 ||
             getsockname(srv, (sockaddr*)&addr, &len) != 0 ||
             (cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
             connect(cli, (sockaddr*)&addr, sizeof(addr)) != 0 ||
             (conn = accept4(srv, nullptr, nullptr, SOCK_CLOEXEC)) < 0) {
           r = -long{errno};
         }
         for (int fd : {conn, cli, srv}) {
           if (fd >= 0) close(fd);
         }
         return r;
       }},
      {"fork+wait",
       [] {
         pid_t pid = fork();
         if (pid == 0) ExitNow(7);
         if (pid < 0) return -long{errno};
         int status = 0;
         if (waitpid(pid, &status, 0) != pid) return -long{errno};
         return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0L : -long{EIO};
       }},
      {"pthread",
       [] {
         pthread_t thread;
         int value = 0;
         int rc = pthread_create(&thread, nullptr, ThreadBody, &value);
         if (rc != 0) return -long{rc};
         pthread_join(thread, nullptr);
         return value == 42 ? 0L : -long{EIO};
       }},
      {"getcwd",
       [] {
         char buf[4096];
         return Sys(SYS_getcwd, buf, sizeof(buf));
       }},
      {"clock_nanosleep",
       [] {
         timespec ts{0, 1000};
         return Sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, nullptr);
       }},
  };
}

std::vector<Probe> AttacksAndWork() {
  std::vector<Probe> all = Attacks();
  for (Probe& p : Work()) all.push_back(std::move(p));
  all.push_back({"clone3", [] {
                   // struct clone_args {flags, pidfd, child_tid, parent_tid,
                   // exit_signal, ...}: a plain fork.
                   uint64_t args[11] = {};
                   args[4] = SIGCHLD;
                   long r = Sys(SYS_clone3, args, sizeof(args));
                   if (r == 0) ExitNow(0);
                   if (r > 0) waitpid(static_cast<pid_t>(r), nullptr, 0);
                   return r;
                 }});
  return all;
}

// The probes with these names, in this order.
std::vector<Probe> Select(const std::vector<std::string>& names) {
  std::vector<Probe> all = AttacksAndWork();
  std::vector<Probe> out;
  for (const std::string& name : names) {
    for (const Probe& p : all) {
      if (p.name == name) out.push_back(p);
    }
  }
  EXPECT_EQ(out.size(), names.size());
  return out;
}

void CheckBaseline(const std::string& json, int denial_errno) {
  ChildReport report = RunProbes(json, AttacksAndWork());
  ExpectExitedZero(report);
  for (const Probe& attack : Attacks()) {
    ExpectErrno(report, attack.name, denial_errno);
  }
  // clone3 answers ENOSYS (so glibc falls back to clone, which seccomp can
  // inspect): the profile says errnoRet 38.
  ExpectErrno(report, "clone3", ENOSYS);
  for (const Probe& work : Work()) ExpectWorks(report, work.name);
}

TEST(SeccompEnforceTest, RuntimeDefaultBlocksAttacksAllowsWork) {
  CheckBaseline(Compile(Policy()), EPERM);
}

TEST(SeccompEnforceTest, StrictBlocksAttacksAllowsWork) {
  CheckBaseline(Compile(Policy(v1::SYSCALL_BASELINE_STRICT)), EPERM);
}

// The same attacks with the profile's errno changed to one nothing else
// returns: proves each denial comes from the seccomp filter, not from
// lockdown, a missing capability or bad arguments.
TEST(SeccompEnforceTest, DenialsComeFromTheFilter) {
  for (auto baseline :
       {v1::SYSCALL_BASELINE_RUNTIME_DEFAULT, v1::SYSCALL_BASELINE_STRICT}) {
    nlohmann::json profile = nlohmann::json::parse(Compile(Policy(baseline)));
    profile["defaultErrnoRet"] = kMarkerErrno;
    SCOPED_TRACE(v1::SyscallBaseline_Name(baseline));
    CheckBaseline(profile.dump(), kMarkerErrno);
  }
}

TEST(SeccompEnforceTest, PolicyDenyWins) {
  EffectivePolicy policy = Policy(v1::SYSCALL_BASELINE_STRICT);
  policy.mutable_syscalls()->add_deny("getcwd");
  policy.mutable_syscalls()->add_deny("socket");
  ChildReport report = RunProbes(Compile(policy), Work());
  ExpectExitedZero(report);
  ExpectErrno(report, "getcwd", EPERM);
  ExpectErrno(report, "socket(AF_INET, SOCK_STREAM)", EPERM);
  ExpectErrno(report, "socket(AF_UNIX, SOCK_STREAM)", EPERM);
  ExpectWorks(report, "getpid");
  ExpectWorks(report, "file write+read");
  ExpectWorks(report, "fork+wait");
  ExpectWorks(report, "pthread");
}

TEST(SeccompEnforceTest, AllowAndCapabilitiesAddCalls) {
  ASSERT_EQ(geteuid(), 0u) << "needs root (the calls also need capabilities)";
  EffectivePolicy policy = Policy(v1::SYSCALL_BASELINE_STRICT);
  policy.mutable_syscalls()->add_allow("personality");
  policy.mutable_capabilities()->add_add("SYS_PTRACE");
  ChildReport report = RunProbes(Compile(policy), Attacks());
  ExpectExitedZero(report);
  ExpectWorks(report, "personality(ADDR_NO_RANDOMIZE)");
  ExpectWorks(report, "process_vm_readv");
  ExpectWorks(report, "ptrace(PTRACE_ATTACH)");
  ExpectErrno(report, "keyctl", EPERM);
  ExpectErrno(report, "mount", EPERM);
}

TEST(SeccompEnforceTest, RawSocketsWhenAllowed) {
  ASSERT_EQ(geteuid(), 0u) << "needs root (CAP_NET_RAW) to open raw sockets";
  for (auto baseline :
       {v1::SYSCALL_BASELINE_RUNTIME_DEFAULT, v1::SYSCALL_BASELINE_STRICT}) {
    EffectivePolicy policy = Policy(baseline);
    policy.mutable_network()->set_raw_sockets(true);
    ChildReport report = RunProbes(Compile(policy), Attacks());
    ExpectExitedZero(report);
    ExpectWorks(report, "socket(AF_PACKET)");
    ExpectWorks(report, "socket(AF_INET, SOCK_RAW)");
    ExpectWorks(report, "socket(AF_INET6, SOCK_RAW|SOCK_CLOEXEC)");
    ExpectErrno(report, "socket(AF_ALG)", EPERM);
    ExpectErrno(report, "socket(AF_VSOCK)", EPERM);
    ExpectErrno(report, "socket(AF_PACKET|1<<32)", EPERM);
  }
}

TEST(SeccompEnforceTest, KillProcessKillsWithSigsys) {
  EffectivePolicy policy = Policy();
  policy.mutable_syscalls()->set_default_action(
      v1::SYSCALL_ACTION_KILL_PROCESS);
  policy.mutable_syscalls()->add_deny("getcwd");
  const std::string json = Compile(policy);
  for (const char* fatal : {"getcwd", "keyctl", "socket(AF_PACKET)"}) {
    std::vector<Probe> probes = {{"getpid", [] { return Sys(SYS_getpid); }}};
    for (Probe& p : AttacksAndWork()) {
      if (p.name == fatal) probes.push_back(std::move(p));
    }
    ChildReport report = RunProbes(json, probes);
    EXPECT_TRUE(WIFSIGNALED(report.status)) << fatal << ": " << report.status;
    EXPECT_EQ(WTERMSIG(report.status), SIGSYS) << fatal;
    ExpectWorks(report, "getpid");
    EXPECT_FALSE(report.results.contains(fatal)) << fatal << " returned";
  }
}

TEST(SeccompEnforceTest, ComplainLetsDeniedCallsThrough) {
  ASSERT_EQ(geteuid(), 0u) << "needs root (the calls also need capabilities)";
  EffectivePolicy policy = Policy(v1::SYSCALL_BASELINE_STRICT);
  policy.set_mode(v1::MODE_COMPLAIN);
  policy.mutable_syscalls()->add_deny("getcwd");
  std::vector<std::string> names;
  for (const Probe& p : Work()) names.push_back(p.name);
  // unshare last: once in a new user namespace, root loses CAP_NET_RAW.
  const std::vector<std::string> denied = {"personality(ADDR_NO_RANDOMIZE)",
                                           "socket(AF_PACKET)",
                                           "socket(AF_INET, SOCK_RAW)",
                                           "process_vm_readv",
                                           "clone(CLONE_NEWNS)",
                                           "unshare(CLONE_NEWUSER)"};
  names.insert(names.end(), denied.begin(), denied.end());
  ChildReport report = RunProbes(Compile(policy), Select(names));
  ExpectExitedZero(report);
  for (const std::string& name : names) ExpectWorks(report, name);
}

// Complain mode's LOG action reaches the kernel log (audit type=1326, the
// SECCOMP record) with the process and the call. kauditd delivers records
// asynchronously and printk rate-limits them (dropping some), so each attempt
// waits a moment and a few attempts are allowed.
TEST(SeccompEnforceTest, ComplainDenialsReachTheKernelLog) {
  EffectivePolicy policy = Policy(v1::SYSCALL_BASELINE_STRICT);
  policy.set_mode(v1::MODE_COMPLAIN);
  policy.mutable_syscalls()->add_deny("getcwd");
  const std::string json = Compile(policy);
  const std::string call = " syscall=" + std::to_string(SYS_getcwd) + " ";
  for (int attempt = 0; attempt < 8; ++attempt) {
    int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(kmsg, 0) << "cannot read /dev/kmsg: " << std::strerror(errno);
    lseek(kmsg, 0, SEEK_END);
    ChildReport report = RunProbes(json, Select({"getcwd"}));
    ExpectExitedZero(report);
    ExpectWorks(report, "getcwd");
    const std::string pid = " pid=" + std::to_string(report.pid) + " ";
    bool logged = false;
    char record[8192];
    for (int wait_ms = 0; !logged && wait_ms < 1500;) {
      ssize_t n = read(kmsg, record, sizeof(record));
      if (n < 0 && errno == EAGAIN) {
        usleep(50 * 1000);
        wait_ms += 50;
        continue;
      }
      if (n < 0 && errno == EPIPE) continue;  // Overwritten records.
      if (n <= 0) break;
      std::string_view line(record, static_cast<size_t>(n));
      logged = line.find("type=1326") != line.npos &&
               line.find(pid) != line.npos && line.find(call) != line.npos;
    }
    close(kmsg);
    if (logged) return;
  }
  ADD_FAILURE() << "no audit type=1326 record for a logged getcwd in 8 tries";
}

// --- Real agents under the profiles -----------------------------------

std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = dir + "/" + name;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Execs argv under the profile (no_new_privs set, as runc does with
// noNewPrivileges) and returns its wait status; its output goes to *output.
int ExecUnderProfile(const std::string& json,
                     const std::vector<std::string>& argv,
                     std::string* output) {
  absl::StatusOr<shim::OciSeccompFilter> filter =
      shim::OciSeccompFilter::Build(json);
  EXPECT_TRUE(filter.ok()) << filter.status();
  if (!filter.ok()) return -1;
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    if (chdir("/tmp") != 0) ExitNow(119);
    alarm(120);  // A hang under the filter fails the test, not the suite.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ExitNow(120);
    if (!filter->Load().ok()) ExitNow(121);
    execv(args[0], args.data());
    ExitNow(127);
  }
  close(fds[1]);
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output->append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

void ExpectAgentRuns(const std::string& json,
                     const std::vector<std::string>& argv) {
  std::string output;
  int status = ExecUnderProfile(json, argv, &output);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << argv[0] << " " << (argv.size() > 1 ? argv[1] : "") << ": status "
      << status
      << (WIFSIGNALED(status) ? " signal " + std::to_string(WTERMSIG(status))
                              : "")
      << "\noutput:\n"
      << output;
  EXPECT_THAT(output, ::testing::HasSubstr("ok"));
}

constexpr char kPythonInline[] = R"(
import json, os, tempfile, threading
d = tempfile.mkdtemp(dir='/tmp')
p = os.path.join(d, 'x.json')
with open(p, 'w') as f:
    json.dump({'a': [1, 2]}, f)
with open(p) as f:
    assert json.load(f) == {'a': [1, 2]}
r = []
t = threading.Thread(target=lambda: r.append(1))
t.start()
t.join()
assert r == [1]
os.remove(p)
os.rmdir(d)
print('ok')
)";

constexpr char kNodeInline[] = R"(
const fs = require('fs'), os = require('os'), path = require('path');
const {Worker} = require('worker_threads');
const d = fs.mkdtempSync(path.join('/tmp', 'x-'));
fs.writeFileSync(path.join(d, 'x.json'), JSON.stringify({a: [1, 2]}));
const v = JSON.parse(fs.readFileSync(path.join(d, 'x.json')));
if (v.a[1] !== 2) process.exit(1);
fs.rmSync(d, {recursive: true});
const w = new Worker('require("worker_threads").parentPort.postMessage(6*7)',
                     {eval: true});
w.on('message', (m) => { if (m !== 42) process.exit(1); console.log('ok'); });
)";

TEST(SeccompEnforceTest, PythonAgentRunsUnderStrict) {
  const std::string python = FindOnPath("python3");
  ASSERT_FALSE(python.empty()) << "python3 is not on PATH: this test needs it";
  const std::string strict = Compile(Policy(v1::SYSCALL_BASELINE_STRICT));
  ExpectAgentRuns(strict, {python, "-c", kPythonInline});
  ExpectAgentRuns(strict,
                  {python, STOCKADE_SECCOMP_MEASURE_DIR "/agent_workload.py"});
  ExpectAgentRuns(Compile(Policy()),
                  {python, STOCKADE_SECCOMP_MEASURE_DIR "/agent_workload.py"});
}

TEST(SeccompEnforceTest, NodeAgentRunsUnderStrict) {
  const std::string node = FindOnPath("node");
  ASSERT_FALSE(node.empty()) << "node is not on PATH: this test needs it";
  const std::string strict = Compile(Policy(v1::SYSCALL_BASELINE_STRICT));
  ExpectAgentRuns(strict, {node, "-e", kNodeInline});
  ExpectAgentRuns(strict,
                  {node, STOCKADE_SECCOMP_MEASURE_DIR "/agent_workload.js"});
  ExpectAgentRuns(Compile(Policy()),
                  {node, STOCKADE_SECCOMP_MEASURE_DIR "/agent_workload.js"});
}

// The profile is not a placebo: an agent that tries a forbidden call from
// Python gets EPERM.
TEST(SeccompEnforceTest, PythonSeesEpermForForbiddenCalls) {
  const std::string python = FindOnPath("python3");
  ASSERT_FALSE(python.empty()) << "python3 is not on PATH: this test needs it";
  constexpr char kProbe[] = R"(
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != -1 or ctypes.get_errno() != errno.EPERM:
    raise SystemExit('unshare(CLONE_NEWUSER) was not refused with EPERM')
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raise SystemExit('AF_PACKET worked')
except PermissionError:
    pass
print('ok')
)";
  ExpectAgentRuns(Compile(Policy(v1::SYSCALL_BASELINE_STRICT)),
                  {python, "-c", kProbe});
}

}  // namespace
}  // namespace stockade::compiler
