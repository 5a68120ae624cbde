#include "shim/task/task_service.h"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "shim/policy/egress.h"
#include "shim/task/metrics.h"
#include "store/store.h"

namespace stockade::shim {
namespace {

namespace task = ::containerd::task::v2;
namespace events = ::containerd::events;
namespace types = ::containerd::v1::types;

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) return;
  const int64_t s = absl::ToUnixSeconds(t);
  out->set_seconds(s);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(s))));
}

types::Status ToStatus(ProcessStatus s) {
  switch (s) {
    case ProcessStatus::kCreated:
      return types::CREATED;
    case ProcessStatus::kRunning:
      return types::RUNNING;
    case ProcessStatus::kStopped:
      return types::STOPPED;
    case ProcessStatus::kPaused:
      return types::PAUSED;
    default:
      return types::UNKNOWN;
  }
}

Stdio MakeStdio(const std::string& in, const std::string& out,
                const std::string& err, bool terminal) {
  return Stdio{in, out, err, terminal};
}

// Registers a unary handler that parses Req, calls `fn`, serializes Resp.
template <typename Req, typename Resp, typename Fn>
void Unary(ttrpc::Server* server, const char* method, Fn fn) {
  server->Register(
      "containerd.task.v2.Task", method,
      [fn](const ttrpc::CallContext&,
           const std::string& payload) -> absl::StatusOr<std::string> {
        Req request;
        if (!request.ParseFromString(payload)) {
          return absl::InvalidArgumentError("malformed request");
        }
        absl::StatusOr<Resp> response = fn(request);
        if (!response.ok()) return response.status();
        return response->SerializeAsString();
      });
}

// Returns `value` after giving the memory freed by a request back to the
// kernel. Create, Exec and Delete parse and rewrite specs and policies once;
// the shim then idles for the pod's life, and what malloc kept would count
// against every pod's memory.
template <typename T>
T AfterTrim(T value) {
  malloc_trim(0);
  return value;
}

}  // namespace

// Turns lifecycle callbacks of one container into task events.
class TaskService::Observer : public LifecycleObserver {
 public:
  Observer(std::string id, EventPublisher* events)
      : id_(std::move(id)), events_(events) {}

  void OnStart(const std::string& exec_id, int pid) override {
    if (exec_id.empty()) {
      events::TaskStart e;
      e.set_container_id(id_);
      e.set_pid(pid);
      events_->Publish("/tasks/start", e);
    } else {
      events::TaskExecStarted e;
      e.set_container_id(id_);
      e.set_exec_id(exec_id);
      e.set_pid(pid);
      events_->Publish("/tasks/exec-started", e);
    }
  }
  void OnExit(const std::string& exec_id, const ExitInfo& exit) override {
    events::TaskExit e;
    e.set_container_id(id_);
    e.set_id(exec_id.empty() ? id_ : exec_id);
    e.set_pid(exit.pid);
    e.set_exit_status(exit.exit_status);
    SetTime(exit.exited_at, e.mutable_exited_at());
    events_->Publish("/tasks/exit", e);
  }
  void OnOom() override {
    events::TaskOOM e;
    e.set_container_id(id_);
    events_->Publish("/tasks/oom", e);
  }

 private:
  const std::string id_;
  EventPublisher* const events_;
};

TaskService::TaskService(TaskServiceConfig config, EventPublisher* events,
                         std::function<void()> on_shutdown)
    : config_(std::move(config)),
      events_(events),
      on_shutdown_(std::move(on_shutdown)) {}

TaskService::~TaskService() = default;

absl::StatusOr<TaskService::Entry*> TaskService::Find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) {
    return absl::NotFoundError(absl::StrCat("container ", id, " not found"));
  }
  return it->second.get();
}

void TaskService::ReleasePolicyRef(const AppliedPolicy& policy,
                                   const std::string& id) {
  if (policy.ref_hash.empty()) return;
  absl::StatusOr<store::Store> store =
      store::Store::Open(config_.policy.store_root);
  if (store.ok()) (void)store->RemoveRef(policy.ref_hash, id);
}

