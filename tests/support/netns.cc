#include "tests/support/netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade::testing {
namespace {

absl::Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv, {.timeout = absl::Seconds(20)});
  if (!r.ok()) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(argv, " "), ": ", r.ToString()));
  }
  return absl::OkStatus();
}

// Answers one connection: reads what arrives within 200 ms (an HTTP request,
// or nothing from `nc`), then writes the banner and closes.
void Answer(int fd, uint16_t port) {
  struct pollfd p = {fd, POLLIN, 0};
  char buf[4096];
  std::string request;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(200);
  while (request.find("\r\n\r\n") == std::string::npos) {
    int ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0 || poll(&p, 1, ms) <= 0) break;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  std::string body = absl::StrCat("stockade-remote ", port, "\n");
  std::string reply =
      request.rfind("GET ", 0) == 0 || request.rfind("HEAD ", 0) == 0
          ? absl::StrCat(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                "Content-Length: ",
                body.size(), "\r\nConnection: close\r\n\r\n", body)
          : body;
  (void)!send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  // Drain briefly so close() does not turn unread input into a reset.
  while (poll(&p, 1, 50) > 0 && read(fd, buf, sizeof(buf)) > 0) {
  }
  close(fd);
}

}  // namespace

absl::StatusOr<int> SocketInNetns(const std::string& netns_path, int domain,
                                  int type) {
  int result = -1;
  std::string error;
  std::thread t([&] {
    int ns = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      error = absl::StrCat("open ", netns_path, ": ", strerror(errno));
      return;
    }
    if (setns(ns, CLONE_NEWNET) != 0) {
      error = absl::StrCat("setns ", netns_path, ": ", strerror(errno));
      close(ns);
      return;
    }
    close(ns);
    result = socket(domain, type | SOCK_CLOEXEC, 0);
    if (result < 0) error = absl::StrCat("socket: ", strerror(errno));
  });
  t.join();
  if (result < 0) return absl::InternalError(error);
  return result;
}

absl::StatusOr<std::unique_ptr<NetnsPair>> NetnsPair::Create(Options options) {
  if (geteuid() != 0) {
    return absl::FailedPreconditionError("NetnsPair needs root");
  }
  if (FindExecutable("ip").empty()) {
    return absl::FailedPreconditionError(
        "ip missing (package iproute2; run hack/install-deps)");
  }
  if (options.subnet < 1 || options.subnet > 254 || options.remote_hosts < 1 ||
      options.remote_hosts > 200) {
    return absl::InvalidArgumentError("NetnsPair: bad subnet or remote_hosts");
  }
  std::unique_ptr<NetnsPair> pair(new NetnsPair(options));
  if (absl::Status s = pair->Setup(); !s.ok()) return s;
  return pair;
}

std::string NetnsPair::client_ip() const {
  return absl::StrCat("169.254.", options_.subnet, ".1");
}

std::vector<std::string> NetnsPair::remote_ips() const {
  std::vector<std::string> ips;
  for (int i = 0; i < options_.remote_hosts; ++i) {
    ips.push_back(absl::StrCat("169.254.", options_.subnet, ".", 2 + i));
  }
  return ips;
}

absl::Status NetnsPair::Setup() {
  static std::atomic<int> counter{0};
  const int n = ++counter;
  client_ = absl::StrCat("stk-c-", getpid(), "-", n);
  remote_ = absl::StrCat("stk-r-", getpid(), "-", n);
  if (absl::Status s = Ip({"netns", "add", client_}); !s.ok()) return s;
  client_created_ = true;
  if (absl::Status s = Ip({"netns", "add", remote_}); !s.ok()) return s;
  remote_created_ = true;
  // Created directly inside the namespaces: the host never sees the veth.
  if (absl::Status s = Ip({"link", "add", "eth0", "netns", client_, "type",
                           "veth", "peer", "name", "eth0", "netns", remote_});
      !s.ok()) {
    return s;
  }
  std::vector<std::vector<std::string>> steps = {
      {"-n", client_, "addr", "add", client_ip() + "/24", "dev", "eth0"},
      {"-n", client_, "link", "set", "lo", "up"},
      {"-n", client_, "link", "set", "eth0", "up"},
      {"-n", remote_, "link", "set", "lo", "up"},
      {"-n", remote_, "link", "set", "eth0", "up"},
  };
  for (const std::string& ip : remote_ips()) {
    steps.push_back({"-n", remote_, "addr", "add", ip + "/24", "dev", "eth0"});
  }
  for (const auto& step : steps) {
    if (absl::Status s = Ip(step); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status NetnsPair::Listen(const std::vector<uint16_t>& ports) {
  std::vector<std::pair<int, uint16_t>> added;
  auto close_added = [&] {
    for (auto& [fd, port] : added) close(fd);
  };
  for (uint16_t port : ports) {
    absl::StatusOr<int> fd = SocketInNetns(remote_path(), AF_INET, SOCK_STREAM);
    if (!fd.ok()) {
      close_added();
      return fd.status();
    }
    int one = 1;
    setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(*fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) !=
            0 ||
        listen(*fd, 64) != 0) {
      std::string err = strerror(errno);
      close(*fd);
      close_added();
      return absl::InternalError(
          absl::StrCat("listen on port ", port, " in ", remote_, ": ", err));
    }
    added.emplace_back(*fd, port);
  }
  // Restart the server thread with the old and the new listeners.
  StopListeners();
  listeners_.insert(listeners_.end(), added.begin(), added.end());
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  server_ = std::thread(&NetnsPair::Serve, this, listeners_, stop_fd_);
  return absl::OkStatus();
}

void NetnsPair::Serve(std::vector<std::pair<int, uint16_t>> listeners,
                      int stop_fd) {
  std::vector<struct pollfd> fds;
  for (const auto& [fd, port] : listeners) fds.push_back({fd, POLLIN, 0});
  fds.push_back({stop_fd, POLLIN, 0});
  for (;;) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds.back().revents != 0) return;
    for (size_t i = 0; i < listeners.size(); ++i) {
      if (fds[i].revents == 0) continue;
      int conn = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      {
        absl::MutexLock lock(&mu_);
        ++connections_[listeners[i].second];
      }
      Answer(conn, listeners[i].second);
    }
  }
}

void NetnsPair::StopListeners() {
  if (server_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    server_.join();
  }
  if (stop_fd_ >= 0) close(stop_fd_);
  stop_fd_ = -1;
}

int NetnsPair::Connections(uint16_t port) const {
  absl::MutexLock lock(&mu_);
  auto it = connections_.find(port);
  return it == connections_.end() ? 0 : it->second;
}

CommandResult NetnsPair::ExecInClient(const std::vector<std::string>& argv,
                                      absl::Duration timeout) const {
  std::vector<std::string> full = {"ip", "netns", "exec", client_};
  full.insert(full.end(), argv.begin(), argv.end());
  return RunCommand(full, {.timeout = timeout});
}

NetnsPair::~NetnsPair() {
  StopListeners();
  for (auto& [fd, port] : listeners_) close(fd);
  listeners_.clear();
  // Deleting a namespace destroys its end of the veth, and so the pair.
  if (client_created_) Ip({"netns", "delete", client_}).IgnoreError();
  if (remote_created_) Ip({"netns", "delete", remote_}).IgnoreError();
}

}  // namespace stockade::testing
