#include "operator/http/http_endpoints.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace stockade::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A plain HTTP/1.0 GET over a socket: the whole response.
std::string Get(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    close(fd);
    return "connect failed";
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

TEST(HttpEndpointsTest, HealthReadinessAndMetrics) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& reconciles = prometheus::BuildCounter()
                         .Name("stockade_reconciles_total")
                         .Help("Reconciles run.")
                         .Register(*registry)
                         .Add({{"kind", "AgentPolicy"}});
  reconciles.Increment(3);
  std::atomic<bool> synced{false};
  auto endpoints =
      HttpEndpoints::Start("127.0.0.1:0", registry, [&]() -> absl::Status {
        if (synced) return absl::OkStatus();
        return absl::UnavailableError("caches not synced");
      });
  ASSERT_TRUE(endpoints.ok()) << endpoints.status();
  const int port = (*endpoints)->port();
  ASSERT_GT(port, 0);

  EXPECT_THAT(Get(port, "/healthz"), StartsWith("HTTP/1.1 200"));
  std::string ready = Get(port, "/readyz");
  EXPECT_THAT(ready, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(ready, HasSubstr("caches not synced"));
  synced = true;
  EXPECT_THAT(Get(port, "/readyz"), StartsWith("HTTP/1.1 200"));
  std::string metrics = Get(port, "/metrics");
  EXPECT_THAT(metrics, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(metrics,
              HasSubstr("stockade_reconciles_total{kind=\"AgentPolicy\"} 3"));
  EXPECT_THAT(Get(port, "/nope"), StartsWith("HTTP/1.1 404"));
}

TEST(HttpEndpointsTest, BadAddressesAreErrors) {
  auto registry = std::make_shared<prometheus::Registry>();
  EXPECT_FALSE(HttpEndpoints::Start("nope", registry, nullptr).ok());
  EXPECT_FALSE(HttpEndpoints::Start("127.0.0.1:99999", registry, nullptr).ok());
  EXPECT_FALSE(HttpEndpoints::Start("host:80", registry, nullptr).ok());
}

}  // namespace
}  // namespace stockade::http
