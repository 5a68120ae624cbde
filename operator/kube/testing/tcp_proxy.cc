#include "operator/kube/testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <list>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stockade::kube::testing {
namespace {

void SetNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Closes with RST, as a broken network would.
void Reset(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

// One relayed connection: bytes read from one side wait in a buffer until
// the other side takes them.
struct Pipe {
  int fd[2];                     // client, upstream
  std::string buf[2];            // to be written to fd[i] (read from the other)
  bool eof[2] = {false, false};  // fd[i] said EOF
  bool dead = false;
};

}  // namespace

int PortOf(const std::string& url) {
  size_t colon = url.rfind(':');
  if (colon == std::string::npos) return 0;
  int port = 0;
  std::string rest = url.substr(colon + 1);
  size_t slash = rest.find('/');
  if (slash != std::string::npos) rest.resize(slash);
  return absl::SimpleAtoi(rest, &port) ? port : 0;
}

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 64) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("bind/listen: ", strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  SetNonBlocking(fd);
  int wake[2];
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  return std::unique_ptr<TcpProxy>(
      new TcpProxy(fd, ntohs(addr.sin_port), target_port, wake[0], wake[1]));
}

TcpProxy::TcpProxy(int listen_fd, int port, int target_port, int wake_read,
                   int wake_write)
    : listen_fd_(listen_fd),
      port_(port),
      target_port_(target_port),
      wake_read_(wake_read),
      wake_write_(wake_write) {
  thread_ = std::thread([this] { Loop(); });
}

TcpProxy::~TcpProxy() {
  stop_.store(true);
  (void)!write(wake_write_, "x", 1);
  thread_.join();
  close(listen_fd_);
  close(wake_read_);
  close(wake_write_);
}

void TcpProxy::SetEnabled(bool enabled) {
  enabled_.store(enabled);
  (void)!write(wake_write_, "x", 1);
}

void TcpProxy::Loop() {
  std::list<Pipe> pipes;
  auto kill_all = [&pipes] {
    for (Pipe& p : pipes) {
      Reset(p.fd[0]);
      Reset(p.fd[1]);
    }
    pipes.clear();
  };
  while (!stop_.load()) {
    if (!enabled_.load() && !pipes.empty()) kill_all();
    std::vector<pollfd> fds;
    fds.push_back({wake_read_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    std::vector<Pipe*> owners;
    for (Pipe& p : pipes) {
      for (int i = 0; i < 2; ++i) {
        short events = 0;
        // Read from fd[i] into buf[1-i] while that buffer is small.
        if (!p.eof[i] && p.buf[1 - i].size() < (1 << 20)) events |= POLLIN;
        if (!p.buf[i].empty()) events |= POLLOUT;
        // No interest: -1, so that a hung-up socket does not spin poll.
        fds.push_back({events != 0 ? p.fd[i] : -1, events, 0});
        owners.push_back(&p);
      }
    }
    if (poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      char drain[64];
      while (read(wake_read_, drain, sizeof(drain)) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      while (true) {
        int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) break;
        if (!enabled_.load()) {
          Reset(c);
          continue;
        }
        int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(target_port_));
        if (u < 0 ||
            connect(u, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
          if (u >= 0) close(u);
          Reset(c);
          continue;
        }
        SetNonBlocking(c);
        SetNonBlocking(u);
        Pipe p;
        p.fd[0] = c;
        p.fd[1] = u;
        pipes.push_back(std::move(p));
        accepted_.fetch_add(1);
      }
    }
    for (size_t k = 2; k < fds.size(); ++k) {
      Pipe& p = *owners[k - 2];
      const int i = static_cast<int>((k - 2) % 2);
      if (p.dead) continue;
      const short re = fds[k].revents;
      if (!p.eof[i] && (re & (POLLIN | POLLHUP | POLLERR))) {
        char buf[65536];
        ssize_t n = read(p.fd[i], buf, sizeof(buf));
        if (n > 0) {
          p.buf[1 - i].append(buf, static_cast<size_t>(n));
        } else if (n == 0) {
          p.eof[i] = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          p.dead = true;
        }
      }
      if ((re & POLLOUT) && !p.buf[i].empty()) {
        ssize_t n =
            send(p.fd[i], p.buf[i].data(), p.buf[i].size(), MSG_NOSIGNAL);
        if (n > 0) {
          p.buf[i].erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          p.dead = true;
        }
      }
    }
    for (auto it = pipes.begin(); it != pipes.end();) {
      Pipe& p = *it;
      // Forward a half-close once everything before it is written.
      for (int i = 0; i < 2; ++i) {
        if (p.eof[i] && p.buf[1 - i].empty()) shutdown(p.fd[1 - i], SHUT_WR);
      }
      if (p.dead ||
          (p.eof[0] && p.eof[1] && p.buf[0].empty() && p.buf[1].empty())) {
        Reset(p.fd[0]);
        Reset(p.fd[1]);
        it = pipes.erase(it);
      } else {
        ++it;
      }
    }
  }
  kill_all();
}

}  // namespace stockade::kube::testing
