#include "shim/ttrpc/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "shim/ttrpc/frame.h"

namespace stockade::ttrpc {
namespace {

constexpr char kNamespaceKey[] = "containerd-namespace-ttrpc";
constexpr size_t kReadChunk = 64 << 10;
// Idle pool threads exit after this long without work.
constexpr std::chrono::seconds kIdleWorkerLifetime(10);

// Writes all of `data`; false if the connection is gone.
bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Threads that report when they finish, so that finished ones can be joined
// without blocking and the rest joined, or given up on, at the end. Shared:
// each thread keeps the group alive until it has reported.
class ThreadGroup : public std::enable_shared_from_this<ThreadGroup> {
 public:
  void Spawn(std::function<void()> fn) {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t id = next_id_++;
    threads_.emplace(
        id, std::thread([self = shared_from_this(), id, fn = std::move(fn)] {
          fn();
          std::unique_lock<std::mutex> lock(self->mu_);
          // A thread given up on (detached) is no longer tracked.
          if (self->threads_.contains(id)) self->finished_.push_back(id);
          self->cv_.notify_all();
        }));
  }

  // Joins threads that have finished.
  void ReapFinished() {
    std::vector<std::thread> done;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (uint64_t id : finished_) {
        auto it = threads_.find(id);
        done.push_back(std::move(it->second));
        threads_.erase(it);
      }
      finished_.clear();
    }
    for (auto& t : done) t.join();
  }

  // Waits until every thread has finished or `deadline`; joins the finished
  // ones and detaches the others (they keep the group alive themselves).
  // Not from a thread of this group with an infinite deadline.
  void JoinUntil(absl::Time deadline) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto all_finished = [this] {
        return finished_.size() == threads_.size();
      };
      if (deadline == absl::InfiniteFuture()) {
        cv_.wait(lock, all_finished);
      } else {
        cv_.wait_until(lock, absl::ToChronoTime(deadline), all_finished);
      }
    }
    ReapFinished();
    std::unique_lock<std::mutex> lock(mu_);
    for (auto& [id, t] : threads_) t.detach();
    threads_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_id_ = 0;
  absl::flat_hash_map<uint64_t, std::thread> threads_;
  std::vector<uint64_t> finished_;
};

// Runs each task on an idle thread, or on a new one: a submit never waits
// for a busy handler.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool() : threads_(std::make_shared<ThreadGroup>()) {}

  void Submit(std::function<void()> task) {
    bool spawn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
      spawn = idle_ < static_cast<int>(tasks_.size());
      if (!spawn) cv_.notify_one();
    }
    threads_->ReapFinished();
    if (spawn) threads_->Spawn([self = shared_from_this()] { self->Work(); });
  }

  // Lets idle threads exit; waits for busy ones until `deadline`.
  void Stop(absl::Time deadline) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    threads_->JoinUntil(deadline);
  }

 private:
  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (!tasks_.empty()) {
        std::function<void()> task = std::move(tasks_.front());
        tasks_.pop_front();
        lock.unlock();
        task();
        task = nullptr;  // destroy captures outside the lock
        lock.lock();
        continue;
      }
      if (stopping_) return;
      ++idle_;
      const bool woke = cv_.wait_for(lock, kIdleWorkerLifetime, [this] {
        return !tasks_.empty() || stopping_;
      });
      --idle_;
      if (!woke) return;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  int idle_ = 0;
  bool stopping_ = false;
  std::shared_ptr<ThreadGroup> threads_;
};

struct Conn {
  explicit Conn(int fd_in, uint64_t id_in) : fd(fd_in), id(id_in) {}
  ~Conn() { close(fd); }

  // Writes one whole frame; later frames wait. Dropped once closed.
  void Write(absl::string_view frame) {
    std::unique_lock<std::mutex> lock(write_mu);
    if (closed.load()) return;
    if (!WriteAll(fd, frame)) closed.store(true);
  }

  const int fd;
  const uint64_t id;
  std::mutex write_mu;
  std::atomic<bool> closed{false};
  // Guarded by State::mu.
  int in_flight = 0;
  bool reading_done = false;
};

using HandlerMap =
    absl::flat_hash_map<std::pair<std::string, std::string>, Handler>;

// Identifies the server and connection whose handler runs on this thread.
thread_local const void* tls_state = nullptr;
thread_local const Conn* tls_conn = nullptr;

}  // namespace

// Everything the server's threads touch; shared, so that a handler still
// running after the Server is gone stays memory-safe.
struct State {
  explicit State(ServerOptions o)
      : options(o),
        shutdown_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        readers(std::make_shared<ThreadGroup>()),
        pool(std::make_shared<Pool>()) {}
  ~State() {
    if (shutdown_fd >= 0) close(shutdown_fd);
  }

