#include "operator/compiler/seccomp/seccomp.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/seccomp/baseline.h"

namespace stockade::compiler {
namespace {

using ::nlohmann::json;

constexpr int kEperm = 1;
constexpr int kEnosys = 38;

// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
constexpr uint64_t kCloneNamespaceFlags = 0x7E020000;

// personality(2) values a process may set: PER_LINUX, PER_LINUX32,
// UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query only).
constexpr uint64_t kPersonalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

// Socket families and types (linux/socket.h, linux/net.h).
constexpr uint64_t kAfInet = 2;
constexpr uint64_t kAfInet6 = 10;
constexpr uint64_t kAfPacket = 17;
constexpr uint64_t kAfAlg = 38;
constexpr uint64_t kAfVsock = 40;
// Families at or above this get EPERM instead of EAFNOSUPPORT (AF_MAX is 46
// in Linux 6.x; the margin leaves room for new families).
constexpr uint64_t kFamilyLimit = 64;
constexpr uint64_t kSockTypeMask = 0xf;
// SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET: what AF_INET/AF_INET6 may create
// without raw sockets (SOCK_RAW = 3 and SOCK_PACKET = 10 are refused).
constexpr uint64_t kInetTypes[] = {1, 2, 5};

struct Arg {
  uint32_t index;
  uint64_t value;
  uint64_t value_two;
  const char* op;
};

struct Rule {
  std::vector<std::string> names;
  std::string action;
  std::optional<int> errno_ret;
  std::vector<Arg> args;
};

json ArgJson(const Arg& arg) {
  return json{{"index", arg.index},
              {"value", arg.value},
              {"valueTwo", arg.value_two},
              {"op", arg.op}};
}

json RuleJson(const Rule& rule) {
  json out{{"names", rule.names}, {"action", rule.action}};
  if (rule.errno_ret.has_value()) out["errnoRet"] = *rule.errno_ret;
  if (!rule.args.empty()) {
    json args = json::array();
    for (const Arg& arg : rule.args) args.push_back(ArgJson(arg));
    out["args"] = std::move(args);
  }
  return out;
}

// Single conditions on argument 0 whose union is exactly the families in
// [0, kFamilyLimit) not in `blocked`. Each condition compares all 64 bits, so
// a value with high bits set (which the kernel truncates to an int) matches
// none of them: "family < N" and "(family & ~(2^k-1)) == base" blocks only.
// One condition per rule because runc turns several conditions on the same
// argument into separate (OR-ed) rules.
std::vector<Arg> FamilyConditions(const std::set<uint64_t>& blocked) {
  std::vector<Arg> out;
  uint64_t v = 0;
  uint64_t first_blocked = blocked.empty() ? kFamilyLimit : *blocked.begin();
  if (first_blocked > 1) {
    out.push_back({0, first_blocked, 0, "SCMP_CMP_LT"});
    v = first_blocked;
  }
  while (v < kFamilyLimit) {
    if (blocked.contains(v)) {
      ++v;
      continue;
    }
    // The largest aligned block starting at v that holds no blocked family.
    uint64_t size = 1;
    while (v % (size * 2) == 0 && v + size * 2 <= kFamilyLimit) {
      bool clear = true;
      for (uint64_t f = v + size; f < v + size * 2; ++f) {
        if (blocked.contains(f)) clear = false;
      }
      if (!clear) break;
      size *= 2;
    }
    if (size == 1) {
      out.push_back({0, v, 0, "SCMP_CMP_EQ"});
    } else {
      out.push_back({0, ~(size - 1), v, "SCMP_CMP_MASKED_EQ"});
    }
    v += size;
  }
  return out;
}

// The socket(2) allow rules: every family but AF_ALG and AF_VSOCK; without
// raw sockets also not AF_PACKET, and AF_INET/AF_INET6 only for stream,
// datagram and seqpacket sockets (type & 0xf, so SOCK_NONBLOCK/SOCK_CLOEXEC
// are fine).
std::vector<Rule> SocketRules(bool raw_sockets, const std::string& allow) {
  std::set<uint64_t> blocked = {kAfAlg, kAfVsock};
  if (!raw_sockets) blocked.insert({kAfInet, kAfInet6, kAfPacket});
  std::vector<Rule> rules;
  for (const Arg& arg : FamilyConditions(blocked)) {
    rules.push_back({{"socket"}, allow, std::nullopt, {arg}});
  }
  if (!raw_sockets) {
    for (uint64_t family : {kAfInet, kAfInet6}) {
      for (uint64_t type : kInetTypes) {
        rules.push_back({{"socket"},
                         allow,
                         std::nullopt,
                         {{0, family, 0, "SCMP_CMP_EQ"},
                          {1, kSockTypeMask, type, "SCMP_CMP_MASKED_EQ"}}});
      }
    }
  }
  return rules;
}

}  // namespace

absl::StatusOr<std::string> CompileSeccomp(const EffectivePolicy& policy) {
  const auto& syscalls = policy.syscalls();
  std::span<const std::string_view> unconditional;
  std::span<const std::string_view> filtered;
  switch (syscalls.baseline()) {
    case v1::SYSCALL_BASELINE_RUNTIME_DEFAULT:
      unconditional = RuntimeDefaultSyscalls();
      filtered = RuntimeDefaultArgFilteredSyscalls();
      break;
    case v1::SYSCALL_BASELINE_STRICT:
      unconditional = StrictSyscalls();
      filtered = StrictArgFilteredSyscalls();
      break;
    default:
      return absl::InvalidArgumentError(
          "seccomp: syscalls.baseline is not set in the effective policy");
  }

  // What a call the policy does not allow gets: the default action, which
  // explicit deny rules repeat. Complain logs and lets the call through.
  const bool complain = policy.mode() == v1::MODE_COMPLAIN;
  std::string deny_action;
  std::optional<int> deny_errno;
  if (complain) {
    deny_action = "SCMP_ACT_LOG";
  } else if (syscalls.default_action() == v1::SYSCALL_ACTION_KILL_PROCESS) {
    deny_action = "SCMP_ACT_KILL_PROCESS";
  } else if (syscalls.default_action() == v1::SYSCALL_ACTION_ERRNO) {
    deny_action = "SCMP_ACT_ERRNO";
    deny_errno = kEperm;
  } else {
    return absl::InvalidArgumentError(
        "seccomp: syscalls.defaultAction is not set in the effective policy");
  }

  const std::set<std::string> deny(syscalls.deny().begin(),
                                   syscalls.deny().end());
  // Names allowed with any arguments: the baseline's, those of the added
  // capabilities, and syscalls.allow (which also lifts a baseline's argument
  // filters: allow means unconditional). Denied names go everywhere else.
  std::set<std::string> allow(unconditional.begin(), unconditional.end());
  for (const std::string& cap : policy.capabilities().add()) {
    for (const CapabilitySyscalls& gated : CapabilityGatedSyscalls()) {
      if (gated.capability == cap) {
        allow.insert(gated.syscalls.begin(), gated.syscalls.end());
      }
    }
  }
  allow.insert(syscalls.allow().begin(), syscalls.allow().end());
  for (const std::string& name : deny) allow.erase(name);
  auto keep_filter = [&](std::string_view name) {
    std::string n(name);
    return !allow.contains(n) && !deny.contains(n) &&
           std::find(filtered.begin(), filtered.end(), name) != filtered.end();
  };

  std::vector<Rule> rules;
  const std::string kAllow = "SCMP_ACT_ALLOW";
  if (!allow.empty()) {
    rules.push_back({{allow.begin(), allow.end()}, kAllow, std::nullopt, {}});
  }
  if (keep_filter("clone")) {
    rules.push_back({{"clone"},
                     kAllow,
                     std::nullopt,
                     {{0, kCloneNamespaceFlags, 0, "SCMP_CMP_MASKED_EQ"}}});
  }
  if (keep_filter("personality")) {
    for (uint64_t persona : kPersonalities) {
      rules.push_back({{"personality"},
                       kAllow,
                       std::nullopt,
                       {{0, persona, 0, "SCMP_CMP_EQ"}}});
    }
  }
  if (keep_filter("socket")) {
    for (Rule& rule : SocketRules(policy.network().raw_sockets(), kAllow)) {
      rules.push_back(std::move(rule));
    }
  }
  if (keep_filter("clone3")) {
    rules.push_back({{"clone3"}, "SCMP_ACT_ERRNO", kEnosys, {}});
  }
  if (!deny.empty()) {
    rules.push_back({{deny.begin(), deny.end()}, deny_action, deny_errno, {}});
  }

  json out{
      {"defaultAction", deny_action},
      {"architectures",
       {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}},
  };
  if (deny_errno.has_value()) out["defaultErrnoRet"] = *deny_errno;
  json rules_json = json::array();
  for (const Rule& rule : rules) rules_json.push_back(RuleJson(rule));
  out["syscalls"] = std::move(rules_json);
  // Compact: the operator holds one per policy in memory and streams it to
  // every node; `stockade compile --format seccomp` pretty-prints it.
  return out.dump();
}

}  // namespace stockade::compiler
