#include "shim/init/landlock_apply.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

// Debian 12's kernel headers describe Landlock ABI 2. The constants of later
// ABIs, with the kernel's values (include/uapi/linux/landlock.h):
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)  // ABI 4
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)  // ABI 4
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)  // ABI 6
#endif

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;

// enum landlock_rule_type: LANDLOCK_RULE_NET_PORT (ABI 4). An enumerator in
// the kernel header, so it cannot be tested with #ifdef.
constexpr int kRuleNetPort = 2;

// struct landlock_ruleset_attr as of ABI 6; the kernel takes a prefix of it
// (its size tells which fields the caller knows).
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};

// struct landlock_net_port_attr (ABI 4).
struct NetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
} __attribute__((packed));

// Rights that apply to a file that is not a directory.
constexpr uint64_t kFileRights =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
    LANDLOCK_ACCESS_FS_IOCTL_DEV;

// Rights on a directory that cannot reach an existing non-directory beneath
// it: listing directories and creating new entries (replacing or removing an
// entry needs a REMOVE right; linking or moving one needs REFER).
constexpr uint64_t kDirOnlyRights =
    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_MAKE_CHAR |
    LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
    LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;

// The proto enum value N is the kernel bit N-1.
uint64_t Bit(v1::LandlockFsAccess access) {
  return 1ULL << (static_cast<int>(access) - 1);
}

// Filesystem rights a kernel with ABI `abi` knows.
uint64_t FsRightsOfAbi(int abi) {
  if (abi < 1) return 0;
  uint64_t rights = (1ULL << 13) - 1;  // EXECUTE .. MAKE_SYM
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return rights;
}

int AbiOfFsRight(v1::LandlockFsAccess access) {
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

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

bool IsStrictlyBeneath(absl::string_view path, absl::string_view dir) {
  if (path == dir) return false;
  if (dir == "/") return absl::StartsWith(path, "/");
  return absl::StartsWith(path, dir) && path.size() > dir.size() &&
         path[dir.size()] == '/';
}

// realpath(3) as a string; "" when the path does not resolve.
std::string RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return "";
  std::string out(resolved);
  free(resolved);
  return out;
}

// Entry names of a directory, sorted; empty when it cannot be read.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = readdir(d)) {
    const absl::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Adds rules for `dir` minus `except` (real paths strictly beneath dir,
// none beneath another).
void Walk(const std::string& dir, uint64_t access,
          const std::vector<std::string>& except,
          std::vector<PlannedPathRule>* out) {
  bool dir_exception = false;
  // Next path component toward each exception -> exceptions that way.
  std::map<std::string, std::vector<std::string>> toward;
  for (const std::string& e : except) {
    struct stat st;
    if (lstat(e.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) {
      dir_exception = true;
    }
    const size_t start = dir == "/" ? 1 : dir.size() + 1;
    const size_t slash = e.find('/', start);
    toward[e.substr(start, slash == std::string::npos ? std::string::npos
                                                      : slash - start)]
        .push_back(e);
  }
  if (!dir_exception && (access & kDirOnlyRights) != 0) {
    out->push_back({dir, access & kDirOnlyRights, false});
  }
  for (const std::string& name : ListDir(dir)) {
    const std::string child = JoinPath(dir, name);
    auto it = toward.find(name);
    if (it == toward.end()) {
      struct stat st;
      if (lstat(child.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) continue;
      out->push_back({child, access, true});
      continue;
    }
    if (it->second.size() == 1 && it->second[0] == child) continue;  // denied
    Walk(child, access, it->second, out);
  }
}

// Reads `size` bytes at `offset`; false on a short read.
bool ReadAt(int fd, void* buf, size_t size, off_t offset) {
  ssize_t n = pread(fd, buf, size, offset);
  return n == static_cast<ssize_t>(size);
}

template <typename Ehdr, typename Phdr>
absl::StatusOr<std::string> ReadInterp(int fd, const std::string& path) {
  Ehdr eh;
  if (!ReadAt(fd, &eh, sizeof(eh), 0)) return std::string();
  if (eh.e_phentsize != sizeof(Phdr) || eh.e_phnum > 4096) {
    return std::string();
  }
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Phdr ph;
    if (!ReadAt(fd, &ph, sizeof(ph), eh.e_phoff + i * sizeof(Phdr))) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": truncated ELF program headers"));
    }
    if (ph.p_type != PT_INTERP) continue;
    if (ph.p_filesz < 2 || ph.p_filesz > PATH_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": bad PT_INTERP size"));
    }
    std::string interp(ph.p_filesz, '\0');
    if (!ReadAt(fd, interp.data(), interp.size(), ph.p_offset)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": truncated PT_INTERP"));
    }
    interp.resize(strnlen(interp.data(), interp.size()));
    return interp;
  }
  return std::string();
}

