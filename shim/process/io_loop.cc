#include "shim/process/io_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

namespace stockade::shim {
namespace {

constexpr size_t kChunk = 32 * 1024;

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

}  // namespace

struct IoLoop::Impl {
  struct CopyJob {
    int src = -1;
    int dst = -1;
    std::vector<int> keep_open;
    std::function<void()> done;
    std::string pending;       // read from src, not yet written to dst
    bool dst_pollable = true;  // regular files cannot be polled
    bool dst_in_epoll = false;
    bool finish_when_drained = false;
  };
  struct WatchJob {
    int fd;
    std::function<void()> callback;
  };

  std::mutex mu;
  std::condition_variable cv;
  int epoll_fd = -1;
  Id next_id = 1;
  std::unordered_map<Id, CopyJob> copies;
  std::unordered_map<Id, WatchJob> watches;
  Id running_watch = 0;
  std::thread::id loop_thread;

  static uint64_t Key(Id id, bool dst) { return id * 2 + (dst ? 1 : 0); }

  void Control(int op, int fd, uint32_t events, uint64_t key) {
    epoll_event event = {};
    event.events = events;
    event.data.u64 = key;
    epoll_ctl(epoll_fd, op, fd, &event);
  }

  // Closes a job's descriptors and returns its done callback. Under mu.
  std::function<void()> Finish(Id id) {
    auto it = copies.find(id);
    if (it == copies.end()) return nullptr;
    CopyJob& job = it->second;
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, job.src, nullptr);
    if (job.dst_in_epoll) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, job.dst, nullptr);
    close(job.src);
    close(job.dst);
    for (int fd : job.keep_open) close(fd);
    std::function<void()> done = std::move(job.done);
    copies.erase(it);
    return done;
  }

  // Writes job.pending; true when all of it is out, false when dst would
  // block. Sets `failed` on a write error.
  static bool Flush(CopyJob& job, bool& failed) {
    size_t off = 0;
    while (off < job.pending.size()) {
      ssize_t n =
          write(job.dst, job.pending.data() + off, job.pending.size() - off);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        job.pending.erase(0, off);
        return false;
      }
      failed = true;
      job.pending.clear();
      return true;
    }
    job.pending.clear();
    return true;
  }

  // Handles readiness of a copy's src or dst. Under mu; returns a done
  // callback when the copy finished.
  std::function<void()> OnCopyEvent(Id id, bool is_dst, uint32_t events) {
    auto it = copies.find(id);
    if (it == copies.end()) return nullptr;
    CopyJob& job = it->second;
    bool failed = false;
    if (is_dst) {
      // Reported even when not asked for: the reader of dst is gone.
      if (events & (EPOLLERR | EPOLLHUP)) return Finish(id);
      if (!Flush(job, failed)) return nullptr;
      if (failed) return Finish(id);
      // Drained: stop watching dst, listen to src again.
      Control(EPOLL_CTL_MOD, job.dst, 0, Key(id, true));
      Control(EPOLL_CTL_MOD, job.src, EPOLLIN, Key(id, false));
      if (!job.finish_when_drained) return nullptr;
    }
    if (!job.pending.empty()) return nullptr;
    static char buffer[kChunk];
    for (int round = 0; job.finish_when_drained || round < 16; ++round) {
      ssize_t n = read(job.src, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        return job.finish_when_drained ? Finish(id) : nullptr;
      }
      if (n <= 0) return Finish(id);  // EOF, or EIO from a pty master
      job.pending.assign(buffer, static_cast<size_t>(n));
      if (!Flush(job, failed)) {
        // dst is full: pause src until dst can take more.
        Control(EPOLL_CTL_MOD, job.src, 0, Key(id, false));
        if (job.dst_in_epoll) {
          Control(EPOLL_CTL_MOD, job.dst, EPOLLOUT, Key(id, true));
        }
        return nullptr;
      }
      if (failed) return Finish(id);
    }
    return nullptr;
  }

  void Loop() {
    epoll_event events[64];
    for (;;) {
      int n = epoll_wait(epoll_fd, events, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      for (int i = 0; i < n; ++i) {
        const uint64_t key = events[i].data.u64;
        const Id id = key / 2;
        const bool is_dst = key % 2 == 1;
        std::function<void()> callback;
        {
          std::unique_lock<std::mutex> lock(mu);
          auto watch = watches.find(id);
          if (watch != watches.end()) {
            callback = watch->second.callback;
            running_watch = id;
          } else {
            callback = OnCopyEvent(id, is_dst, events[i].events);
          }
        }
        if (callback) callback();
        {
          std::lock_guard<std::mutex> lock(mu);
          if (running_watch != 0) {
            running_watch = 0;
            cv.notify_all();
          }
        }
      }
    }
  }
};

IoLoop& IoLoop::Get() {
  static IoLoop* loop = new IoLoop();
  return *loop;
}

IoLoop::IoLoop() : impl_(new Impl()) {
  impl_->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  std::thread thread([impl = impl_] { impl->Loop(); });
  impl_->loop_thread = thread.get_id();
  thread.detach();
}

IoLoop::Id IoLoop::Copy(int src, int dst, std::vector<int> keep_open,
                        std::function<void()> done) {
  SetNonBlocking(src);
  SetNonBlocking(dst);
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Id id = impl_->next_id++;
  Impl::CopyJob& job = impl_->copies[id];
  job.src = src;
  job.dst = dst;
  job.keep_open = std::move(keep_open);
  job.done = std::move(done);
  epoll_event event = {};
  event.data.u64 = Impl::Key(id, true);
  if (epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, dst, &event) == 0) {
    job.dst_in_epoll = true;
  } else {
    // A regular file: writes never wait, so plain blocking writes do.
    job.dst_pollable = false;
    int flags = fcntl(dst, F_GETFL);
    if (flags >= 0) fcntl(dst, F_SETFL, flags & ~O_NONBLOCK);
  }
  event.events = EPOLLIN;
  event.data.u64 = Impl::Key(id, false);
  if (epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, src, &event) != 0) {
    // Not pollable (a regular file as stdin): nothing sensible to copy.
    std::function<void()> finished = impl_->Finish(id);
    if (finished) {
      std::thread(std::move(finished)).detach();
    }
  }
  return id;
}

void IoLoop::Cancel(Id id) {
  std::function<void()> done;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    done = impl_->Finish(id);
  }
  if (done) done();
}

void IoLoop::FinishWhenDrained(Id id) {
  std::function<void()> done;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->copies.find(id);
    if (it == impl_->copies.end()) return;
    it->second.finish_when_drained = true;
    if (!it->second.pending.empty()) return;  // Finishes once dst drained.
    done = impl_->OnCopyEvent(id, /*is_dst=*/false, 0);
  }
  if (done) done();
}

IoLoop::Id IoLoop::Watch(int fd, uint32_t events,
                         std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Id id = impl_->next_id++;
  impl_->watches[id] = Impl::WatchJob{fd, std::move(callback)};
  impl_->Control(EPOLL_CTL_ADD, fd, events, Impl::Key(id, false));
  return id;
}

void IoLoop::Unwatch(Id id) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  auto it = impl_->watches.find(id);
  if (it != impl_->watches.end()) {
    epoll_ctl(impl_->epoll_fd, EPOLL_CTL_DEL, it->second.fd, nullptr);
    impl_->watches.erase(it);
  }
  if (std::this_thread::get_id() == impl_->loop_thread) return;
  impl_->cv.wait(lock, [&] { return impl_->running_watch != id; });
}

}  // namespace stockade::shim
