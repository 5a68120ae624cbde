// Test support: runs a command as a child process with a timeout and captures
// its output, and starts long-running daemons (containerd) in the background.
#ifndef STOCKADE_TESTS_SUPPORT_SUBPROCESS_H_
#define STOCKADE_TESTS_SUPPORT_SUBPROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stockade::testing {

struct CommandResult {
  // The exit status; 128 + signal number if the command was killed by a
  // signal; -1 if it could not be started (the reason is in `err`).
  int exit_code = -1;
  std::string out;
  std::string err;
  bool timed_out = false;

  bool ok() const { return exit_code == 0 && !timed_out; }
  // "exit 3 (timed out)\n--- stdout\n...\n--- stderr\n..." for failure
  // messages.
  std::string ToString() const;
};

struct CommandOptions {
  // After this the command gets SIGKILL and the result says timed_out.
  absl::Duration timeout = absl::Seconds(60);
  // Written to the command's stdin, which is then closed (empty: /dev/null
  // semantics, stdin is closed at once).
  std::string stdin_data{};
  // Replaces the environment when set; otherwise the caller's is inherited.
  std::optional<std::vector<std::string>> env{};
  // Runs the command on a new pseudo-terminal (its controlling tty, stdin,
  // stdout and stderr): what `ctr run -t` needs. stderr then arrives in `out`,
  // and stdin_data is typed, not closed: end it with "\x04" for EOF.
  bool pty = false;
};

// Runs argv[0] (an absolute path, or a name looked up on PATH) to completion.
// Never throws and never blocks past the timeout (plus a short grace).
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const CommandOptions& options = {});

// Starts argv in the background with stdin from /dev/null and stdout+stderr
// appended to log_path, in a new process group, with `env` as its entire
// environment. The child gets SIGTERM if the calling thread dies
// (PR_SET_PDEATHSIG), so a crashed test leaves no daemon behind. The caller
// must reap it (WaitForExit).
absl::StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& env,
                                  const std::string& log_path);

// Waits up to `timeout` for child `pid` to exit; returns its exit code as in
// CommandResult, or nullopt if it is still running.
std::optional<int> WaitForExit(pid_t pid, absl::Duration timeout);

// Looks `name` up on the caller's PATH (and /usr/sbin, /sbin, which a
// non-login root shell may lack); empty if absent or not executable.
std::string FindExecutable(const std::string& name);

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_SUBPROCESS_H_
