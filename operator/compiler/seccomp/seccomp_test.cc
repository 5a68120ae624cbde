#include "operator/compiler/seccomp/seccomp.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/seccomp/baseline.h"
#include "operator/compiler/seccomp/syscall_names.h"
#include "shim/init/seccomp_loader.h"

namespace stockade::compiler {
namespace {

using ::nlohmann::json;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;

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

json Compile(const EffectivePolicy& p) {
  absl::StatusOr<std::string> text = CompileSeccomp(p);
  EXPECT_TRUE(text.ok()) << text.status();
  return json::parse(text.value_or("{}"));
}

// Names allowed with any arguments.
std::set<std::string> Unconditional(const json& profile) {
  std::set<std::string> out;
  for (const json& rule : profile["syscalls"]) {
    if (rule["action"] == "SCMP_ACT_ALLOW" && !rule.contains("args")) {
      for (const json& n : rule["names"]) out.insert(n.get<std::string>());
    }
  }
  return out;
}

std::set<std::string> AllNames(const json& profile) {
  std::set<std::string> out;
  for (const json& rule : profile["syscalls"]) {
    for (const json& n : rule["names"]) out.insert(n.get<std::string>());
  }
  return out;
}

// What the profile does with name(args), with runc's semantics: a rule
// matches when all its conditions hold, except that several conditions on
// one argument are separate rules. Returns the action (and errno, if any).
struct Verdict {
  std::string action;
  std::optional<int> errno_ret;
  bool operator==(const Verdict&) const = default;
};
void PrintTo(const Verdict& v, std::ostream* os) {
  *os << v.action;
  if (v.errno_ret.has_value()) *os << "(" << *v.errno_ret << ")";
}
bool Holds(const json& arg, const std::vector<uint64_t>& args) {
  uint64_t a = args.at(arg["index"].get<size_t>());
  uint64_t v = arg["value"].get<uint64_t>();
  uint64_t v2 = arg.value("valueTwo", uint64_t{0});
  const std::string op = arg["op"];
  if (op == "SCMP_CMP_EQ") return a == v;
  if (op == "SCMP_CMP_NE") return a != v;
  if (op == "SCMP_CMP_LT") return a < v;
  if (op == "SCMP_CMP_LE") return a <= v;
  if (op == "SCMP_CMP_GT") return a > v;
  if (op == "SCMP_CMP_GE") return a >= v;
  if (op == "SCMP_CMP_MASKED_EQ") return (a & v) == v2;
  ADD_FAILURE() << "unknown op " << op;
  return false;
}
Verdict Evaluate(const json& profile, const std::string& name,
                 std::vector<uint64_t> args = {}) {
  args.resize(6, 0);
  for (const json& rule : profile["syscalls"]) {
    if (std::find(rule["names"].begin(), rule["names"].end(), name) ==
        rule["names"].end()) {
      continue;
    }
    std::map<size_t, int> per_arg;
    for (const json& a : rule.value("args", json::array())) {
      ++per_arg[a["index"].get<size_t>()];
    }
    bool split = std::any_of(per_arg.begin(), per_arg.end(),
                             [](const auto& kv) { return kv.second > 1; });
    bool match;
    if (!rule.contains("args")) {
      match = true;
    } else if (split) {
      match = std::any_of(rule["args"].begin(), rule["args"].end(),
                          [&](const json& a) { return Holds(a, args); });
    } else {
      match = std::all_of(rule["args"].begin(), rule["args"].end(),
                          [&](const json& a) { return Holds(a, args); });
    }
    if (match) {
      std::optional<int> e;
      if (rule.contains("errnoRet")) e = rule["errnoRet"].get<int>();
      return {rule["action"], e};
    }
  }
  std::optional<int> e;
  if (profile.contains("defaultErrnoRet")) {
    e = profile["defaultErrnoRet"].get<int>();
  }
  return {profile["defaultAction"], e};
}

const Verdict kAllow{"SCMP_ACT_ALLOW", std::nullopt};
const Verdict kEperm{"SCMP_ACT_ERRNO", 1};

TEST(SeccompTablesTest, SortedUniqueAndKnownToLibseccomp) {
  auto check = [](std::string_view table,
                  std::span<const std::string_view> names) {
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end())) << table;
    EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end())
        << table << " has duplicates";
    for (std::string_view n : names) {
      EXPECT_TRUE(IsKnownSyscall(n)) << table << ": " << n;
    }
  };
  check("RuntimeDefault", RuntimeDefaultSyscalls());
  check("Strict", StrictSyscalls());
  check("RuntimeDefault filtered", RuntimeDefaultArgFilteredSyscalls());
  check("Strict filtered", StrictArgFilteredSyscalls());
  check("always blocked", AlwaysBlockedSyscalls());
  for (const CapabilitySyscalls& cap : CapabilityGatedSyscalls()) {
    check(cap.capability, cap.syscalls);
  }
}

