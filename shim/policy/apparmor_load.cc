#include "shim/policy/apparmor_load.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace stockade::shim {

bool AppArmorProfileLoaded(const AppArmorLoader& loader,
                           absl::string_view name) {
  std::ifstream in(loader.profiles_file);
  std::string line;
  while (std::getline(in, line)) {
    // "NAME (enforce)"; a name may contain spaces, the mode never does.
    const size_t paren = line.rfind(" (");
    if (absl::string_view(line).substr(0, paren) == name) return true;
  }
  return false;
}

absl::Status EnsureAppArmorProfile(const AppArmorLoader& loader,
                                   absl::string_view name,
                                   absl::string_view text) {
  if (AppArmorProfileLoaded(loader, name)) return absl::OkStatus();
  if (loader.command.empty()) {
    return absl::FailedPreconditionError("no AppArmor parser configured");
  }
  // Input over a socket (no SIGPIPE if the parser dies unread), output and
  // the exit status over pipes. The status comes from a shell around the
  // parser, not from waitpid: in the shim a process-wide reaper may collect
  // the exit first.
  int input[2], output[2], status_pipe[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, input) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", strerror(errno)));
  }
  if (pipe2(output, O_CLOEXEC) != 0 || pipe2(status_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(input[0]);
    close(input[1]);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(err)));
  }
  std::vector<std::string> args = {"/bin/sh", "-c", "\"$@\"; echo $? >&3",
                                   "stockade-apparmor"};
  args.insert(args.end(), loader.command.begin(), loader.command.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char* const envp[] = {const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
                        nullptr};
  const pid_t pid = fork();
  if (pid == 0) {
    if (dup2(input[0], 0) < 0 || dup2(output[1], 1) < 0 ||
        dup2(output[1], 2) < 0 || dup2(status_pipe[1], 3) < 0) {
      _exit(126);
    }
    execve(argv[0], argv.data(), envp);
    _exit(127);
  }
  const int fork_errno = errno;
  close(input[0]);
  close(output[1]);
  close(status_pipe[1]);
  if (pid < 0) {
    close(input[1]);
    close(output[0]);
    close(status_pipe[0]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  while (!text.empty()) {
    ssize_t n = send(input[1], text.data(), text.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.remove_prefix(static_cast<size_t>(n));
  }
  close(input[1]);
  auto read_all = [](int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out;
  };
  const std::string said = read_all(output[0]);
  const std::string exit_code =
      std::string(absl::StripAsciiWhitespace(read_all(status_pipe[0])));
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (exit_code == "0") return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("loading AppArmor profile ", name, " with `",
                   absl::StrJoin(loader.command, " "), "` failed (exit status ",
                   exit_code.empty() ? "unknown" : exit_code,
                   "): ", absl::StripTrailingAsciiWhitespace(said)));
}

}  // namespace stockade::shim
