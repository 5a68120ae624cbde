// ttrpc, containerd's RPC protocol over unix sockets, on libprotobuf: a
// server that serves many connections and answers requests on one connection
// concurrently (a blocking Wait never holds up other calls).
#ifndef STOCKADE_SHIM_TTRPC_SERVER_H_
#define STOCKADE_SHIM_TTRPC_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stockade::ttrpc {

struct CallContext {
  std::string service;
  std::string method;
  // From metadata "containerd-namespace-ttrpc" (may be empty).
  std::string namespace_;
  int64_t timeout_nano = 0;
  std::multimap<std::string, std::string> metadata;
};

// Handles one unary call: request payload -> response payload. A non-OK
// status is sent with its code (absl codes equal gRPC codes) and message.
using Handler = std::function<absl::StatusOr<std::string>(
    const CallContext& context, const std::string& payload)>;

struct ServerOptions {
  // How long Shutdown() waits for in-flight calls to finish and have their
  // replies written before it closes their connections.
  absl::Duration drain_timeout = absl::Seconds(3);
  // Reject connections whose peer (SO_PEERCRED) has another uid than this
  // process's effective uid, as containerd's Go shims do.
  bool require_same_uid = true;
};

// Each request runs on its own thread (from a pool that grows instead of
// blocking), so a handler may block for as long as it needs to; replies are
// written whole, one at a time per connection, on the request's stream id.
class Server {
 public:
  Server();
  explicit Server(ServerOptions options);
  // Shuts down, then waits for every handler still running to return: make
  // blocking handlers return first (or exit the process instead). Must not
  // run on a handler thread.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before Serve. Unknown service or method -> Unimplemented.
  void Register(const std::string& service, const std::string& method,
                Handler handler);

  // Accepts connections on `listen_fd` (a bound, listening unix socket) until
  // Shutdown(); returns then.
  absl::Status Serve(int listen_fd);

  // Stops accepting, closes connections once in-flight replies are written.
  // Stops reading new requests at once; waits at most drain_timeout for
  // in-flight calls, then closes their connections (late replies are
  // dropped). Serve() returns when this is done. Idempotent; may run on a
  // handler thread (that handler's own reply is still sent). The listening
  // socket is not closed: it belongs to the caller.
  void Shutdown();

  // Number of open connections (for tests and diagnostics).
  int ConnectionCount() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stockade::ttrpc

#endif  // STOCKADE_SHIM_TTRPC_SERVER_H_