TEST(SeccompTablesTest, BaselinesAreDisjointFromWhatTheyMustNotAllow) {
  std::set<std::string_view> rd(RuntimeDefaultSyscalls().begin(),
                                RuntimeDefaultSyscalls().end());
  std::set<std::string_view> strict(StrictSyscalls().begin(),
                                    StrictSyscalls().end());
  for (std::string_view n : RuntimeDefaultArgFilteredSyscalls()) {
    EXPECT_FALSE(rd.contains(n)) << n;
    EXPECT_FALSE(strict.contains(n)) << n;
  }
  for (std::string_view n : AlwaysBlockedSyscalls()) {
    EXPECT_FALSE(rd.contains(n)) << n;
    EXPECT_FALSE(strict.contains(n)) << n;
  }
  for (const CapabilitySyscalls& cap : CapabilityGatedSyscalls()) {
    for (std::string_view n : cap.syscalls) {
      EXPECT_FALSE(rd.contains(n)) << cap.capability << ": " << n;
      EXPECT_FALSE(strict.contains(n)) << cap.capability << ": " << n;
    }
  }
  // Strict only narrows RuntimeDefault.
  for (std::string_view n : strict) EXPECT_TRUE(rd.contains(n)) << n;
  for (std::string_view n : StrictArgFilteredSyscalls()) {
    EXPECT_THAT(RuntimeDefaultArgFilteredSyscalls(), Contains(n));
  }
  // Sizes, to notice accidental edits: moby's ~361 minus the 32-bit-only
  // names, io_uring and the ptrace family; Strict is much smaller.
  EXPECT_GE(rd.size(), 290u);
  EXPECT_LE(strict.size(), 180u);
  EXPECT_LT(strict.size() * 3, rd.size() * 2);
}

