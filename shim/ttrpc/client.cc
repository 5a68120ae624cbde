#include "shim/ttrpc/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "shim/ttrpc/frame.h"

namespace stockade::ttrpc {
namespace {

constexpr size_t kReadChunk = 64 << 10;

class UnixClient : public Client {
 public:
  explicit UnixClient(int fd) : fd_(fd) {
    reader_ = std::thread([this] { ReadLoop(); });
  }

  ~UnixClient() override {
    shutdown(fd_, SHUT_RDWR);  // ends the reader's read()
    reader_.join();
    close(fd_);
  }

  absl::StatusOr<std::string> Call(
      const std::string& service, const std::string& method,
      const std::string& payload,
      const std::multimap<std::string, std::string>& metadata,
      absl::Duration timeout) override {
    wire::Request request;
    request.set_service(service);
    request.set_method(method);
    request.set_payload(payload);
    const bool bounded =
        timeout > absl::ZeroDuration() && timeout != absl::InfiniteDuration();
    if (bounded) request.set_timeout_nano(absl::ToInt64Nanoseconds(timeout));
    for (const auto& [key, value] : metadata) {
      wire::KeyValue* kv = request.add_metadata();
      kv->set_key(key);
      kv->set_value(value);
    }
    const std::string data = request.SerializeAsString();

    Pending pending;
    uint32_t id;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!broken_.ok()) return broken_;
      id = next_id_;
      next_id_ += 2;  // stays odd when it wraps
      pending_[id] = &pending;
    }
    absl::StatusOr<std::string> frame = EncodeFrame(id, kFrameRequest, data);
    bool written = false;
    if (frame.ok()) {
      std::unique_lock<std::mutex> lock(write_mu_);
      written = WriteAll(*frame);
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (!frame.ok() || !written) {
      pending_.erase(id);
      if (!frame.ok()) return frame.status();
      // The reader sees the broken connection too and fails the others.
      shutdown(fd_, SHUT_RDWR);
      return absl::UnavailableError(
          absl::StrCat("ttrpc: ", service, "/", method, ": write failed"));
    }
    const absl::Time deadline =
        bounded ? absl::Now() + timeout : absl::InfiniteFuture();
    auto done = [&pending] { return pending.done; };
    if (bounded) {
      pending.cv.wait_until(lock, absl::ToChronoTime(deadline), done);
    } else {
      pending.cv.wait(lock, done);
    }
    if (!pending.done) {
      pending_.erase(id);
      return absl::DeadlineExceededError(
          absl::StrCat("ttrpc: ", service, "/", method, " timed out after ",
                       absl::FormatDuration(timeout)));
    }
    return std::move(pending.result);
  }

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<std::string> result;
    std::condition_variable cv;
  };

  bool WriteAll(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // With mu_ held.
  void CompleteLocked(uint32_t id, absl::StatusOr<std::string> result) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // timed out, or never ours
    it->second->result = std::move(result);
    it->second->done = true;
    it->second->cv.notify_one();
    pending_.erase(it);
  }

  void Dispatch(FrameDecoder::Event event) {
    const uint32_t id = event.header.stream_id;
    absl::StatusOr<std::string> result;
    if (event.kind == FrameDecoder::Kind::kOversized) {
      result = absl::ResourceExhaustedError(
          absl::StrCat("ttrpc: response length ", event.header.length,
                       " exceeds maximum message size of ", kMaxFrameData));
    } else if (event.header.type != kFrameResponse) {
      return;
    } else {
      wire::Response response;
      if (!response.ParseFromString(event.data)) {
        result = absl::InternalError("ttrpc: malformed response");
      } else if (absl::Status status = StatusFromResponse(response);
                 !status.ok()) {
        result = status;
      } else {
        result = std::move(*response.mutable_payload());
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    CompleteLocked(id, std::move(result));
  }

  void ReadLoop() {
    FrameDecoder decoder;
    std::vector<char> buffer(kReadChunk);
    while (true) {
      const ssize_t n = read(fd_, buffer.data(), buffer.size());
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      decoder.Feed(buffer.data(), static_cast<size_t>(n));
      while (std::optional<FrameDecoder::Event> event = decoder.Next()) {
        Dispatch(*std::move(event));
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    broken_ = absl::UnavailableError("ttrpc: connection closed");
    std::vector<uint32_t> ids;
    for (const auto& [id, pending] : pending_) ids.push_back(id);
    for (uint32_t id : ids) CompleteLocked(id, broken_);
  }

  const int fd_;
  std::thread reader_;
  std::mutex write_mu_;  // one frame at a time on the socket
  std::mutex mu_;
  uint32_t next_id_ = 1;
  absl::flat_hash_map<uint32_t, Pending*> pending_;
  absl::Status broken_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const std::string& address) {
  std::string path = address;
  if (absl::StartsWith(path, "unix://")) path = path.substr(7);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttrpc: bad socket address \"", address, "\""));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("ttrpc: socket: ", std::strerror(errno)));
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("ttrpc: connect ", path, ": ", std::strerror(err)));
  }
  return std::unique_ptr<Client>(new UnixClient(fd));
}

}  // namespace stockade::ttrpc
