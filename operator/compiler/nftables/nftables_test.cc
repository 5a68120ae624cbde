#include "operator/compiler/nftables/nftables.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::HasSubstr;
using ::testing::Not;

EffectivePolicy Policy(const std::string& extra = "") {
  EffectivePolicy p;
  const std::string text = R"pb(
    mode: MODE_ENFORCE
    filesystem { read_only_root: true }
    procfs: PROCFS_EXPOSURE_MINIMAL
    sysfs: SYSFS_EXPOSURE_NONE
    network { dns: false raw_sockets: false }
    processes { max: 128 }
  )pb";
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &p));
  EffectivePolicy more;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(extra, &more));
  p.MergeFrom(more);
  return p;
}

const char kMixed[] = R"pb(
  network {
    dns: true
    egress {
      cidrs: "10.0.0.0/8"
      cidrs: "192.168.1.0/24"
      cidrs: "10.1.0.0/16"
      cidrs: "2001:db8::/32"
      ports { port: 8000 end_port: 8080 protocol: PROTOCOL_TCP }
      ports { port: 443 protocol: PROTOCOL_TCP }
      ports { port: 8080 end_port: 8090 protocol: PROTOCOL_TCP }
      ports { port: 5353 protocol: PROTOCOL_UDP }
    }
    egress { cidrs: "203.0.113.7/32" }
    egress {
      cidrs: "::/0"
      ports { port: 22 protocol: PROTOCOL_TCP }
    }
  }
)pb";

struct CommandResult {
  int rc = -1;
  std::string output;
};

CommandResult RunCommand(const std::string& cmd) {
  CommandResult r;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) r.output.append(buf, n);
  const int status = pclose(f);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Path of the nft binary; the test fails (never skips) without it.
std::string Nft() {
  for (const char* p : {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"}) {
    if (access(p, X_OK) == 0) return p;
  }
  ADD_FAILURE() << "nft not found: install the Debian package nftables";
  return "nft";
}

std::string WriteTemp(const std::string& content) {
  char tmpl[] = "/tmp/stockade-nft-XXXXXX";
  int fd = mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, content.data(), content.size()),
            static_cast<ssize_t>(content.size()));
  close(fd);
  return tmpl;
}

// `nft -c -f`: parses and checks the ruleset against the kernel, loads
// nothing.
void ExpectNftAccepts(const std::string& ruleset) {
  const std::string file = WriteTemp(ruleset);
  CommandResult r = RunCommand(Nft() + " -c -f " + file);
  unlink(file.c_str());
  EXPECT_EQ(r.rc, 0) << r.output << "\n--- ruleset:\n" << ruleset;
}

TEST(CompileNftablesTest, TheLogPrefixNamesThePolicyWhenItFits) {
  EXPECT_THAT(
      CompileNftables(Policy(), "agents/research"),
      HasSubstr("log prefix \"stockade-egress-drop agents/research \""));
  EXPECT_EQ(NftLogPrefix(true, "a/b"), "stockade-egress-complain a/b ");
  EXPECT_EQ(NftLogPrefix(false, std::string(120, 'x')),
            "stockade-egress-drop ");
}

TEST(CompileNftablesTest, DefaultDropsEverythingButLoopbackAndReplies) {
  const std::string nft = CompileNftables(Policy());
  EXPECT_EQ(nft,
            "# Stockade egress rules for one pod's network namespace "
            "(generated).\n"
            "# `nft -f` applies this file in one transaction: the empty "
            "table and\n"
            "# the delete make re-applying it replace the previous version.\n"
            "table inet stockade {\n"
            "}\n"
            "delete table inet stockade\n"
            "table inet stockade {\n"
            "\tchain output {\n"
            "\t\ttype filter hook output priority 0; policy drop;\n"
            "\t\tct state established,related accept\n"
            "\t\toif \"lo\" accept\n"
            "\t\ticmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
            "nd-neighbor-advert } accept\n"
            "\t\tip6 daddr ff02::/16 drop comment \"link-local multicast\"\n"
            "\t\tcounter limit rate 10/second log prefix "
            "\"stockade-egress-drop \"\n"
            "\t}\n"
            "}\n");
  ExpectNftAccepts(nft);
}