TEST(SeccompTest, ShapeOfTheOciObject) {
  json p = Compile(Policy());
  EXPECT_EQ(p["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(p["defaultErrnoRet"], 1);
  EXPECT_EQ(p["architectures"],
            json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                  "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}));
  EXPECT_FALSE(p.contains("flags"));  // runc 1.1 rejects it.
  std::set<std::string> keys;
  for (const auto& [k, v] : p.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"architectures", "defaultAction",
                                         "defaultErrnoRet", "syscalls"}));
  for (const json& rule : p["syscalls"]) {
    ASSERT_TRUE(rule["names"].is_array());
    ASSERT_FALSE(rule["names"].empty());
    EXPECT_TRUE(std::is_sorted(rule["names"].begin(), rule["names"].end()));
    ASSERT_TRUE(rule["action"].is_string());
  }
  // The unconditional allow list is the baseline.
  std::set<std::string> rd(RuntimeDefaultSyscalls().begin(),
                           RuntimeDefaultSyscalls().end());
  EXPECT_EQ(Unconditional(p), rd);
}

TEST(SeccompTest, RuntimeDefaultArgumentFilters) {
  json p = Compile(Policy());
  // clone: only without namespace flags.
  EXPECT_EQ(Evaluate(p, "clone", {0x01200011}), kAllow);  // glibc fork()
  EXPECT_EQ(Evaluate(p, "clone", {0x003d0f00}), kAllow);  // pthread_create
  for (uint64_t ns : {0x00020000, 0x02000000, 0x04000000, 0x08000000,
                      0x10000000, 0x20000000, 0x40000000}) {
    EXPECT_EQ(Evaluate(p, "clone", {ns | 17}), kEperm) << std::hex << ns;
  }
  EXPECT_EQ(Evaluate(p, "clone3"), (Verdict{"SCMP_ACT_ERRNO", 38}));
  // personality: only the five harmless values.
  for (uint64_t v : {0x0ul, 0x8ul, 0x20000ul, 0x20008ul, 0xfffffffful}) {
    EXPECT_EQ(Evaluate(p, "personality", {v}), kAllow) << v;
  }
  for (uint64_t v : {0x0040000ul, 0x0400000ul, 0x1ul, 0x100000000ul}) {
    EXPECT_EQ(Evaluate(p, "personality", {v}), kEperm) << v;
  }
  // Always blocked.
  for (std::string_view n : AlwaysBlockedSyscalls()) {
    EXPECT_EQ(Evaluate(p, std::string(n)), kEperm) << n;
  }
  EXPECT_EQ(Evaluate(p, "ptrace"), kEperm);
  EXPECT_EQ(Evaluate(p, "open_by_handle_at"), kEperm);
}

// socket(family, type): which the profile lets through, for every family
// up to 80 and every type, with and without flags and high bits.
void CheckSockets(const json& p, bool raw) {
  const uint64_t kFlags = 04000 | 02000000;  // SOCK_NONBLOCK | SOCK_CLOEXEC
  for (uint64_t family = 0; family < 80; ++family) {
    for (uint64_t type = 0; type < 16; ++type) {
      for (uint64_t flags : {uint64_t{0}, kFlags}) {
        bool inet = family == 2 || family == 10;
        bool expected = family < 64 && family != 38 && family != 40;
        if (!raw) {
          expected = expected && family != 17 &&
                     (!inet || type == 1 || type == 2 || type == 5);
        }
        EXPECT_EQ(Evaluate(p, "socket", {family, type | flags}),
                  expected ? kAllow : kEperm)
            << "raw=" << raw << " family=" << family << " type=" << type
            << " flags=" << flags;
      }
    }
  }
  // High bits the kernel truncates away never widen the filter.
  for (uint64_t family : {2, 10, 17, 38, 40}) {
    EXPECT_EQ(Evaluate(p, "socket", {(uint64_t{1} << 32) | family, 3}), kEperm);
  }
}

TEST(SeccompTest, SocketFamiliesWithoutRawSockets) {
  CheckSockets(Compile(Policy()), false);
  CheckSockets(Compile(Policy(v1::SYSCALL_BASELINE_STRICT)), false);
}

TEST(SeccompTest, SocketFamiliesWithRawSockets) {
  EffectivePolicy policy = Policy();
  policy.mutable_network()->set_raw_sockets(true);
  CheckSockets(Compile(policy), true);
  policy.mutable_syscalls()->set_baseline(v1::SYSCALL_BASELINE_STRICT);
  CheckSockets(Compile(policy), true);
}

TEST(SeccompTest, StrictIsTheMeasuredSetWithTheSameFilters) {
  json p = Compile(Policy(v1::SYSCALL_BASELINE_STRICT));
  std::set<std::string> strict(StrictSyscalls().begin(),
                               StrictSyscalls().end());
  EXPECT_EQ(Unconditional(p), strict);
  EXPECT_EQ(Evaluate(p, "clone", {0x01200011}), kAllow);
  EXPECT_EQ(Evaluate(p, "clone", {0x10000000 | 17}), kEperm);
  EXPECT_EQ(Evaluate(p, "clone3"), (Verdict{"SCMP_ACT_ERRNO", 38}));
  EXPECT_EQ(Evaluate(p, "personality", {0}), kEperm);  // Not measured.
  for (const char* n :
       {"ptrace", "mount", "unshare", "keyctl", "bpf", "io_uring_setup",
        "seccomp", "memfd_create", "inotify_init1", "msgget", "mknod"}) {
    EXPECT_EQ(Evaluate(p, n), kEperm) << n;
  }
  for (const char* n : {"read", "openat", "execve", "futex", "epoll_pwait",
                        "connect", "wait4", "exit_group", "getrandom"}) {
    EXPECT_EQ(Evaluate(p, n), kAllow) << n;
  }
}

TEST(SeccompTest, DenyRemovesEvenArgumentFilteredCalls) {
  EffectivePolicy policy = Policy();
  policy.mutable_syscalls()->add_deny("getcwd");
  policy.mutable_syscalls()->add_deny("socket");
  policy.mutable_capabilities()->add_add("SYS_PTRACE");
  policy.mutable_syscalls()->add_deny("ptrace");  // Beats the capability.
  json p = Compile(policy);
  EXPECT_THAT(Unconditional(p), Not(Contains("getcwd")));
  EXPECT_THAT(Unconditional(p), Not(Contains("ptrace")));
  EXPECT_THAT(Unconditional(p), Contains("process_vm_readv"));
  for (const char* n : {"getcwd", "socket", "ptrace"}) {
    EXPECT_EQ(Evaluate(p, n, {2, 1}), kEperm) << n;
  }
  const json& last = p["syscalls"].back();
  EXPECT_EQ(last["names"], json({"getcwd", "ptrace", "socket"}));
  EXPECT_EQ(last["action"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(last["errnoRet"], 1);
  // No allow rule of any kind names a denied call.
  for (const json& rule : p["syscalls"]) {
    if (rule["action"] != "SCMP_ACT_ALLOW") continue;
    for (const char* n : {"getcwd", "socket", "ptrace"}) {
      EXPECT_THAT(rule["names"], Not(Contains(n)));
    }
  }
}

TEST(SeccompTest, AllowAddsNamesUnconditionally) {
  EffectivePolicy policy = Policy(v1::SYSCALL_BASELINE_STRICT);
  policy.mutable_syscalls()->add_allow("clone3");
  policy.mutable_syscalls()->add_allow("inotify_init1");
  policy.mutable_syscalls()->add_allow("socket");
  json p = Compile(policy);
  EXPECT_THAT(Unconditional(p), Contains("inotify_init1"));
  EXPECT_EQ(Evaluate(p, "clone3"), kAllow);
  EXPECT_EQ(Evaluate(p, "socket", {17, 3}), kAllow);  // Allow is unconditional.
  for (const json& rule : p["syscalls"]) {
    if (rule.contains("args") || rule.contains("errnoRet")) {
      EXPECT_THAT(rule["names"], Not(Contains("socket")));
      EXPECT_THAT(rule["names"], Not(Contains("clone3")));
    }
  }
  EXPECT_EQ(Evaluate(p, "clone", {0x10000000}), kEperm);  // Still filtered.
}

TEST(SeccompTest, CapabilitiesBringTheirCalls) {
  EffectivePolicy policy = Policy();
  policy.mutable_capabilities()->add_add("CHOWN");
  policy.mutable_capabilities()->add_add("SYS_ADMIN");
  policy.mutable_capabilities()->add_add("SYS_PTRACE");
  json p = Compile(policy);
  for (const char* n : {"ptrace", "process_vm_readv", "process_vm_writev",
                        "kcmp", "pidfd_getfd", "process_madvise"}) {
    EXPECT_EQ(Evaluate(p, n), kAllow) << n;
  }
  // SYS_ADMIN is not mapped: the namespace and mount calls stay blocked.
  for (const char* n : {"mount", "unshare", "setns", "bpf", "umount2"}) {
    EXPECT_EQ(Evaluate(p, n), kEperm) << n;
  }
  EXPECT_EQ(Evaluate(p, "clone", {0x10000000}), kEperm);
  EXPECT_EQ(Evaluate(p, "chroot"), kEperm);
  // Each mapped capability adds exactly its calls.
  for (const CapabilitySyscalls& cap : CapabilityGatedSyscalls()) {
    EffectivePolicy one = Policy();
    one.mutable_capabilities()->add_add(std::string(cap.capability));
    std::set<std::string> got = Unconditional(Compile(one));
    std::set<std::string> want(RuntimeDefaultSyscalls().begin(),
                               RuntimeDefaultSyscalls().end());
    want.insert(cap.syscalls.begin(), cap.syscalls.end());
    EXPECT_EQ(got, want) << cap.capability;
  }
}

TEST(SeccompTest, ComplainLogsInsteadOfDenying) {
  EffectivePolicy policy = Policy();
  policy.set_mode(v1::MODE_COMPLAIN);
  policy.mutable_syscalls()->add_deny("getcwd");
  json p = Compile(policy);
  EXPECT_EQ(p["defaultAction"], "SCMP_ACT_LOG");
  EXPECT_FALSE(p.contains("defaultErrnoRet"));
  EXPECT_EQ(Evaluate(p, "keyctl").action, "SCMP_ACT_LOG");
  EXPECT_EQ(Evaluate(p, "getcwd").action, "SCMP_ACT_LOG");
  EXPECT_EQ(p["syscalls"].back()["action"], "SCMP_ACT_LOG");
  EXPECT_FALSE(p["syscalls"].back().contains("errnoRet"));
  // clone3's ENOSYS is compatibility, not a denial: it stays.
  EXPECT_EQ(Evaluate(p, "clone3"), (Verdict{"SCMP_ACT_ERRNO", 38}));
}

TEST(SeccompTest, KillProcessAction) {
  EffectivePolicy policy = Policy();
  policy.mutable_syscalls()->set_default_action(
      v1::SYSCALL_ACTION_KILL_PROCESS);
  policy.mutable_syscalls()->add_deny("getcwd");
  json p = Compile(policy);
  EXPECT_EQ(p["defaultAction"], "SCMP_ACT_KILL_PROCESS");
  EXPECT_FALSE(p.contains("defaultErrnoRet"));
  EXPECT_EQ(Evaluate(p, "getcwd").action, "SCMP_ACT_KILL_PROCESS");
  EXPECT_EQ(Evaluate(p, "keyctl").action, "SCMP_ACT_KILL_PROCESS");
  EXPECT_FALSE(p["syscalls"].back().contains("errnoRet"));
}

TEST(SeccompTest, Deterministic) {
  EffectivePolicy a = Policy(v1::SYSCALL_BASELINE_STRICT);
  a.mutable_syscalls()->add_allow("inotify_init1");
  a.mutable_syscalls()->add_allow("memfd_create");
  a.mutable_syscalls()->add_deny("getcwd");
  a.mutable_capabilities()->add_add("SYS_PTRACE");
  a.mutable_capabilities()->add_add("SYS_TIME");
  EffectivePolicy b = a;
  b.mutable_capabilities()->mutable_add()->SwapElements(0, 1);
  absl::StatusOr<std::string> first = CompileSeccomp(a);
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*CompileSeccomp(a), *first);
  EXPECT_EQ(*CompileSeccomp(b), *first);
  EXPECT_NE(*CompileSeccomp(Policy()), *first);
}

TEST(SeccompTest, UnsetEnumsAreErrors) {
  EffectivePolicy p = Policy();
  p.mutable_syscalls()->set_baseline(v1::SYSCALL_BASELINE_UNSPECIFIED);
  EXPECT_FALSE(CompileSeccomp(p).ok());
  p = Policy();
  p.mutable_syscalls()->set_default_action(v1::SYSCALL_ACTION_UNSPECIFIED);
  EXPECT_FALSE(CompileSeccomp(p).ok());
}

// Many variants: every emitted name is known to libseccomp, and every
// profile builds into a filter for all five architectures (without loading).
TEST(SeccompTest, EveryVariantUsesKnownNamesAndBuilds) {
  int variants = 0;
  for (auto baseline :
       {v1::SYSCALL_BASELINE_RUNTIME_DEFAULT, v1::SYSCALL_BASELINE_STRICT}) {
    for (auto mode : {v1::MODE_ENFORCE, v1::MODE_COMPLAIN}) {
      for (auto action :
           {v1::SYSCALL_ACTION_ERRNO, v1::SYSCALL_ACTION_KILL_PROCESS}) {
        for (bool raw : {false, true}) {
          for (bool extra : {false, true}) {
            EffectivePolicy p = Policy(baseline);
            p.set_mode(mode);
            p.mutable_syscalls()->set_default_action(action);
            p.mutable_network()->set_raw_sockets(raw);
            if (extra) {
              for (const CapabilitySyscalls& cap : CapabilityGatedSyscalls()) {
                p.mutable_capabilities()->add_add(std::string(cap.capability));
              }
              p.mutable_syscalls()->add_allow("memfd_create");
              p.mutable_syscalls()->add_allow("personality");
              p.mutable_syscalls()->add_deny("getcwd");
              p.mutable_syscalls()->add_deny("socket");
            }
            absl::StatusOr<std::string> text = CompileSeccomp(p);
            ASSERT_TRUE(text.ok()) << text.status();
            json profile = json::parse(*text);
            for (const std::string& n : AllNames(profile)) {
              EXPECT_TRUE(IsKnownSyscall(n)) << n;
            }
            absl::StatusOr<shim::OciSeccompFilter> filter =
                shim::OciSeccompFilter::Build(*text);
            ASSERT_TRUE(filter.ok()) << filter.status();
            absl::StatusOr<std::string> bpf = filter->ExportBpf();
            ASSERT_TRUE(bpf.ok()) << bpf.status();
            EXPECT_GT(bpf->size(), 100u);
            ++variants;
          }
        }
      }
    }
  }
  EXPECT_EQ(variants, 32);
}

}  // namespace
}  // namespace stockade::compiler
