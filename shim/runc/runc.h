// Drives the runc binary for one container: every command gets the global
// arguments containerd's runc shim uses, runs as a child reaped by the
// Reaper, and fails with runc's own last error message from log.json.
#ifndef STOCKADE_SHIM_RUNC_RUNC_H_
#define STOCKADE_SHIM_RUNC_RUNC_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::shim {

struct RuncConfig {
  std::string binary = "runc";  // absolute, or looked up on PATH
  std::string root;             // --root: <runc root>/<namespace>
  std::string log_path;         // --log: <bundle>/log.json
  bool systemd_cgroup = false;  // --systemd-cgroup
};

// The stdio of the process runc starts; -1 means /dev/null. Borrowed: the
// caller still owns (and closes) them.
struct RuncIo {
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
};

struct RuncCreateOptions {
  std::string bundle;
  std::string pid_file;        // --pid-file
  std::string console_socket;  // --console-socket, for a terminal
  bool no_pivot = false;
  bool no_new_keyring = false;
  RuncIo io;
};

struct RuncExecOptions {
  std::string pid_file;
  std::string console_socket;
  RuncIo io;
};

// What `runc state` reports.
struct RuncState {
  std::string id;
  int pid = 0;
  std::string status;  // created, running, paused, stopped
  std::string bundle;
};

class Runc {
 public:
  explicit Runc(RuncConfig config) : config_(std::move(config)) {}

  const RuncConfig& config() const { return config_; }

  // `runc create` without --detach: returns once runc has exited, the init
  // pid is in options.pid_file (ReadPidFile).
  absl::Status Create(const std::string& id, const RuncCreateOptions& options);
  absl::Status Start(const std::string& id);
  // `runc exec --detach --process <tmp file holding process_json>`; the
  // exec'd pid is in options.pid_file when this returns OK. The temporary
  // file is created in `temp_dir` (the bundle) and removed.
  absl::Status Exec(const std::string& id, absl::string_view process_json,
                    const std::string& temp_dir,
                    const RuncExecOptions& options);
  // NotFound when the container is not running (or does not exist).
  absl::Status Kill(const std::string& id, int signal, bool all);
  // NotFound when the container does not exist.
  absl::Status Delete(const std::string& id, bool force);
  absl::StatusOr<RuncState> State(const std::string& id);
  absl::StatusOr<std::vector<int>> Ps(const std::string& id);
  // `runc update --resources=-` with an OCI LinuxResources object.
  absl::Status Update(const std::string& id, absl::string_view resources_json);
  absl::Status Pause(const std::string& id);
  absl::Status Resume(const std::string& id);
  // The "data" object of `runc events --stats` (cgroup statistics), as JSON.
  absl::StatusOr<std::string> Stats(const std::string& id);

  // The pid runc wrote into a --pid-file.
  static absl::StatusOr<int> ReadPidFile(const std::string& path);

 private:
  struct Output {
    int exit_status = 0;
    std::string out;
    std::string err;
  };
  // Runs runc with the global arguments and `args`. `io` is given to runc as
  // its stdio unless `capture` (then stdout and stderr are collected and
  // `input` is written to its stdin). A non-zero exit becomes an error that
  // carries runc's last logged error.
  absl::StatusOr<Output> Run(const std::vector<std::string>& args,
                             const RuncIo& io, bool capture,
                             absl::string_view input = "");

  RuncConfig config_;
};

// The message of the last "error" entry runc appended to a --log-format json
// log at or after byte `offset`; empty if there is none.
std::string LastRuncError(const std::string& log_path, long offset);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_RUNC_RUNC_H_