TEST(CompileNftablesTest, EgressRulesBothFamiliesMergedSetsAndDns) {
  const std::string nft = CompileNftables(Policy(kMixed));
  EXPECT_THAT(nft, HasSubstr("\t\tudp dport 53 accept comment \"dns\"\n"
                             "\t\ttcp dport 53 accept comment \"dns\"\n"));
  // 10.1.0.0/16 is inside 10.0.0.0/8; 8000-8080 and 8080-8090 merge.
  EXPECT_THAT(nft, HasSubstr("\t\tip daddr { 10.0.0.0/8, 192.168.1.0/24 } "
                             "tcp dport { 443, 8000-8090 } accept comment "
                             "\"egress 0\"\n"));
  EXPECT_THAT(nft,
              HasSubstr("\t\tip daddr { 10.0.0.0/8, 192.168.1.0/24 } "
                        "udp dport { 5353 } accept comment \"egress 0\"\n"));
  EXPECT_THAT(nft,
              HasSubstr("\t\tip6 daddr { 2001:db8::/32 } tcp dport "
                        "{ 443, 8000-8090 } accept comment \"egress 0\"\n"));
  // No ports: every TCP and UDP port.
  EXPECT_THAT(nft, HasSubstr("\t\tip daddr { 203.0.113.7/32 } meta l4proto "
                             "{ tcp, udp } accept comment \"egress 1\"\n"));
  EXPECT_THAT(nft, HasSubstr("\t\tip6 daddr { ::/0 } tcp dport { 22 } accept "
                             "comment \"egress 2\"\n"));
  EXPECT_THAT(nft, Not(HasSubstr("10.1.0.0/16")));
  // The log rule is last, just before the policy drop, after the silent
  // drop of link-local multicast.
  EXPECT_THAT(nft, HasSubstr("\"egress 2\"\n\t\tip6 daddr ff02::/16 drop "
                             "comment \"link-local multicast\"\n\t\tcounter "
                             "limit rate 10/second log prefix "
                             "\"stockade-egress-drop \"\n\t}\n}\n"));
  ExpectNftAccepts(nft);
}

TEST(CompileNftablesTest, NoDnsNoPort53) {
  EXPECT_THAT(CompileNftables(Policy()), Not(HasSubstr("dport 53")));
}

TEST(CompileNftablesTest, ComplainModeAcceptsAndLogs) {
  const std::string nft = CompileNftables(
      Policy(std::string(kMixed) + R"pb(mode: MODE_COMPLAIN)pb"));
  EXPECT_THAT(nft, HasSubstr("policy accept;"));
  EXPECT_THAT(nft, HasSubstr("log prefix \"stockade-egress-complain \""));
  ExpectNftAccepts(nft);
}

TEST(CompileNftablesTest, Deterministic) {
  EXPECT_EQ(CompileNftables(Policy(kMixed)), CompileNftables(Policy(kMixed)));
}

TEST(CompileNftablesTest, EdgeCasesAcceptedByNft) {
  for (const char* extra : {
           R"pb(network {
                  egress {
                    cidrs: "0.0.0.0/0"
                    ports { port: 1 end_port: 65535 protocol: PROTOCOL_TCP }
                  }
                })pb",
           R"pb(network {
                  egress {
                    cidrs: "198.51.100.1/32"
                    cidrs: "198.51.100.0/24"
                    cidrs: "fd00::/8"
                    cidrs: "fd12::/16"
                    ports { port: 53 protocol: PROTOCOL_UDP }
                    ports { port: 54 protocol: PROTOCOL_UDP }
                    ports { port: 60 end_port: 70 protocol: PROTOCOL_UDP }
                  }
                })pb",
           R"pb(network {
                  dns: true
                  egress { cidrs: "2001:db8::1/128" }
                })pb",
       }) {
    ExpectNftAccepts(CompileNftables(Policy(extra)));
  }
  const std::string nft = CompileNftables(Policy(
      R"pb(network {
             egress {
               cidrs: "198.51.100.1/32"
               cidrs: "198.51.100.0/24"
               ports { port: 53 protocol: PROTOCOL_UDP }
               ports { port: 54 protocol: PROTOCOL_UDP }
             }
           })pb"));
  EXPECT_THAT(nft, HasSubstr("ip daddr { 198.51.100.0/24 } udp dport "
                             "{ 53-54 } accept"));
}

// --- Real enforcement in two network namespaces joined by a veth pair. ---

// Addresses of the two private test namespaces (link-local: never routed).
constexpr char kClientAddr[] = "169.254.213.1";
constexpr char kServerAddr[] = "169.254.213.2";

