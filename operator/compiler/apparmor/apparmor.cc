#include "operator/compiler/apparmor/apparmor.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace stockade::compiler {
namespace {

using ::stockade::v1::PROCFS_EXPOSURE_FULL;
using ::stockade::v1::PROCFS_EXPOSURE_MINIMAL;
using ::stockade::v1::PROCFS_EXPOSURE_NONE;
using ::stockade::v1::PROTOCOL_UDP;
using ::stockade::v1::SYSFS_EXPOSURE_READ_ONLY;

// Every file permission: what a denied path loses.
constexpr absl::string_view kAllFilePerms = "rwlkmx";

// Deny rules are audited: a plain `deny` is silent in AppArmor, and every
// denial must reach the denial stream. In complain mode the kernel reports an
// audited deny as ALLOWED instead of enforcing it.
constexpr absl::string_view kDeny = "audit deny ";

// Kernel-wide files in /proc that the Minimal exposure hides (read and
// write), and directories hidden with everything beneath them.
constexpr absl::string_view kProcKernelFiles[] = {
    "buddyinfo",     "cmdline",       "config.gz",
    "consoles",      "devices",       "diskstats",
    "dma",           "execdomains",   "fb",
    "interrupts",    "iomem",         "ioports",
    "kallsyms",      "kcore",         "key-users",
    "keys",          "kmem",          "kmsg",
    "kpagecgroup",   "kpagecount",    "kpageflags",
    "latency_stats", "lockdep",       "lockdep_chains",
    "lockdep_stats", "locks",         "mem",
    "misc",          "modules",       "mtrr",
    "pagetypeinfo",  "partitions",    "sched_debug",
    "schedstat",     "slabinfo",      "softirqs",
    "swaps",         "sysrq-trigger", "timer_list",
    "timer_stats",   "vmallocinfo",   "zoneinfo",
};
constexpr absl::string_view kProcKernelDirs[] = {
    "acpi", "asound", "bus",  "driver", "dynamic_debug",
    "fs",   "irq",    "scsi", "tty",
};

// Bytes that may appear in an unquoted path as they are. Anything else makes
// the path quoted (and escaped where AppArmor gives the byte a meaning).
bool IsPlainPathByte(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '/' || c == '.' || c == '_' ||
         c == '-' || c == '~' || c == ':' || c == '%' || c == '@' || c == '+';
}

// Appends `literal` so that AppArmor matches exactly these bytes: glob
// characters, the rule separator, quotes and backslashes are escaped with a
// backslash; control and non-ASCII bytes become octal escapes (\ooo), so a
// newline cannot end the rule. Returns whether the result must be quoted.
bool AppendEscaped(absl::string_view literal, std::string* out) {
  bool quote = false;
  for (char ch : literal) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (IsPlainPathByte(c)) {
      out->push_back(ch);
      continue;
    }
    quote = true;
    switch (c) {
      case '\\':
      case '"':
      case '*':
      case '?':
      case '[':
      case ']':
      case '{':
      case '}':
      case '^':
      case ',':
        out->push_back('\\');
        out->push_back(ch);
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          const char octal[] = {'\\', static_cast<char>('0' + (c >> 6)),
                                static_cast<char>('0' + ((c >> 3) & 7)),
                                static_cast<char>('0' + (c & 7))};
          out->append(octal, sizeof(octal));
        } else {
          out->push_back(ch);  // Space, '#', '!', '=', ... : quoting suffices.
        }
    }
  }
  return quote;
}

// A file glob: the literal path `literal` (matched byte for byte) followed by
// `glob_suffix`, which is AppArmor syntax ("", "/", "/**"). `literal` has no
// trailing slash; the root directory is the empty string.
std::string FileGlob(absl::string_view literal, absl::string_view glob_suffix) {
  std::string body;
  const bool quote = AppendEscaped(literal, &body);
  body.append(glob_suffix.data(), glob_suffix.size());
  if (!quote) return body;
  return absl::StrCat("\"", body, "\"");
}

// Drops the trailing slash of a clean path ("/" becomes "").
absl::string_view DirLiteral(absl::string_view path) {
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  return path;
}

// A path with a NUL byte names no file; leaving its rules out changes nothing
// for real paths and keeps NUL (the link-pair separator in the file DFA) out
// of the policy.
bool NamesNoFile(absl::string_view path) {
  return path.find('\0') != absl::string_view::npos;
}

