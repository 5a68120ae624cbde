// The node agent against the real DistributionServer over loopback gRPC,
// with real node stores in temporary directories: snapshot and deltas,
// acknowledgements, operator and agent restarts, garbage collection with
// container references, mTLS with certificates made by openssl, insecure
// mode, and the stockade-node binary itself. Prints the distribution
// latency and the agent's memory.
#include "node/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operator/distribution/server.h"
#include "operator/distribution/testing/policies.h"
#include "stockade/v1/distribution.grpc.pb.h"

namespace stockade::node {
namespace {

namespace fs = std::filesystem;
using ::stockade::distribution::DistributionServer;
using ::stockade::distribution::FormatJsonLogLine;
using ::stockade::distribution::LogFields;
using ::stockade::distribution::LogLevel;
using ::stockade::distribution::ServerOptions;
using ::stockade::distribution::testing::EntriesFor;
using ::stockade::distribution::testing::MakePolicy;
using ::stockade::v1::CompiledPolicy;
using ::testing::HasSubstr;

bool WaitFor(const std::function<bool()>& done,
             absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

class CapturedLog {
 public:
  distribution::LogFn Fn(std::string component) {
    return [this, component](LogLevel level, std::string_view msg,
                             const LogFields& fields) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(FormatJsonLogLine(component, level, msg, fields));
    };
  }
  bool Contains(std::string_view needle) const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::any_of(lines_.begin(), lines_.end(), [&](const auto& l) {
      return l.find(needle) != std::string::npos;
    });
  }
  std::string All() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& l : lines_) out += l;
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

// Runs `sh -c command`, failing the test when it fails.
void Shell(const std::string& command) {
  const int rc = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
      << "command failed (" << rc << "): " << command;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1 and localhost, a client
// certificate, and a second CA with its own client certificate; made by the
// openssl command line.
struct Certs {
  std::string dir;
  std::string ca() const { return dir + "/ca.crt"; }
  std::string server_cert() const { return dir + "/server.crt"; }
  std::string server_key() const { return dir + "/server.key"; }
  std::string client_cert() const { return dir + "/client.crt"; }
  std::string client_key() const { return dir + "/client.key"; }
  std::string rogue_cert() const { return dir + "/rogue-client.crt"; }
  std::string rogue_key() const { return dir + "/rogue-client.key"; }

  static void Make(const std::string& dir) {
    ASSERT_EQ(std::system("openssl version >/dev/null 2>&1"), 0)
        << "these tests need the openssl command line tool";
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
    {
      std::ofstream(dir + "/server.ext")
          << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
             "extendedKeyUsage=serverAuth\n";
      std::ofstream(dir + "/client.ext") << "extendedKeyUsage=clientAuth\n";
    }
    for (const std::string ca : {"ca", "rogue-ca"}) {
      Shell(absl::StrCat("cd ", dir, " && openssl req -x509 ", key,
                         " -nodes -keyout ", ca, ".key -out ", ca,
                         ".crt -days 2 -subj /CN=stockade-test-", ca,
                         " 2>/dev/null"));
    }
    auto issue = [&](const std::string& name, const std::string& ca,
                     const std::string& cn, const std::string& ext) {
      Shell(absl::StrCat("cd ", dir, " && openssl req ", key,
                         " -nodes -keyout ", name, ".key -out ", name,
                         ".csr -subj /CN=", cn,
                         " 2>/dev/null && openssl x509 "
                         "-req -in ",
                         name, ".csr -CA ", ca, ".crt -CAkey ", ca,
                         ".key -CAcreateserial -out ", name,
                         ".crt -days 2 -extfile ", ext, " 2>/dev/null"));
    };
    issue("server", "ca", "stockade-operator", "server.ext");
    issue("client", "ca", "stockade-node", "client.ext");
    issue("rogue-client", "rogue-ca", "stockade-node", "client.ext");
  }
};

// One node agent on its own store, running on a thread.
class Agent {
 public:
  Agent(const std::string& name, const std::string& store, AgentOptions base)
      : name_(name) {
    base.node_name = name;
    base.store_root = store;
    base.log = log_.Fn("node");
    auto agent = NodeAgent::Create(base);
    EXPECT_TRUE(agent.ok()) << agent.status();
    if (!agent.ok()) return;
    agent_ = *std::move(agent);
    thread_ = std::thread([this] { agent_->Run(); });
  }
  ~Agent() { Stop(); }
  void Stop() {
    if (agent_ == nullptr) return;
    agent_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  NodeAgent::State state() const { return agent_->state(); }
  uint64_t applied() const {
    auto s = agent_->state();
    return s.applied.has_value() ? s.applied->version() : 0;
  }
  bool Applied(const DistributionServer& server, uint64_t version) const {
    auto s = agent_->state();
    return s.connected && s.applied.has_value() &&
           s.applied->server_id() == server.server_id() &&
           s.applied->version() >= version;
  }
  const CapturedLog& log() const { return log_; }
  bool ok() const { return agent_ != nullptr; }
  void ReportDenial(stockade::v1::NodeDenial d) {
    agent_->ReportDenial(std::move(d));
  }

 private:
  std::string name_;
  CapturedLog log_;
  std::unique_ptr<NodeAgent> agent_;
  std::thread thread_;
};

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/node_agent_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void StartServer(int port = 0, bool insecure = true) {
    server_.reset();
    ServerOptions options;
    options.address = absl::StrCat("127.0.0.1:", port);
    options.insecure = insecure;
    if (!insecure) {
      options.cert_file = certs_.server_cert();
      options.key_file = certs_.server_key();
      options.client_ca_file = certs_.ca();
    }
    options.log = server_log_.Fn("distribution");
    options.on_denials = on_denials_;
    auto server = DistributionServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  stockade::distribution::DenialCallback on_denials_;

  AgentOptions AgentBase() const {
    AgentOptions o;
    o.server = absl::StrCat("127.0.0.1:", server_->port());
    o.insecure = true;
    o.backoff_initial = absl::Milliseconds(20);
    o.backoff_max = absl::Milliseconds(300);
    o.gc_interval = absl::Milliseconds(100);
    o.report_interval = absl::Milliseconds(50);
    o.apparmor = AppArmorMode::kAuto;
    o.apparmor_options.work_dir = dir_;
    o.agent_version = "test";
    return o;
  }

  std::string StoreDir(const std::string& node) const {
    return dir_ + "/" + node;
  }

  store::Store OpenStore(const std::string& node) const {
    auto s = store::Store::Open(StoreDir(node));
    EXPECT_TRUE(s.ok()) << s.status();
    return *std::move(s);
  }

  std::string Resolve(const std::string& node, const std::string& ns,
                      const std::string& name) const {
    auto p = OpenStore(node).Resolve(ns, name);
    return p.ok() ? p->hash() : std::string(p.status().message());
  }

  std::string dir_;
  Certs certs_;
  CapturedLog server_log_;
  std::unique_ptr<DistributionServer> server_;
};

TEST(BackoffTest, DoublesWithJitterUpToMaxAndResets) {
  Backoff b(absl::Milliseconds(100), absl::Seconds(1));
  const absl::Duration first = b.Next();
  EXPECT_GE(first, absl::Milliseconds(50));
  EXPECT_LE(first, absl::Milliseconds(100));
  absl::Duration last;
  for (int i = 0; i < 10; ++i) last = b.Next();
  EXPECT_GE(last, absl::Milliseconds(500));
  EXPECT_LE(last, absl::Seconds(1));
  b.Reset();
  EXPECT_LE(b.Next(), absl::Milliseconds(100));
}

TEST_F(AgentTest, SnapshotThenDeltasReachTwoNodes) {
  StartServer();
  const CompiledPolicy a1 = MakePolicy("team-a", "research", "1", 10'000);
  const CompiledPolicy b = MakePolicy("team-b", "coder", "1", 10'000);
  const CompiledPolicy c = MakePolicy("", "cluster-default", "1", 10'000);
  ASSERT_TRUE(server_->SetDesired({a1, b, c}, EntriesFor({a1, b, c})).ok());
  Agent n1("node-1", StoreDir("node-1"), AgentBase());
  Agent n2("node-2", StoreDir("node-2"), AgentBase());
  ASSERT_TRUE(WaitFor(
      [&] { return n1.Applied(*server_, 1) && n2.Applied(*server_, 1); }));
  for (const std::string node : {"node-1", "node-2"}) {
    EXPECT_EQ(Resolve(node, "team-a", "research"), a1.hash());
    EXPECT_EQ(Resolve(node, "team-b", "coder"), b.hash());
    EXPECT_EQ(Resolve(node, "", "cluster-default"), c.hash());
  }
  // Acknowledged at the server.
  ASSERT_TRUE(WaitFor([&] { return server_->NodesAcked(1).ready == 2; }));
  EXPECT_EQ(server_->NodesHolding(a1.hash()).ready, 2);
  EXPECT_EQ(server_->NodesHolding(a1.hash()).total, 2);
  auto info = server_->Node("node-1");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->agent_version, "test");
  EXPECT_EQ(info->landlock_abi, LandlockAbi());
  EXPECT_EQ(info->apparmor_enabled, AppArmorKernelEnabled());
  EXPECT_EQ(info->held.size(), 3u);

  // A new version of one policy, another deleted.
  const CompiledPolicy a2 = MakePolicy("team-a", "research", "2", 10'000);
  ASSERT_TRUE(server_->SetDesired({a2, c}, EntriesFor({a2, c})).ok());
  ASSERT_TRUE(WaitFor(
      [&] { return n1.Applied(*server_, 2) && n2.Applied(*server_, 2); }));
  for (const std::string node : {"node-1", "node-2"}) {
    EXPECT_EQ(Resolve(node, "team-a", "research"), a2.hash());
    EXPECT_THAT(Resolve(node, "team-b", "coder"), HasSubstr("no policy"));
  }
  // Nothing used the old ones: collected, and the server knows.
  ASSERT_TRUE(WaitFor([&] {
    return server_->NodesAcked(2).ready == 2 &&
           server_->Node("node-2")->held.size() == 2;
  }));
  EXPECT_FALSE(fs::exists(OpenStore("node-1").PolicyPath(a1.hash())));
  EXPECT_EQ(server_->NodesHolding(a1.hash()).ready, 0);
  EXPECT_EQ(server_->NodesHolding(a2.hash()).ready, 2);
  const auto m = server_->GetMetrics();
  EXPECT_EQ(m.connected_nodes, 2);
  EXPECT_EQ(m.snapshots_sent, 2u);
  EXPECT_EQ(m.deltas_sent, 2u);
  EXPECT_EQ(m.distribution_latency.count, 2u);  // Version 2, twice.
}

TEST_F(AgentTest, DenialsReachTheOperatorAndWaitOutADisconnection) {
  std::mutex mu;
  std::vector<std::string> got;  // "node syscall"
  on_denials_ =
      [&](const std::string& node,
          const google::protobuf::RepeatedPtrField<stockade::v1::NodeDenial>&
              denials) {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& d : denials) {
          got.push_back(absl::StrCat(node, " ", d.syscall()));
        }
      };
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return got.size();
  };
  StartServer();
  const int port = server_->port();
  ASSERT_TRUE(server_->SetDesired(std::vector<CompiledPolicy>{}, {}).ok());
  Agent n1("node-1", StoreDir("node-1"), AgentBase());
  ASSERT_TRUE(WaitFor([&] { return n1.Applied(*server_, 1); }));
  stockade::v1::NodeDenial d;
  d.set_syscall("keyctl");
  n1.ReportDenial(d);
  ASSERT_TRUE(WaitFor([&] { return count() == 1; }));
  // The operator goes away: denials wait, and go out on the next stream.
  server_.reset();
  d.set_syscall("ptrace");
  n1.ReportDenial(d);
  d.set_syscall("bpf");
  n1.ReportDenial(d);
  StartServer(port);
  ASSERT_TRUE(server_->SetDesired(std::vector<CompiledPolicy>{}, {}).ok());
  ASSERT_TRUE(WaitFor([&] { return count() == 3; }));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(got, ::testing::ElementsAre("node-1 keyctl", "node-1 ptrace",
                                          "node-1 bpf"));
}

TEST_F(AgentTest, NodesResyncAfterTheOperatorRestarts) {
  StartServer();
  const int port = server_->port();
  const CompiledPolicy a1 = MakePolicy("team-a", "research", "1");
  const CompiledPolicy b = MakePolicy("team-b", "coder", "1");
  ASSERT_TRUE(server_->SetDesired({a1, b}, EntriesFor({a1, b})).ok());
  Agent n1("node-1", StoreDir("node-1"), AgentBase());
  Agent n2("node-2", StoreDir("node-2"), AgentBase());
  ASSERT_TRUE(WaitFor(
      [&] { return n1.Applied(*server_, 1) && n2.Applied(*server_, 1); }));
  const std::string first_id = server_->server_id();

  // The operator goes away: the agents notice, the stores keep serving.
  server_.reset();
  ASSERT_TRUE(
      WaitFor([&] { return !n1.state().connected && !n2.state().connected; }));
  EXPECT_EQ(Resolve("node-1", "team-a", "research"), a1.hash());
  EXPECT_TRUE(n1.log().Contains("the node store keeps serving"));
  absl::SleepFor(absl::Milliseconds(500));  // A few failed attempts.
  EXPECT_EQ(Resolve("node-2", "team-b", "coder"), b.hash());

  // It comes back with a changed state: both nodes resync from a snapshot.
  StartServer(port);
  ASSERT_NE(server_->server_id(), first_id);
  const CompiledPolicy a2 = MakePolicy("team-a", "research", "2");
  ASSERT_TRUE(server_->SetDesired({a2}, EntriesFor({a2})).ok());
  ASSERT_TRUE(WaitFor(
      [&] { return n1.Applied(*server_, 1) && n2.Applied(*server_, 1); }));
  for (const std::string node : {"node-1", "node-2"}) {
    EXPECT_EQ(Resolve(node, "team-a", "research"), a2.hash());
    EXPECT_THAT(Resolve(node, "team-b", "coder"), HasSubstr("no policy"));
  }
  EXPECT_GE(n1.state().streams, 2u);
  // The snapshot carried only what the nodes lacked.
  EXPECT_EQ(server_->GetMetrics().policies_sent, 2u);
}

TEST_F(AgentTest, AgentRestartKeepsTheStoreAndFetchesOnlyWhatChanged) {
  StartServer();
  std::vector<CompiledPolicy> policies;
  for (int i = 0; i < 10; ++i) {
    policies.push_back(MakePolicy("ns", "p" + std::to_string(i), "1"));
  }
  ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());
  {
    Agent n1("node-1", StoreDir("node-1"), AgentBase());
    ASSERT_TRUE(WaitFor([&] { return n1.Applied(*server_, 1); }));
  }
  // While the agent is down: a container keeps running, one policy changes.
  ASSERT_TRUE(
      WaitFor([&] { return server_->GetMetrics().connected_nodes == 0; }));
  EXPECT_EQ(Resolve("node-1", "ns", "p3"), policies[3].hash());
  const uint64_t sent_before = server_->GetMetrics().policies_sent;
  policies[3] = MakePolicy("ns", "p3", "2");
  ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());

  Agent again("node-1", StoreDir("node-1"), AgentBase());
  ASSERT_TRUE(WaitFor([&] { return again.Applied(*server_, 2); }));
  EXPECT_EQ(Resolve("node-1", "ns", "p3"), policies[3].hash());
  // Only the changed policy travelled.
  EXPECT_EQ(server_->GetMetrics().policies_sent - sent_before, 1u);
}

TEST_F(AgentTest, GarbageCollectionKeepsWhatContainersUse) {
  StartServer();
  const CompiledPolicy a1 = MakePolicy("team-a", "research", "1");
  ASSERT_TRUE(server_->SetDesired({a1}, EntriesFor({a1})).ok());
  Agent n1("node-1", StoreDir("node-1"), AgentBase());
  ASSERT_TRUE(WaitFor([&] { return n1.Applied(*server_, 1); }));
  // The shim starts a container on a1.
  store::Store shim = OpenStore("node-1");
  auto resolved = shim.Resolve("team-a", "research");
  ASSERT_TRUE(resolved.ok());
  ASSERT_TRUE(shim.AddRef(resolved->hash(), "k8s.io@container-1").ok());
  // The operator hears that a container uses a1.
  ASSERT_TRUE(WaitFor([&] {
    return server_->HashesInUse() == std::vector<std::string>{a1.hash()};
  }));

  // The policy is updated: the index moves on, a1 stays for the container.
  const CompiledPolicy a2 = MakePolicy("team-a", "research", "2");
  ASSERT_TRUE(server_->SetDesired({a2}, EntriesFor({a2})).ok());
  ASSERT_TRUE(WaitFor([&] { return n1.Applied(*server_, 2); }));
  EXPECT_EQ(Resolve("node-1", "team-a", "research"), a2.hash());
  absl::SleepFor(absl::Milliseconds(400));  // Several collections.
  EXPECT_TRUE(fs::exists(shim.PolicyPath(a1.hash())));
  EXPECT_EQ(server_->NodesHolding(a1.hash()).ready, 1);

  // The container is deleted: the next collection removes a1, and the
  // server hears of it.
  ASSERT_TRUE(shim.RemoveRef(a1.hash(), "k8s.io@container-1").ok());
  ASSERT_TRUE(WaitFor([&] { return !fs::exists(shim.PolicyPath(a1.hash())); }));
  ASSERT_TRUE(
      WaitFor([&] { return server_->NodesHolding(a1.hash()).ready == 0; }));
  EXPECT_TRUE(server_->HashesInUse().empty());
  EXPECT_EQ(server_->NodesHolding(a2.hash()).ready, 1);
}

TEST_F(AgentTest, MutualTls) {
  certs_.dir = dir_ + "/certs";
  fs::create_directories(certs_.dir);
  ASSERT_NO_FATAL_FAILURE(Certs::Make(certs_.dir));
  StartServer(0, /*insecure=*/false);
  EXPECT_FALSE(server_log_.Contains("INSECURE"));
  const CompiledPolicy a = MakePolicy("team-a", "research", "1");
  ASSERT_TRUE(server_->SetDesired({a}, EntriesFor({a})).ok());

  AgentOptions tls = AgentBase();
  tls.insecure = false;
  tls.ca_file = certs_.ca();
  tls.cert_file = certs_.client_cert();
  tls.key_file = certs_.client_key();
  // The certificate names 127.0.0.1 and localhost; the second agent checks
  // it against "localhost" (an IP address as target: no DNS look-up, whose
  // c-ares leaks 10 bytes once per process under LeakSanitizer).
  AgentOptions by_name = tls;
  by_name.tls_server_name = "localhost";
  Agent n1("node-1", StoreDir("node-1"), tls);
  Agent n2("node-2", StoreDir("node-2"), by_name);
  ASSERT_TRUE(WaitFor(
      [&] { return n1.Applied(*server_, 1) && n2.Applied(*server_, 1); }));
  EXPECT_EQ(Resolve("node-2", "team-a", "research"), a.hash());
  auto info = server_->Node("node-1");
  ASSERT_TRUE(info.has_value());
  EXPECT_THAT(info->peer_subject, HasSubstr("CN=stockade-node"));
  EXPECT_FALSE(n1.log().Contains("INSECURE"));

  // Clients the server must turn away, at the TLS handshake.
  auto attempt = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = stockade::v1::PolicyDistribution::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), creds));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    auto rw = stub->Sync(&context);
    stockade::v1::NodeReport hello;
    hello.mutable_hello()->set_node_name("intruder");
    rw->Write(hello);
    stockade::v1::PolicyUpdate update;
    const bool got = rw->Read(&update);
    EXPECT_FALSE(got)
        << "the server sent a policy to an unauthenticated client";
    return rw->Finish();
  };
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = ReadAll(certs_.ca());
  EXPECT_EQ(attempt(grpc::SslCredentials(no_cert)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  grpc::SslCredentialsOptions rogue = no_cert;
  rogue.pem_cert_chain = ReadAll(certs_.rogue_cert());
  rogue.pem_private_key = ReadAll(certs_.rogue_key());
  EXPECT_EQ(attempt(grpc::SslCredentials(rogue)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(attempt(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(server_->Node("intruder").has_value());

  // A name the certificate does not carry is refused.
  AgentOptions wrong_name = tls;
  wrong_name.tls_server_name = "operator.example.com";
  Agent n5("node-5", StoreDir("node-5"), wrong_name);

  // An agent that does not trust the server's CA never connects.
  AgentOptions distrust = tls;
  distrust.ca_file = dir_ + "/certs/rogue-ca.crt";
  Agent n3("node-3", StoreDir("node-3"), distrust);
  absl::SleepFor(absl::Seconds(1));
  EXPECT_FALSE(n3.state().connected);
  EXPECT_FALSE(n3.state().applied.has_value());
  EXPECT_TRUE(n3.log().Contains("disconnected from the operator"));
  EXPECT_FALSE(server_->Node("node-3").has_value());
  EXPECT_FALSE(n5.state().connected);
  EXPECT_FALSE(server_->Node("node-5").has_value());
  EXPECT_TRUE(n5.log().Contains("disconnected from the operator"));

  // Missing files are refused up front.
  AgentOptions missing = tls;
  missing.key_file = dir_ + "/nope.key";
  missing.node_name = "node-4";
  auto bad = NodeAgent::Create(missing);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  ServerOptions bad_server;
  bad_server.address = "127.0.0.1:0";
  bad_server.cert_file = certs_.server_cert();
  bad_server.key_file = certs_.server_key();
  EXPECT_THAT(DistributionServer::Start(bad_server).status().message(),
              HasSubstr("client CA"));
}

TEST_F(AgentTest, InsecureModeWorksAndWarnsOnBothSides) {
  StartServer();
  const CompiledPolicy a = MakePolicy("team-a", "research", "1");
  ASSERT_TRUE(server_->SetDesired({a}, EntriesFor({a})).ok());
  Agent n1("node-1", StoreDir("node-1"), AgentBase());
  ASSERT_TRUE(WaitFor([&] { return n1.Applied(*server_, 1); }));
  EXPECT_TRUE(n1.log().Contains(
      "\"level\":\"warning\",\"component\":\"node\",\"msg\":\"INSECURE"));
  EXPECT_TRUE(server_log_.Contains("\"level\":\"warning\""));
  EXPECT_TRUE(server_log_.Contains("INSECURE: policy distribution serves"));
  EXPECT_TRUE(server_log_.Contains("INSECURE: node connected"));
}

// --- The stockade-node binary. ----------------------------------------

std::string NodeBinary() {
  return std::string(STOCKADE_BIN_DIR) + "/stockade-node";
}

struct Process {
  pid_t pid = -1;
  std::string stderr_path;
};

Process Spawn(const std::vector<std::string>& args,
              const std::string& stderr_path) {
  Process p;
  p.stderr_path = stderr_path;
  p.pid = fork();
  if (p.pid == 0) {
    const int fd =
        open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDERR_FILENO);
    dup2(fd, STDOUT_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return p;
}

int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// VmHWM (peak resident set) of pid, in KiB.
int64_t PeakRssKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

TEST_F(AgentTest, BinaryHelpAndFlagErrors) {
  const std::string out = dir_ + "/out";
  Process help = Spawn({NodeBinary(), "--help"}, out);
  EXPECT_EQ(Wait(help.pid), 0);
  EXPECT_THAT(ReadAll(out), HasSubstr("Usage: stockade-node --server"));
  EXPECT_THAT(ReadAll(out), HasSubstr("--insecure"));
  Process version = Spawn({NodeBinary(), "--version"}, out);
  EXPECT_EQ(Wait(version.pid), 0);
  EXPECT_THAT(ReadAll(out), HasSubstr("stockade-node "));
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{NodeBinary()},
        {NodeBinary(), "--server", "x:1"},
        {NodeBinary(), "--server", "x:1", "--insecure", "--tls-ca", "f"},
        {NodeBinary(), "--server", "x:1", "--insecure", "--apparmor", "maybe"},
        {NodeBinary(), "--server", "x:1", "--insecure", "--gc-interval", "-1s"},
        {NodeBinary(), "--bogus"}}) {
    Process p = Spawn(bad, out);
    EXPECT_EQ(Wait(p.pid), 2) << absl::StrJoin(bad, " ");
    EXPECT_THAT(ReadAll(out), HasSubstr("stockade-node: "));
  }
  // Valid flags, unusable node name: a JSON error line, exit 1.
  Process p = Spawn({NodeBinary(), "--server", "127.0.0.1:1", "--insecure",
                     "--node-name", "Not_Valid", "--store", dir_ + "/s"},
                    out);
  EXPECT_EQ(Wait(p.pid), 1);
  auto line = nlohmann::json::parse(ReadAll(out), nullptr, false);
  ASSERT_FALSE(line.is_discarded()) << ReadAll(out);
  EXPECT_EQ(line["level"], "error");
  EXPECT_THAT(line["error"].get<std::string>(),
              HasSubstr("not a Kubernetes node name"));
}

// Two stockade-node processes, 100 policies of ~20 KB: how long from
// SetDesired until both stores hold them (acknowledged), for the snapshot
// and for one-policy deltas; and the agents' memory.
TEST_F(AgentTest, BinaryDistributesAHundredPoliciesToTwoNodes) {
  StartServer();
  std::vector<Process> nodes;
  for (const std::string name : {"node-1", "node-2"}) {
    nodes.push_back(Spawn(
        {NodeBinary(), "--server", absl::StrCat("127.0.0.1:", server_->port()),
         "--insecure", "--node-name", name, "--store", StoreDir(name),
         "--backoff-initial", "20ms", "--backoff-max", "200ms", "--gc-interval",
         "1s"},
        dir_ + "/" + name + ".log"));
  }
  ASSERT_TRUE(WaitFor([&] {
    return server_->GetMetrics().connected_nodes == 2;
  })) << ReadAll(dir_ + "/node-1.log");

  std::vector<CompiledPolicy> policies;
  for (int i = 0; i < 100; ++i) {
    policies.push_back(
        MakePolicy("agents", "agent-" + std::to_string(i), "v1", 20'000));
  }
  const absl::Time start = absl::Now();
  ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());
  ASSERT_TRUE(WaitFor([&] { return server_->NodesAcked(1).ready == 2; }))
      << ReadAll(dir_ + "/node-1.log");
  const absl::Duration snapshot = absl::Now() - start;
  for (const std::string node : {"node-1", "node-2"}) {
    EXPECT_EQ(Resolve(node, "agents", "agent-57"), policies[57].hash());
  }

  // Deltas: one policy changes at a time.
  std::vector<double> delta_ms;
  for (int v = 2; v <= 21; ++v) {
    policies[v] = MakePolicy("agents", "agent-" + std::to_string(v),
                             "v" + std::to_string(v), 20'000);
    const absl::Time t = absl::Now();
    ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());
    ASSERT_TRUE(WaitFor([&] {
      return server_->NodesAcked(static_cast<uint64_t>(v)).ready == 2;
    }));
    delta_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t));
  }
  std::sort(delta_ms.begin(), delta_ms.end());
  const auto m = server_->GetMetrics();
  std::cout << "[distribution] snapshot of 100 policies ("
            << policies[0].ByteSizeLong() << " bytes each) to 2 nodes: "
            << absl::ToDoubleMilliseconds(snapshot) << " ms\n"
            << "[distribution] one-policy delta to 2 nodes: p50 "
            << delta_ms[delta_ms.size() / 2] << " ms, max " << delta_ms.back()
            << " ms\n"
            << "[distribution] server histogram: "
            << m.distribution_latency.count << " acks, mean "
            << 1000 * m.distribution_latency.sum_seconds /
                   std::max<uint64_t>(1, m.distribution_latency.count)
            << " ms, max " << 1000 * m.distribution_latency.max_seconds
            << " ms\n";
  for (const Process& p : nodes) {
    std::cout << "[distribution] stockade-node peak RSS: " << PeakRssKiB(p.pid)
              << " KiB\n";
  }
  EXPECT_LT(snapshot, absl::Seconds(10));

  // SIGTERM: clean exit, JSON lines only.
  for (const Process& p : nodes) {
    kill(p.pid, SIGTERM);
    EXPECT_EQ(Wait(p.pid), 0);
    const std::string log = ReadAll(p.stderr_path);
    for (absl::string_view line :
         absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << line;
    }
    EXPECT_THAT(log, HasSubstr("\"msg\":\"in sync with the operator\""));
    EXPECT_THAT(log, HasSubstr("\"msg\":\"stopping\""));
    EXPECT_THAT(log, HasSubstr("INSECURE"));
  }
}

}  // namespace
}  // namespace stockade::node
