#include "shim/runc/reaper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace stockade::shim {
namespace {

// Exits nobody watched yet are kept for late watchers; beyond this many the
// oldest go (orphans reparented to the shim are reaped but never watched).
constexpr size_t kMaxBuffered = 4096;

// Written by the SIGCHLD handler, which only runs in a thread that does not
// block SIGCHLD (one started before Reaper::Start): the signalfd misses
// those, so the handler wakes the reaper thread instead.
int g_wake_fd = -1;

void OnSigchld(int) {
  const int saved = errno;
  uint64_t one = 1;
  if (g_wake_fd >= 0) {
    [[maybe_unused]] ssize_t n = write(g_wake_fd, &one, sizeof(one));
  }
  errno = saved;
}

}  // namespace

int ExitStatusFromWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

struct Reaper::Impl {
  struct Buffered {
    int exit_status;
    uint64_t seq;
    absl::Time at;
  };

  std::mutex mu;
  bool started = false;
  uint64_t seq = 0;
  std::unordered_map<int, Buffered> buffered;
  std::unordered_map<int, ExitCallback> watchers;
  int signal_fd = -1;
  int wake_fd = -1;

  void Loop() {
    for (;;) {
      pollfd fds[2] = {{signal_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        // Nothing sensible is left to do without a working poll; keep
        // reaping slowly rather than spinning.
        sleep(1);
      }
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info[16];
        while (read(signal_fd, info, sizeof(info)) > 0) {
        }
      }
      if (fds[1].revents & POLLIN) {
        uint64_t value;
        [[maybe_unused]] ssize_t n = read(wake_fd, &value, sizeof(value));
      }
      ReapAll();
    }
  }

  void ReapAll() {
    for (;;) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        if (pid < 0 && errno == EINTR) continue;
        return;
      }
      if (!WIFEXITED(status) && !WIFSIGNALED(status)) continue;
      Deliver(pid, ExitStatusFromWaitStatus(status), absl::Now());
    }
  }

  void Deliver(int pid, int exit_status, absl::Time at) {
    ExitCallback callback;
    {
      std::lock_guard<std::mutex> lock(mu);
      ++seq;
      auto it = watchers.find(pid);
      if (it == watchers.end()) {
        if (buffered.size() >= kMaxBuffered) {
          auto oldest = std::min_element(buffered.begin(), buffered.end(),
                                         [](const auto& a, const auto& b) {
                                           return a.second.seq < b.second.seq;
                                         });
          buffered.erase(oldest);
        }
        buffered[pid] = Buffered{exit_status, seq, at};
        return;
      }
      callback = std::move(it->second);
      watchers.erase(it);
    }
    callback(pid, exit_status, at);
  }
};

Reaper& Reaper::Get() {
  static Reaper* reaper = new Reaper();
  return *reaper;
}

Reaper::Impl* Reaper::impl() {
  static Impl* impl = new Impl();
  return impl;
}

absl::Status Reaper::Start() {
  Impl* d = impl();
  std::lock_guard<std::mutex> lock(d->mu);
  if (d->started) return absl::OkStatus();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return absl::InternalError(
        absl::StrCat("prctl(PR_SET_CHILD_SUBREAPER): ", strerror(errno)));
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    return absl::InternalError("cannot block SIGCHLD");
  }
  d->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (d->signal_fd < 0) {
    return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));
  }
  d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->wake_fd < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  g_wake_fd = d->wake_fd;
  struct sigaction action = {};
  action.sa_handler = OnSigchld;
  action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&action.sa_mask);
  sigaction(SIGCHLD, &action, nullptr);
  // A write to a pipe whose reader is gone must be an error, not death.
  signal(SIGPIPE, SIG_IGN);
  d->started = true;
  std::thread([d] { d->Loop(); }).detach();
  // Children that exited before the thread existed.
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(d->wake_fd, &one, sizeof(one));
  return absl::OkStatus();
}

bool Reaper::started() const {
  Impl* d = const_cast<Reaper*>(this)->impl();
  std::lock_guard<std::mutex> lock(d->mu);
  return d->started;
}

uint64_t Reaper::Sequence() {
  Impl* d = impl();
  std::lock_guard<std::mutex> lock(d->mu);
  return d->seq;
}

void Reaper::Watch(int pid, uint64_t since, ExitCallback callback) {
  Impl* d = impl();
  Impl::Buffered exit;
  {
    std::lock_guard<std::mutex> lock(d->mu);
    auto it = d->buffered.find(pid);
    if (it == d->buffered.end()) {
      d->watchers[pid] = std::move(callback);
      return;
    }
    exit = it->second;
    d->buffered.erase(it);
    if (exit.seq <= since) {  // An earlier process with the same pid.
      d->watchers[pid] = std::move(callback);
      return;
    }
  }
  callback(pid, exit.exit_status, exit.at);
}

