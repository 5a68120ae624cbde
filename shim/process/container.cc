#include "shim/process/container.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "shim/process/mount.h"
#include "shim/process/oom.h"
#include "shim/process/process_io.h"
#include "shim/runc/reaper.h"
#include "shim/runc/runc.h"

namespace stockade::shim {
namespace {

using json = nlohmann::json;

// How long Delete waits for a process's output to drain (a background
// child may hold stdout open forever).
constexpr absl::Duration kOutputDrainTimeout = absl::Seconds(2);
// How long Delete of a created, never started container waits for its
// init to be reaped after `runc delete --force`.
constexpr absl::Duration kKilledInitTimeout = absl::Seconds(5);
// Exit status reported for a process that never ran.
constexpr uint32_t kNeverRanStatus = 255;

// Runs observer calls in order on one thread: away from the reaper thread
// (which must never block) and from the callers of Container.
class EventQueue {
 public:
  static EventQueue& Get() {
    static EventQueue* queue = new EventQueue();
    return *queue;
  }

  void Post(std::function<void()> event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
    cv_.notify_one();
  }

  bool OnQueueThread() const {
    return std::this_thread::get_id() == thread_id_;
  }

 private:
  EventQueue() {
    std::thread thread([this] { Loop(); });
    thread_id_ = thread.get_id();
    thread.detach();
  }

