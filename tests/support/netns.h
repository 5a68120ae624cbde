// Test support: network test hosts on this machine for egress tests. Two
// private network namespaces joined by a veth link on link-local addresses,
// TCP listeners in the "remote" one, a container started in the "client" one.
#ifndef STOCKADE_TESTS_SUPPORT_NETNS_H_
#define STOCKADE_TESTS_SUPPORT_NETNS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {

// Layout (all inside the two namespaces; the host's network is untouched):
//   client netns "stk-c-<pid>-<n>":  lo, eth0 169.254.<subnet>.1/24
//   remote netns "stk-r-<pid>-<n>":  lo, eth0 169.254.<subnet>.2/24 and .3,
//                                    .4 ... (remote_ips(), one per host)
// A listener accepts on every remote address; it answers each connection with
// the line "stockade-remote <port>\n" (after reading what the client sent for
// up to 200 ms, so an HTTP client gets "HTTP/1.0 200 OK" headers first) and
// closes. Only 169.254.0.0/16 is ever used (never 10/8, 172.16/12,
// 192.168/16). The namespaces are private, so pairs never conflict.
class NetnsPair {
 public:
  struct Options {
    int subnet = 77;       // third octet, 1..254
    int remote_hosts = 2;  // addresses on the remote side: .2, .3, ...
  };
  static absl::StatusOr<std::unique_ptr<NetnsPair>> Create(Options options);
  static absl::StatusOr<std::unique_ptr<NetnsPair>> Create() {
    return Create(Options());
  }
  // Stops the listeners and deletes both namespaces (and so the veth).
  ~NetnsPair();
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;

  // Starts TCP listeners on `ports` (on every remote address). May be called
  // again to add ports.
  absl::Status Listen(const std::vector<uint16_t>& ports);
  // Connections accepted on `port` so far.
  int Connections(uint16_t port) const;

  const std::string& client_name() const { return client_; }
  const std::string& remote_name() const { return remote_; }
  // For `ctr run --with-ns network:<path>` and setns(2).
  std::string client_path() const { return "/var/run/netns/" + client_; }
  std::string remote_path() const { return "/var/run/netns/" + remote_; }
  std::string client_ip() const;
  // The first remote address (the one listeners are tested on by default).
  std::string remote_ip() const { return remote_ips().front(); }
  std::vector<std::string> remote_ips() const;

  // Runs argv inside the client namespace (`ip netns exec`).
  CommandResult ExecInClient(const std::vector<std::string>& argv,
                             absl::Duration timeout = absl::Seconds(30)) const;

 private:
  explicit NetnsPair(Options options) : options_(options) {}
  absl::Status Setup();
  void StopListeners();
  void Serve(std::vector<std::pair<int, uint16_t>> listeners, int stop_fd);

  Options options_;
  std::string client_, remote_;
  bool client_created_ = false, remote_created_ = false;
  std::vector<std::pair<int, uint16_t>> listeners_;  // fd, port
  int stop_fd_ = -1;
  std::thread server_;
  mutable absl::Mutex mu_;
  std::map<uint16_t, int> connections_ ABSL_GUARDED_BY(mu_);
};

// socket(domain, type | SOCK_CLOEXEC) in the network namespace at
// `netns_path`, made on a short-lived thread that joined it (setns affects
// only the calling thread); the fd is then usable from any thread.
absl::StatusOr<int> SocketInNetns(const std::string& netns_path, int domain,
                                  int type);

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_NETNS_H_
