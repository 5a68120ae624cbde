#include "node/apparmor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/apparmor.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

extern char** environ;

namespace stockade::node {
namespace {

constexpr char kProfilesFile[] = "/sys/kernel/security/apparmor/profiles";
// The parser's messages kept for an error.
constexpr size_t kMaxParserOutput = 4000;

std::string Errno(int err) { return std::strerror(err); }

// A temporary file that is removed when this goes out of scope.
class TempFile {
 public:
  static absl::StatusOr<TempFile> Create(const std::string& dir,
                                         std::string_view data) {
    std::string path = absl::StrCat(dir, "/.stockade-apparmor.XXXXXX");
    const int fd = mkostemp(path.data(), O_CLOEXEC);
    if (fd < 0) {
      return absl::InternalError(
          absl::StrCat("apparmor: cannot create a temporary file in ", dir,
                       ": ", Errno(errno)));
    }
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = errno;
        close(fd);
        unlink(path.c_str());
        return absl::InternalError(
            absl::StrCat("apparmor: writing ", path, ": ", Errno(err)));
      }
      done += static_cast<size_t>(n);
    }
    close(fd);
    return TempFile(std::move(path));
  }
  TempFile(TempFile&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
  }
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // -1: killed or did not exit normally.
  bool timed_out = false;
  std::string output;  // stdout and stderr, truncated.
};

// Runs argv (argv[0] looked up in PATH), collecting its output, killing it
// after timeout.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", Errno(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc =
      posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot run ", argv[0], ": ", Errno(rc)));
  }
  CommandResult result;
  const absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    struct pollfd pfd = {pipe_fds[0], POLLIN, 0};
    const int n =
        poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = read(pipe_fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (result.output.size() < kMaxParserOutput) {
      result.output.append(buf, static_cast<size_t>(got));
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (result.output.size() > kMaxParserOutput) {
    result.output.resize(kMaxParserOutput);
  }
  return result;
}

// Lines of the parser's output that say something about the profile (not
// the note that the cache is off where the kernel has no AppArmor).
std::string ParserMessages(const std::string& output) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (line.empty() || absl::StrContains(line, "Cache read/write disabled")) {
      continue;
    }
    if (!out.empty()) out += "; ";
    absl::StrAppend(&out, line);
  }
  return out;
}

// An aa_kernel_interface, released when this goes out of scope.
class KernelInterface {
 public:
  static absl::StatusOr<KernelInterface> Open() {
    aa_kernel_interface* kif = nullptr;
    if (aa_kernel_interface_new(&kif, nullptr, nullptr) != 0) {
      const int err = errno;
      return absl::FailedPreconditionError(absl::StrCat(
          "apparmor: cannot open the kernel's policy interface "
          "(aa_kernel_interface_new): ",
          Errno(err),
          aa_is_enabled() == 1 ? "" : " (the kernel has no AppArmor enabled)"));
    }
    return KernelInterface(kif);
  }
  KernelInterface(KernelInterface&& other) noexcept : kif_(other.kif_) {
    other.kif_ = nullptr;
  }
  KernelInterface& operator=(KernelInterface&&) = delete;
  ~KernelInterface() {
    if (kif_ != nullptr) aa_kernel_interface_unref(kif_);
  }
  aa_kernel_interface* get() const { return kif_; }

 private:
  explicit KernelInterface(aa_kernel_interface* kif) : kif_(kif) {}
  aa_kernel_interface* kif_;
};

}  // namespace

bool AppArmorKernelEnabled() { return aa_is_enabled() == 1; }

absl::StatusOr<std::string> AppArmor::Compile(std::string_view text) const {
  auto in = TempFile::Create(options_.work_dir, text);
  if (!in.ok()) return in.status();
  auto out = TempFile::Create(options_.work_dir, "");
  if (!out.ok()) return out.status();
  auto result =
      RunCommand({options_.parser, "-Q", "-K", "-o", out->path(), in->path()},
                 options_.parser_timeout);
  if (!result.ok()) {
    return absl::UnavailableError(
        absl::StrCat("apparmor: ", result.status().message()));
  }
  if (result->timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("apparmor: ", options_.parser, " took longer than ",
                     absl::FormatDuration(options_.parser_timeout)));
  }
  if (result->exit_code != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "apparmor: ", options_.parser, " rejected the profile",
        result->exit_code < 0 ? " (killed)"
                              : absl::StrCat(" (exit ", result->exit_code, ")"),
        ": ", ParserMessages(result->output)));
  }
  std::ifstream file(out->path(), std::ios::binary);
  std::stringstream ss;
  ss << file.rdbuf();
  std::string binary = ss.str();
  if (binary.empty()) {
    return absl::InternalError(absl::StrCat(
        "apparmor: ", options_.parser,
        " wrote no compiled policy: ", ParserMessages(result->output)));
  }
  return binary;
}

absl::Status AppArmor::Load(std::string_view binary) const {
  auto kif = KernelInterface::Open();
  if (!kif.ok()) return kif.status();
  if (aa_kernel_interface_replace_policy(kif->get(), binary.data(),
                                         binary.size()) != 0) {
    return absl::InternalError(absl::StrCat(
        "apparmor: the kernel refused the profile: ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::Status AppArmor::Unload(std::string_view name) const {
  auto kif = KernelInterface::Open();
  if (!kif.ok()) return kif.status();
  const std::string fqname(name);
  if (aa_kernel_interface_remove_policy(kif->get(), fqname.c_str()) != 0) {
    const int err = errno;
    if (err == ENOENT) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("apparmor: removing profile ", fqname, ": ", Errno(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AppArmor::Loaded() const {
  std::ifstream in(kProfilesFile);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        "apparmor: cannot read ", kProfilesFile, ": ", Errno(errno)));
  }
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    // "<name> (<mode>)"
    const size_t paren = line.rfind(" (");
    names.push_back(paren == std::string::npos ? line : line.substr(0, paren));
  }
  return names;
}

}  // namespace stockade::node
