#include "tests/support/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace stockade::testing {
namespace {

// argv/envp arrays that stay valid in a forked child (built before fork, so
// the child only calls async-signal-safe functions).
struct CArgs {
  explicit CArgs(const std::vector<std::string>& v) {
    ptrs.reserve(v.size() + 1);
    for (const std::string& s : v) ptrs.push_back(const_cast<char*>(s.c_str()));
    ptrs.push_back(nullptr);
  }
  char** get() { return ptrs.data(); }
  std::vector<char*> ptrs;
};

// Restores what a test process may have changed and the exec'd program
// expects at its defaults: signal mask, SIGPIPE disposition, extra fds.
void ResetChildState() {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, nullptr);
  close_range(3, ~0U, 0);
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Reads the pty master until the command is gone (EIO once no process holds
// the slave) or the deadline; types stdin_data first.
CommandResult RunOnPty(const std::string& program,
                       const std::vector<std::string>& argv,
                       const CommandOptions& options) {
  CommandResult result;
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  char slave_name[128];
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
      ptsname_r(master, slave_name, sizeof(slave_name)) != 0) {
    result.err = absl::StrCat("pty: ", strerror(errno));
    if (master >= 0) close(master);
    return result;
  }
  int slave = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    result.err = absl::StrCat("open ", slave_name, ": ", strerror(errno));
    close(master);
    return result;
  }
  CArgs cargv(argv);
  std::vector<std::string> env_copy =
      options.env.value_or(std::vector<std::string>{});
  CArgs cenv(env_copy);
  const bool replace_env = options.env.has_value();
  pid_t pid = fork();
  if (pid < 0) {
    result.err = absl::StrCat("fork: ", strerror(errno));
    close(master);
    close(slave);
    return result;
  }
  if (pid == 0) {
    setsid();
    ioctl(slave, TIOCSCTTY, 0);
    dup2(slave, 0);
    dup2(slave, 1);
    dup2(slave, 2);
    ResetChildState();
    if (replace_env) {
      execve(program.c_str(), cargv.get(), cenv.get());
    } else {
      execv(program.c_str(), cargv.get());
    }
    _exit(127);
  }
  close(slave);
  size_t typed = 0;
  const absl::Time deadline = absl::Now() + options.timeout;
  char buf[65536];
  int status = 0;
  bool exited = false;
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      break;
    }
    short events = POLLIN;
    if (typed < options.stdin_data.size()) events |= POLLOUT;
    struct pollfd p = {master, events, 0};
    int r =
        poll(&p, 1,
             std::min<int>(
                 100, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1));
    if (r < 0 && errno != EINTR) break;
    if (r > 0 && (p.revents & POLLOUT)) {
      ssize_t w = write(master, options.stdin_data.data() + typed,
                        options.stdin_data.size() - typed);
      if (w > 0) typed += static_cast<size_t>(w);
    }
    if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t got = read(master, buf, sizeof(buf));
      if (got > 0) {
        result.out.append(buf, static_cast<size_t>(got));
        continue;
      }
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      break;  // EIO: no process holds the slave any more
    }
    // The command may exit while a grandchild keeps the slave open.
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = true;
    if (exited && r == 0) break;
  }
  close(master);
  if (!exited) {
    while (!result.timed_out) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        break;
      }
      if (absl::Now() >= deadline) {
        result.timed_out = true;
        break;
      }
      usleep(2000);
    }
    if (!exited) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  result.exit_code = DecodeStatus(status);
  return result;
}

}  // namespace

std::string CommandResult::ToString() const {
  return absl::StrCat("exit ", exit_code, timed_out ? " (timed out)" : "",
                      "\n--- stdout\n", out, "\n--- stderr\n", err);
}