absl::StatusOr<task::CreateTaskResponse> TaskService::Create(
    const task::CreateTaskRequest& request) {
  if (request.id().empty() || request.bundle().empty()) {
    return absl::InvalidArgumentError("Create: id and bundle are required");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (containers_.count(request.id())) {
      return absl::AlreadyExistsError(
          absl::StrCat("container ", request.id(), " already exists"));
    }
  }
  if (!request.checkpoint().empty()) {
    return absl::UnimplementedError(
        "stockade: checkpoint/restore is not supported");
  }
  // Fail closed: without its policy the container is never created.
  absl::StatusOr<AppliedPolicy> applied = ApplyPolicyToBundle(
      config_.policy, request.bundle(), config_.containerd_namespace);
  if (!applied.ok()) {
    return absl::Status(applied.status().code(),
                        absl::StrCat(applied.status().message()));
  }
  auto entry = std::make_unique<Entry>();
  entry->bundle = request.bundle();
  entry->policy = *std::move(applied);
  entry->observer = std::make_unique<Observer>(request.id(), events_);

  CreateRequest create;
  create.id = request.id();
  create.bundle = request.bundle();
  create.namespace_ = config_.containerd_namespace;
  create.stdio = MakeStdio(request.stdin(), request.stdout(), request.stderr(),
                           request.terminal());
  for (const auto& m : request.rootfs()) {
    create.rootfs.push_back(RootfsMount{
        m.type(), m.source(), m.target(),
        std::vector<std::string>(m.options().begin(), m.options().end())});
  }
  auto container =
      Container::Create(config_.runtime, create, entry->observer.get());
  if (!container.ok()) {
    ReleasePolicyRef(entry->policy, request.id());
    return container.status();
  }
  entry->container = *std::move(container);
  const int pid = entry->container->InitPid();

  // Egress rules go into the container's network namespace before anything
  // of the agent runs (runc create leaves the init blocked until Start).
  absl::Status egress = absl::OkStatus();
  if (entry->policy.egress.install) {
    egress = InstallEgress(pid, entry->policy.policy.nftables(),
                           config_.policy.nft_helper);
  }
  if (!egress.ok()) {
    ReleasePolicyRef(entry->policy, request.id());
    (void)entry->container->Kill("", SIGKILL, true);
    (void)entry->container->Wait("");
    (void)entry->container->Delete("");
    return absl::FailedPreconditionError(
        absl::StrCat("stockade: cannot install the egress rules of policy ",
                     entry->policy.namespace_, "/", entry->policy.name, ": ",
                     egress.message()));
  }

  events::TaskCreate e;
  e.set_container_id(request.id());
  e.set_bundle(request.bundle());
  *e.mutable_rootfs() = request.rootfs();
  e.mutable_io()->set_stdin(request.stdin());
  e.mutable_io()->set_stdout(request.stdout());
  e.mutable_io()->set_stderr(request.stderr());
  e.mutable_io()->set_terminal(request.terminal());
  e.set_pid(pid);
  {
    std::lock_guard<std::mutex> lock(mu_);
    containers_[request.id()] = std::move(entry);
  }
  events_->Publish("/tasks/create", e);
  task::CreateTaskResponse response;
  response.set_pid(pid);
  return response;
}

absl::StatusOr<task::StatsResponse> TaskService::Stats(
    const task::StatsRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  absl::StatusOr<std::string> stats = (*entry)->container->Stats();
  if (!stats.ok()) return stats.status();
  absl::StatusOr<google::protobuf::Any> metrics =
      MetricsFromRuncStats(*stats, HostCgroupVersion());
  if (!metrics.ok()) return metrics.status();
  task::StatsResponse response;
  *response.mutable_stats() = *std::move(metrics);
  return response;
}

