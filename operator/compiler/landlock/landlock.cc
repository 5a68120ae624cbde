#include "operator/compiler/landlock/landlock.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace stockade::compiler {
namespace {

namespace v1 = ::stockade::v1;
using ::stockade::v1::LandlockFsAccess;
using ::stockade::v1::LandlockPathRule;
using ::stockade::v1::LandlockRuleset;

// Most distinct TCP ports one ruleset holds as connect rules. Beyond this the
// ruleset (one rule per port) gets large and slow to build at every start.
constexpr size_t kMaxConnectPorts = 1024;

// Lowest Landlock ABI that knows an access right.
int AbiOf(LandlockFsAccess access) {
  switch (access) {
    case v1::LANDLOCK_FS_REFER:
      return 2;
    case v1::LANDLOCK_FS_TRUNCATE:
      return 3;
    case v1::LANDLOCK_FS_IOCTL_DEV:
      return 5;
    default:
      return 1;
  }
}

// Every filesystem right up to ABI 5, in enum order.
std::vector<LandlockFsAccess> AllFsRights() {
  std::vector<LandlockFsAccess> all;
  for (int i = v1::LANDLOCK_FS_EXECUTE; i <= v1::LANDLOCK_FS_IOCTL_DEV; ++i) {
    all.push_back(static_cast<LandlockFsAccess>(i));
  }
  return all;
}

// Reading files and listing directories.
const std::vector<LandlockFsAccess>& ReadRights() {
  static const auto* rights = new std::vector<LandlockFsAccess>{
      v1::LANDLOCK_FS_READ_FILE, v1::LANDLOCK_FS_READ_DIR};
  return *rights;
}

// Every right that changes the filesystem.
const std::vector<LandlockFsAccess>& WriteRights() {
  static const auto* rights = new std::vector<LandlockFsAccess>{
      v1::LANDLOCK_FS_WRITE_FILE,  v1::LANDLOCK_FS_REMOVE_DIR,
      v1::LANDLOCK_FS_REMOVE_FILE, v1::LANDLOCK_FS_MAKE_CHAR,
      v1::LANDLOCK_FS_MAKE_DIR,    v1::LANDLOCK_FS_MAKE_REG,
      v1::LANDLOCK_FS_MAKE_SOCK,   v1::LANDLOCK_FS_MAKE_FIFO,
      v1::LANDLOCK_FS_MAKE_BLOCK,  v1::LANDLOCK_FS_MAKE_SYM,
      v1::LANDLOCK_FS_REFER,       v1::LANDLOCK_FS_TRUNCATE};
  return *rights;
}

// True when `path` is `dir` or lies beneath it (both clean absolute paths).
bool IsAtOrBeneath(absl::string_view path, absl::string_view dir) {
  if (dir == "/") return true;
  return path == dir || (absl::StartsWith(path, dir) &&
                         path.size() > dir.size() && path[dir.size()] == '/');
}

bool IsStrictlyBeneath(absl::string_view path, absl::string_view dir) {
  return path != dir && IsAtOrBeneath(path, dir);
}

// Sorted, without duplicates and without paths beneath another one of the
// set (those are excluded already).
std::vector<std::string> Minimize(std::set<std::string> paths) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    bool covered = false;
    for (const std::string& kept : out) {
      if (IsAtOrBeneath(p, kept)) {
        covered = true;
        break;
      }
    }
    if (!covered) out.push_back(p);
  }
  return out;
}

LandlockPathRule MakeRule(absl::string_view path,
                          std::set<LandlockFsAccess> access,
                          const std::vector<std::string>& except,
                          bool with_interpreter) {
  LandlockPathRule rule;
  rule.set_path(std::string(path));
  for (LandlockFsAccess a : access) rule.add_access(a);  // enum order
  for (const std::string& e : except) rule.add_except(e);
  rule.set_with_interpreter(with_interpreter);
  return rule;
}

// Exceptions of `candidates` that lie strictly beneath `path`.
std::vector<std::string> ExceptionsBeneath(
    absl::string_view path, const std::set<std::string>& candidates) {
  std::set<std::string> beneath;
  for (const std::string& c : candidates) {
    if (IsStrictlyBeneath(c, path)) beneath.insert(c);
  }
  return Minimize(std::move(beneath));
}

