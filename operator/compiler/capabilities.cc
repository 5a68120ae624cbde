#include "operator/compiler/capabilities.h"

#include "absl/strings/strip.h"

namespace stockade::compiler {

std::string NormalizeCapability(absl::string_view name) {
  // capabilities(7), in kernel order (0..40).
  static constexpr absl::string_view kNames[] = {
      "CHOWN",
      "DAC_OVERRIDE",
      "DAC_READ_SEARCH",
      "FOWNER",
      "FSETID",
      "KILL",
      "SETGID",
      "SETUID",
      "SETPCAP",
      "LINUX_IMMUTABLE",
      "NET_BIND_SERVICE",
      "NET_BROADCAST",
      "NET_ADMIN",
      "NET_RAW",
      "IPC_LOCK",
      "IPC_OWNER",
      "SYS_MODULE",
      "SYS_RAWIO",
      "SYS_CHROOT",
      "SYS_PTRACE",
      "SYS_PACCT",
      "SYS_ADMIN",
      "SYS_BOOT",
      "SYS_NICE",
      "SYS_RESOURCE",
      "SYS_TIME",
      "SYS_TTY_CONFIG",
      "MKNOD",
      "LEASE",
      "AUDIT_WRITE",
      "AUDIT_CONTROL",
      "SETFCAP",
      "MAC_OVERRIDE",
      "MAC_ADMIN",
      "SYSLOG",
      "WAKE_ALARM",
      "BLOCK_SUSPEND",
      "AUDIT_READ",
      "PERFMON",
      "BPF",
      "CHECKPOINT_RESTORE",
  };
  absl::ConsumePrefix(&name, "CAP_");
  for (absl::string_view known : kNames) {
    if (name == known) return std::string(known);
  }
  return "";
}

}  // namespace stockade::compiler
