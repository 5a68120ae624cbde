#include "node/denials/kernel_log.h"

#include <seccomp.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace stockade::node::denials {
namespace {

constexpr int kAuditSyscall = 1300;
constexpr int kAuditEoe = 1320;
constexpr int kAuditAvc = 1400;
constexpr int kAuditSeccomp = 1326;
constexpr int kAuditLandlockAccess = 1423;
constexpr int kAuditLandlockDomain = 1424;

// Fields whose values audit hex-encodes when they hold spaces, quotes or
// control characters.
bool MayBeHex(absl::string_view key) {
  return key == "comm" || key == "exe" || key == "name" || key == "path" ||
         key == "profile" || key == "cwd";
}

std::optional<std::string> HexDecode(absl::string_view v) {
  if (v.empty() || v.size() % 2 != 0 || v.size() > 8192) return std::nullopt;
  std::string out;
  out.reserve(v.size() / 2);
  for (size_t i = 0; i < v.size(); i += 2) {
    int hi = 0, lo = 0;
    for (int* d : {&hi, &lo}) {
      char c = v[i + (d == &lo ? 1 : 0)];
      if (c >= '0' && c <= '9') {
        *d = c - '0';
      } else if (c >= 'A' && c <= 'F') {
        *d = c - 'A' + 10;
      } else {
        return std::nullopt;  // audit writes upper-case hex only
      }
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

// The seccomp action of a 1326 record's code (SECCOMP_RET_ACTION_FULL).
const char* SeccompAction(uint32_t code) {
  switch (code & 0xffff0000U) {
    case 0x80000000U:
      return "kill_process";
    case 0x00000000U:
      return "kill_thread";
    case 0x00030000U:
      return "trap";
    case 0x00050000U:
      return "errno";
    case 0x7fc00000U:
      return "user_notif";
    case 0x7ff00000U:
      return "trace";
    case 0x7ffc0000U:
      return "log";
    default:
      return "unknown";
  }
}

std::string SyscallName(absl::string_view arch_hex, absl::string_view nr) {
  uint32_t arch = 0;
  int number = -1;
  if (!absl::SimpleHexAtoi(arch_hex, &arch) || !absl::SimpleAtoi(nr, &number) ||
      number < 0) {
    return std::string(nr);
  }
  char* name = seccomp_syscall_resolve_num_arch(arch, number);
  if (name == nullptr) return std::string(nr);
  std::string out = name;
  free(name);
  return out;
}

int64_t Int(const std::map<std::string, std::string>& f, const char* key) {
  int64_t v = 0;
  auto it = f.find(key);
  if (it == f.end() || !absl::SimpleAtoi(it->second, &v)) return 0;
  return v;
}

std::string Str(const std::map<std::string, std::string>& f, const char* key) {
  auto it = f.find(key);
  return it == f.end() ? "" : it->second;
}

// "stockade-egress-drop [ns/name ]IN=... OUT=... SRC=... DST=... PROTO=TCP
// SPT=... DPT=443 ..."
std::optional<KernelRecord> ParseEgressLine(absl::string_view message) {
  KernelRecord r;
  r.layer = Layer::kNetwork;
  if (absl::ConsumePrefix(&message, kEgressDropPrefix)) {
    r.complained = false;
  } else if (absl::ConsumePrefix(&message, kEgressComplainPrefix)) {
    r.complained = true;
  } else {
    return std::nullopt;
  }
  message = absl::StripLeadingAsciiWhitespace(message);
  // An optional policy name before the first KEY=VALUE.
  size_t space = message.find(' ');
  absl::string_view first = message.substr(0, space);
  if (!first.empty() && !absl::StrContains(first, '=')) {
    r.policy = std::string(first);
    message = space == absl::string_view::npos ? "" : message.substr(space + 1);
  }
  std::map<std::string, std::string> f = ParseAuditFields(message);
  r.destination = Str(f, "DST");
  r.protocol = absl::AsciiStrToLower(Str(f, "PROTO"));
  r.port = static_cast<int>(Int(f, "DPT"));
  if (r.destination.empty()) return std::nullopt;
  return r;
}

}  // namespace

bool IsDenialAuditType(int type) {
  return type == kAuditSyscall || type == kAuditEoe || type == kAuditAvc ||
         type == kAuditSeccomp || type == kAuditLandlockAccess ||
         type == kAuditLandlockDomain;
}

const char* LayerName(Layer layer) {
  switch (layer) {
    case Layer::kSeccomp:
      return "seccomp";
    case Layer::kAppArmor:
      return "apparmor";
    case Layer::kLandlock:
      return "landlock";
    case Layer::kNetwork:
      return "network";
    case Layer::kPids:
      return "pids";
  }
  return "unknown";
}

std::map<std::string, std::string> ParseAuditFields(absl::string_view body) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i < body.size()) {
    while (i < body.size() && body[i] == ' ') ++i;
    size_t eq = body.find('=', i);
    if (eq == absl::string_view::npos) break;
    size_t key_start = i;
    // A key is one token: anything before '=' back to the last space.
    absl::string_view key = body.substr(key_start, eq - key_start);
    if (key.find(' ') != absl::string_view::npos) {
      key = key.substr(key.rfind(' ') + 1);
    }
    i = eq + 1;
    std::string value;
    if (i < body.size() && (body[i] == '"' || body[i] == '\'')) {
      char quote = body[i];
      size_t close = body.find(quote, i + 1);
      if (close == absl::string_view::npos) close = body.size();
      value = std::string(body.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      size_t end = body.find(' ', i);
      if (end == absl::string_view::npos) end = body.size();
      value = std::string(body.substr(i, end - i));
      i = end;
      if (MayBeHex(key)) {
        if (std::optional<std::string> decoded = HexDecode(value)) {
          value = *decoded;
        }
      }
    }
    if (!key.empty()) out.emplace(std::string(key), std::move(value));
  }
  return out;
}

std::optional<KernelRecord> ParseKernelRecord(absl::string_view record) {
  // /dev/kmsg: "PRI,SEQ,USEC,FLAGS;MESSAGE\n continuation..."
  record = record.substr(0, record.find('\n'));
  if (size_t semi = record.find(';');
      semi != absl::string_view::npos && semi < 64 &&
      record.substr(0, semi).find(' ') == absl::string_view::npos) {
    // PRI is facility * 8 + level. Only the kernel logs with facility 0: a
    // process writing to /dev/kmsg is given LOG_USER at least, so it cannot
    // forge an egress drop or a pids refusal.
    int pri = -1;
    if (!absl::SimpleAtoi(record.substr(0, record.find(',')), &pri) ||
        pri < 0 || pri >= 8) {
      return std::nullopt;
    }
    record = record.substr(semi + 1);
  }
  if (absl::StartsWith(record, "stockade-egress-")) {
    return ParseEgressLine(record);
  }
  if (absl::ConsumePrefix(&record, kPidsForkRejected)) {
    absl::string_view cgroup = absl::StripTrailingAsciiWhitespace(record);
    if (!absl::StartsWith(cgroup, "/") || absl::StrContains(cgroup, "..")) {
      return std::nullopt;
    }
    KernelRecord r;
    r.layer = Layer::kPids;
    r.cgroup = std::string(cgroup);
    r.operation = "fork";
    return r;
  }
  absl::string_view message = record;
  if (!absl::ConsumePrefix(&message, "audit: type=")) return std::nullopt;
  size_t space = message.find(' ');
  int type = 0;
  if (space == absl::string_view::npos ||
      !absl::SimpleAtoi(message.substr(0, space), &type)) {
    return std::nullopt;
  }
  // Most of what audit sends (PROCTITLE, CONFIG_CHANGE, ...) is none of
  // ours: cheap to pass over, which matters in a flood.
  if (!IsDenialAuditType(type)) return std::nullopt;
  message = message.substr(space + 1);
  KernelRecord r;
  // "audit(1796564358.894:94): "
  if (absl::ConsumePrefix(&message, "audit(")) {
    size_t colon = message.find(':');
    size_t close = message.find("):");
    if (colon != absl::string_view::npos && close != absl::string_view::npos &&
        colon < close) {
      if (!absl::SimpleAtoi(message.substr(colon + 1, close - colon - 1),
                            &r.serial)) {
        r.serial = 0;  // not grouped with other records
      }
      message = message.substr(close + 2);
    }
  }
  std::map<std::string, std::string> f = ParseAuditFields(message);
  r.pid = Int(f, "pid");
  r.ppid = Int(f, "ppid");
  r.comm = Str(f, "comm");
  r.exe = Str(f, "exe");
  switch (type) {
    case kAuditSeccomp: {
      uint32_t code = 0;
      const std::string code_field = Str(f, "code");
      absl::string_view code_text = code_field;
      absl::ConsumePrefix(&code_text, "0x");
      if (!absl::SimpleHexAtoi(code_text, &code)) return std::nullopt;
      r.layer = Layer::kSeccomp;
      r.action = SeccompAction(code);
      r.complained = r.action == "log";
      r.syscall = SyscallName(Str(f, "arch"), Str(f, "syscall"));
      return r;
    }
    case kAuditAvc: {
      std::string verdict = Str(f, "apparmor");
      if (verdict != "DENIED" && verdict != "ALLOWED") return std::nullopt;
      r.layer = Layer::kAppArmor;
      r.complained = verdict == "ALLOWED";
      r.operation = Str(f, "operation");
      r.profile = Str(f, "profile");
      r.path = Str(f, "name");
      r.access = Str(f, "denied_mask").empty() ? Str(f, "requested_mask")
                                               : Str(f, "denied_mask");
      return r;
    }
    case kAuditLandlockAccess: {
      r.layer = Layer::kLandlock;
      r.domain = Str(f, "domain");
      r.access = Str(f, "blockers");
      r.path = Str(f, "path");
      if (r.path.empty() && f.count("daddr")) {
        r.destination = Str(f, "daddr");
        r.port = static_cast<int>(Int(f, "dest"));
        r.protocol = "tcp";  // Landlock restricts TCP bind and connect
      }
      if (r.domain.empty() || r.access.empty()) return std::nullopt;
      return r;
    }
    case kAuditLandlockDomain: {
      if (Str(f, "status") != "allocated") return std::nullopt;
      r.kind = KernelRecord::Kind::kLandlockDomain;
      r.layer = Layer::kLandlock;
      r.domain = Str(f, "domain");
      if (r.domain.empty()) return std::nullopt;
      return r;
    }
    case kAuditEoe:
      r.kind = KernelRecord::Kind::kEndOfEvent;
      if (r.serial == 0) return std::nullopt;
      return r;
    case kAuditSyscall: {
      r.kind = KernelRecord::Kind::kSyscall;
      r.syscall = SyscallName(Str(f, "arch"), Str(f, "syscall"));
      return r;
    }
    default:
      return std::nullopt;
  }
}

}  // namespace stockade::node::denials