absl::StatusOr<task::StartResponse> TaskService::Start(
    const task::StartRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  absl::StatusOr<int> pid = (*entry)->container->Start(request.exec_id());
  if (!pid.ok()) return pid.status();
  task::StartResponse response;
  response.set_pid(*pid);
  return response;
}

absl::StatusOr<task::DeleteResponse> TaskService::Delete(
    const task::DeleteRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  absl::StatusOr<ExitInfo> exit =
      (*entry)->container->Delete(request.exec_id());
  if (!exit.ok()) return exit.status();
  task::DeleteResponse response;
  response.set_pid(exit->pid);
  response.set_exit_status(exit->exit_status);
  SetTime(exit->exited_at, response.mutable_exited_at());
  events::TaskDelete e;
  e.set_container_id(request.id());
  e.set_pid(exit->pid);
  e.set_exit_status(exit->exit_status);
  SetTime(exit->exited_at, e.mutable_exited_at());
  if (!request.exec_id().empty()) {
    e.set_id(request.exec_id());
  } else {
    ReleasePolicyRef((*entry)->policy, request.id());
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(request.id());
  }
  events_->Publish("/tasks/delete", e);
  return response;
}

absl::StatusOr<task::StateResponse> TaskService::State(
    const task::StateRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  absl::StatusOr<ProcessState> state =
      (*entry)->container->State(request.exec_id());
  if (!state.ok()) return state.status();
  task::StateResponse response;
  response.set_id(request.id());
  response.set_exec_id(request.exec_id());
  response.set_bundle((*entry)->bundle);
  response.set_pid(state->pid);
  response.set_status(ToStatus(state->status));
  response.set_stdin(state->stdio.stdin_path);
  response.set_stdout(state->stdio.stdout_path);
  response.set_stderr(state->stdio.stderr_path);
  response.set_terminal(state->stdio.terminal);
  response.set_exit_status(state->exit_status);
  SetTime(state->exited_at, response.mutable_exited_at());
  return response;
}

absl::StatusOr<task::PidsResponse> TaskService::Pids(
    const task::PidsRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  absl::StatusOr<std::vector<int>> pids = (*entry)->container->Pids();
  if (!pids.ok()) return pids.status();
  task::PidsResponse response;
  for (int pid : *pids) response.add_processes()->set_pid(pid);
  return response;
}

absl::Status TaskService::Kill(const task::KillRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  return (*entry)->container->Kill(
      request.exec_id(), static_cast<int>(request.signal()), request.all());
}

absl::Status TaskService::Exec(const task::ExecProcessRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  if (request.exec_id().empty()) {
    return absl::InvalidArgumentError("Exec: exec_id is required");
  }
  // Exec'd processes run through stockade-init under the same policy.
  absl::StatusOr<std::string> process =
      ApplyPolicyToExec((*entry)->policy, request.spec().value());
  if (!process.ok()) return process.status();
  absl::Status added = (*entry)->container->AddExec(
      request.exec_id(), *process,
      MakeStdio(request.stdin(), request.stdout(), request.stderr(),
                request.terminal()));
  if (!added.ok()) return added;
  events::TaskExecAdded e;
  e.set_container_id(request.id());
  e.set_exec_id(request.exec_id());
  events_->Publish("/tasks/exec-added", e);
  return absl::OkStatus();
}

absl::Status TaskService::ResizePty(const task::ResizePtyRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  return (*entry)->container->ResizePty(request.exec_id(), request.width(),
                                        request.height());
}

absl::Status TaskService::CloseIO(const task::CloseIORequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  if (!request.stdin()) return absl::OkStatus();
  return (*entry)->container->CloseStdin(request.exec_id());
}

absl::Status TaskService::Update(const task::UpdateTaskRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  return (*entry)->container->Update(request.resources().value());
}

absl::Status TaskService::Pause(const task::PauseRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  return (*entry)->container->Pause();
}

absl::Status TaskService::Resume(const task::ResumeRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  return (*entry)->container->Resume();
}

