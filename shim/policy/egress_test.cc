// Egress in real network namespaces: InstallEgress loads the compiled rules
// into a private namespace (never the caller's), `nft list` shows them there,
// and traffic through a veth pair to a second namespace is allowed or
// dropped as the policy says. Plus the decision table of DecideEgress.
#include "shim/policy/egress.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/testing/compile_yaml.h"

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;

const std::string kNftHelper = std::string(STOCKADE_BIN_DIR) + "/stockade-nft";
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::string SourceDir() {
  if (const char* env = getenv("STOCKADE_SOURCE_DIR")) return env;
  std::string file = __FILE__;
  return file.substr(0, file.rfind("/shim/policy/"));
}

using ::stockade::compiler::testing::CompileYaml;

v1::CompiledPolicy Research() {
  std::ifstream f(SourceDir() + "/examples/policies/research-agent.yaml");
  std::stringstream ss;
  ss << f.rdbuf();
  return CompileYaml(ss.str());
}

// Output and exit status of a shell command.
std::pair<int, std::string> Sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A child process holding a fresh network namespace until destroyed.
class Netns {
 public:
  Netns() {
    int ready[2];
    EXPECT_EQ(pipe(ready), 0);
    EXPECT_EQ(pipe(hold_), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(ready[0]);
      close(hold_[1]);
      const char ok = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
      (void)!write(ready[1], &ok, 1);
      char c;
      (void)!read(hold_[0], &c, 1);  // until the parent closes
      _exit(0);
    }
    close(ready[1]);
    close(hold_[0]);
    char ok = 0;
    EXPECT_EQ(read(ready[0], &ok, 1), 1);
    EXPECT_EQ(ok, 'y') << "unshare(CLONE_NEWNET) failed";
    close(ready[0]);
  }
  ~Netns() {
    close(hold_[1]);
    waitpid(pid_, nullptr, 0);
  }
  int pid() const { return pid_; }
  std::string Enter() const {
    return absl::StrCat("nsenter --net=/proc/", pid_, "/ns/net ");
  }

 private:
  int pid_ = -1;
  int hold_[2];
};

// Runs `body` in a forked child inside the namespace of `ns`; returns what
// the child wrote to its pipe.
std::string InNetns(const Netns& ns, const std::function<std::string()>& body) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int fd =
        open(absl::StrCat("/proc/", ns.pid(), "/ns/net").c_str(), O_RDONLY);
    std::string out = fd >= 0 && setns(fd, CLONE_NEWNET) == 0
                          ? body()
                          : std::string("setns failed");
    (void)!write(fds[1], out.data(), out.size());
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  return out;
}

std::string ErrnoName(int err) {
  switch (err) {
    case 0:
      return "ok";
    case EPERM:
      return "EPERM";
    case ETIMEDOUT:
      return "ETIMEDOUT";
    case ECONNREFUSED:
      return "ECONNREFUSED";
    case ENETUNREACH:
      return "ENETUNREACH";
    default:
      return absl::StrCat("errno ", err);
  }
}

bool ParseAddr(const std::string& host, int port, sockaddr_storage* ss,
               socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  auto* in4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    *len = sizeof(*in4);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof(*in6);
    return true;
  }
  return false;
}

// TCP connect with a 1.5 s timeout: "ok", "EPERM", "ETIMEDOUT", ...
std::string TcpConnect(const std::string& host, int port) {
  sockaddr_storage ss;
  socklen_t len;
  if (!ParseAddr(host, port, &ss, &len)) return "bad address";
  int s = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (connect(s, reinterpret_cast<sockaddr*>(&ss), len) == 0) return "ok";
  if (errno != EINPROGRESS) return ErrnoName(errno);
  struct pollfd p = {s, POLLOUT, 0};
  if (poll(&p, 1, 1500) == 0) return "ETIMEDOUT";
  int err = 0;
  socklen_t elen = sizeof(err);
  getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen);
  close(s);
  return ErrnoName(err);
}

std::string UdpSend(const std::string& host, int port) {
  sockaddr_storage ss;
  socklen_t len;
  if (!ParseAddr(host, port, &ss, &len)) return "bad address";
  int s = socket(ss.ss_family, SOCK_DGRAM, 0);
  ssize_t n = sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len);
  const int err = errno;
  close(s);
  return n == 1 ? "ok" : ErrnoName(err);
}

class EgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "these tests need root";
    for (const char* tool : {"nft", "ip", "nsenter"}) {
      ASSERT_EQ(Sh(absl::StrCat("command -v ", tool)).first, 0)
          << tool << " is needed";
    }
  }
};

