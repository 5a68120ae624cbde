// DistributionServer against hand-driven gRPC clients over loopback: the
// protocol's shape, validation of what nodes send, and robustness. The node
// agent's side, mTLS and restarts are tested in node/agent_test.cc.
#include "operator/distribution/server.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "operator/distribution/testing/policies.h"
#include "stockade/v1/distribution.grpc.pb.h"

namespace stockade::distribution {
namespace {

using ::stockade::v1::CompiledPolicy;
using ::stockade::v1::NodeReport;
using ::stockade::v1::PolicyUpdate;
using testing::EntriesFor;
using ::testing::HasSubstr;
using testing::MakePolicy;

struct CapturedLog {
  std::mutex mu;
  std::vector<std::string> lines;

  LogFn Fn() {
    return [this](LogLevel level, std::string_view msg, const LogFields& f) {
      std::lock_guard<std::mutex> lock(mu);
      lines.push_back(FormatJsonLogLine("distribution", level, msg, f));
    };
  }
  bool Contains(std::string_view needle) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& l : lines) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  void Start(size_t max_report_bytes = 1 << 20, size_t part_bytes = 1 << 20,
             size_t max_queued = 16) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.insecure = true;
    options.max_report_bytes = max_report_bytes;
    options.part_bytes = part_bytes;
    options.max_queued_versions = max_queued;
    options.log = log_.Fn();
    server_.reset();
    auto server = DistributionServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = stockade::v1::PolicyDistribution::NewStub(channel_);
  }

  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReaderWriter<NodeReport, PolicyUpdate>> rw;
  };

  std::unique_ptr<Stream> Open() {
    auto s = std::make_unique<Stream>();
    s->context.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(30));
    s->rw = stub_->Sync(&s->context);
    return s;
  }

  static NodeReport Hello(const std::string& node,
                          const std::vector<std::string>& held = {}) {
    NodeReport r;
    r.mutable_hello()->set_node_name(node);
    r.mutable_hello()->set_agent_version("test");
    r.mutable_hello()->set_landlock_abi(7);
    for (const auto& h : held) r.mutable_status()->add_held_added(h);
    return r;
  }

  static NodeReport Ack(const PolicyUpdate& u,
                        const std::vector<std::string>& added = {}) {
    NodeReport r;
    r.mutable_status()->mutable_applied()->set_server_id(u.server_id());
    r.mutable_status()->mutable_applied()->set_version(u.version());
    for (const auto& h : added) r.mutable_status()->add_held_added(h);
    return r;
  }

  // Reads parts until the last part of a version; returns them.
  static std::vector<PolicyUpdate> ReadVersion(Stream& s) {
    std::vector<PolicyUpdate> parts;
    PolicyUpdate u;
    while (s.rw->Read(&u)) {
      parts.push_back(u);
      if (u.last_part()) break;
    }
    return parts;
  }

  // Sends a report that the server must reject with code and a message
  // containing what.
  void ExpectRejected(const NodeReport& first, const NodeReport* second,
                      grpc::StatusCode code, const std::string& what) {
    auto s = Open();
    ASSERT_TRUE(s->rw->Write(first));
    if (second != nullptr) s->rw->Write(*second);
    PolicyUpdate u;
    while (s->rw->Read(&u)) {
    }
    const grpc::Status status = s->rw->Finish();
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(what));
  }

  CapturedLog log_;
  std::unique_ptr<DistributionServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<stockade::v1::PolicyDistribution::Stub> stub_;
};

TEST_F(ServerTest, InsecureModeWarnsLoudly) {
  EXPECT_TRUE(log_.Contains("\"level\":\"warning\""));
  EXPECT_TRUE(log_.Contains("INSECURE: policy distribution serves plaintext"));
  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("node-a")));
  for (int i = 0; i < 100 && !log_.Contains("node connected over"); ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(log_.Contains("INSECURE: node connected over plaintext"));
}