// The fixed device rules every agent gets. Paths missing in the container
// are skipped by the applier.
void AddDeviceRules(const std::set<std::string>& denied,
                    std::vector<LandlockPathRule>* rules) {
  const std::set<LandlockFsAccess> data = {v1::LANDLOCK_FS_READ_FILE,
                                           v1::LANDLOCK_FS_WRITE_FILE,
                                           v1::LANDLOCK_FS_TRUNCATE};
  std::set<LandlockFsAccess> terminal = data;
  terminal.insert(v1::LANDLOCK_FS_IOCTL_DEV);
  std::set<LandlockFsAccess> pts = terminal;
  pts.insert(v1::LANDLOCK_FS_READ_DIR);
  std::set<LandlockFsAccess> shm(WriteRights().begin(), WriteRights().end());
  shm.insert(ReadRights().begin(), ReadRights().end());

  const std::vector<std::pair<std::string, std::set<LandlockFsAccess>>>
      devices = {
          {"/dev/full", data},     {"/dev/null", data},
          {"/dev/ptmx", terminal}, {"/dev/pts", pts},
          {"/dev/random", data},   {"/dev/shm", shm},
          {"/dev/tty", terminal},  {"/dev/urandom", data},
          {"/dev/zero", data},
      };
  for (const auto& [path, access] : devices) {
    bool is_denied = false;
    for (const std::string& d : denied) {
      if (IsAtOrBeneath(path, d)) is_denied = true;
    }
    if (!is_denied) rules->push_back(MakeRule(path, access, {}, false));
  }
}

void CompileNetwork(const EffectivePolicy& policy, LandlockRuleset* ruleset,
                    std::vector<std::string>* notes) {
  const v1::NetworkRules& net = policy.network();
  std::set<int> tcp_ports;
  bool any_port = false;
  bool has_udp = false;
  bool has_cidrs = false;
  for (const v1::EgressRule& rule : net.egress()) {
    if (rule.cidrs_size() > 0) has_cidrs = true;
    if (rule.ports_size() == 0) any_port = true;
    for (const v1::PortRule& port : rule.ports()) {
      if (port.protocol() == v1::PROTOCOL_UDP) {
        has_udp = true;
        continue;
      }
      const int last =
          port.end_port() > port.port() ? port.end_port() : port.port();
      for (int p = port.port(); p <= last; ++p) tcp_ports.insert(p);
    }
  }
  if (net.dns()) tcp_ports.insert(53);

  if (any_port) {
    notes->push_back(
        "landlock: an egress rule allows every port, so Landlock does not "
        "restrict TCP connect; nftables enforces the destinations");
  } else if (tcp_ports.size() > kMaxConnectPorts) {
    notes->push_back(absl::StrCat(
        "landlock: the egress rules allow ", tcp_ports.size(),
        " TCP ports, more than the ", kMaxConnectPorts,
        " Landlock can hold, so Landlock does not restrict TCP connect; "
        "nftables still enforces the ports"));
  } else {
    ruleset->set_restrict_tcp_connect(true);
    for (int p : tcp_ports) ruleset->add_connect_ports(p);
  }
  ruleset->set_restrict_tcp_bind(true);
  notes->push_back(
      "landlock: the agent may not bind any TCP port, not even port 0 "
      "(an ephemeral port); outgoing connections are not affected");
  if (has_udp || net.dns()) {
    notes->push_back(
        "landlock: UDP cannot be restricted by Landlock (UDP egress and DNS "
        "are enforced by nftables only)");
  }
  if (has_cidrs) {
    notes->push_back(
        "landlock: destination addresses are enforced by nftables, not "
        "Landlock (Landlock filters TCP by port only)");
  }
}

}  // namespace

