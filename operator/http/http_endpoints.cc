#include "operator/http/http_endpoints.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace stockade::http {

struct HttpEndpoints::Impl {
  MHD_Daemon* daemon = nullptr;
  std::shared_ptr<prometheus::Collectable> metrics;
  ReadyCheck ready;
};

namespace {

MHD_Result Reply(MHD_Connection* connection, unsigned int code,
                 const std::string& body, const char* content_type) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, "Content-Type", content_type);
  MHD_Result result = MHD_queue_response(connection, code, response);
  MHD_destroy_response(response);
  return result;
}

MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url,
                  const char* method, const char* /*version*/,
                  const char* /*upload_data*/, size_t* upload_data_size,
                  void** /*req_cls*/) {
  auto* impl = static_cast<HttpEndpoints::Impl*>(cls);
  if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
    return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n",
                 "text/plain");
  }
  if (*upload_data_size != 0) {
    *upload_data_size = 0;
    return MHD_YES;
  }
  const std::string path = url;
  if (path == "/healthz" || path == "/livez") {
    return Reply(connection, MHD_HTTP_OK, "ok\n", "text/plain");
  }
  if (path == "/readyz") {
    absl::Status ready = impl->ready ? impl->ready() : absl::OkStatus();
    if (ready.ok()) return Reply(connection, MHD_HTTP_OK, "ok\n", "text/plain");
    return Reply(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
                 absl::StrCat("not ready: ", ready.message(), "\n"),
                 "text/plain");
  }
  if (path == "/metrics" && impl->metrics != nullptr) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, impl->metrics->Collect());
    return Reply(connection, MHD_HTTP_OK, out.str(),
                 "text/plain; version=0.0.4; charset=utf-8");
  }
  return Reply(connection, MHD_HTTP_NOT_FOUND,
               "not found: /healthz, /readyz, /metrics\n", "text/plain");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoints>> HttpEndpoints::Start(
    const std::string& address,
    std::shared_ptr<prometheus::Collectable> metrics, ReadyCheck ready) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\": want HOST:PORT"));
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\": bad port"));
  }
  sockaddr_in sin;
  std::memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  const std::string host = address.substr(0, colon);
  if (host.empty() || host == "0.0.0.0") {
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\": want an IPv4 address"));
  }
  std::unique_ptr<HttpEndpoints> endpoints(new HttpEndpoints());
  endpoints->impl_ = std::make_unique<Impl>();
  endpoints->impl_->metrics = std::move(metrics);
  endpoints->impl_->ready = std::move(ready);
  endpoints->impl_->daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &Handle, endpoints->impl_.get(), MHD_OPTION_SOCK_ADDR, &sin,
      MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (endpoints->impl_->daemon == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address,
                                               " for /healthz, /readyz, "
                                               "/metrics"));
  }
  const MHD_DaemonInfo* info =
      MHD_get_daemon_info(endpoints->impl_->daemon, MHD_DAEMON_INFO_BIND_PORT);
  endpoints->port_ = info != nullptr ? info->port : port;
  return endpoints;
}

HttpEndpoints::~HttpEndpoints() {
  if (impl_ && impl_->daemon != nullptr) MHD_stop_daemon(impl_->daemon);
}

}  // namespace stockade::http
