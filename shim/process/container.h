// Process lifecycle of one container: its init process and exec'd processes,
// their states, stdio and exits. Drives the runtime through runc/runc.h and
// knows nothing of ttrpc or containerd's task API (shim/task/ does).
#ifndef STOCKADE_SHIM_PROCESS_CONTAINER_H_
#define STOCKADE_SHIM_PROCESS_CONTAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stockade::shim {

// Where a process's stdio goes: FIFO paths (no scheme or fifo://),
// binary:///path?k=v, or file:///path. Empty means none.
struct Stdio {
  std::string stdin_path;
  std::string stdout_path;
  std::string stderr_path;
  bool terminal = false;
};

// One mount of the rootfs, as containerd sends it in Create.
struct RootfsMount {
  std::string type;
  std::string source;
  std::string target;
  std::vector<std::string> options;
};

enum class ProcessStatus { kUnknown, kCreated, kRunning, kStopped, kPaused };

struct ProcessState {
  std::string exec_id;  // "" for init
  int pid = 0;
  ProcessStatus status = ProcessStatus::kUnknown;
  Stdio stdio;
  uint32_t exit_status = 0;
  absl::Time exited_at = absl::InfinitePast();
};

struct ExitInfo {
  int pid = 0;
  uint32_t exit_status = 0;  // WEXITSTATUS, or 128 + signal
  absl::Time exited_at;
};

// Receives lifecycle events in the order containerd requires: never an exit
// before the matching start; exec exits before the init exit.
class LifecycleObserver {
 public:
  virtual ~LifecycleObserver() = default;
  virtual void OnStart(const std::string& exec_id, int pid) = 0;
  virtual void OnExit(const std::string& exec_id, const ExitInfo& exit) = 0;
  virtual void OnOom() = 0;
};

struct RuntimeConfig {
  std::string runc_binary = "runc";
  std::string runc_root = "/run/containerd/runc";  // + "/<namespace>"
  bool systemd_cgroup = false;
  bool no_pivot_root = false;   // runc create --no-pivot
  bool no_new_keyring = false;  // runc create --no-new-keyring
};

struct CreateRequest {
  std::string id;
  std::string bundle;      // holds config.json (already rewritten by policy)
  std::string namespace_;  // containerd namespace
  std::vector<RootfsMount> rootfs;
  Stdio stdio;
};

class Container {
 public:
  // Mounts the rootfs, sets up stdio and runs `runc create`. On failure
  // everything done so far is undone.
  static absl::StatusOr<std::unique_ptr<Container>> Create(
      const RuntimeConfig& config, const CreateRequest& request,
      LifecycleObserver* observer);

  virtual ~Container() = default;

  // exec_id "" is the init process.
  virtual absl::StatusOr<int> Start(const std::string& exec_id) = 0;
  // Registers an exec process (runc exec happens at Start). `process_json`
  // is the OCI Process object. AlreadyExists for a known exec_id;
  // FailedPrecondition once init has exited.
  virtual absl::Status AddExec(const std::string& exec_id,
                               absl::string_view process_json,
                               const Stdio& stdio) = 0;
  // NotFound when the process has exited or is unknown.
  virtual absl::Status Kill(const std::string& exec_id, int signal,
                            bool all) = 0;
  // Blocks until the process exits.
  virtual absl::StatusOr<ExitInfo> Wait(const std::string& exec_id) = 0;
  virtual absl::StatusOr<ProcessState> State(const std::string& exec_id) = 0;
  // Removes an exec process, or (exec_id "") runs `runc delete` and unmounts
  // the rootfs. FailedPrecondition while the process runs.
  virtual absl::StatusOr<ExitInfo> Delete(const std::string& exec_id) = 0;
  virtual absl::StatusOr<std::vector<int>> Pids() = 0;
  virtual absl::Status ResizePty(const std::string& exec_id, uint32_t width,
                                 uint32_t height) = 0;
  virtual absl::Status CloseStdin(const std::string& exec_id) = 0;
  // `resources_json` is an OCI LinuxResources object.
  virtual absl::Status Update(absl::string_view resources_json) = 0;
  virtual absl::Status Pause() = 0;
  virtual absl::Status Resume() = 0;
  virtual int InitPid() const = 0;
  // Cgroup statistics: the "data" object of `runc events --stats`, as JSON.
  virtual absl::StatusOr<std::string> Stats() = 0;
};

// Makes the shim the subreaper of everything it starts and begins the single
// SIGCHLD loop. Call once, before any process is started.
absl::Status StartReaper();

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_PROCESS_CONTAINER_H_