LandlockRuleset CompileLandlock(const EffectivePolicy& policy,
                                std::vector<std::string>* notes) {
  LandlockRuleset ruleset;
  if (policy.mode() == v1::MODE_COMPLAIN) {
    notes->push_back(
        "landlock: Landlock has no complain mode (it cannot log without "
        "denying), so no Landlock ruleset is applied in Complain mode");
    return ruleset;
  }
  const v1::FilesystemRules& fs = policy.filesystem();

  // Paths the agent may not read: deny[] plus /proc when hidden.
  std::set<std::string> unreadable;
  for (const std::string& d : fs.deny()) {
    // An exception expands into one rule per entry beside it, fixed when
    // the ruleset is applied. Beneath a visible /proc that would freeze the
    // process list: later processes could not read their own /proc/self.
    if (policy.procfs() != v1::PROCFS_EXPOSURE_NONE &&
        IsStrictlyBeneath(d, "/proc")) {
      notes->push_back(absl::StrCat(
          "landlock: deny ", d,
          " is not enforced by Landlock (an exception inside /proc would "
          "hide processes started later); the OCI masked paths enforce it"));
      continue;
    }
    unreadable.insert(d);
  }
  // /sys with sysfs None is masked by the OCI spec (an empty read-only
  // tmpfs): an exception here would only cost the agent listing "/".
  if (policy.procfs() == v1::PROCFS_EXPOSURE_NONE) unreadable.insert("/proc");
  // Paths the agent may never write, even beneath a writable path.
  std::set<std::string> unwritable(fs.deny().begin(), fs.deny().end());
  unwritable.insert(fs.read_only().begin(), fs.read_only().end());
  unwritable.insert("/proc");
  unwritable.insert("/sys");

  std::vector<LandlockPathRule> rules;
  const std::set<LandlockFsAccess> read(ReadRights().begin(),
                                        ReadRights().end());
  std::set<LandlockFsAccess> read_write(WriteRights().begin(),
                                        WriteRights().end());
  read_write.insert(read.begin(), read.end());

  rules.push_back(
      MakeRule("/", read, ExceptionsBeneath("/", unreadable), false));
  if (!fs.read_only_root()) {
    rules.push_back(MakeRule(
        "/",
        std::set<LandlockFsAccess>(WriteRights().begin(), WriteRights().end()),
        ExceptionsBeneath("/", unwritable), false));
  }
  for (const v1::WritablePath& w : fs.writable()) {
    std::vector<std::string> except = ExceptionsBeneath(w.path(), unwritable);
    if (!except.empty()) {
      notes->push_back(absl::StrCat(
          "landlock: ", w.path(), " holds read-only or denied paths (",
          absl::StrJoin(except, ", "),
          "), so Landlock grants writes on the entries beside them as they "
          "exist when the agent starts: entries created later in the "
          "directories on the way to them are not writable"));
    }
    rules.push_back(MakeRule(w.path(), read_write, except, false));
  }

  const std::set<LandlockFsAccess> exec = {v1::LANDLOCK_FS_EXECUTE,
                                           v1::LANDLOCK_FS_READ_FILE};
  for (const std::string& allowed : policy.exec().allow()) {
    std::string path = allowed;
    if (path.size() > 1 && path.back() == '/') path.pop_back();
    for (const std::string& d : fs.deny()) {
      if (IsAtOrBeneath(path, d)) {
        notes->push_back(absl::StrCat(
            "landlock: exec.allow ", allowed, " lies in denied path ", d,
            "; Landlock lets the agent read and execute it"));
      }
    }
    rules.push_back(MakeRule(path, exec, {}, true));
  }
  AddDeviceRules(std::set<std::string>(fs.deny().begin(), fs.deny().end()),
                 &rules);

  // Policy order of construction, then by path: deterministic.
  std::stable_sort(rules.begin(), rules.end(),
                   [](const LandlockPathRule& a, const LandlockPathRule& b) {
                     return a.path() < b.path();
                   });
  for (LandlockPathRule& r : rules) *ruleset.add_path_rules() = std::move(r);

  int min_abi = 1;
  for (LandlockFsAccess a : AllFsRights()) {
    ruleset.add_handled_fs(a);
    min_abi = std::max(min_abi, AbiOf(a));
  }
  CompileNetwork(policy, &ruleset, notes);
  if (ruleset.restrict_tcp_connect() || ruleset.restrict_tcp_bind()) {
    min_abi = std::max(min_abi, 4);
  }
  ruleset.set_scope_abstract_unix_socket(true);
  ruleset.set_scope_signal(true);
  min_abi = std::max(min_abi, 6);
  ruleset.set_min_abi(min_abi);
  return ruleset;
}

}  // namespace stockade::compiler