std::string FindExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return access(name.c_str(), X_OK) == 0 ? name : "";
  }
  const char* path = getenv("PATH");
  std::vector<std::string> dirs =
      absl::StrSplit(path ? path : "", ':', absl::SkipEmpty());
  for (const char* extra : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                            "/usr/bin", "/sbin", "/bin"}) {
    dirs.push_back(extra);
  }
  for (const std::string& dir : dirs) {
    std::string candidate = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const CommandOptions& options) {
  CommandResult result;
  if (argv.empty()) {
    result.err = "RunCommand: empty argv";
    return result;
  }
  std::string program = FindExecutable(argv[0]);
  if (program.empty()) {
    result.err = absl::StrCat("RunCommand: ", argv[0], " not found");
    return result;
  }
  if (options.pty) return RunOnPty(program, argv, options);
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    result.err = absl::StrCat("pipe2: ", strerror(errno));
    return result;
  }
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.err = absl::StrCat("pipe2: ", strerror(errno));
    close(in[0]);
    close(in[1]);
    return result;
  }
  CArgs cargv(argv);
  std::vector<std::string> env_copy =
      options.env.value_or(std::vector<std::string>{});
  CArgs cenv(env_copy);
  const bool replace_env = options.env.has_value();

  pid_t pid = fork();
  if (pid < 0) {
    result.err = absl::StrCat("fork: ", strerror(errno));
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    return result;
  }
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    ResetChildState();
    if (replace_env) {
      execve(program.c_str(), cargv.get(), cenv.get());
    } else {
      execv(program.c_str(), cargv.get());
    }
    static const char kMsg[] = "RunCommand: exec failed\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  int in_fd = in[1], out_fd = out[0], err_fd = err[0];
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  size_t stdin_written = 0;
  if (options.stdin_data.empty()) CloseFd(in_fd);

  const absl::Time deadline = absl::Now() + options.timeout;
  bool exited = false;
  int status = 0;
  char buf[65536];
  while (out_fd >= 0 || err_fd >= 0) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      break;
    }
    struct pollfd fds[3];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_fd >= 0) {
      out_i = n;
      fds[n++] = {out_fd, POLLIN, 0};
    }
    if (err_fd >= 0) {
      err_i = n;
      fds[n++] = {err_fd, POLLIN, 0};
    }
    if (in_fd >= 0) {
      in_i = n;
      fds[n++] = {in_fd, POLLOUT, 0};
    }
    int ms = static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
    int r = poll(fds, n, ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      result.err += absl::StrCat("poll: ", strerror(errno));
      break;
    }
    auto drain = [&](int idx, int& fd, std::string& sink) {
      if (idx < 0 || fds[idx].revents == 0) return;
      ssize_t got = read(fd, buf, sizeof(buf));
      if (got > 0) {
        sink.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        CloseFd(fd);
      }
    };
    drain(out_i, out_fd, result.out);
    drain(err_i, err_fd, result.err);
    if (in_i >= 0 && fds[in_i].revents != 0) {
      if (fds[in_i].revents & (POLLERR | POLLHUP)) {
        CloseFd(in_fd);
      } else {
        // Block SIGPIPE for this write: a reader that went away then yields
        // EPIPE (and the pending signal is consumed) instead of a dead test.
        sigset_t pipe_set, old;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        ssize_t w = write(in_fd, options.stdin_data.data() + stdin_written,
                          options.stdin_data.size() - stdin_written);
        int write_errno = errno;
        if (w < 0 && write_errno == EPIPE) {
          struct timespec zero = {0, 0};
          sigtimedwait(&pipe_set, nullptr, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        if (w > 0) stdin_written += static_cast<size_t>(w);
        if ((w < 0 && write_errno != EAGAIN && write_errno != EINTR) ||
            stdin_written == options.stdin_data.size()) {
          CloseFd(in_fd);
        }
      }
    }
  }
  CloseFd(in_fd);
  // Both pipes closed (or timed out): wait for the exit within the deadline.
  while (!result.timed_out) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      exited = true;
      break;
    }
    if (w < 0 && errno != EINTR) break;
    if (absl::Now() >= deadline) {
      result.timed_out = true;
      break;
    }
    usleep(2000);
  }
  if (!exited) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  CloseFd(out_fd);
  CloseFd(err_fd);
  result.exit_code = DecodeStatus(status);
  return result;
}

absl::StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& env,
                                  const std::string& log_path) {
  if (argv.empty())
    return absl::InvalidArgumentError("SpawnDaemon: empty argv");
  std::string program = FindExecutable(argv[0]);
  if (program.empty()) {
    return absl::NotFoundError(absl::StrCat(argv[0], " not found"));
  }
  int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("open ", log_path, ": ", strerror(errno)));
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    close(log_fd);
    return absl::InternalError(
        absl::StrCat("open /dev/null: ", strerror(errno)));
  }
  CArgs cargv(argv);
  CArgs cenv(env);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    close(null_fd);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    ResetChildState();
    execve(program.c_str(), cargv.get(), cenv.get());
    static const char kMsg[] = "SpawnDaemon: exec failed\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  return pid;
}

std::optional<int> WaitForExit(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) return DecodeStatus(status);
    if (w < 0 && errno != EINTR) return -1;  // not our child (already reaped)
    if (absl::Now() >= deadline) return std::nullopt;
    usleep(5000);
  }
}

}  // namespace stockade::testing