// Interpreters of the executables directly inside `dir`, sorted, unique.
std::set<std::string> InterpretersIn(const std::string& dir) {
  std::set<std::string> interps;
  for (const std::string& name : ListDir(dir)) {
    const std::string child = JoinPath(dir, name);
    struct stat st;
    if (stat(child.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        (st.st_mode & 0111) == 0) {
      continue;
    }
    absl::StatusOr<std::string> interp = ElfInterpreter(child);
    if (interp.ok() && !interp->empty()) interps.insert(*interp);
  }
  return interps;
}

std::string FsRightName(v1::LandlockFsAccess access) {
  return v1::LandlockFsAccess_Name(access);
}

}  // namespace

int LandlockAbi() {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0,
                     LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

absl::StatusOr<std::string> ElfInterpreter(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return absl::NotFoundError(
        absl::StrCat("open ", path, ": ", strerror(errno)));
  }
  unsigned char ident[EI_NIDENT];
  if (!ReadAt(fd.get(), ident, sizeof(ident), 0) ||
      memcmp(ident, ELFMAG, SELFMAG) != 0) {
    return std::string();  // not ELF (a script, ...)
  }
  if (ident[EI_CLASS] == ELFCLASS64) {
    return ReadInterp<Elf64_Ehdr, Elf64_Phdr>(fd.get(), path);
  }
  if (ident[EI_CLASS] == ELFCLASS32) {
    return ReadInterp<Elf32_Ehdr, Elf32_Phdr>(fd.get(), path);
  }
  return std::string();
}

std::vector<PlannedPathRule> ExpandExcept(
    const std::string& path, uint64_t access,
    const std::vector<std::string>& except, LandlockReport* report) {
  std::vector<PlannedPathRule> out;
  const std::string root = RealPath(path);
  if (root.empty()) {
    report->skipped_paths.push_back(path);
    return out;
  }
  std::set<std::string> beneath;
  for (const std::string& e : except) {
    const std::string real = RealPath(e);
    if (real.empty()) {
      report->skipped_paths.push_back(e);
      continue;
    }
    if (real == root) return out;  // the whole rule is excepted
    if (IsStrictlyBeneath(real, root)) beneath.insert(real);
  }
  // Drop exceptions beneath another exception (sorted: parents come first).
  std::vector<std::string> minimal;
  for (const std::string& e : beneath) {
    if (!minimal.empty() && IsStrictlyBeneath(e, minimal.back())) continue;
    minimal.push_back(e);
  }
  if (minimal.empty()) {
    out.push_back({path, access, false});
    return out;
  }
  Walk(root, access, minimal, &out);
  return out;
}