// Whether `path` and `pattern` (absolute paths; "" or "/" for the root) are
// equal or one lies beneath the other. Components of `pattern` equal to "*"
// match any single component.
bool Overlaps(absl::string_view path, absl::string_view pattern) {
  std::vector<absl::string_view> a =
      absl::StrSplit(DirLiteral(path), '/', absl::SkipEmpty());
  std::vector<absl::string_view> b =
      absl::StrSplit(DirLiteral(pattern), '/', absl::SkipEmpty());
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != "*" && a[i] != b[i]) return false;
  }
  return true;
}

// The profile name as AppArmor syntax. Names follow ^[a-zA-Z0-9_./-]+$ and
// are used as they are; anything else is escaped and quoted all the same.
std::string ProfileNameToken(absl::string_view name) {
  std::string out;
  if (!AppendEscaped(name, &out)) return out;
  return absl::StrCat("\"", out, "\"");
}

// The name for a comment line: only bytes that cannot end the comment.
std::string CommentSafe(absl::string_view text) {
  std::string out;
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    out.push_back(c >= 0x20 && c < 0x7f ? ch : '?');
  }
  return out;
}

class ProfileWriter {
 public:
  void Comment(absl::string_view text) {
    absl::StrAppend(&text_, "  # ", text, "\n");
  }
  void Blank() { text_.append("\n"); }
  void Rule(absl::string_view rule) {
    absl::StrAppend(&text_, "  ", rule, ",\n");
  }
  void Allow(absl::string_view glob, absl::string_view perms) {
    absl::StrAppend(&text_, "  ", glob, " ", perms, ",\n");
  }
  void Deny(absl::string_view glob, absl::string_view perms) {
    absl::StrAppend(&text_, "  ", kDeny, glob, " ", perms, ",\n");
  }
  // Denies `perms` on `literal` as a file, as a directory, and on everything
  // beneath it (a policy path may name either).
  void DenyTree(absl::string_view literal, absl::string_view perms) {
    literal = DirLiteral(literal);
    if (!literal.empty()) Deny(FileGlob(literal, ""), perms);
    Deny(FileGlob(literal, "/"), perms);
    Deny(FileGlob(literal, "/**"), perms);
  }
  std::string& text() { return text_; }

 private:
  std::string text_;
};

void RenderFiles(const EffectivePolicy& policy, ProfileWriter& w) {
  const auto& fs = policy.filesystem();
  const auto& exec = policy.exec().allow();

  if (fs.read_only_root()) {
    w.Comment("Files: read everywhere; write only beneath the writable paths.");
    w.Allow("/", "r");
    w.Allow("/**", "rmk");  // k: read locks (sqlite) need it.
  } else {
    w.Comment("Files: read and write everywhere (readOnlyRoot: false).");
    w.Allow("/", "r");
    w.Allow("/**", "rwlkm");
  }
  // Terminals: inherited stdio on a tty must stay usable across exec.
  w.Allow("/dev/console", "rw");
  w.Allow("/dev/ptmx", "rw");
  w.Allow("/dev/pts/[0-9]*", "rw");
  w.Allow("/dev/tty", "rw");

  if (!fs.writable().empty()) {
    w.Blank();
    w.Comment("Writable paths. Code written there cannot be mapped");
    w.Comment("executable unless an allowed program lies there.");
  }
  for (const auto& writable : fs.writable()) {
    if (NamesNoFile(writable.path())) continue;
    const absl::string_view dir = DirLiteral(writable.path());
    w.Allow(FileGlob(dir, "/"), "rw");
    w.Allow(FileGlob(dir, "/**"), "rwlk");
    bool runs_code = false;
    for (const std::string& e : exec) runs_code |= Overlaps(e, dir);
    if (!runs_code) w.Deny(FileGlob(dir, "/**"), "m");
  }

  if (!fs.read_only().empty()) {
    w.Blank();
    w.Comment("Read-only paths: never writable.");
  }
  for (const std::string& path : fs.read_only()) {
    if (NamesNoFile(path)) continue;
    w.DenyTree(path, "wl");
  }

  if (!fs.deny().empty()) {
    w.Blank();
    w.Comment("Denied paths: no access at all.");
  }
  for (const std::string& path : fs.deny()) {
    if (NamesNoFile(path)) continue;
    w.DenyTree(path, kAllFilePerms);
  }

  // abstractions/base grants "owner ... mrixwlk" beneath the ecryptfs
  // private directories; take back what the policy does not grant itself.
  w.Blank();
  w.Comment("Take back the ecryptfs grants of abstractions/base.");
  struct BaseGrant {
    absl::string_view glob;                   // As abstractions/base has it.
    std::vector<absl::string_view> patterns;  // With the default tunables.
  };
  const BaseGrant kBaseGrants[] = {
      {"@{HOME}/.Private/**", {"/root/.Private", "/home/*/.Private"}},
      {"@{HOMEDIRS}/.ecryptfs/*/.Private/**", {"/home/.ecryptfs/*/.Private"}},
  };
  for (const BaseGrant& grant : kBaseGrants) {
    bool exec_allowed = false;
    bool writable = !fs.read_only_root();
    for (absl::string_view pattern : grant.patterns) {
      for (const std::string& e : exec) exec_allowed |= Overlaps(e, pattern);
      for (const auto& wr : fs.writable()) {
        writable |= Overlaps(wr.path(), pattern);
      }
    }
    std::string perms;
    if (!writable) perms.append("wl");
    if (!exec_allowed) perms.append("x");
    if (!perms.empty()) w.Deny(grant.glob, perms);
  }
}