TEST_F(EgressTest, InstallsRulesInThePrivateNamespaceOnly) {
  const v1::CompiledPolicy policy = Research();
  const bool host_had_table = Sh("nft list table inet stockade").first == 0;
  Netns ns;
  absl::Status st = InstallEgress(ns.pid(), policy.nftables(), kNftHelper);
  ASSERT_TRUE(st.ok()) << st;
  auto [rc, out] = Sh(ns.Enter() + "nft list table inet stockade");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("type filter hook output priority filter; "
                             "policy drop;"));
  EXPECT_THAT(out, HasSubstr("198.51.100.10"));
  EXPECT_THAT(out, HasSubstr("203.0.113.0/24"));
  EXPECT_THAT(out, HasSubstr("2001:db8:10::/48"));
  EXPECT_THAT(out, HasSubstr("tcp dport 443 accept"));
  // The caller's (host's) namespace is untouched.
  EXPECT_EQ(Sh("nft list table inet stockade").first == 0, host_had_table);

  // Installing again replaces the table (one transaction), not adds to it.
  ASSERT_TRUE(InstallEgress(ns.pid(), policy.nftables(), kNftHelper).ok());
  auto [rc2, out2] = Sh(ns.Enter() + "nft list ruleset");
  ASSERT_EQ(rc2, 0);
  EXPECT_EQ(out2, Sh(ns.Enter() + "nft list ruleset").second);
  size_t tables = 0;
  for (size_t pos = 0;
       (pos = out2.find("table inet stockade", pos)) != std::string::npos;
       ++pos) {
    ++tables;
  }
  EXPECT_EQ(tables, 1u);
  EXPECT_EQ(out2.find("chain output"), out2.rfind("chain output"));
}

TEST_F(EgressTest, RulesEnforceDestinationAndPort) {
  const v1::CompiledPolicy policy = Research();
  Netns agent, server;
  // agent (v0) <-> (v1) server: the server holds every test address.
  auto [rc, out] =
      Sh(absl::StrCat("ip link add v0 netns ", agent.pid(),
                      " type veth peer name v1 netns ", server.pid()));
  ASSERT_EQ(rc, 0) << out;
  const std::string setup_agent =
      agent.Enter() + "sh -c 'ip link set lo up && ip link set v0 up && " +
      "ip addr add 203.0.113.1/24 dev v0 && ip addr add 10.9.0.1/24 dev v0 && "
      "ip -6 addr add 2001:db8:10::1/48 dev v0 nodad && "
      "ip -6 addr add 2001:db8:20::1/48 dev v0 nodad'";
  const std::string setup_server =
      server.Enter() + "sh -c 'ip link set lo up && ip link set v1 up && " +
      "ip addr add 203.0.113.7/24 dev v1 && ip addr add 10.9.0.7/24 dev v1 && "
      "ip -6 addr add 2001:db8:10::7/48 dev v1 nodad && "
      "ip -6 addr add 2001:db8:20::7/48 dev v1 nodad'";
  ASSERT_EQ(Sh(setup_agent).first, 0);
  ASSERT_EQ(Sh(setup_server).first, 0);

  // Listeners in the server namespace (the kernel completes handshakes
  // without accept()).
  int ready[2], hold[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(hold), 0);
  pid_t listener = fork();
  if (listener == 0) {
    close(ready[0]);
    close(hold[1]);
    int fd =
        open(absl::StrCat("/proc/", server.pid(), "/ns/net").c_str(), O_RDONLY);
    char ok = fd >= 0 && setns(fd, CLONE_NEWNET) == 0 ? 'y' : 'n';
    for (int port : {80, 443}) {
      int s = socket(AF_INET6, SOCK_STREAM, 0);
      int zero = 0, one = 1;
      setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
      setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in6 a = {};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      a.sin6_addr = in6addr_any;
      if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
          listen(s, 16) != 0) {
        ok = 'n';
      }
    }
    (void)!write(ready[1], &ok, 1);
    char c;
    (void)!read(hold[0], &c, 1);
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');

  // Before the rules: everything reaches the server.
  EXPECT_EQ(InNetns(agent, [] { return TcpConnect("10.9.0.7", 443); }), "ok");

  ASSERT_TRUE(InstallEgress(agent.pid(), policy.nftables(), kNftHelper).ok());
  struct Case {
    std::string what;
    std::function<std::string()> probe;
    std::string want;
  };
  const Case cases[] = {
      {"tcp 203.0.113.7:443 (listed)",
       [] { return TcpConnect("203.0.113.7", 443); }, "ok"},
      {"tcp 203.0.113.7:80 (port not listed)",
       [] { return TcpConnect("203.0.113.7", 80); }, "ETIMEDOUT"},
      {"tcp 10.9.0.7:443 (address not listed)",
       [] { return TcpConnect("10.9.0.7", 443); }, "ETIMEDOUT"},
      {"tcp [2001:db8:10::7]:443 (listed)",
       [] { return TcpConnect("2001:db8:10::7", 443); }, "ok"},
      {"tcp [2001:db8:20::7]:443 (address not listed)",
       [] { return TcpConnect("2001:db8:20::7", 443); }, "ETIMEDOUT"},
      {"udp 10.9.0.7:53 (dns)", [] { return UdpSend("10.9.0.7", 53); }, "ok"},
      {"udp 10.9.0.7:9999", [] { return UdpSend("10.9.0.7", 9999); }, "EPERM"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(InNetns(agent, c.probe), c.want) << c.what;
  }
  close(hold[1]);
  waitpid(listener, nullptr, 0);
}

TEST_F(EgressTest, RefusesTheCallersOwnNamespace) {
  absl::Status st = InstallEgress(getpid(), Research().nftables(), kNftHelper);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("shim's own network namespace"));
}