TEST_F(ServerTest, NodesWaitForTheFirstDesiredStateThenGetSnapshotAndDeltas) {
  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("node-a")));
  // Connected, nothing sent yet.
  for (int i = 0; i < 100 && server_->GetMetrics().connected_nodes == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->GetMetrics().connected_nodes, 1);
  EXPECT_EQ(server_->GetMetrics().updates_sent, 0u);

  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy b = MakePolicy("team-a", "two", "2");
  ASSERT_TRUE(server_->SetDesired({a, b}, EntriesFor({a, b})).ok());
  auto snapshot = ReadVersion(*s);
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].kind(), PolicyUpdate::SNAPSHOT);
  EXPECT_EQ(snapshot[0].version(), 1u);
  EXPECT_EQ(snapshot[0].server_id(), server_->server_id());
  EXPECT_EQ(snapshot[0].policies_size(), 2);
  EXPECT_EQ(snapshot[0].desired_hashes_size(), 2);
  EXPECT_EQ(snapshot[0].index_set_size(), 2);
  ASSERT_TRUE(s->rw->Write(Ack(snapshot[0], {a.hash(), b.hash()})));

  // The same state again: nothing new.
  ASSERT_TRUE(server_->SetDesired({a, b}, EntriesFor({a, b})).ok());
  EXPECT_EQ(server_->version(), 1u);

  const CompiledPolicy a2 = MakePolicy("team-a", "one", "2");
  ASSERT_TRUE(server_->SetDesired({a2, b}, EntriesFor({a2, b})).ok());
  auto delta = ReadVersion(*s);
  ASSERT_EQ(delta.size(), 1u);
  EXPECT_EQ(delta[0].kind(), PolicyUpdate::DELTA);
  EXPECT_EQ(delta[0].version(), 2u);
  ASSERT_EQ(delta[0].policies_size(), 1);
  EXPECT_EQ(delta[0].policies(0).hash(), a2.hash());
  ASSERT_EQ(delta[0].dropped_hashes_size(), 1);
  EXPECT_EQ(delta[0].dropped_hashes(0), a.hash());
  ASSERT_EQ(delta[0].index_set_size(), 1);
  EXPECT_EQ(delta[0].index_set(0).hash(), a2.hash());
  NodeReport ack = Ack(delta[0], {a2.hash()});
  ack.mutable_status()->add_held_removed(a.hash());
  ack.mutable_status()->add_in_use_added(b.hash());
  ASSERT_TRUE(s->rw->Write(ack));

  for (int i = 0; i < 100 && server_->NodesAcked(2).ready == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->NodesAcked(2).ready, 1);
  auto node = server_->Node("node-a");
  ASSERT_TRUE(node.has_value());
  EXPECT_TRUE(node->connected);
  EXPECT_EQ(node->acked_version, 2u);
  EXPECT_EQ(node->landlock_abi, 7);
  EXPECT_EQ(node->held.size(), 2u);
  EXPECT_EQ(server_->NodesHolding(a2.hash()).ready, 1);
  EXPECT_EQ(server_->NodesHolding(a.hash()).ready, 0);
  EXPECT_EQ(server_->HashesInUse(), std::vector<std::string>{b.hash()});
  EXPECT_EQ(node->in_use, std::vector<std::string>{b.hash()});
  EXPECT_EQ(server_->NodesHolding(a.hash()).total, 1);

  const Metrics m = server_->GetMetrics();
  EXPECT_EQ(m.snapshots_sent, 1u);
  EXPECT_EQ(m.deltas_sent, 1u);
  EXPECT_EQ(m.acks, 2u);
  EXPECT_EQ(m.policies_sent, 3u);
  // Versions 1 and 2 were made while the node was connected.
  EXPECT_EQ(m.distribution_latency.count, 2u);
  EXPECT_GT(m.distribution_latency.sum_seconds, 0);
  EXPECT_EQ(m.distribution_latency.counts.back(), 2u);

  // A node leaves by cancelling; a half-close is a protocol error.
  s->rw->WritesDone();
  EXPECT_EQ(s->rw->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  for (int i = 0; i < 100 && server_->GetMetrics().connected_nodes > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  node = server_->Node("node-a");
  ASSERT_TRUE(node.has_value());
  EXPECT_FALSE(node->connected);
  // What a disconnected node's containers use still counts (they may run).
  EXPECT_EQ(server_->HashesInUse(), std::vector<std::string>{b.hash()});
}

TEST_F(ServerTest, SnapshotSkipsBodiesTheNodeHolds) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy b = MakePolicy("team-a", "two", "2");
  ASSERT_TRUE(server_->SetDesired({a, b}, EntriesFor({a, b})).ok());
  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("node-a", {a.hash()})));
  auto snapshot = ReadVersion(*s);
  ASSERT_EQ(snapshot.size(), 1u);
  ASSERT_EQ(snapshot[0].policies_size(), 1);
  EXPECT_EQ(snapshot[0].policies(0).hash(), b.hash());
  EXPECT_EQ(snapshot[0].desired_hashes_size(), 2);
  // Connected after the version was made: no latency observed.
  ASSERT_TRUE(s->rw->Write(Ack(snapshot[0])));
  for (int i = 0; i < 100 && server_->GetMetrics().acks == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->GetMetrics().acks, 1u);
  EXPECT_EQ(server_->GetMetrics().distribution_latency.count, 0u);
}