void RenderExec(const EffectivePolicy& policy, ProfileWriter& w) {
  w.Blank();
  w.Comment("Programs: only these may be executed (in this profile); no");
  w.Comment("other rule grants x, and AppArmor denies what is not granted.");
  for (const std::string& entry : policy.exec().allow()) {
    if (NamesNoFile(entry)) continue;
    if (absl::EndsWith(entry, "/")) {
      w.Allow(FileGlob(DirLiteral(entry), "/**"), "ix");
    } else {
      w.Allow(FileGlob(entry, ""), "ix");
    }
  }
}

void RenderProcfs(const EffectivePolicy& policy, ProfileWriter& w) {
  w.Blank();
  switch (policy.procfs()) {
    case PROCFS_EXPOSURE_NONE:
      w.Comment("/proc: no access (procfs: None).");
      w.Deny("@{PROC}/", kAllFilePerms);
      w.Deny("@{PROC}/**", kAllFilePerms);
      return;
    case PROCFS_EXPOSURE_MINIMAL: {
      w.Comment("/proc: the container's processes; kernel-wide information");
      w.Comment("hidden; sysctls readable, never writable (procfs: Minimal).");
      w.Allow("@{PROC}/@{pid}/comm", "w");
      w.Allow("@{PROC}/@{pid}/task/@{tid}/comm", "w");
      for (absl::string_view file : kProcKernelFiles) {
        w.Deny(absl::StrCat("@{PROC}/", file), kAllFilePerms);
      }
      for (absl::string_view dir : kProcKernelDirs) {
        w.Deny(absl::StrCat("@{PROC}/", dir, "/"), kAllFilePerms);
        w.Deny(absl::StrCat("@{PROC}/", dir, "/**"), kAllFilePerms);
      }
      break;
    }
    case PROCFS_EXPOSURE_FULL:
    default:
      w.Comment("/proc: as a default container sees it (procfs: Full).");
      w.Allow("@{PROC}/@{pid}/**", "w");
      for (absl::string_view file : {"kcore", "kmem", "mem", "sysrq-trigger"}) {
        w.Deny(absl::StrCat("@{PROC}/", file), kAllFilePerms);
      }
      break;
  }
  // Writes only to the processes' own entries: not to files directly in
  // /proc, nor beneath non-numeric entries (sys, irq, bus, fs, ...).
  w.Deny("@{PROC}/*", "w");
  w.Deny("@{PROC}/[^0-9]*/**", "wl");
}

void RenderSysfs(const EffectivePolicy& policy, ProfileWriter& w) {
  w.Blank();
  if (policy.sysfs() == SYSFS_EXPOSURE_READ_ONLY) {
    w.Comment("/sys: readable, never writable; firmware and security");
    w.Comment("entries hidden (sysfs: ReadOnly).");
    w.Allow("/sys/", "r");
    w.Allow("/sys/**", "r");
    w.Deny("/sys/**", "wl");
    for (absl::string_view dir :
         {"/sys/firmware", "/sys/kernel/debug", "/sys/kernel/security",
          "/sys/kernel/tracing"}) {
      w.Deny(absl::StrCat(dir, "/"), kAllFilePerms);
      w.Deny(absl::StrCat(dir, "/**"), kAllFilePerms);
    }
  } else {
    w.Comment("/sys: no access (sysfs: None).");
    w.Deny("/sys/", kAllFilePerms);
    w.Deny("/sys/**", kAllFilePerms);
  }
  w.Deny("/sys/firmware/efi/efivars/**", kAllFilePerms);
}

