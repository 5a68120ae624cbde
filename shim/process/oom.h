// Watches a container's memory cgroup for OOM kills: cgroup v1
// memory.oom_control through cgroup.event_control and an eventfd, cgroup v2
// memory.events (oom_kill) through poll.
#ifndef STOCKADE_SHIM_PROCESS_OOM_H_
#define STOCKADE_SHIM_PROCESS_OOM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "shim/process/io_loop.h"

namespace stockade::shim {

class OomWatcher {
 public:
  // Watches the memory cgroup `pid` is in. `on_oom` runs once per OOM
  // notification, on the IoLoop thread or in Poll(); it must not block.
  // NotFound when the process has no memory cgroup to watch.
  static absl::StatusOr<std::unique_ptr<OomWatcher>> Start(
      int pid, std::function<void()> on_oom);
  ~OomWatcher();
  OomWatcher(const OomWatcher&) = delete;
  OomWatcher& operator=(const OomWatcher&) = delete;

  // Delivers an OOM the kernel signalled but the loop did not handle yet:
  // call before reporting the exit of the container, so the OOM comes first.
  void Poll();

  // The cgroup directory watched (for logs and tests).
  const std::string& cgroup_dir() const { return dir_; }

 private:
  OomWatcher() = default;
  void Check(bool from_loop);

  std::mutex mu_;
  std::function<void()> on_oom_;
  std::string dir_;
  bool v2_ = false;
  int event_fd_ = -1;       // v1: the eventfd; v2: memory.events
  int control_fd_ = -1;     // v1: memory.oom_control
  uint64_t oom_kills_ = 0;  // v2: last oom_kill count
  IoLoop::Id watch_ = 0;
};

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_PROCESS_OOM_H_
