#include "operator/compiler/seccomp/syscall_names.h"

#include <seccomp.h>

#include <string>

namespace stockade::compiler {

bool IsKnownSyscall(std::string_view name) {
  std::string n(name);
  for (uint32_t arch : {SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64}) {
    if (seccomp_syscall_resolve_name_arch(arch, n.c_str()) >= 0) return true;
  }
  return false;
}

}  // namespace stockade::compiler
