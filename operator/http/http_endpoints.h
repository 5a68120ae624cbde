// The operator's (and node agent's) HTTP endpoints for the kubelet and
// Prometheus: /healthz (the process serves), /readyz (a callback decides:
// e.g. caches synced; 503 with the reason otherwise) and /metrics (the
// Prometheus text format of a prometheus-cpp registry). Served by
// libmicrohttpd on its own thread.
#ifndef STOCKADE_OPERATOR_HTTP_HTTP_ENDPOINTS_H_
#define STOCKADE_OPERATOR_HTTP_HTTP_ENDPOINTS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace stockade::http {

class HttpEndpoints {
 public:
  // OK when ready, else the reason (sent with status 503).
  using ReadyCheck = std::function<absl::Status()>;

  // Listens on `address` ("127.0.0.1:8080", ":8080" for every interface,
  // port 0 for any free port).
  static absl::StatusOr<std::unique_ptr<HttpEndpoints>> Start(
      const std::string& address,
      std::shared_ptr<prometheus::Collectable> metrics, ReadyCheck ready);
  ~HttpEndpoints();
  HttpEndpoints(const HttpEndpoints&) = delete;
  HttpEndpoints& operator=(const HttpEndpoints&) = delete;

  // The port actually bound.
  int port() const { return port_; }

  struct Impl;  // the server's state, shared with its request handler

 private:
  HttpEndpoints() = default;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace stockade::http

#endif  // STOCKADE_OPERATOR_HTTP_HTTP_ENDPOINTS_H_
