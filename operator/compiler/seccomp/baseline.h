// The syscall tables behind the seccomp baselines: the container runtimes'
// default (RuntimeDefault), the measured Strict set, and the calls that a
// capability in capabilities.add brings with it.
#ifndef STOCKADE_OPERATOR_COMPILER_SECCOMP_BASELINE_H_
#define STOCKADE_OPERATOR_COMPILER_SECCOMP_BASELINE_H_

#include <span>
#include <string_view>

namespace stockade::compiler {

// Calls the baseline allows with any arguments, sorted (byte order), unique.
// The argument-filtered calls (clone, clone3, personality, socket) are not in
// these lists; see ArgFilteredSyscalls.
std::span<const std::string_view> RuntimeDefaultSyscalls();
std::span<const std::string_view> StrictSyscalls();

// Calls a baseline allows only with argument filters (or, for clone3, answers
// with ENOSYS), sorted.
//   clone:       only without namespace flags (flags & 0x7E020000 == 0).
//   clone3:      fails with ENOSYS, so libc falls back to clone, whose
//                flags seccomp can inspect.
//   personality: only 0, 8, 0x20000, 0x20008 and 0xffffffff (RuntimeDefault).
//   socket:      never AF_ALG or AF_VSOCK; AF_PACKET and raw AF_INET/AF_INET6
//                only with network.rawSockets.
std::span<const std::string_view> RuntimeDefaultArgFilteredSyscalls();
std::span<const std::string_view> StrictArgFilteredSyscalls();

// The calls a capability (name without "CAP_") makes usable, allowed when the
// policy adds that capability. Capabilities not listed bring no calls.
struct CapabilitySyscalls {
  std::string_view capability;
  std::span<const std::string_view> syscalls;
};
std::span<const CapabilitySyscalls> CapabilityGatedSyscalls();

// Calls no baseline or capability ever allows (only syscalls.allow can).
std::span<const std::string_view> AlwaysBlockedSyscalls();

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_SECCOMP_BASELINE_H_