class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "needs root to create network namespaces";
    ASSERT_EQ(access("/usr/sbin/ip", X_OK), 0) << "needs iproute2 (ip)";
    Nft();
    const std::string id = absl::StrCat(getpid());
    client_ = "stockade-nft-c-" + id;
    server_ = "stockade-nft-s-" + id;
    for (const std::string& cmd : {
             "ip netns add " + client_,
             "ip netns add " + server_,
             // Created inside the client namespace: nothing touches the
             // host's own interfaces.
             "ip -n " + client_ +
                 " link add sk0 type veth peer name sk1 netns " + server_,
             "ip -n " + client_ + " addr add " + kClientAddr + "/30 dev sk0",
             "ip -n " + server_ + " addr add " + kServerAddr + "/30 dev sk1",
             "ip -n " + client_ + " link set lo up",
             "ip -n " + server_ + " link set lo up",
             "ip -n " + client_ + " link set sk0 up",
             "ip -n " + server_ + " link set sk1 up",
         }) {
      CommandResult r = RunCommand(cmd);
      ASSERT_EQ(r.rc, 0) << cmd << ": " << r.output;
    }
    home_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(home_, 0);
  }

  void TearDown() override {
    if (home_ >= 0) close(home_);
    for (const std::string& ns : {client_, server_}) {
      if (!ns.empty()) RunCommand("ip netns del " + ns);
    }
  }

  // Runs `fn` with this thread in network namespace `ns`; sockets it
  // creates stay in `ns`.
  void InNetns(const std::string& ns, const std::function<void()>& fn) {
    int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << ns;
    ASSERT_EQ(setns(fd, CLONE_NEWNET), 0) << strerror(errno);
    close(fd);
    fn();
    ASSERT_EQ(setns(home_, CLONE_NEWNET), 0) << strerror(errno);
  }

  // A listener on kServerAddr in the server namespace; returns its port.
  int Listen() {
    int port = 0;
    InNetns(server_, [&] {
      int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = {};
      addr.sin_family = AF_INET;
      inet_pton(AF_INET, kServerAddr, &addr.sin_addr);
      ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      ASSERT_EQ(listen(s, 16), 0);
      socklen_t len = sizeof(addr);
      getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
      port = ntohs(addr.sin_port);
      listeners_.push_back(s);
    });
    return port;
  }

  // Connects from the client namespace: "OK", "TIMEOUT" (dropped) or the
  // errno name.
  std::string Connect(int port) {
    int s = -1;
    InNetns(client_, [&] {
      s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    });
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, kServerAddr, &addr.sin_addr);
    std::string result;
    if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      result = "OK";
    } else if (errno != EINPROGRESS) {
      result = strerrorname_np(errno);
    } else {
      pollfd p = {s, POLLOUT, 0};
      if (poll(&p, 1, 1500) == 0) {
        result = "TIMEOUT";
      } else {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        result = err == 0 ? "OK" : strerrorname_np(err);
      }
    }
    close(s);
    return result;
  }

  CommandResult NftInClient(const std::string& args) {
    return RunCommand("ip netns exec " + client_ + " " + Nft() + " " + args);
  }

  std::string client_, server_;
  int home_ = -1;
  std::vector<int> listeners_;
};

TEST_F(NetnsTest, AllowedPortConnectsOtherPortIsDropped) {
  const int allowed = Listen();
  const int other = Listen();
  // Without the ruleset both connect: the drop below is nftables' doing.
  ASSERT_EQ(Connect(allowed), "OK");
  ASSERT_EQ(Connect(other), "OK");

  EffectivePolicy policy = Policy();
  v1::EgressRule* rule = policy.mutable_network()->add_egress();
  rule->add_cidrs(absl::StrCat(kServerAddr, "/32"));
  v1::PortRule* port = rule->add_ports();
  port->set_port(allowed);
  port->set_protocol(v1::PROTOCOL_TCP);
  const std::string file = WriteTemp(CompileNftables(policy));
  // Loading twice replaces the table instead of failing or duplicating.
  for (int i = 0; i < 2; ++i) {
    CommandResult r = NftInClient("-f " + file);
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  unlink(file.c_str());
  CommandResult listing = NftInClient("list table inet stockade");
  ASSERT_EQ(listing.rc, 0) << listing.output;
  EXPECT_EQ(listing.output.find("chain output"),
            listing.output.rfind("chain output"));

  EXPECT_EQ(Connect(allowed), "OK");
  EXPECT_EQ(Connect(other), "TIMEOUT");
  // The drop was counted by the final rule.
  listing = NftInClient("list chain inet stockade output");
  EXPECT_THAT(listing.output, Not(HasSubstr("counter packets 0 ")))
      << listing.output;
  for (int s : listeners_) close(s);
}

}  // namespace
}  // namespace stockade::compiler