absl::StatusOr<LandlockPlan> PlanLandlock(const v1::LandlockRuleset& ruleset,
                                          int abi,
                                          const LandlockOptions& options,
                                          LandlockReport* report) {
  report->abi = abi;
  if (abi < ruleset.min_abi() && !options.best_effort) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ruleset needs Landlock ABI ", ruleset.min_abi(),
        " but the kernel has ",
        abi == 0 ? std::string("no Landlock") : absl::StrCat("ABI ", abi),
        " (set best_effort to apply what the kernel supports)"));
  }
  LandlockPlan plan;
  const uint64_t supported = FsRightsOfAbi(abi);
  for (int a : ruleset.handled_fs()) {
    const auto access = static_cast<v1::LandlockFsAccess>(a);
    if (access < v1::LANDLOCK_FS_EXECUTE ||
        access > v1::LANDLOCK_FS_IOCTL_DEV) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown Landlock filesystem right ", a));
    }
    if ((Bit(access) & supported) == 0) {
      report->dropped.push_back(
          absl::StrCat("filesystem right ", FsRightName(access), " needs ABI ",
                       AbiOfFsRight(access), ", kernel has ", abi));
      continue;
    }
    plan.handled_fs |= Bit(access);
  }
  if (ruleset.restrict_tcp_connect()) {
    if (abi >= 4) {
      plan.handled_net |= LANDLOCK_ACCESS_NET_CONNECT_TCP;
      for (int port : ruleset.connect_ports()) {
        if (port < 0 || port > 65535) {
          return absl::InvalidArgumentError(
              absl::StrCat("bad TCP port ", port));
        }
        plan.connect_ports.push_back(static_cast<uint16_t>(port));
      }
    } else {
      report->dropped.push_back(absl::StrCat(
          "TCP connect restriction needs ABI 4, kernel has ", abi));
    }
  }
  if (ruleset.restrict_tcp_bind()) {
    if (abi >= 4) {
      plan.handled_net |= LANDLOCK_ACCESS_NET_BIND_TCP;
    } else {
      report->dropped.push_back(
          absl::StrCat("TCP bind restriction needs ABI 4, kernel has ", abi));
    }
  }
  if (ruleset.scope_abstract_unix_socket()) {
    if (abi >= 6) {
      plan.scoped |= LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
    } else {
      report->dropped.push_back(absl::StrCat(
          "abstract unix socket scoping needs ABI 6, kernel has ", abi));
    }
  }
  if (ruleset.scope_signal()) {
    if (abi >= 6) {
      plan.scoped |= LANDLOCK_SCOPE_SIGNAL;
    } else {
      report->dropped.push_back(
          absl::StrCat("signal scoping needs ABI 6, kernel has ", abi));
    }
  }

  for (const v1::LandlockPathRule& rule : ruleset.path_rules()) {
    uint64_t access = 0;
    for (int a : rule.access()) {
      const auto right = static_cast<v1::LandlockFsAccess>(a);
      if (right < v1::LANDLOCK_FS_EXECUTE ||
          right > v1::LANDLOCK_FS_IOCTL_DEV) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown Landlock filesystem right ", a));
      }
      access |= Bit(right);
    }
    // A right the ruleset does not handle (or the kernel lacks) is allowed
    // everywhere anyway: granting it would be rejected by the kernel.
    access &= plan.handled_fs;
    if (access == 0) continue;
    std::vector<std::string> except(rule.except().begin(), rule.except().end());
    for (PlannedPathRule& r :
         ExpandExcept(rule.path(), access, except, report)) {
      plan.path_rules.push_back(std::move(r));
    }
    if (!rule.with_interpreter()) continue;
    struct stat st;
    if (stat(rule.path().c_str(), &st) != 0) continue;  // skipped above
    std::set<std::string> interps;
    if (S_ISDIR(st.st_mode)) {
      interps = InterpretersIn(rule.path());
    } else {
      // A file that cannot be read as ELF cannot be executed either: nothing
      // to grant.
      absl::StatusOr<std::string> interp = ElfInterpreter(rule.path());
      if (interp.ok() && !interp->empty()) interps.insert(*interp);
    }
    for (const std::string& interp : interps) {
      report->interpreters.push_back(interp);
      plan.path_rules.push_back({interp, access & kFileRights, false});
    }
  }
  return plan;
}

