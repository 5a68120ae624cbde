#include "node/denials/denial.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/denials/attribution.h"
#include "node/denials/denial_log.h"

namespace stockade::node::denials {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;

Denial Sample() {
  Denial d;
  d.time = absl::FromUnixMillis(1796564358894);
  d.node = "node-a";
  d.container_id = "c1";
  d.pod_namespace = "agents";
  d.pod_name = "research-0";
  d.container_name = "agent";
  d.agent = "research";
  d.policy_namespace = "agents";
  d.policy_name = "research";
  d.policy_hash = "ab12";
  d.layer = "seccomp";
  d.mode = "enforced";
  d.syscall = "unshare";
  d.pid = 7654;
  d.comm = "probe";
  d.exe = "/bin/probe";
  return d;
}

TEST(DenialTest, JsonLineRoundTrip) {
  Denial d = Sample();
  std::string line = d.ToLine();
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_THAT(line, ::testing::HasSubstr("\"policy\":\"agents/research\""));
  EXPECT_THAT(line, ::testing::HasSubstr("\"time\":\"2026-12-"));
  absl::StatusOr<Denial> back = Denial::FromLine(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToLine(), line);
  EXPECT_FALSE(Denial::FromLine("{").ok());
  EXPECT_FALSE(Denial::FromLine("{\"time\":\"yesterday\"}").ok());
}

// The node is the stream's (NodeHello), not each denial's.
TEST(DenialTest, ProtoRoundTrip) {
  Denial d = Sample();
  d.node.clear();
  d.layer = "apparmor";
  d.syscall.clear();
  d.operation = "open";
  d.path = "/etc/shadow";
  d.access = "r";
  EXPECT_EQ(Denial::FromProto(d.ToProto()).ToLine(), d.ToLine());
  d = Sample();
  d.node.clear();
  d.layer = "network";
  d.destination = "203.0.113.9";
  d.protocol = "tcp";
  d.port = 443;
  d.suppressed = 7;
  EXPECT_EQ(Denial::FromProto(d.ToProto()).ToLine(), d.ToLine());
}

TEST(DenialLogTest, RotatesAndReadsBackInOrder) {
  char tmpl[] = "/tmp/stockade-denial-log-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  {
    absl::StatusOr<DenialLog> log = DenialLog::Open(dir, /*max_bytes=*/1000);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < 20; ++i) {
      Denial d = Sample();
      d.pid = i;
      ASSERT_TRUE(log->Append(d).ok());
    }
  }
  EXPECT_TRUE(fs::exists(dir + "/denials.jsonl.1"));
  EXPECT_LE(fs::file_size(dir + "/denials.jsonl"), 1000u);
  EXPECT_LE(fs::file_size(dir + "/denials.jsonl.1"), 1000u);
  std::ofstream(dir + "/denials.jsonl", std::ios::app) << "not json\n";
  int skipped = 0;
  absl::StatusOr<std::vector<Denial>> all = ReadDenials(dir, &skipped);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(skipped, 1);
  ASSERT_FALSE(all->empty());
  EXPECT_EQ(all->back().pid, 19);  // the newest last
  for (size_t i = 1; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].pid, (*all)[i - 1].pid + 1);
  }
  fs::remove_all(dir);
  EXPECT_EQ(ReadDenials(dir).status().code(), absl::StatusCode::kNotFound);
}

TEST(AttributionTest, CgroupPathsNameTheContainer) {
  // cgroupfs as containerd's runc-v2 and the stockade shim make them.
  EXPECT_THAT(Attributor::Candidates("0::/\n4:pids:/attack-1/agent-x\n"),
              ElementsAre("agent-x", "attack-1"));
  // systemd cgroups under Kubernetes.
  EXPECT_THAT(
      Attributor::Candidates("0::/kubepods.slice/kubepods-pod12.slice/"
                             "cri-containerd-0123abcd.scope\n"),
      ElementsAre("0123abcd", "kubepods-pod12.slice", "kubepods.slice"));
  EXPECT_TRUE(Attributor::Candidates("garbage").empty());
}

}  // namespace
}  // namespace stockade::node::denials
