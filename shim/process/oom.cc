#include "shim/process/oom.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stockade::shim {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

uint64_t ReadOomKills(int fd) {
  char buf[1024];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(buf, static_cast<size_t>(n)), '\n')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    uint64_t value = 0;
    if (kv.first == "oom_kill" && absl::SimpleAtoi(kv.second, &value)) {
      return value;
    }
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OomWatcher>> OomWatcher::Start(
    int pid, std::function<void()> on_oom) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cgroup"));
  if (!in) {
    return absl::NotFoundError(absl::StrCat("no cgroup file for pid ", pid));
  }
  std::string v1_path, v2_path;
  bool has_v2 = false;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts =
        absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) {
      v2_path = parts[2];
      has_v2 = true;
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
      if (controller == "memory") v1_path = parts[2];
    }
  }
  std::unique_ptr<OomWatcher> watcher(new OomWatcher());
  watcher->on_oom_ = std::move(on_oom);
  if (!v1_path.empty() && Exists("/sys/fs/cgroup/memory")) {
    watcher->dir_ = absl::StrCat("/sys/fs/cgroup/memory", v1_path);
    const std::string control =
        absl::StrCat(watcher->dir_, "/memory.oom_control");
    watcher->control_fd_ = open(control.c_str(), O_RDONLY | O_CLOEXEC);
    if (watcher->control_fd_ < 0) {
      return absl::NotFoundError(
          absl::StrCat("open ", control, ": ", strerror(errno)));
    }
    watcher->event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (watcher->event_fd_ < 0) {
      return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
    }
    const std::string event_control =
        absl::StrCat(watcher->dir_, "/cgroup.event_control");
    const std::string registration =
        absl::StrCat(watcher->event_fd_, " ", watcher->control_fd_);
    int fd = open(event_control.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, registration.data(), registration.size()) !=
                      static_cast<ssize_t>(registration.size())) {
      absl::Status status = absl::InternalError(
          absl::StrCat("register with ", event_control, ": ", strerror(errno)));
      if (fd >= 0) close(fd);
      return status;
    }
    close(fd);
  } else if (has_v2 && Exists(absl::StrCat("/sys/fs/cgroup", v2_path,
                                           "/memory.events"))) {
    watcher->v2_ = true;
    watcher->dir_ = absl::StrCat("/sys/fs/cgroup", v2_path);
    const std::string events = absl::StrCat(watcher->dir_, "/memory.events");
    watcher->event_fd_ = open(events.c_str(), O_RDONLY | O_CLOEXEC);
    if (watcher->event_fd_ < 0) {
      return absl::NotFoundError(
          absl::StrCat("open ", events, ": ", strerror(errno)));
    }
    watcher->oom_kills_ = ReadOomKills(watcher->event_fd_);
  } else {
    return absl::NotFoundError(
        absl::StrCat("pid ", pid, " is in no memory cgroup"));
  }
  OomWatcher* self = watcher.get();
  watcher->watch_ =
      IoLoop::Get().Watch(watcher->event_fd_, watcher->v2_ ? EPOLLPRI : EPOLLIN,
                          [self] { self->Check(/*from_loop=*/true); });
  return watcher;
}

OomWatcher::~OomWatcher() {
  IoLoop::Id watch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watch = watch_;
  }
  if (watch != 0) IoLoop::Get().Unwatch(watch);
  if (event_fd_ >= 0) close(event_fd_);
  if (control_fd_ >= 0) close(control_fd_);
}

void OomWatcher::Poll() { Check(/*from_loop=*/false); }

void OomWatcher::Check(bool from_loop) {
  std::lock_guard<std::mutex> lock(mu_);
  if (v2_) {
    if (!Exists(dir_)) {
      // A removed cgroup's file polls ready forever: stop watching it.
      if (from_loop && watch_ != 0) {
        IoLoop::Get().Unwatch(watch_);
        watch_ = 0;
      }
      return;
    }
    uint64_t kills = ReadOomKills(event_fd_);
    if (kills <= oom_kills_) return;
    oom_kills_ = kills;
    on_oom_();
    return;
  }
  uint64_t count = 0;
  if (read(event_fd_, &count, sizeof(count)) != sizeof(count) || count == 0) {
    return;
  }
  // The eventfd also fires when the cgroup goes away.
  if (!Exists(absl::StrCat(dir_, "/memory.oom_control"))) return;
  on_oom_();
}

}  // namespace stockade::shim
