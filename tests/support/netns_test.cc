#include "tests/support/netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;

// Connects from the host's own network namespace; returns 0 or the errno.
int ConnectFromHost(const std::string& ip, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int r = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  int err = r == 0 ? 0 : errno;
  close(fd);
  return err;
}

TEST(NetnsPairTest, ClientReachesListenersOnlyInsideThePair) {
  absl::StatusOr<std::unique_ptr<NetnsPair>> pair = NetnsPair::Create();
  ASSERT_TRUE(pair.ok()) << pair.status();
  NetnsPair& p = **pair;
  EXPECT_EQ(p.client_ip(), "169.254.77.1");
  EXPECT_EQ(p.remote_ips(),
            (std::vector<std::string>{"169.254.77.2", "169.254.77.3"}));
  ASSERT_EQ(access(p.client_path().c_str(), F_OK), 0) << p.client_path();
  ASSERT_TRUE(p.Listen({8080, 9090}).ok());

  // busybox nc from the client namespace, to both remote hosts.
  for (const std::string& ip : p.remote_ips()) {
    CommandResult r =
        p.ExecInClient({"/bin/busybox", "nc", "-w", "3", ip, "8080"});
    ASSERT_TRUE(r.ok()) << r.ToString();
    EXPECT_EQ(r.out, "stockade-remote 8080\n");
  }
  EXPECT_EQ(p.Connections(8080), 2);
  // An HTTP client gets a response. (Debian's busybox 1.35 wget crashes with
  // SIGSEGV when given -T: bound it from outside.)
  CommandResult http =
      p.ExecInClient({"/bin/busybox", "wget", "-q", "-O", "-",
                      absl::StrCat("http://", p.remote_ip(), ":9090/x")});
  ASSERT_TRUE(http.ok()) << http.ToString();
  EXPECT_EQ(http.out, "stockade-remote 9090\n");
  EXPECT_EQ(p.Connections(9090), 1);
  // A port nobody listens on is refused.
  CommandResult refused =
      p.ExecInClient({"/bin/busybox", "nc", "-w", "3", p.remote_ip(), "7070"});
  EXPECT_NE(refused.exit_code, 0) << refused.ToString();
  // Listeners can be added later.
  ASSERT_TRUE(p.Listen({7070}).ok());
  CommandResult added =
      p.ExecInClient({"/bin/busybox", "nc", "-w", "3", p.remote_ip(), "7070"});
  EXPECT_EQ(added.out, "stockade-remote 7070\n") << added.ToString();

  // The host's namespace does not reach the pair. (Connecting may still
  // succeed: this machine's network accepts any outbound TCP connection, so
  // count what the listener saw instead.)
  ConnectFromHost(p.remote_ip(), 8080);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(p.Connections(8080), 2);
  // From the client side, anything outside the pair is unreachable.
  CommandResult outside =
      p.ExecInClient({"/bin/busybox", "nc", "-w", "2", "169.254.78.2", "80"});
  EXPECT_NE(outside.exit_code, 0) << outside.ToString();
  EXPECT_THAT(outside.err, HasSubstr("unreachable")) << outside.ToString();
  // The client side has only lo and eth0 (no host interfaces).
  CommandResult links = p.ExecInClient({"ip", "-o", "link"});
  ASSERT_TRUE(links.ok()) << links.ToString();
  EXPECT_THAT(links.out, HasSubstr("lo:"));
  EXPECT_THAT(links.out, HasSubstr("eth0@"));
}

TEST(NetnsPairTest, DestructorRemovesBothNamespaces) {
  std::string client, remote;
  {
    absl::StatusOr<std::unique_ptr<NetnsPair>> pair = NetnsPair::Create();
    ASSERT_TRUE(pair.ok()) << pair.status();
    ASSERT_TRUE((*pair)->Listen({8080}).ok());
    client = (*pair)->client_path();
    remote = (*pair)->remote_path();
    ASSERT_EQ(access(remote.c_str(), F_OK), 0);
  }
  EXPECT_NE(access(client.c_str(), F_OK), 0);
  EXPECT_NE(access(remote.c_str(), F_OK), 0);
}

TEST(NetnsPairTest, RejectsBadOptions) {
  EXPECT_FALSE(NetnsPair::Create({.subnet = 0}).ok());
  EXPECT_FALSE(NetnsPair::Create({.subnet = 255}).ok());
}

}  // namespace
}  // namespace stockade::testing