absl::Status ApplyLandlock(const v1::LandlockRuleset& ruleset,
                           LandlockReport* report) {
  return ApplyLandlock(ruleset, LandlockOptions(), report);
}

absl::Status ApplyLandlock(const v1::LandlockRuleset& ruleset,
                           const LandlockOptions& options,
                           LandlockReport* report) {
  *report = LandlockReport();
  const int abi = LandlockAbi();
  absl::StatusOr<LandlockPlan> plan =
      PlanLandlock(ruleset, abi, options, report);
  if (!plan.ok()) return plan.status();
  if (plan->handled_fs == 0 && plan->handled_net == 0 && plan->scoped == 0) {
    if (abi == 0 && ruleset.min_abi() > 0) {
      report->dropped.push_back("the kernel has no Landlock");
    }
    return absl::OkStatus();  // nothing to enforce
  }

  RulesetAttr attr = {plan->handled_fs, plan->handled_net, plan->scoped};
  // The struct size this ABI knows: the kernel refuses unknown fields.
  size_t attr_size = sizeof(uint64_t);
  if (abi >= 4) attr_size += sizeof(uint64_t);
  if (abi >= 6) attr_size += sizeof(uint64_t);
  Fd ruleset_fd(static_cast<int>(
      syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0)));
  if (ruleset_fd.get() < 0) {
    return absl::InternalError(
        absl::StrCat("landlock_create_ruleset: ", strerror(errno)));
  }

  for (const PlannedPathRule& rule : plan->path_rules) {
    int flags = O_PATH | O_CLOEXEC;
    if (rule.no_follow) flags |= O_NOFOLLOW;
    Fd fd(open(rule.path.c_str(), flags));
    if (fd.get() < 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        report->skipped_paths.push_back(rule.path);
        continue;
      }
      return absl::InternalError(
          absl::StrCat("open ", rule.path, ": ", strerror(errno)));
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0) {
      return absl::InternalError(
          absl::StrCat("fstat ", rule.path, ": ", strerror(errno)));
    }
    if (S_ISLNK(st.st_mode)) continue;  // appeared since planning
    uint64_t access = rule.access;
    if (!S_ISDIR(st.st_mode)) access &= kFileRights;
    if (access == 0) continue;
    struct landlock_path_beneath_attr beneath = {};
    beneath.allowed_access = access;
    beneath.parent_fd = fd.get();
    if (syscall(SYS_landlock_add_rule, ruleset_fd.get(),
                LANDLOCK_RULE_PATH_BENEATH, &beneath, 0) != 0) {
      return absl::InternalError(
          absl::StrCat("landlock_add_rule ", rule.path, ": ", strerror(errno)));
    }
    ++report->path_rules;
  }
  for (uint16_t port : plan->connect_ports) {
    NetPortAttr net = {LANDLOCK_ACCESS_NET_CONNECT_TCP, port};
    if (syscall(SYS_landlock_add_rule, ruleset_fd.get(), kRuleNetPort, &net,
                0) != 0) {
      return absl::InternalError(
          absl::StrCat("landlock_add_rule port ", port, ": ", strerror(errno)));
    }
    ++report->port_rules;
  }

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::InternalError(
        absl::StrCat("prctl(PR_SET_NO_NEW_PRIVS): ", strerror(errno)));
  }
  // ABI 7: log denials of the programs the agent execs too (by default only
  // the executable that restricted itself, stockade-init, is logged), so
  // that every denial reaches the audit stream (node/denials).
  constexpr uint32_t kLogNewExecOn =
      1U << 1;  // LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
  const uint32_t flags = report->abi >= 7 ? kLogNewExecOn : 0;
  if (syscall(SYS_landlock_restrict_self, ruleset_fd.get(), flags) != 0) {
    return absl::InternalError(
        absl::StrCat("landlock_restrict_self: ", strerror(errno)));
  }
  report->enforced = true;
  return absl::OkStatus();
}

}  // namespace stockade::shim
