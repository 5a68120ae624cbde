// Syscall names as libseccomp knows them, for the architectures Stockade
// targets (x86_64 and aarch64).
#ifndef STOCKADE_OPERATOR_COMPILER_SECCOMP_SYSCALL_NAMES_H_
#define STOCKADE_OPERATOR_COMPILER_SECCOMP_SYSCALL_NAMES_H_

#include <string_view>

namespace stockade::compiler {

// True when libseccomp resolves the name on x86_64 or on aarch64.
bool IsKnownSyscall(std::string_view name);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_SECCOMP_SYSCALL_NAMES_H_