  void HandleFrame(const std::shared_ptr<State>& self,
                   const std::shared_ptr<Conn>& conn,
                   FrameDecoder::Event event);
  void ReadLoop(const std::shared_ptr<State>& self,
                const std::shared_ptr<Conn>& conn);
  void FinishCall(const std::shared_ptr<Conn>& conn);
  // With mu held: closes `conn` if nothing more will be read or written.
  void MaybeCloseLocked(const std::shared_ptr<Conn>& conn);
  void CloseLocked(const std::shared_ptr<Conn>& conn);

  const ServerOptions options;
  const int shutdown_fd;
  HandlerMap handlers;                             // written only before Serve
  absl::flat_hash_map<std::string, int> services;  // method count

  std::mutex mu;
  std::condition_variable cv;  // in_flight or shutdown_complete changed
  bool serving = false;
  bool shutting_down = false;
  bool shutdown_complete = false;
  uint64_t next_conn_id = 0;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Conn>> conns;
  int64_t in_flight = 0;

  std::shared_ptr<ThreadGroup> readers;
  std::shared_ptr<Pool> pool;
};

struct Server::Impl {
  std::shared_ptr<State> state;
};

void State::CloseLocked(const std::shared_ptr<Conn>& conn) {
  conn->closed.store(true);
  // Wakes the reader and any blocked write; the fd closes with the last
  // reference.
  shutdown(conn->fd, SHUT_RDWR);
  conns.erase(conn->id);
}

void State::MaybeCloseLocked(const std::shared_ptr<Conn>& conn) {
  if (conn->reading_done && conn->in_flight == 0) CloseLocked(conn);
}

void State::FinishCall(const std::shared_ptr<Conn>& conn) {
  std::unique_lock<std::mutex> lock(mu);
  --conn->in_flight;
  --in_flight;
  MaybeCloseLocked(conn);
  cv.notify_all();
}

void State::HandleFrame(const std::shared_ptr<State>& self,
                        const std::shared_ptr<Conn>& conn,
                        FrameDecoder::Event event) {
  const uint32_t id = event.header.stream_id;
  if (event.kind == FrameDecoder::Kind::kOversized) {
    conn->Write(EncodeResponseFrame(
        id,
        absl::ResourceExhaustedError(
            absl::StrCat("ttrpc: message length ", event.header.length,
                         " exceeds maximum message size of ", kMaxFrameData)),
        ""));
    return;
  }
  // Other types (responses, streaming data) are ignored, as ttrpc requires
  // for forward compatibility.
  if (event.header.type != kFrameRequest) return;
  absl::StatusOr<wire::Request> request = ParseRequest(event.data);
  if (!request.ok()) {
    conn->Write(EncodeResponseFrame(id, request.status(), ""));
    return;
  }
  if (id % 2 != 1) {
    conn->Write(
        EncodeResponseFrame(id,
                            absl::InvalidArgumentError(absl::StrCat(
                                "ttrpc: stream id ", id,
                                " must be odd for client-initiated streams")),
                            ""));
    return;
  }
  auto it =
      handlers.find(std::make_pair(request->service(), request->method()));
  if (it == handlers.end()) {
    const std::string message =
        services.contains(request->service())
            ? absl::StrCat("ttrpc: method ", request->method(), " of service ",
                           request->service(), " is not implemented")
            : absl::StrCat("ttrpc: service ", request->service(),
                           " is not implemented");
    conn->Write(EncodeResponseFrame(id, absl::UnimplementedError(message), ""));
    return;
  }
  CallContext context;
  context.service = request->service();
  context.method = request->method();
  context.timeout_nano = request->timeout_nano();
  for (const wire::KeyValue& kv : request->metadata()) {
    if (kv.key() == kNamespaceKey && context.namespace_.empty()) {
      context.namespace_ = kv.value();
    }
    context.metadata.emplace(kv.key(), kv.value());
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ++conn->in_flight;
    ++in_flight;
  }
  const Handler* handler = &it->second;
  pool->Submit([self, conn, handler, id, context = std::move(context),
                payload = std::move(*request->mutable_payload())] {
    tls_state = self.get();
    tls_conn = conn.get();
    absl::StatusOr<std::string> result = (*handler)(context, payload);
    tls_state = nullptr;
    tls_conn = nullptr;
    conn->Write(EncodeResponseFrame(
        id, result.status(), result.ok() ? absl::string_view(*result) : ""));
    self->FinishCall(conn);
  });
}

