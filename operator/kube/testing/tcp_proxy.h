// Test support: a TCP relay on loopback in front of the apiserver, which a
// test can cut (every open connection reset, new ones closed at once) and
// restore — a network partition between a client and a real apiserver. TLS
// passes through untouched (the apiserver's certificate names 127.0.0.1).
#ifndef STOCKADE_OPERATOR_KUBE_TESTING_TCP_PROXY_H_
#define STOCKADE_OPERATOR_KUBE_TESTING_TCP_PROXY_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace stockade::kube::testing {

class TcpProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and relays to 127.0.0.1:target_port.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // false: resets every relayed connection and closes new ones at once.
  void SetEnabled(bool enabled);
  // Connections accepted while enabled, in all.
  int accepted() const { return accepted_.load(); }

 private:
  TcpProxy(int listen_fd, int port, int target_port, int wake_read,
           int wake_write);
  void Loop();

  const int listen_fd_, port_, target_port_, wake_read_, wake_write_;
  std::atomic<bool> enabled_{true};
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// The port of an "https://host:port" URL (0 when there is none).
int PortOf(const std::string& url);

}  // namespace stockade::kube::testing

#endif  // STOCKADE_OPERATOR_KUBE_TESTING_TCP_PROXY_H_