void RenderCapabilities(const EffectivePolicy& policy, ProfileWriter& w) {
  w.Blank();
  if (policy.capabilities().add().empty()) {
    w.Comment("Capabilities: none.");
    return;
  }
  w.Comment("Capabilities: only these.");
  for (const std::string& cap : policy.capabilities().add()) {
    // Known names by contract; anything else names no capability.
    const std::string name = absl::AsciiStrToLower(cap);
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
        })) {
      continue;
    }
    w.Rule(absl::StrCat("capability ", name));
  }
}

void RenderNetwork(const EffectivePolicy& policy, ProfileWriter& w) {
  const auto& net = policy.network();
  bool stream = net.dns(), dgram = net.dns();
  for (const auto& rule : net.egress()) {
    if (rule.ports().empty()) stream = dgram = true;
    for (const auto& port : rule.ports()) {
      if (port.protocol() == PROTOCOL_UDP) {
        dgram = true;
      } else {
        stream = true;  // PROTOCOL_TCP (the default).
      }
    }
  }
  w.Blank();
  w.Comment("Network: socket types the egress rules need; destinations are");
  w.Comment("enforced by nftables and Landlock.");
  w.Rule("network unix");
  w.Rule("unix");
  if (stream) {
    w.Rule("network inet stream");
    w.Rule("network inet6 stream");
  }
  if (dgram) {
    w.Rule("network inet dgram");
    w.Rule("network inet6 dgram");
  }
  if (stream || dgram) {
    w.Comment("getaddrinfo(AI_ADDRCONFIG) and getifaddrs use rtnetlink.");
    w.Rule("network netlink raw");
  }
  if (net.raw_sockets()) {
    w.Comment("Raw and packet sockets (rawSockets: true).");
    w.Rule("network inet raw");
    w.Rule("network inet6 raw");
    w.Rule("network packet raw");
    w.Rule("network packet dgram");
  }
}

void RenderProcessRules(absl::string_view name_token, ProfileWriter& w) {
  w.Blank();
  w.Comment("No mounts; ptrace and signals only within this profile.");
  w.Rule(absl::StrCat(kDeny, "mount"));
  w.Rule(absl::StrCat(kDeny, "remount"));
  w.Rule(absl::StrCat(kDeny, "umount"));
  w.Rule(absl::StrCat(kDeny, "pivot_root"));
  w.Rule(absl::StrCat("ptrace (trace,tracedby,read,readby) peer=", name_token));
  w.Rule(absl::StrCat("signal (send,receive) peer=", name_token));
}

}  // namespace

std::string RenderAppArmorProfile(const EffectivePolicy& policy,
                                  std::string_view name_view) {
  const absl::string_view profile_name(name_view.data(), name_view.size());
  const std::string name = ProfileNameToken(profile_name);
  const bool complain = policy.mode() == ::stockade::v1::MODE_COMPLAIN;

  ProfileWriter w;
  std::string& out = w.text();
  absl::StrAppend(&out, "# AppArmor profile ", CommentSafe(profile_name), " (",
                  complain ? "Complain" : "Enforce",
                  " mode), generated by Stockade\n"
                  "# from the effective policy of that name "
                  "(stockade.<namespace>.<policy>.<hash>).\n"
                  "# Do not edit: change the policy and recompile.\n"
                  "abi <abi/3.0>,\n\n"
                  "#include <tunables/global>\n\n"
                  "profile ",
                  name, " flags=(attach_disconnected,mediate_deleted",
                  complain ? ",complain" : "", ") {\n",
                  "  #include <abstractions/base>\n\n");
  RenderFiles(policy, w);
  RenderExec(policy, w);
  RenderProcfs(policy, w);
  RenderSysfs(policy, w);
  RenderCapabilities(policy, w);
  RenderNetwork(policy, w);
  RenderProcessRules(name, w);
  out.append("}\n");
  return out;
}

}  // namespace stockade::compiler
