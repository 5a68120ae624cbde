// stockade-init: PID 1 of every confined container and the wrapper of every
// process exec'd into one. Applies the container's Landlock ruleset, then
// execs the real entrypoint with argv and environment unchanged.
//
//   stockade-init --ruleset FILE -- ARGV...
//
// FILE holds a serialized stockade.v1.LandlockRuleset. Exit codes (like a
// shell): 127 when ARGV[0] is not found, 126 for every other failure (bad
// usage, unreadable or corrupt ruleset, a ruleset the kernel cannot enforce,
// ARGV[0] not executable). Messages go to stderr, prefixed "stockade-init: ".
//
// After the filter is loaded it only execs (execve is in every baseline) or
// writes its error and exits. No agent code runs before both are in place. It
// is linked statically: the container's image may have no libc at all.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "shim/init/landlock_apply.h"
#include "stockade/v1/compiled.pb.h"

extern char** environ;

namespace stockade::shim {
namespace {

constexpr int kExitCannotRun = 126;
constexpr int kExitNotFound = 127;
// execvp's search path when PATH is unset, widened to the sbin directories
// (what runc and most images use).
constexpr char kDefaultPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Rulesets are a few KiB; anything far larger is not one.
constexpr size_t kMaxRulesetBytes = 16 << 20;

void Say(const std::string& message) {
  const std::string line = absl::StrCat("stockade-init: ", message, "\n");
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(STDERR_FILENO, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

[[noreturn]] void Fail(int code, const std::string& message) {
  Say(message);
  _exit(code);
}

void Usage() {
  Say("usage: stockade-init --ruleset FILE [--seccomp BPF] -- PROGRAM "
      "[ARG...]");
}

// Reads the whole file with plain read(2).
bool ReadFile(const char* path, std::string* out, int* error) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = errno;
    return false;
  }
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = errno;
      close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxRulesetBytes) {
      *error = EFBIG;
      close(fd);
      return false;
    }
  }
  close(fd);
  return true;
}

// Applies the ruleset or ends the process. When the kernel's Landlock ABI is
// too old the message lists what it lacks: the agent never starts
// unconfined.
void Confine(const char* path) {
  std::string bytes;
  int error = 0;
  if (!ReadFile(path, &bytes, &error)) {
    Fail(kExitCannotRun,
         absl::StrCat("cannot read ruleset ", path, ": ", strerror(error)));
  }
  stockade::v1::LandlockRuleset ruleset;
  if (!ruleset.ParseFromString(bytes)) {
    Fail(kExitCannotRun,
         absl::StrCat("ruleset ", path,
                      " is not a serialized stockade.v1.LandlockRuleset"));
  }
  const int abi = LandlockAbi();
  if (abi < ruleset.min_abi()) {
    // What a best-effort application would drop: the missing features.
    LandlockOptions best_effort;
    best_effort.best_effort = true;
    LandlockReport report;
    (void)PlanLandlock(ruleset, abi, best_effort, &report);
    std::string missing = report.dropped.empty()
                              ? std::string("(features unknown to this init)")
                              : absl::StrJoin(report.dropped, "; ");
    Fail(kExitCannotRun,
         absl::StrCat(
             "the policy needs Landlock ABI ", ruleset.min_abi(),
             " but the kernel has ",
             abi == 0 ? std::string("no Landlock") : absl::StrCat("ABI ", abi),
             "; missing: ", missing,
             "; refusing to start the program unconfined"));
  }
  LandlockReport report;
  absl::Status status = ApplyLandlock(ruleset, &report);
  if (!status.ok()) {
    Fail(kExitCannotRun, absl::StrCat("cannot apply the Landlock ruleset ",
                                      path, ": ", status.message()));
  }
}