int Reaper::Wait(int pid, uint64_t since) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int status = 0;
  };
  auto waiter = std::make_shared<Waiter>();
  Watch(pid, since, [waiter](int, int status, absl::Time) {
    std::lock_guard<std::mutex> lock(waiter->mu);
    waiter->done = true;
    waiter->status = status;
    waiter->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(waiter->mu);
  waiter->cv.wait(lock, [&] { return waiter->done; });
  return waiter->status;
}

size_t Reaper::BufferedForTesting() {
  Impl* d = impl();
  std::lock_guard<std::mutex> lock(d->mu);
  return d->buffered.size();
}

absl::StatusOr<std::string> FindOnPath(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("empty program name");
  if (name.find('/') != std::string::npos) return name;
  const char* path = getenv("PATH");
  std::string dirs = path != nullptr && *path != '\0'
                         ? path
                         : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                           "/sbin:/bin";
  for (absl::string_view dir : absl::StrSplit(dirs, ':')) {
    if (dir.empty()) dir = ".";
    std::string candidate = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::NotFoundError(absl::StrCat(name, ": not found on PATH"));
}

absl::StatusOr<pid_t> Spawn(const SpawnOptions& options) {
  if (!Reaper::Get().started()) {
    return absl::FailedPreconditionError(
        "the reaper is not started (call StartReaper first)");
  }
  if (options.argv.empty()) return absl::InvalidArgumentError("empty argv");
  absl::StatusOr<std::string> path = FindOnPath(options.argv[0]);
  if (!path.ok()) return path.status();

  // Everything the child needs is prepared here: after fork() only
  // async-signal-safe calls are allowed.
  std::vector<char*> argv;
  for (const std::string& arg : options.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (options.env.has_value()) {
    for (const std::string& var : *options.env) {
      envp.push_back(const_cast<char*>(var.c_str()));
    }
    envp.push_back(nullptr);
  }

  std::vector<std::pair<int, int>> fds = options.fds;
  int dev_null = -1;
  for (int std_fd = 0; std_fd <= 2; ++std_fd) {
    bool mapped = std::any_of(fds.begin(), fds.end(),
                              [&](const auto& m) { return m.first == std_fd; });
    if (mapped) continue;
    if (dev_null < 0) {
      dev_null = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (dev_null < 0) {
        return absl::InternalError(
            absl::StrCat("open /dev/null: ", strerror(errno)));
      }
    }
    fds.emplace_back(std_fd, dev_null);
  }
  int max_fd = 2;
  for (const auto& [child, parent] : fds) {
    max_fd = std::max({max_fd, child, parent});
  }
  int max_child = 2;
  for (const auto& m : fds) max_child = std::max(max_child, m.first);
  std::vector<int> temp(fds.size(), -1);

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    if (dev_null >= 0) close(dev_null);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(e)));
  }
  const int error_fd = max_child + 1;
  max_fd = std::max({max_fd, error_pipe[0], error_pipe[1], error_fd});

  const pid_t parent_pid = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    int err = 0;
    auto fail = [&](int e) {
      err = e;
      [[maybe_unused]] ssize_t n = write(error_fd, &err, sizeof(err));
      _exit(127);
    };
    if (options.kill_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
      if (getppid() != parent_pid) _exit(127);
    }
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction action = {};
      action.sa_handler = SIG_DFL;
      sigaction(sig, &action, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Lift every source above all numbers in use, then place it.
    for (size_t i = 0; i < fds.size(); ++i) {
      temp[i] = fcntl(fds[i].second, F_DUPFD_CLOEXEC, max_fd + 1);
      if (temp[i] < 0) _exit(127);
    }
    int error_temp = fcntl(error_pipe[1], F_DUPFD_CLOEXEC, max_fd + 1);
    if (error_temp < 0 || dup3(error_temp, error_fd, O_CLOEXEC) < 0) {
      _exit(127);
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (dup2(temp[i], fds[i].first) < 0) fail(errno);
    }
    close_range(error_fd + 1, ~0U, 0);
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) fail(errno);
    execve(path->c_str(), argv.data(),
           options.env.has_value() ? envp.data() : environ);
    fail(errno);
  }
  const int fork_errno = errno;
  close(error_pipe[1]);
  if (dev_null >= 0) close(dev_null);
  if (pid < 0) {
    close(error_pipe[0]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(error_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n == sizeof(child_errno)) {
    return absl::InternalError(
        absl::StrCat("cannot execute ", *path, ": ", strerror(child_errno)));
  }
  return pid;
}

}  // namespace stockade::shim