TEST_F(EgressTest, ReportsNftErrors) {
  Netns ns;
  absl::Status st =
      InstallEgress(ns.pid(), "table inet stockade { bogus }\n", kNftHelper);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("Error: syntax error"));
  EXPECT_NE(Sh(ns.Enter() + "nft list table inet stockade").first, 0);

  st = InstallEgress(999999999, Research().nftables(), kNftHelper);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("/proc/999999999/ns/net"));
  EXPECT_TRUE(InstallEgress(ns.pid(), "", kNftHelper).ok());

  st = InstallEgress(ns.pid(), Research().nftables(), "/nonexistent/nft");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("cannot execute the nftables helper"));
  EXPECT_THAT(st.message(), HasSubstr("/nonexistent/nft"));
}

TEST(NetworkNamespaceTest, ReadsTheSpec) {
  EXPECT_EQ(*NetworkNamespaceOf(
                R"({"linux": {"namespaces": [{"type": "network"}]}})"),
            NetworkNamespace::kOwn);
  EXPECT_EQ(
      *NetworkNamespaceOf(
          R"({"linux": {"namespaces": [{"type": "network", "path": ""}]}})"),
      NetworkNamespace::kOwn);
  EXPECT_EQ(*NetworkNamespaceOf(R"({"linux": {"namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/var/run/netns/x"}]}})"),
            NetworkNamespace::kJoined);
  EXPECT_EQ(
      *NetworkNamespaceOf(R"({"linux": {"namespaces": [{"type": "pid"}]}})"),
      NetworkNamespace::kHost);
  EXPECT_EQ(*NetworkNamespaceOf(R"({"process": {}})"), NetworkNamespace::kHost);
  EXPECT_FALSE(NetworkNamespaceOf("[").ok());
  EXPECT_FALSE(NetworkNamespaceOf(R"({"linux": {"namespaces": 1}})").ok());
  EXPECT_TRUE(*HasOwnNetworkNamespace(
      R"({"linux": {"namespaces": [{"type": "network"}]}})"));
  EXPECT_FALSE(*HasOwnNetworkNamespace(
      R"({"linux": {"namespaces": [{"type": "network", "path": "/x"}]}})"));
}

TEST(DecideEgressTest, Table) {
  AppliedPolicy applied;
  applied.policy = Research();
  applied.namespace_ = "agents";
  applied.name = "research-agent";
  EXPECT_TRUE(DecideEgress(NetworkNamespace::kOwn, applied)->install);
  // The sandbox (and a container outside CRI) joining a namespace: install.
  EXPECT_TRUE(DecideEgress(NetworkNamespace::kJoined, applied)->install);
  applied.pod_container = true;
  EXPECT_FALSE(DecideEgress(NetworkNamespace::kJoined, applied)->install);
  absl::StatusOr<EgressPlan> host =
      DecideEgress(NetworkNamespace::kHost, applied);
  ASSERT_FALSE(host.ok());
  EXPECT_THAT(host.status().message(), HasSubstr("agents/research-agent"));
  EXPECT_TRUE(RestrictsEgress(applied.policy));

  applied.policy.mutable_effective()->set_mode(v1::MODE_COMPLAIN);
  EXPECT_FALSE(RestrictsEgress(applied.policy));
  host = DecideEgress(NetworkNamespace::kHost, applied);
  ASSERT_TRUE(host.ok());
  EXPECT_FALSE(host->install);
  applied.policy.clear_nftables();
  EXPECT_FALSE(DecideEgress(NetworkNamespace::kOwn, applied)->install);
}

}  // namespace
}  // namespace stockade::shim
