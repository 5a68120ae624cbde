// containerd.task.v2.Task: the shim's RPC surface. Decodes requests, applies
// the container's policy at Create and Exec (shim/policy), drives containers
// through shim/process, and publishes task events. One instance serves every
// container of a pod.
#ifndef STOCKADE_SHIM_TASK_TASK_SERVICE_H_
#define STOCKADE_SHIM_TASK_TASK_SERVICE_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/policy/policy.h"
#include "shim/process/container.h"
#include "shim/task/events.h"
#include "shim/ttrpc/server.h"

namespace stockade::shim {

struct TaskServiceConfig {
  std::string containerd_namespace;
  PolicyConfig policy;
  RuntimeConfig runtime;
};

class TaskService {
 public:
  // `on_shutdown` runs when containerd asks the shim to exit (Shutdown with
  // no container left, or now=true).
  TaskService(TaskServiceConfig config, EventPublisher* events,
              std::function<void()> on_shutdown);
  ~TaskService();

  void RegisterWith(ttrpc::Server* server);

  absl::StatusOr<::containerd::task::v2::CreateTaskResponse> Create(
      const ::containerd::task::v2::CreateTaskRequest& request);
  // Cgroup metrics (shim/task/metrics.h) of the container.
  absl::StatusOr<::containerd::task::v2::StatsResponse> Stats(
      const ::containerd::task::v2::StatsRequest& request);
  absl::StatusOr<::containerd::task::v2::StartResponse> Start(
      const ::containerd::task::v2::StartRequest& request);
  absl::StatusOr<::containerd::task::v2::DeleteResponse> Delete(
      const ::containerd::task::v2::DeleteRequest& request);
  absl::StatusOr<::containerd::task::v2::StateResponse> State(
      const ::containerd::task::v2::StateRequest& request);
  absl::StatusOr<::containerd::task::v2::PidsResponse> Pids(
      const ::containerd::task::v2::PidsRequest& request);
  absl::Status Kill(const ::containerd::task::v2::KillRequest& request);
  absl::Status Exec(const ::containerd::task::v2::ExecProcessRequest& request);
  absl::Status ResizePty(
      const ::containerd::task::v2::ResizePtyRequest& request);
  absl::Status CloseIO(const ::containerd::task::v2::CloseIORequest& request);
  absl::Status Update(const ::containerd::task::v2::UpdateTaskRequest& request);
  absl::Status Pause(const ::containerd::task::v2::PauseRequest& request);
  absl::Status Resume(const ::containerd::task::v2::ResumeRequest& request);
  absl::StatusOr<::containerd::task::v2::WaitResponse> Wait(
      const ::containerd::task::v2::WaitRequest& request);
  absl::StatusOr<::containerd::task::v2::ConnectResponse> Connect(
      const ::containerd::task::v2::ConnectRequest& request);
  absl::Status Shutdown(const ::containerd::task::v2::ShutdownRequest& request);

 private:
  // Removes the container's reference to its stored policy (see
  // AppliedPolicy.ref_hash).
  void ReleasePolicyRef(const AppliedPolicy& policy, const std::string& id);
  class Observer;
  struct Entry {
    std::string bundle;
    std::unique_ptr<Observer> observer;
    std::unique_ptr<Container> container;
    AppliedPolicy policy;
  };

  // NotFound when the container is unknown.
  absl::StatusOr<Entry*> Find(const std::string& id);

  const TaskServiceConfig config_;
  EventPublisher* const events_;
  const std::function<void()> on_shutdown_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> containers_;
};

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_TASK_TASK_SERVICE_H_