absl::StatusOr<task::WaitResponse> TaskService::Wait(
    const task::WaitRequest& request) {
  absl::StatusOr<Entry*> entry = Find(request.id());
  if (!entry.ok()) return entry.status();
  absl::StatusOr<ExitInfo> exit = (*entry)->container->Wait(request.exec_id());
  if (!exit.ok()) return exit.status();
  task::WaitResponse response;
  response.set_exit_status(exit->exit_status);
  SetTime(exit->exited_at, response.mutable_exited_at());
  return response;
}

absl::StatusOr<task::ConnectResponse> TaskService::Connect(
    const task::ConnectRequest& request) {
  task::ConnectResponse response;
  response.set_shim_pid(static_cast<uint32_t>(getpid()));
  response.set_version("stockade");
  if (auto entry = Find(request.id()); entry.ok()) {
    response.set_task_pid((*entry)->container->InitPid());
  }
  return response;
}

absl::Status TaskService::Shutdown(const task::ShutdownRequest& request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A no-op while the shim still serves a container of the pod.
    if (!request.now() && !containers_.empty()) return absl::OkStatus();
  }
  on_shutdown_();
  return absl::OkStatus();
}

void TaskService::RegisterWith(ttrpc::Server* server) {
  using google::protobuf::Empty;
  auto empty = [](absl::Status s) -> absl::StatusOr<Empty> {
    if (!s.ok()) return s;
    return Empty();
  };
  Unary<task::CreateTaskRequest, task::CreateTaskResponse>(
      server, "Create", [this](const auto& r) { return AfterTrim(Create(r)); });
  Unary<task::StartRequest, task::StartResponse>(
      server, "Start", [this](const auto& r) { return Start(r); });
  Unary<task::DeleteRequest, task::DeleteResponse>(
      server, "Delete", [this](const auto& r) { return AfterTrim(Delete(r)); });
  Unary<task::StateRequest, task::StateResponse>(
      server, "State", [this](const auto& r) { return State(r); });
  Unary<task::PidsRequest, task::PidsResponse>(
      server, "Pids", [this](const auto& r) { return Pids(r); });
  Unary<task::KillRequest, Empty>(
      server, "Kill", [this, empty](const auto& r) { return empty(Kill(r)); });
  Unary<task::ExecProcessRequest, Empty>(
      server, "Exec",
      [this, empty](const auto& r) { return AfterTrim(empty(Exec(r))); });
  Unary<task::ResizePtyRequest, Empty>(
      server, "ResizePty",
      [this, empty](const auto& r) { return empty(ResizePty(r)); });
  Unary<task::CloseIORequest, Empty>(
      server, "CloseIO",
      [this, empty](const auto& r) { return empty(CloseIO(r)); });
  Unary<task::UpdateTaskRequest, Empty>(
      server, "Update",
      [this, empty](const auto& r) { return empty(Update(r)); });
  Unary<task::PauseRequest, Empty>(
      server, "Pause",
      [this, empty](const auto& r) { return empty(Pause(r)); });
  Unary<task::ResumeRequest, Empty>(
      server, "Resume",
      [this, empty](const auto& r) { return empty(Resume(r)); });
  Unary<task::WaitRequest, task::WaitResponse>(
      server, "Wait", [this](const auto& r) { return Wait(r); });
  Unary<task::ConnectRequest, task::ConnectResponse>(
      server, "Connect", [this](const auto& r) { return Connect(r); });
  Unary<task::ShutdownRequest, Empty>(
      server, "Shutdown",
      [this, empty](const auto& r) { return empty(Shutdown(r)); });
  Unary<task::CheckpointTaskRequest, Empty>(
      server, "Checkpoint", [](const auto&) -> absl::StatusOr<Empty> {
        return absl::UnimplementedError(
            "stockade: checkpoint is not supported");
      });
  Unary<task::StatsRequest, task::StatsResponse>(
      server, "Stats", [this](const auto& r) { return Stats(r); });
}

}  // namespace stockade::shim
