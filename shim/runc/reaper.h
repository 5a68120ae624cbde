// The shim's single child reaper and the way it starts child processes: one
// thread reads SIGCHLD through a signalfd, reaps every child with
// waitpid(-1, WNOHANG) and hands each exit to whoever watches that pid.
#ifndef STOCKADE_SHIM_RUNC_REAPER_H_
#define STOCKADE_SHIM_RUNC_REAPER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stockade::shim {

// WEXITSTATUS, or 128 + the signal that killed the process.
int ExitStatusFromWaitStatus(int wait_status);

class Reaper {
 public:
  // Called once per exit, on the reaper thread (or on the thread calling
  // Watch when the exit was already buffered). Must not block: it must not
  // wait for another child's exit.
  using ExitCallback =
      std::function<void(int pid, int exit_status, absl::Time exited_at)>;

  static Reaper& Get();

  // Makes this process the child subreaper, blocks SIGCHLD in the calling
  // thread (threads created afterwards inherit that), ignores SIGPIPE and
  // starts the reaper thread. Call before starting any other thread.
  // Idempotent.
  absl::Status Start();
  bool started() const;

  // A sequence number of reaped exits. Take it BEFORE starting a process and
  // pass it to Watch/Wait: an exit buffered before that point belongs to an
  // earlier process that had the same pid and is ignored.
  uint64_t Sequence();

  // Delivers the exit of `pid` to `callback`, once. An exit reaped before
  // the call (after `since`) is delivered at once. One watcher per pid.
  void Watch(int pid, uint64_t since, ExitCallback callback);

  // Blocks until `pid` exits; returns its exit status as above.
  int Wait(int pid, uint64_t since);

  // Exits reaped that nobody watched yet (bounded; for tests).
  size_t BufferedForTesting();

 private:
  Reaper() = default;
  struct Impl;
  Impl* impl();
};

struct SpawnOptions {
  // argv[0] is an absolute path or a name looked up on PATH.
  std::vector<std::string> argv;
  // The whole environment; nullopt inherits the shim's.
  std::optional<std::vector<std::string>> env;
  // Descriptors of the child: {child fd, parent fd}. Child fds 0, 1 and 2
  // that are not listed are /dev/null; every other descriptor is closed.
  std::vector<std::pair<int, int>> fds;
  // The child gets SIGKILL when the thread that spawned it dies. Only for
  // short-lived children the spawning thread waits for (runc commands).
  bool kill_with_parent = true;
  // Working directory; empty keeps the shim's.
  std::string cwd;
};

// Starts a child. Its exit arrives through the Reaper, which must be started.
// Returns the pid; take Reaper::Get().Sequence() before calling to Watch it.
absl::StatusOr<pid_t> Spawn(const SpawnOptions& options);

// Resolves `name` on PATH (names holding a '/' are returned as they are).
absl::StatusOr<std::string> FindOnPath(const std::string& name);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_RUNC_REAPER_H_
