// Parsing the kernel's reports of denials: audit records (seccomp type 1326,
// AppArmor 1400, Landlock 1423/1424, the SYSCALL record 1300 that carries the
// process of a Landlock denial), the nftables log lines of Stockade's
// egress rules and the pids controller's refusal of a fork, as /dev/kmsg
// hands them out. The bytes are the kernel's, but
// a confined process chooses much of them (its comm, the paths it tries):
// every field is parsed defensively (node/denials/kernel_log_fuzzer.cc).
#ifndef STOCKADE_NODE_DENIALS_KERNEL_LOG_H_
#define STOCKADE_NODE_DENIALS_KERNEL_LOG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace stockade::node::denials {

enum class Layer { kSeccomp, kAppArmor, kLandlock, kNetwork, kPids };
const char* LayerName(Layer layer);  // "seccomp", "apparmor", ...

// What one kernel record says (fields not named by its kind stay empty).
struct KernelRecord {
  enum class Kind {
    kDenial,          // a denial (or, complained, what would have been one)
    kLandlockDomain,  // 1424: which process made a Landlock domain
    kSyscall,         // 1300: the process of the event `serial`
    kEndOfEvent,      // 1320: the event `serial` has no more records
  };
  Kind kind = Kind::kDenial;
  Layer layer = Layer::kSeccomp;
  bool complained = false;  // let through (Complain mode), reported only
  uint64_t serial = 0;      // audit(SECONDS:SERIAL): groups one event
  int64_t pid = 0;
  int64_t ppid = 0;  // SYSCALL records
  std::string comm, exe;
  // seccomp
  std::string syscall;  // name ("ptrace"), or the number when unknown
  std::string action;   // "errno", "log", "kill_process", ...
  // AppArmor and Landlock
  std::string operation;  // AppArmor operation ("open", "exec")
  std::string profile;    // AppArmor profile
  std::string path;
  std::string access;  // "r", "w"; Landlock blockers ("fs.write_file")
  std::string domain;  // Landlock domain id
  // network (nftables log line)
  std::string policy;  // "namespace/name" from the log prefix, when present
  std::string destination, protocol;
  int port = 0;
  // pids: the cgroup whose pids.max refused a fork ("/k8s.io/<id>")
  std::string cgroup;
};

// The kernel's line when a cgroup's pids.max first refuses a fork (once per
// cgroup: later refusals are counted in its pids.events only).
inline constexpr char kPidsForkRejected[] =
    "cgroup: fork rejected by pids controller in ";

// The nftables log prefixes of the compiled egress rules
// (operator/compiler/nftables).
inline constexpr char kEgressDropPrefix[] = "stockade-egress-drop";
inline constexpr char kEgressComplainPrefix[] = "stockade-egress-complain";

// Whether audit records of this type are any of ParseKernelRecord's (the
// others are passed over unparsed).
bool IsDenialAuditType(int type);

// One /dev/kmsg record ("PRI,SEQ,USEC,FLAGS;MESSAGE", continuation lines
// after it ignored) or a bare message. nullopt for anything that is not one
// of the records above.
std::optional<KernelRecord> ParseKernelRecord(absl::string_view record);

// The key=value fields of an audit message body (values unquoted; audit's
// hex encoding of strings with spaces or quotes undone). Exposed for tests.
std::map<std::string, std::string> ParseAuditFields(absl::string_view body);

}  // namespace stockade::node::denials

#endif  // STOCKADE_NODE_DENIALS_KERNEL_LOG_H_