void State::ReadLoop(const std::shared_ptr<State>& self,
                     const std::shared_ptr<Conn>& conn) {
  FrameDecoder decoder;
  std::vector<char> buffer(kReadChunk);
  bool stop = false;
  while (!stop) {
    pollfd fds[2] = {{conn->fd, POLLIN, 0}, {shutdown_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    const ssize_t n = read(conn->fd, buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    decoder.Feed(buffer.data(), static_cast<size_t>(n));
    while (std::optional<FrameDecoder::Event> event = decoder.Next()) {
      {
        std::unique_lock<std::mutex> lock(mu);
        if (shutting_down) {
          stop = true;
          break;
        }
      }
      HandleFrame(self, conn, *std::move(event));
    }
  }
  std::unique_lock<std::mutex> lock(mu);
  conn->reading_done = true;
  MaybeCloseLocked(conn);
}

Server::Server() : Server(ServerOptions()) {}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->state = std::make_shared<State>(options);
}

Server::~Server() {
  Shutdown();
  impl_->state->pool->Stop(absl::Now() + impl_->state->options.drain_timeout);
}

void Server::Register(const std::string& service, const std::string& method,
                      Handler handler) {
  State& s = *impl_->state;
  if (s.handlers.insert_or_assign({service, method}, std::move(handler))
          .second) {
    ++s.services[service];
  }
}

int Server::ConnectionCount() const {
  State& s = *impl_->state;
  std::unique_lock<std::mutex> lock(s.mu);
  return static_cast<int>(s.conns.size());
}

absl::Status Server::Serve(int listen_fd) {
  std::shared_ptr<State> state = impl_->state;
  if (state->shutdown_fd < 0) {
    return absl::InternalError("ttrpc: eventfd failed");
  }
  {
    std::unique_lock<std::mutex> lock(state->mu);
    if (state->serving) {
      return absl::FailedPreconditionError("ttrpc: Serve called twice");
    }
    state->serving = true;
  }
  const int flags = fcntl(listen_fd, F_GETFL);
  if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttrpc: bad listening socket: ", std::strerror(errno)));
  }
  absl::Status result;
  while (true) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {state->shutdown_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      result = absl::InternalError(
          absl::StrCat("ttrpc: poll: ", std::strerror(errno)));
      break;
    }
    if (fds[1].revents != 0) break;
    if (fds[0].revents & POLLNVAL) {
      result = absl::InvalidArgumentError("ttrpc: listening socket closed");
      break;
    }
    state->readers->ReapFinished();
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED ||
          errno == EPROTO) {
        continue;
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of descriptors or memory: retry later, without spinning.
        absl::SleepFor(absl::Milliseconds(100));
        continue;
      }
      result = absl::InternalError(
          absl::StrCat("ttrpc: accept: ", std::strerror(errno)));
      break;
    }
    if (state->options.require_same_uid) {
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
          cred.uid != geteuid()) {
        close(fd);
        continue;
      }
    }
    std::unique_lock<std::mutex> lock(state->mu);
    if (state->shutting_down) {
      close(fd);
      break;
    }
    auto conn = std::make_shared<Conn>(fd, state->next_conn_id++);
    state->conns.emplace(conn->id, conn);
    // Spawned under mu, so Shutdown() either sees this reader or prevents it.
    state->readers->Spawn([state, conn] { state->ReadLoop(state, conn); });
  }
  if (!result.ok()) Shutdown();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->shutdown_complete; });
  return result;
}

void Server::Shutdown() {
  std::shared_ptr<State> state = impl_->state;
  const bool in_handler = tls_state == state.get();
  {
    std::unique_lock<std::mutex> lock(state->mu);
    if (state->shutting_down) {
      if (!in_handler) {
        state->cv.wait(lock, [&] { return state->shutdown_complete; });
      }
      return;
    }
    state->shutting_down = true;
  }
  // Wakes the accept loop and every reader: no new request is read.
  const uint64_t one = 1;
  if (state->shutdown_fd >= 0) {
    (void)!write(state->shutdown_fd, &one, sizeof(one));
  }
  state->readers->JoinUntil(absl::InfiniteFuture());

  const Conn* self_conn = in_handler ? tls_conn : nullptr;
  std::unique_lock<std::mutex> lock(state->mu);
  auto drained = [&] { return state->in_flight == (in_handler ? 1 : 0); };
  if (state->options.drain_timeout == absl::InfiniteDuration()) {
    state->cv.wait(lock, drained);
  } else {
    state->cv.wait_until(
        lock, absl::ToChronoTime(absl::Now() + state->options.drain_timeout),
        drained);
  }
  std::vector<std::shared_ptr<Conn>> remaining;
  for (const auto& [id, conn] : state->conns) remaining.push_back(conn);
  for (const auto& conn : remaining) {
    // The calling handler's connection closes after its reply.
    if (conn.get() != self_conn) state->CloseLocked(conn);
  }
  state->shutdown_complete = true;
  state->cv.notify_all();
}

}  // namespace stockade::ttrpc
