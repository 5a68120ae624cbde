// ttrpc client: unary calls to a ttrpc server over a unix socket. The shim
// uses it to publish task events to containerd (Events.Forward).
#ifndef STOCKADE_SHIM_TTRPC_CLIENT_H_
#define STOCKADE_SHIM_TTRPC_CLIENT_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stockade::ttrpc {

class Client {
 public:
  // `address`: a unix socket path, with or without "unix://".
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const std::string& address);
  virtual ~Client() = default;

  // Sends one request and waits for its response (or `timeout`; zero,
  // negative or infinite: no timeout). Safe to call from several threads.
  // Errors: the server's status (code and message), DeadlineExceeded on
  // timeout, Unavailable once the connection is gone (make a new Client).
  virtual absl::StatusOr<std::string> Call(
      const std::string& service, const std::string& method,
      const std::string& payload,
      const std::multimap<std::string, std::string>& metadata,
      absl::Duration timeout) = 0;
};

}  // namespace stockade::ttrpc

#endif  // STOCKADE_SHIM_TTRPC_CLIENT_H_
