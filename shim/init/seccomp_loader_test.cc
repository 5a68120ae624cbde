#include "shim/init/seccomp_loader.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::shim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Ends a child without the sanitizers' exit hooks (their leak check needs
// calls the filter under test may refuse, and would change the status). Not
// [[noreturn]]: ASan would run its no-return hook (sigaltstack, gettid) first.
void ExitNow(int code) {
  syscall(SYS_exit_group, code);
  __builtin_unreachable();
}

// Builds the filter here, loads it in a forked child (no_new_privs set) and
// runs body there; returns the child's wait status. body returns 0 when
// every check held, else the number of the check that failed.
int RunUnderFilter(const std::string& json, const std::function<int()>& body,
                   bool set_nnp = true) {
  absl::StatusOr<OciSeccompFilter> filter = OciSeccompFilter::Build(json);
  EXPECT_TRUE(filter.ok()) << filter.status();
  if (!filter.ok()) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    if (set_nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ExitNow(120);
    if (!filter->Load().ok()) ExitNow(121);
    ExitNow(body());
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

// -errno of a raw system call, or its (non-negative) result.
long Call(long nr, long a = 0, long b = 0, long c = 0) {
  long r = syscall(nr, a, b, c);
  return r < 0 ? -errno : r;
}

TEST(SeccompLoaderTest, RejectsWhatRuncWouldNot) {
  for (const char* bad : {
           "not json",
           "[]",
           R"({"syscalls": []})",
           R"({"defaultAction": "SCMP_ACT_NOPE"})",
           R"({"defaultAction": "SCMP_ACT_NOTIFY"})",
           R"({"defaultAction": "SCMP_ACT_ALLOW", "errnoRet": 1,
               "defaultErrnoRet": 1})",
           R"({"defaultAction": "SCMP_ACT_ERRNO",
               "flags": ["SECCOMP_FILTER_FLAG_LOG"]})",
           R"({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/x"})",
           R"({"defaultAction": "SCMP_ACT_ERRNO",
               "architectures": ["SCMP_ARCH_VAX"]})",
           R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
               {"names": [], "action": "SCMP_ACT_ALLOW"}]})",
           R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
               {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                "errnoRet": 5}]})",
           R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
               {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})",
           R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
               {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]})",
           R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
               {"names": ["read"], "action": 7}]})",
       }) {
    EXPECT_FALSE(OciSeccompFilter::Build(bad).ok()) << bad;
  }
}

TEST(SeccompLoaderTest, SkipsUnknownNamesAndAddsEveryArchitecture) {
  absl::StatusOr<OciSeccompFilter> filter = OciSeccompFilter::Build(R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "flags": [],
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                      "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "syscalls": [
      {"names": ["read", "nosuchcall", "fstat64", "open"],
       "action": "SCMP_ACT_ALLOW"},
      {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
      {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 18446744073709551612, "valueTwo": 4,
         "op": "SCMP_CMP_MASKED_EQ"}]}
    ]})");
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_THAT(filter->skipped_names(), ElementsAre("nosuchcall"));
  absl::StatusOr<std::string> bpf = filter->ExportBpf();
  ASSERT_TRUE(bpf.ok()) << bpf.status();
  EXPECT_GT(bpf->size(), 0u);
}

TEST(SeccompLoaderTest, ErrnoRetAndDefaultErrnoRet) {
  int status =
      RunUnderFilter(R"({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
      {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33},
      {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}
    ]})",
                     [] {
                       char buf[256];
                       if (Call(SYS_getcwd, long(buf), sizeof(buf)) != -EDOM) {
                         return 1;
                       }
                       if (Call(SYS_getppid) != -EPERM) return 2;
                       if (Call(SYS_getpid) < 0) return 3;
                       return 0;
                     });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  status = RunUnderFilter(R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 71,
    "syscalls": [{"names": ["exit_group", "exit", "getpid", "getppid", "gettid",
                  "sigaltstack", "write", "mmap", "munmap"],
                  "action": "SCMP_ACT_ALLOW"}]})",
                          [] {
                            if (Call(SYS_getpid) < 0) return 1;
                            if (Call(SYS_getuid) != -EPROTO) return 2;
                            return 0;
                          });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(SeccompLoaderTest, ConditionsMaskedEqAndOnDistinctArgumentsAnded) {
  int status = RunUnderFilter(R"({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
      {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 90,
       "args": [{"index": 0, "value": 448, "valueTwo": 448,
                 "op": "SCMP_CMP_MASKED_EQ"}]},
      {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 91,
       "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 4242, "op": "SCMP_CMP_EQ"}]}
    ]})",
                              [] {
                                if (Call(SYS_umask, 0777) != -90) return 1;
                                if (Call(SYS_umask, 0700) != -90) return 2;
                                if (Call(SYS_umask, 0077) < 0) return 3;
                                if (Call(SYS_getpriority, 0, 4242) != -91) {
                                  return 4;
                                }
                                // Only one of the two conditions holds.
                                if (Call(SYS_getpriority, 0, 0) < 0) return 5;
                                if (Call(SYS_getpriority, 1, 4242) == -91) {
                                  return 6;
                                }
                                return 0;
                              });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// runc turns several conditions on one argument into separate rules; so do
// we (libseccomp cannot AND them), and the effect is an OR.
TEST(SeccompLoaderTest, ConditionsOnTheSameArgumentAreOred) {
  int status = RunUnderFilter(R"({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
      {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 92,
       "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}
    ]})",
                              [] {
                                if (Call(SYS_umask, 1) != -92) return 1;
                                if (Call(SYS_umask, 2) != -92) return 2;
                                if (Call(SYS_umask, 3) < 0) return 3;
                                return 0;
                              });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(SeccompLoaderTest, KillProcessAndLog) {
  int status = RunUnderFilter(R"({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"},
                 {"names": ["getppid"], "action": "SCMP_ACT_LOG"}]})",
                              [] {
                                if (Call(SYS_getppid) < 0) return 1;
                                char buf[64];
                                Call(SYS_getcwd, long(buf), sizeof(buf));
                                return 2;  // Not reached.
                              });
  EXPECT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
}

// A rule that repeats the default action is skipped (libseccomp would refuse
// it), as runc does.
TEST(SeccompLoaderTest, RedundantRulesAreSkipped) {
  int status = RunUnderFilter(R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "syscalls": [
      {"names": ["exit_group", "exit", "getpid", "gettid", "sigaltstack",
                 "write", "mmap", "munmap"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    ]})",
                              [] {
                                if (Call(SYS_getpid) < 0) return 1;
                                if (Call(SYS_getuid) != -EPERM) return 2;
                                return 0;
                              });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Load() leaves no_new_privs to the caller: without it and without
// CAP_SYS_ADMIN the kernel refuses the filter.
TEST(SeccompLoaderTest, DoesNotSetNoNewPrivsItself) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root (to drop CAP_SYS_ADMIN)";
  absl::StatusOr<OciSeccompFilter> filter =
      OciSeccompFilter::Build(R"({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]})");
  ASSERT_TRUE(filter.ok()) << filter.status();
  pid_t pid = fork();
  if (pid == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) ExitNow(1);
    data[0].effective &= ~(1u << CAP_SYS_ADMIN);
    if (syscall(SYS_capset, &header, data) != 0) ExitNow(2);
    if (filter->Load().ok()) ExitNow(3);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0) ExitNow(4);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ExitNow(5);
    if (!filter->Load().ok()) ExitNow(6);
    char buf[64];
    if (Call(SYS_getcwd, long(buf), sizeof(buf)) != -EPERM) ExitNow(7);
    ExitNow(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace stockade::shim