TEST_F(ServerTest, LargeVersionsAreSplitIntoParts) {
  Start(1 << 20, /*part_bytes=*/64 << 10);
  std::vector<CompiledPolicy> policies;
  for (int i = 0; i < 40; ++i) {
    policies.push_back(MakePolicy("ns", "p" + std::to_string(i), "x", 20'000));
  }
  ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());
  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("node-a")));
  auto parts = ReadVersion(*s);
  EXPECT_GE(parts.size(), 10u);
  int bodies = 0;
  for (const auto& p : parts) {
    EXPECT_LE(p.ByteSizeLong(), (64u << 10) + 21'000u);
    bodies += p.policies_size();
  }
  EXPECT_EQ(bodies, 40);
}

TEST_F(ServerTest, RejectsMalformedReports) {
  const NodeReport no_hello;
  ExpectRejected(no_hello, nullptr, grpc::StatusCode::INVALID_ARGUMENT,
                 "must carry hello");
  ExpectRejected(Hello("Bad_Name"), nullptr, grpc::StatusCode::INVALID_ARGUMENT,
                 "not a Kubernetes node");
  ExpectRejected(Hello(std::string(300, 'a')), nullptr,
                 grpc::StatusCode::INVALID_ARGUMENT, "not a Kubernetes node");
  ExpectRejected(Hello("node-a", {"not-a-hash"}), nullptr,
                 grpc::StatusCode::INVALID_ARGUMENT, "is not a policy hash");
  NodeReport bad_abi = Hello("node-a");
  bad_abi.mutable_hello()->set_landlock_abi(-1);
  ExpectRejected(bad_abi, nullptr, grpc::StatusCode::INVALID_ARGUMENT,
                 "landlock_abi");
  NodeReport bad_version = Hello("node-a");
  bad_version.mutable_hello()->set_agent_version(std::string("\x01\x02", 2));
  ExpectRejected(bad_version, nullptr, grpc::StatusCode::INVALID_ARGUMENT,
                 "agent_version");
  NodeReport acks_first = Hello("node-a");
  acks_first.mutable_status()->mutable_applied()->set_version(1);
  ExpectRejected(acks_first, nullptr, grpc::StatusCode::INVALID_ARGUMENT,
                 "cannot remove or acknowledge");
  const NodeReport again = Hello("node-a");
  ExpectRejected(Hello("node-a"), &again, grpc::StatusCode::INVALID_ARGUMENT,
                 "hello is allowed in the first report only");
  NodeReport too_new;
  too_new.mutable_status()->mutable_applied()->set_server_id(
      server_->server_id());
  too_new.mutable_status()->mutable_applied()->set_version(99);
  ExpectRejected(Hello("node-a"), &too_new, grpc::StatusCode::INVALID_ARGUMENT,
                 "latest version is 0");
  NodeReport many_errors;
  for (int i = 0; i < 101; ++i) {
    many_errors.mutable_status()->add_errors()->set_message("x");
  }
  ExpectRejected(Hello("node-a"), &many_errors,
                 grpc::StatusCode::INVALID_ARGUMENT, "101 errors");
  NodeReport long_error;
  long_error.mutable_status()->add_errors()->set_message(
      std::string(5000, 'e'));
  ExpectRejected(Hello("node-a"), &long_error,
                 grpc::StatusCode::INVALID_ARGUMENT, "longer than 4096");
  NodeReport bad_profile;
  bad_profile.mutable_status()->add_profiles_added("bad profile\n");
  ExpectRejected(Hello("node-a"), &bad_profile,
                 grpc::StatusCode::INVALID_ARGUMENT, "AppArmor profile name");
  EXPECT_GE(server_->GetMetrics().streams_rejected, 12u);
  EXPECT_TRUE(log_.Contains("rejected a node's"));
}

TEST_F(ServerTest, OversizedAndGarbageMessagesEndOnlyTheirStream) {
  Start(/*max_report_bytes=*/64 << 10);
  // A report above the limit.
  NodeReport big = Hello("node-a");
  for (int i = 0; i < 2000; ++i) {
    big.mutable_status()->add_held_added(std::string(64, 'a'));
  }
  ASSERT_GT(big.ByteSizeLong(), 64u << 10);
  {
    auto s = Open();
    s->rw->Write(big);
    PolicyUpdate u;
    while (s->rw->Read(&u)) {
    }
    EXPECT_EQ(s->rw->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Bytes that are not a NodeReport.
  {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    grpc::CompletionQueue cq;
    auto call = generic.PrepareCall(
        &context, "/stockade.v1.PolicyDistribution/Sync", &cq);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    const std::string junk = "\xff\xff\xff\xff garbage \x0a\x80";
    grpc::Slice slice(junk);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    grpc::ByteBuffer response;
    call->Read(&response, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_FALSE(ok);  // The server ended the stream.
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(4));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_FALSE(status.ok());
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  // The server still serves.
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  ASSERT_TRUE(server_->SetDesired({a}, EntriesFor({a})).ok());
  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("node-b")));
  auto parts = ReadVersion(*s);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].policies_size(), 1);
}