// Loads the seccomp filter (a sock_filter array) or ends the process. Sets
// no_new_privs first, as runc does for a spec with noNewPrivileges (every
// compiled policy has it): the kernel requires it, or CAP_SYS_ADMIN, for an
// unprivileged filter.
void LoadSeccomp(const char* path) {
  std::string bytes;
  int error = 0;
  if (!ReadFile(path, &bytes, &error)) {
    Fail(kExitCannotRun, absl::StrCat("cannot read seccomp filter ", path, ": ",
                                      strerror(error)));
  }
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0 ||
      bytes.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
    Fail(kExitCannotRun,
         absl::StrCat("seccomp filter ", path, " is not a BPF program (",
                      bytes.size(), " bytes)"));
  }
  std::vector<sock_filter> program(bytes.size() / sizeof(sock_filter));
  memcpy(program.data(), bytes.data(), bytes.size());
  sock_fprog prog;
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = program.data();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    Fail(kExitCannotRun,
         absl::StrCat("prctl(PR_SET_NO_NEW_PRIVS): ", strerror(errno)));
  }
  // SECCOMP_FILTER_FLAG_LOG: the kernel logs every action but ALLOW (an
  // audit record, type 1326), so the denials of an ERRNO filter reach the
  // audit stream (node/denials) too; runc 1.1 cannot set seccomp flags, this
  // loader can.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG,
              &prog) != 0) {
    Fail(kExitCannotRun, absl::StrCat("cannot load the seccomp filter ", path,
                                      ": ", strerror(errno),
                                      "; refusing to start the program "
                                      "unconfined"));
  }
}

bool SkipAndContinue(int error) {
  return error == ENOENT || error == ENOTDIR || error == ESTALE ||
         error == ENODEV || error == ETIMEDOUT;
}

// execvp(3) without its /bin/sh fallback for ENOEXEC: a script without a
// "#!" line is an error, never a shell the policy did not allow.
[[noreturn]] void Exec(char** argv) {
  const char* file = argv[0];
  int error = ENOENT;
  if (file[0] == '\0') {
    error = ENOENT;
  } else if (strchr(file, '/') != nullptr) {
    execve(file, argv, environ);
    error = errno;
  } else {
    const char* path = getenv("PATH");
    if (path == nullptr) path = kDefaultPath;
    bool denied = false;
    error = ENOENT;
    const char* p = path;
    for (;;) {
      const char* end = strchr(p, ':');
      const size_t len = end == nullptr ? strlen(p) : end - p;
      // An empty entry means the current directory, as for execvp.
      const std::string candidate =
          len == 0 ? absl::StrCat("./", file)
                   : absl::StrCat(absl::string_view(p, len), "/", file);
      execve(candidate.c_str(), argv, environ);
      const int e = errno;
      if (e == EACCES) {
        denied = true;
      } else if (!SkipAndContinue(e)) {
        error = e;
        break;
      }
      if (end == nullptr) {
        if (denied) error = EACCES;
        break;
      }
      p = end + 1;
    }
  }
  std::string message = absl::StrCat("exec ", file, ": ", strerror(error));
  if (error == EACCES) {
    absl::StrAppend(&message, " (not allowed by the policy's exec.allow?)");
  }
  Fail(error == ENOENT ? kExitNotFound : kExitCannotRun, message);
}

int Main(int argc, char** argv) {
  const char* ruleset = nullptr;
  const char* seccomp = nullptr;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--ruleset" && i + 1 < argc) {
      ruleset = argv[++i];
    } else if (arg.rfind("--ruleset=", 0) == 0) {
      ruleset = argv[i] + strlen("--ruleset=");
    } else if (arg == "--seccomp" && i + 1 < argc) {
      seccomp = argv[++i];
    } else {
      Usage();
      Fail(kExitCannotRun, absl::StrCat("unknown argument \"", arg, "\""));
    }
  }
  if (ruleset == nullptr || ruleset[0] == '\0') {
    Usage();
    Fail(kExitCannotRun, "no --ruleset given");
  }
  if (i >= argc) {
    Usage();
    Fail(kExitCannotRun, "no program to run after --");
  }
  if (seccomp != nullptr && seccomp[0] == '\0') {
    Usage();
    Fail(kExitCannotRun, "--seccomp needs a file");
  }
  Confine(ruleset);
  if (seccomp != nullptr) LoadSeccomp(seccomp);
  Exec(argv + i);
}

}  // namespace
}  // namespace stockade::shim

int main(int argc, char** argv) { return stockade::shim::Main(argc, argv); }