  void Loop() {
    for (;;) {
      std::function<void()> event;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !events_.empty(); });
        event = std::move(events_.front());
        events_.pop_front();
      }
      event();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> events_;
  std::thread::id thread_id_;
};

// A containerd identifier: it becomes part of file names in the bundle.
bool ValidExecId(const std::string& id) {
  if (id.empty() || id.size() > 76) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(id.front()))) {
    return false;
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// Whether the spec gives the container its own pid namespace: when it does
// not, the processes left when init exits are killed by the shim.
absl::StatusOr<bool> HasPrivatePidNamespace(const std::string& bundle) {
  const std::string path = absl::StrCat(bundle, "/config.json");
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  std::stringstream content;
  content << in.rdbuf();
  json spec = json::parse(content.str(), nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not JSON"));
  }
  auto linux_it = spec.find("linux");
  if (linux_it == spec.end() || !linux_it->is_object()) return false;
  auto ns_it = linux_it->find("namespaces");
  if (ns_it == linux_it->end() || !ns_it->is_array()) return false;
  for (const json& ns : *ns_it) {
    if (!ns.is_object() || ns.value("type", "") != "pid") continue;
    return ns.value("path", "").empty();
  }
  return false;
}

struct Proc {
  std::string exec_id;
  std::string process_json;  // exec processes only
  Stdio stdio;
  std::shared_ptr<ProcessIo> io;
  int pid = 0;
  ProcessStatus status = ProcessStatus::kCreated;
  bool starting = false;        // runc start/exec in progress
  bool start_reported = false;  // OnStart queued
  bool start_failed = false;    // runc exec ran but the start failed
  bool exited = false;
  ExitInfo exit;
  bool exit_reported = false;  // OnExit queued
  bool done = false;           // Wait returns: OnExit delivered, or never ran
};

struct Core : std::enable_shared_from_this<Core> {
  Core(const RuntimeConfig& runtime, const CreateRequest& request,
       LifecycleObserver* observer)
      : id(request.id),
        bundle(request.bundle),
        ns(request.namespace_),
        mounted_rootfs(!request.rootfs.empty()),
        observer(observer),
        runc(
            RuncConfig{runtime.runc_binary,
                       absl::StrCat(runtime.runc_root, "/", request.namespace_),
                       absl::StrCat(request.bundle, "/log.json"),
                       runtime.systemd_cgroup}) {}

  const std::string id;
  const std::string bundle;
  const std::string ns;
  const bool mounted_rootfs;
  LifecycleObserver* const observer;
  Runc runc;
  bool kill_all_on_init_exit = false;
  int init_pid = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::shared_ptr<Proc>> procs;  // "" is init
  bool paused = false;
  bool deleted = false;
  std::shared_ptr<OomWatcher> oom;
  // OOM kills seen before the init's start was reported: reported right
  // after it (a process that dies at once can be OOM-killed before runc
  // start returns).
  int ooms_held = 0;

  std::mutex events_mu;
  std::condition_variable events_cv;
  int events_pending = 0;
  bool destroyed = false;

  // Queues an observer call; dropped once the Container is destroyed.
  void PostEvent(std::function<void()> event) {
    {
      std::lock_guard<std::mutex> lock(events_mu);
      if (destroyed) return;
      ++events_pending;
    }
    EventQueue::Get().Post(
        [self = shared_from_this(), event = std::move(event)] {
          bool skip;
          {
            std::lock_guard<std::mutex> lock(self->events_mu);
            skip = self->destroyed;
          }
          if (!skip) event();
          std::lock_guard<std::mutex> lock(self->events_mu);
          --self->events_pending;
          self->events_cv.notify_all();
        });
  }

  // An OOM kill, in containerd's order: after the start, before the exit.
  void ReportOom() {
    std::lock_guard<std::mutex> lock(mu);
    auto init = procs.find("");
    if (init != procs.end() && !init->second->start_reported) {
      ++ooms_held;
      return;
    }
    PostEvent([self = shared_from_this()] { self->observer->OnOom(); });
  }

  void PostExitLocked(const std::shared_ptr<Proc>& proc) {
    proc->exit_reported = true;
    PostEvent([self = shared_from_this(), proc, exec_id = proc->exec_id,
               exit = proc->exit] {
      self->observer->OnExit(exec_id, exit);
      std::lock_guard<std::mutex> lock(self->mu);
      proc->done = true;
      self->cv.notify_all();
    });
  }

  // Whether an exec process still holds back the init's exit.
  static bool ExecPending(const Proc& p) {
    if (p.starting) return true;
    if (p.start_reported && !p.exit_reported) return true;
    return p.start_failed && !p.exited;
  }

  // Queues every exit that may be reported now, in containerd's order:
  // never before the start, exec exits before the init's.
  void FlushLocked() {
    bool exec_pending = false;
    for (auto& [exec_id, proc] : procs) {
      if (exec_id.empty()) continue;
      if (proc->exited && !proc->starting) {
        if (proc->start_reported && !proc->exit_reported) {
          PostExitLocked(proc);
        } else if (!proc->start_reported && !proc->done) {
          proc->done = true;  // It never ran as far as containerd knows.
        }
      }
      exec_pending = exec_pending || ExecPending(*proc);
    }
    auto init_it = procs.find("");
    if (init_it != procs.end()) {
      Proc& init = *init_it->second;
      if (init.exited && !init.starting) {
        if (init.start_reported && !init.exit_reported && !exec_pending) {
          PostExitLocked(init_it->second);
        } else if (!init.start_reported && !init.done) {
          init.done = true;
        }
      }
    }
    cv.notify_all();
  }

  void HandleExit(const std::string& exec_id, int pid, int status,
                  absl::Time at) {
    if (exec_id.empty()) {
      // An OOM kill is reported before the exit it caused.
      std::shared_ptr<OomWatcher> watcher;
      {
        std::lock_guard<std::mutex> lock(mu);
        watcher = oom;
      }
      if (watcher) watcher->Poll();
    }
    std::lock_guard<std::mutex> lock(mu);
    auto it = procs.find(exec_id);
    if (it == procs.end() || it->second->pid != pid || it->second->exited) {
      return;
    }
    Proc& proc = *it->second;
    proc.exited = true;
    proc.status = ProcessStatus::kStopped;
    proc.exit = ExitInfo{pid, static_cast<uint32_t>(status), at};
    if (exec_id.empty() && kill_all_on_init_exit) {
      // Without its own pid namespace nothing kills what init leaves.
      std::thread([self = shared_from_this()] {
        self->runc.Kill(self->id, SIGKILL, /*all=*/true).IgnoreError();
      }).detach();
    }
    FlushLocked();
  }

  // Calls HandleExit when `pid` (exec_id's process) exits.
  void WatchExit(const std::string& exec_id, int pid, uint64_t since) {
    std::weak_ptr<Core> weak = shared_from_this();
    Reaper::Get().Watch(pid, since,
                        [weak, exec_id](int pid, int status, absl::Time at) {
                          if (auto self = weak.lock()) {
                            self->HandleExit(exec_id, pid, status, at);
                          }
                        });
  }

  // Waits until `proc` is done; not on the event thread (where the OnExit
  // being delivered may be the caller's own).
  void WaitDoneLocked(std::unique_lock<std::mutex>& lock,
                      const std::shared_ptr<Proc>& proc) {
    if (EventQueue::Get().OnQueueThread()) return;
    cv.wait(lock, [&] { return proc->done; });
  }

  absl::StatusOr<std::shared_ptr<Proc>> FindLocked(const std::string& exec_id) {
    auto it = procs.find(exec_id);
    if (it == procs.end()) {
      return absl::NotFoundError(
          exec_id.empty()
              ? absl::StrCat("container ", id, " not found")
              : absl::StrCat("exec ", exec_id, " not found in container ", id));
    }
    return it->second;
  }
};

class ContainerImpl : public Container {
 public:
  explicit ContainerImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}

  ~ContainerImpl() override {
    {
      std::unique_lock<std::mutex> lock(core_->events_mu);
      if (!EventQueue::Get().OnQueueThread()) {
        core_->events_cv.wait(lock, [&] { return core_->events_pending == 0; });
      }
      core_->destroyed = true;
    }
    std::shared_ptr<OomWatcher> oom;
    std::vector<std::shared_ptr<ProcessIo>> ios;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      oom = std::move(core_->oom);
      for (auto& [exec_id, proc] : core_->procs)
        ios.push_back(std::move(proc->io));
    }
  }

  absl::StatusOr<int> Start(const std::string& exec_id) override {
    return exec_id.empty() ? StartInit() : StartExec(exec_id);
  }

  absl::Status AddExec(const std::string& exec_id,
                       absl::string_view process_json,
                       const Stdio& stdio) override {
    if (!ValidExecId(exec_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid exec id \"", exec_id, "\""));
    }
    std::lock_guard<std::mutex> lock(core_->mu);
    if (core_->deleted) return NotFound();
    if (core_->procs.count(exec_id) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("exec ", exec_id, " already exists in ", core_->id));
    }
    if (core_->procs.at("")->exited) {
      return absl::FailedPreconditionError(
          absl::StrCat("container ", core_->id, " has exited"));
    }
    auto proc = std::make_shared<Proc>();
    proc->exec_id = exec_id;
    proc->process_json = std::string(process_json);
    proc->stdio = stdio;
    core_->procs[exec_id] = std::move(proc);
    return absl::OkStatus();
  }

  absl::Status Kill(const std::string& exec_id, int signal, bool all) override {
    int pid;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      absl::StatusOr<std::shared_ptr<Proc>> proc = core_->FindLocked(exec_id);
      if (!proc.ok()) return proc.status();
      if ((*proc)->exited) return ProcessFinished(exec_id);
      if (!exec_id.empty() && (*proc)->pid == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("exec ", exec_id, " is not started"));
      }
      pid = (*proc)->pid;
    }
    if (!exec_id.empty()) {
      if (kill(pid, signal) != 0) {
        if (errno == ESRCH) return ProcessFinished(exec_id);
        return absl::InternalError(
            absl::StrCat("kill ", pid, ": ", strerror(errno)));
      }
      return absl::OkStatus();
    }
    absl::Status status = core_->runc.Kill(core_->id, signal, all);
    if (status.ok()) return status;
    std::lock_guard<std::mutex> lock(core_->mu);
    auto it = core_->procs.find("");
    if (status.code() == absl::StatusCode::kNotFound ||
        (it != core_->procs.end() && it->second->exited)) {
      return absl::NotFoundError(status.message());
    }
    return status;
  }

  absl::StatusOr<ExitInfo> Wait(const std::string& exec_id) override {
    std::unique_lock<std::mutex> lock(core_->mu);
    absl::StatusOr<std::shared_ptr<Proc>> proc = core_->FindLocked(exec_id);
    if (!proc.ok()) return proc.status();
    std::shared_ptr<Proc> p = *proc;
    core_->cv.wait(lock, [&] { return p->done; });
    const ExitInfo exit = p->exit;
    std::shared_ptr<ProcessIo> io = p->io;
    lock.unlock();
    // The exit is reported only once the process's output reached its
    // destination: `ctr run` closes its FIFOs as soon as Wait returns, and a
    // tty's last lines would be lost (seen as a flaky TtyRunAndExec).
    if (io) io->WaitOutput(kOutputDrainTimeout);
    return exit;
  }

  absl::StatusOr<ProcessState> State(const std::string& exec_id) override {
    std::lock_guard<std::mutex> lock(core_->mu);
    absl::StatusOr<std::shared_ptr<Proc>> proc = core_->FindLocked(exec_id);
    if (!proc.ok()) return proc.status();
    const Proc& p = **proc;
    ProcessState state;
    state.exec_id = exec_id;
    state.pid = p.pid;
    state.status = p.status;
    if (exec_id.empty() && core_->paused && !p.exited) {
      state.status = ProcessStatus::kPaused;
    }
    state.stdio = p.stdio;
    if (p.exited) {
      state.exit_status = p.exit.exit_status;
      state.exited_at = p.exit.exited_at;
    }
    return state;
  }

  absl::StatusOr<ExitInfo> Delete(const std::string& exec_id) override {
    return exec_id.empty() ? DeleteInit() : DeleteExec(exec_id);
  }

  absl::StatusOr<std::vector<int>> Pids() override {
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      if (core_->deleted) return NotFound();
    }
    return core_->runc.Ps(core_->id);
  }

  absl::Status ResizePty(const std::string& exec_id, uint32_t width,
                         uint32_t height) override {
    std::shared_ptr<ProcessIo> io;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      absl::StatusOr<std::shared_ptr<Proc>> proc = core_->FindLocked(exec_id);
      if (!proc.ok()) return proc.status();
      io = (*proc)->io;
    }
    return io ? io->Resize(width, height) : absl::OkStatus();
  }

  absl::Status CloseStdin(const std::string& exec_id) override {
    std::shared_ptr<ProcessIo> io;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      absl::StatusOr<std::shared_ptr<Proc>> proc = core_->FindLocked(exec_id);
      if (!proc.ok()) return proc.status();
      io = (*proc)->io;
    }
    if (io) io->CloseStdin();
    return absl::OkStatus();
  }

  absl::Status Update(absl::string_view resources_json) override {
    if (absl::Status s = CheckRunning(); !s.ok()) return s;
    return core_->runc.Update(core_->id, resources_json);
  }

  absl::Status Pause() override {
    if (absl::Status s = CheckRunning(); !s.ok()) return s;
    if (absl::Status s = core_->runc.Pause(core_->id); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->paused = true;
    return absl::OkStatus();
  }

  absl::Status Resume() override {
    if (absl::Status s = CheckRunning(); !s.ok()) return s;
    if (absl::Status s = core_->runc.Resume(core_->id); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->paused = false;
    return absl::OkStatus();
  }

  int InitPid() const override { return core_->init_pid; }

  absl::StatusOr<std::string> Stats() override {
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      if (core_->deleted) return NotFound();
    }
    return core_->runc.Stats(core_->id);
  }

 private:
  absl::Status NotFound() const {
    return absl::NotFoundError(
        absl::StrCat("container ", core_->id, " not found"));
  }

  absl::Status ProcessFinished(const std::string& exec_id) const {
    return absl::NotFoundError(
        exec_id.empty() ? absl::StrCat("container ", core_->id, " has exited")
                        : absl::StrCat("exec ", exec_id, " has exited"));
  }

  absl::Status CheckRunning() {
    std::lock_guard<std::mutex> lock(core_->mu);
    if (core_->deleted) return NotFound();
    if (core_->procs.at("")->exited) {
      return absl::FailedPreconditionError(
          absl::StrCat("container ", core_->id, " has exited"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int> StartInit() {
    std::shared_ptr<Proc> init;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      absl::StatusOr<std::shared_ptr<Proc>> proc = core_->FindLocked("");
      if (!proc.ok()) return proc.status();
      init = *proc;
      if (init->starting || init->start_reported ||
          init->status != ProcessStatus::kCreated) {
        return absl::FailedPreconditionError(
            absl::StrCat("container ", core_->id,
                         init->exited ? " has exited" : " is started"));
      }
      init->starting = true;
    }
    absl::Status status = core_->runc.Start(core_->id);
    std::lock_guard<std::mutex> lock(core_->mu);
    init->starting = false;
    if (!status.ok()) {
      core_->FlushLocked();
      return absl::Status(
          status.code(),
          absl::StrCat("OCI runtime start failed: ", status.message()));
    }
    if (!init->exited) init->status = ProcessStatus::kRunning;
    init->start_reported = true;
    core_->PostEvent(
        [core = core_, pid = init->pid] { core->observer->OnStart("", pid); });
    for (; core_->ooms_held > 0; --core_->ooms_held) {
      core_->PostEvent([core = core_] { core->observer->OnOom(); });
    }
    core_->FlushLocked();
    return init->pid;
  }

  absl::StatusOr<int> StartExec(const std::string& exec_id) {
    std::shared_ptr<Proc> proc;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      absl::StatusOr<std::shared_ptr<Proc>> found = core_->FindLocked(exec_id);
      if (!found.ok()) return found.status();
      proc = *found;
      if (core_->procs.at("")->exited) {
        return absl::FailedPreconditionError(
            absl::StrCat("container ", core_->id, " has exited"));
      }
      if (proc->starting || proc->status != ProcessStatus::kCreated ||
          proc->start_failed) {
        return absl::FailedPreconditionError(
            absl::StrCat("exec ", exec_id, " was started already"));
      }
      proc->starting = true;
    }
    auto fail = [&](absl::Status status) -> absl::Status {
      std::lock_guard<std::mutex> lock(core_->mu);
      proc->starting = false;
      proc->status = ProcessStatus::kStopped;
      if (proc->pid == 0) {
        proc->exited = true;
        proc->exit = ExitInfo{0, kNeverRanStatus, absl::Now()};
      }
      core_->FlushLocked();
      return status;
    };
    absl::StatusOr<std::unique_ptr<ProcessIo>> io =
        ProcessIo::Create(proc->stdio, core_->id, core_->ns);
    if (!io.ok()) return fail(io.status());
    std::shared_ptr<ProcessIo> shared_io = std::move(*io);
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      proc->io = shared_io;
    }
    RuncExecOptions options;
    options.pid_file = absl::StrCat(core_->bundle, "/", exec_id, ".pid");
    options.console_socket = shared_io->console_socket();
    options.io = shared_io->runc_io();
    const uint64_t since = Reaper::Get().Sequence();
    absl::Status status =
        core_->runc.Exec(core_->id, proc->process_json, core_->bundle, options);
    if (!status.ok()) {
      return fail(absl::Status(
          status.code(),
          absl::StrCat("OCI runtime exec failed: ", status.message())));
    }
    absl::StatusOr<int> pid = Runc::ReadPidFile(options.pid_file);
    if (!pid.ok()) return fail(pid.status());
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      proc->pid = *pid;
    }
    core_->WatchExit(exec_id, *pid, since);
    if (absl::Status s = shared_io->Started(); !s.ok()) {
      kill(*pid, SIGKILL);
      std::lock_guard<std::mutex> lock(core_->mu);
      proc->starting = false;
      proc->start_failed = true;
      core_->FlushLocked();
      return s;
    }
    std::lock_guard<std::mutex> lock(core_->mu);
    proc->starting = false;
    if (!proc->exited) proc->status = ProcessStatus::kRunning;
    proc->start_reported = true;
    core_->PostEvent([core = core_, exec_id, pid = *pid] {
      core->observer->OnStart(exec_id, pid);
    });
    core_->FlushLocked();
    return *pid;
  }

  absl::StatusOr<ExitInfo> DeleteExec(const std::string& exec_id) {
    std::shared_ptr<Proc> proc;
    {
      std::unique_lock<std::mutex> lock(core_->mu);
      absl::StatusOr<std::shared_ptr<Proc>> found = core_->FindLocked(exec_id);
      if (!found.ok()) return found.status();
      proc = *found;
      if (proc->starting || (proc->pid != 0 && !proc->exited)) {
        return absl::FailedPreconditionError(
            absl::StrCat("exec ", exec_id, " is running"));
      }
      if (proc->pid == 0 && !proc->exited) {  // Added, never started.
        proc->exited = true;
        proc->status = ProcessStatus::kStopped;
        proc->exit = ExitInfo{0, kNeverRanStatus, absl::Now()};
        proc->done = true;
        core_->cv.notify_all();
      }
      core_->WaitDoneLocked(lock, proc);
      core_->procs.erase(exec_id);
      core_->FlushLocked();
    }
    if (proc->io) {
      proc->io->WaitOutput(kOutputDrainTimeout);
      proc->io.reset();
    }
    unlink(absl::StrCat(core_->bundle, "/", exec_id, ".pid").c_str());
    return proc->exit;
  }

  absl::StatusOr<ExitInfo> DeleteInit() {
    std::shared_ptr<Proc> init;
    bool never_started;
    {
      std::unique_lock<std::mutex> lock(core_->mu);
      if (core_->deleted) return NotFound();
      init = core_->procs.at("");
      if (init->starting) {
        return absl::FailedPreconditionError(
            absl::StrCat("container ", core_->id, " is starting"));
      }
      never_started = !init->start_reported;
      if (!never_started && !init->exited) {
        return absl::FailedPreconditionError(
            absl::StrCat("container ", core_->id, " is running"));
      }
      if (!never_started) core_->WaitDoneLocked(lock, init);
    }
    absl::Status status =
        core_->runc.Delete(core_->id, /*force=*/never_started);
    if (!status.ok() && status.code() != absl::StatusCode::kNotFound &&
        !never_started) {
      // Something of it is left (a process in the cgroup): force it.
      status = core_->runc.Delete(core_->id, /*force=*/true);
    }
    if (!status.ok() && status.code() != absl::StatusCode::kNotFound) {
      return status;
    }
    std::shared_ptr<OomWatcher> oom;
    std::vector<std::shared_ptr<ProcessIo>> ios;
    ExitInfo exit;
    {
      std::unique_lock<std::mutex> lock(core_->mu);
      if (never_started) {
        core_->cv.wait_for(lock, absl::ToChronoMilliseconds(kKilledInitTimeout),
                           [&] { return init->exited; });
        if (!init->exited) {
          init->exited = true;
          init->exit = ExitInfo{init->pid, 128 + SIGKILL, absl::Now()};
        }
        init->status = ProcessStatus::kStopped;
        init->done = true;
      }
      exit = init->exit;
      core_->deleted = true;
      oom = std::move(core_->oom);
      for (auto& [exec_id, proc] : core_->procs) {
        proc->done = true;
        if (proc->io) ios.push_back(std::move(proc->io));
      }
      core_->procs.clear();
      core_->cv.notify_all();
    }
    oom.reset();
    for (auto& io : ios) io->WaitOutput(kOutputDrainTimeout);
    ios.clear();
    if (core_->mounted_rootfs) {
      if (absl::Status s = UnmountAll(absl::StrCat(core_->bundle, "/rootfs"));
          !s.ok()) {
        return s;
      }
    }
    return exit;
  }

  std::shared_ptr<Core> core_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Container>> Container::Create(
    const RuntimeConfig& config, const CreateRequest& request,
    LifecycleObserver* observer) {
  if (!Reaper::Get().started()) {
    return absl::FailedPreconditionError(
        "the reaper is not started (call StartReaper first)");
  }
  if (request.id.empty()) {
    return absl::InvalidArgumentError("container id is empty");
  }
  if (request.bundle.empty() || request.bundle.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle must be an absolute path: ", request.bundle));
  }
  if (observer == nullptr) {
    return absl::InvalidArgumentError("no lifecycle observer");
  }
  absl::StatusOr<bool> private_pid = HasPrivatePidNamespace(request.bundle);
  if (!private_pid.ok()) return private_pid.status();

  const std::string rootfs = absl::StrCat(request.bundle, "/rootfs");
  if (absl::Status s = MountRootfs(rootfs, request.rootfs); !s.ok()) return s;
  auto unmount = [&] {
    if (!request.rootfs.empty()) UnmountAll(rootfs).IgnoreError();
  };

  auto core = std::make_shared<Core>(config, request, observer);
  core->kill_all_on_init_exit = !*private_pid;
  absl::StatusOr<std::unique_ptr<ProcessIo>> io =
      ProcessIo::Create(request.stdio, request.id, request.namespace_);
  if (!io.ok()) {
    unmount();
    return io.status();
  }
  std::shared_ptr<ProcessIo> init_io = std::move(*io);
  auto init = std::make_shared<Proc>();
  init->stdio = request.stdio;
  init->io = init_io;

  RuncCreateOptions options;
  options.bundle = request.bundle;
  options.pid_file = absl::StrCat(request.bundle, "/init.pid");
  options.console_socket = init_io->console_socket();
  options.no_pivot = config.no_pivot_root;
  options.no_new_keyring = config.no_new_keyring;
  options.io = init_io->runc_io();
  auto fail = [&](absl::Status status) -> absl::Status {
    init_io.reset();
    init->io.reset();
    core->runc.Delete(request.id, /*force=*/true).IgnoreError();
    unmount();
    return status;
  };
  const uint64_t since = Reaper::Get().Sequence();
  if (absl::Status s = core->runc.Create(request.id, options); !s.ok()) {
    // Nothing was created that needs `runc delete`... unless runc left a
    // half-made container behind, which `fail` removes.
    return fail(absl::Status(
        s.code(), absl::StrCat("OCI runtime create failed: ", s.message())));
  }
  absl::StatusOr<int> pid = Runc::ReadPidFile(options.pid_file);
  if (!pid.ok()) return fail(pid.status());
  init->pid = *pid;
  core->init_pid = *pid;
  {
    std::lock_guard<std::mutex> lock(core->mu);
    core->procs[""] = init;
  }
  core->WatchExit("", *pid, since);
  if (absl::Status s = init_io->Started(); !s.ok()) return fail(s);

  std::weak_ptr<Core> weak = core;
  absl::StatusOr<std::unique_ptr<OomWatcher>> oom =
      OomWatcher::Start(*pid, [weak] {
        if (auto self = weak.lock()) self->ReportOom();
      });
  if (oom.ok()) {
    std::lock_guard<std::mutex> lock(core->mu);
    core->oom = std::move(*oom);
  } else {
    fprintf(stderr, "stockade shim: no OOM events for %s: %s\n",
            request.id.c_str(), std::string(oom.status().message()).c_str());
  }
  return std::unique_ptr<Container>(new ContainerImpl(std::move(core)));
}

absl::Status StartReaper() { return Reaper::Get().Start(); }

}  // namespace stockade::shim