TEST_F(ServerTest, ANewStreamOfTheSameNodeReplacesTheOld) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  ASSERT_TRUE(server_->SetDesired({a}, EntriesFor({a})).ok());
  auto first = Open();
  ASSERT_TRUE(first->rw->Write(Hello("node-a")));
  ASSERT_EQ(ReadVersion(*first).size(), 1u);
  auto second = Open();
  ASSERT_TRUE(second->rw->Write(Hello("node-a")));
  ASSERT_EQ(ReadVersion(*second).size(), 1u);
  PolicyUpdate u;
  while (first->rw->Read(&u)) {
  }
  EXPECT_EQ(first->rw->Finish().error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(server_->GetMetrics().connected_nodes, 1);
  EXPECT_EQ(server_->Nodes().size(), 1u);
}

TEST_F(ServerTest, SlowNodeGetsOneSnapshotInsteadOfAPileOfDeltas) {
  Start(1 << 20, 1 << 20, /*max_queued=*/2);
  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("slow")));
  for (int i = 0; i < 100 && server_->GetMetrics().connected_nodes == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  // 30 versions of 200 KB policies while the node reads nothing: the
  // transport's flow-control window fills and versions queue up.
  std::vector<CompiledPolicy> policies;
  for (int v = 0; v < 30; ++v) {
    policies.push_back(MakePolicy("ns", "p" + std::to_string(v), "x", 200'000));
    ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());
  }
  int snapshots = 0;
  uint64_t last = 0;
  while (last < 30) {
    auto parts = ReadVersion(*s);
    ASSERT_FALSE(parts.empty());
    if (parts[0].kind() == PolicyUpdate::SNAPSHOT) ++snapshots;
    if (parts[0].kind() == PolicyUpdate::DELTA) {
      EXPECT_EQ(parts[0].version(), last + 1);
    }
    last = parts[0].version();
  }
  EXPECT_GE(snapshots, 2);  // The first, and at least one collapse.
  EXPECT_LT(server_->GetMetrics().policies_sent, 30u * 31 / 2);
}

TEST_F(ServerTest, NodeCallbackAndHoldingCounts) {
  std::mutex mu;
  std::vector<std::string> events;
  server_->SetNodeCallback([&](const NodeInfo& info) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(absl::StrCat(info.name, info.connected ? " up " : " down ",
                                  info.acked_version));
  });
  CompiledPolicy a = MakePolicy("team-a", "one", "1");
  ASSERT_TRUE(server_->SetDesired({a}, EntriesFor({a})).ok());
  auto s = Open();
  NodeReport hello = Hello("node-a");
  hello.mutable_hello()->set_apparmor_enabled(true);
  ASSERT_TRUE(s->rw->Write(hello));
  auto parts = ReadVersion(*s);
  ASSERT_EQ(parts.size(), 1u);
  // Held, but AppArmor is enabled and the profile is not loaded: not ready.
  NodeReport ack = Ack(parts[0], {a.hash()});
  ASSERT_TRUE(s->rw->Write(ack));
  for (int i = 0; i < 100 && server_->NodesAcked(1).ready == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->NodesHolding(a.hash()).ready, 0);
  NodeReport loaded;
  loaded.mutable_status()->add_profiles_added(a.apparmor().name());
  *loaded.mutable_status()->mutable_applied() = ack.status().applied();
  ASSERT_TRUE(s->rw->Write(loaded));
  for (int i = 0; i < 100 && server_->NodesHolding(a.hash()).ready == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->NodesHolding(a.hash()).ready, 1);
  // An error about the policy: not ready.
  NodeReport error;
  auto* e = error.mutable_status()->add_errors();
  e->set_hash(a.hash());
  e->set_message("apparmor: cannot load");
  ASSERT_TRUE(s->rw->Write(error));
  for (int i = 0; i < 100 && server_->NodesHolding(a.hash()).ready == 1; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->NodesHolding(a.hash()).ready, 0);
  auto node = server_->Node("node-a");
  ASSERT_TRUE(node.has_value());
  ASSERT_EQ(node->errors.size(), 1u);
  EXPECT_EQ(node->errors[0].message, "apparmor: cannot load");
  EXPECT_EQ(node->profiles_loaded.size(), 1u);
  s->context.TryCancel();
  s->rw->Finish();
  for (int i = 0; i < 100 && server_->GetMetrics().connected_nodes > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front(), "node-a up 0");
  EXPECT_EQ(events.back(), "node-a down 0");
  EXPECT_THAT(events, ::testing::Contains("node-a up 1"));
}

TEST_F(ServerTest, ConcurrentNodesAndSetDesired) {
  // Eight nodes acknowledge everything while the desired state changes 50
  // times: every node ends on the last version, nothing crashes or hangs.
  std::atomic<bool> stop{false};
  std::vector<std::thread> nodes;
  for (int n = 0; n < 8; ++n) {
    nodes.emplace_back([&, n] {
      auto s = Open();
      if (!s->rw->Write(Hello("node-" + std::to_string(n)))) return;
      PolicyUpdate u;
      while (!stop && s->rw->Read(&u)) {
        if (u.last_part() && !s->rw->Write(Ack(u))) break;
      }
      s->context.TryCancel();
      s->rw->Finish();
    });
  }
  std::vector<CompiledPolicy> policies;
  for (int v = 0; v < 50; ++v) {
    policies.push_back(MakePolicy("ns", "p" + std::to_string(v % 10),
                                  std::to_string(v), 1000));
    if (policies.size() > 10) policies.erase(policies.begin());
    ASSERT_TRUE(server_->SetDesired(policies, EntriesFor(policies)).ok());
  }
  for (int i = 0; i < 500 && server_->NodesAcked(50).ready < 8; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->NodesAcked(50).ready, 8);
  stop = true;
  server_.reset();  // Ends the streams.
  for (auto& t : nodes) t.join();
}

// VmRSS of this process, in KiB.
int64_t RssKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

TEST_F(ServerTest, TenThousandPolicies) {
  // The server's own cost on top of the policies: SetDesired (validation,
  // delta), a snapshot to one node, a no-op SetDesired, a one-policy change.
  std::vector<PolicyPtr> policies;
  for (int i = 0; i < 10'000; ++i) {
    policies.push_back(*compiler::PackedPolicy::Pack(MakePolicy(
        "ns-" + std::to_string(i % 100), "p" + std::to_string(i), "1", 1000)));
  }
  std::vector<IndexEntry> index;
  for (const auto& p : policies) index.push_back(testing::EntryFor(*p));
  const int64_t rss_before = RssKiB();
  absl::Time t = absl::Now();
  ASSERT_TRUE(server_->SetDesired(policies, index).ok());
  const absl::Duration first = absl::Now() - t;
  const int64_t rss_after = RssKiB();

  auto s = Open();
  ASSERT_TRUE(s->rw->Write(Hello("node-a")));
  t = absl::Now();
  auto parts = ReadVersion(*s);
  const absl::Duration snapshot = absl::Now() - t;
  size_t bodies = 0;
  for (const auto& p : parts) bodies += p.policies_size();
  EXPECT_EQ(bodies, 10'000u);

  t = absl::Now();
  ASSERT_TRUE(server_->SetDesired(policies, index).ok());
  const absl::Duration same = absl::Now() - t;
  EXPECT_EQ(server_->version(), 1u);
  policies[5] =
      *compiler::PackedPolicy::Pack(MakePolicy("ns-5", "p5", "2", 1000));
  index[5] = testing::EntryFor(*policies[5]);
  t = absl::Now();
  ASSERT_TRUE(server_->SetDesired(policies, index).ok());
  const absl::Duration change = absl::Now() - t;
  auto delta = ReadVersion(*s);
  ASSERT_EQ(delta.size(), 1u);
  EXPECT_EQ(delta[0].policies_size(), 1);
  std::cout << "[distribution] 10,000 policies ("
            << policies[0]->serialized_size()
            << " bytes each): first SetDesired "
            << absl::ToDoubleMilliseconds(first) << " ms, unchanged "
            << absl::ToDoubleMilliseconds(same) << " ms, one changed "
            << absl::ToDoubleMilliseconds(change)
            << " ms; snapshot to one node "
            << absl::ToDoubleMilliseconds(snapshot) << " ms in " << parts.size()
            << " parts; server state " << (rss_after - rss_before)
            << " KiB beyond the shared policies\n";
}

}  // namespace
}  // namespace stockade::distribution
