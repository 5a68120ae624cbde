// Denials reported end to end: attacks run in real containers under a real
// containerd through containerd-shim-stockade-v1, the node agent collecting
// (stockade-node --denials-only --enable-audit, as a single host runs it)
// and `stockade denials` reading what it logged. Each attack must come out as
// exactly one structured denial naming its container, policy, layer and
// process; Complain mode lets the action through and reports it; a flood is
// rate-limited and counted.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/denials/denial_log.h"
#include "tests/support/confined_bed.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/netns.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {
namespace {

using node::denials::Denial;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: NAME, namespace: NS}
spec:
  mode: MODE
  filesystem:
    writable: [{path: /tmp/agent, sizeLimit: 1Mi}]
  exec:
    allow: [/bin/busybox, /bin/probe]
  processes: {max: 32}
)";

// The policy NAME, mode MODE (ConfinedBed::Install puts it in namespace NS).
std::string PolicyText(const std::string& name, const std::string& mode) {
  return absl::StrReplaceAll(kPolicy, {{"NAME", name}, {"MODE", mode}});
}

class DenialsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(geteuid(), 0) << "the denial tests need root";
    auto bed = ConfinedBed::Start("denials");
    ASSERT_TRUE(bed.ok()) << bed.status();
    bed_ = bed->release();
    hashes_ = new std::map<std::string, std::string>();
    for (const auto& [name, mode] :
         {std::pair<std::string, std::string>{"agent", "Enforce"},
          {"learner", "Complain"},
          {"egress", "Enforce"}}) {
      std::string text = PolicyText(name, mode);
      if (name == "egress") {
        // One test host (NetnsPair subnet 92), port 8080.
        text +=
            "  network:\n    egress: [{cidrs: [169.254.92.2/32], ports: "
            "[{port: 8080}]}]\n";
      }
      auto hash = bed_->Install(text);
      ASSERT_TRUE(hash.ok()) << hash.status();
      (*hashes_)[name] = *hash;
    }

    // The collector, as a single host runs it.
    log_path_ = new std::string(bed_->dir() + "/node.log");
    auto pid =
        SpawnDaemon({absl::StrCat(STOCKADE_BIN_DIR, "/stockade-node"),
                     "--denials-only", "--enable-audit", "--log-all-netns",
                     "--store", bed_->store(), "--node-name", "test-node",
                     "--denial-burst", "10", "--denial-rate", "2"},
                    {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, *log_path_);
    ASSERT_TRUE(pid.ok()) << pid.status();
    collector_pid_ = *pid;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline &&
           !absl::StrContains(NodeLog(), "collecting denials")) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_THAT(NodeLog(), HasSubstr("collecting denials"));
  }

  static void TearDownTestSuite() {
    if (collector_pid_ > 0) {
      kill(collector_pid_, SIGTERM);
      WaitForExit(collector_pid_, absl::Seconds(10));
    }
    delete bed_;
    bed_ = nullptr;
  }

  static std::string NodeLog() {
    std::ifstream in(*log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  CommandResult Run(const std::string& id, std::vector<std::string> cmd,
                    const std::string& policy = "agent",
                    const std::string& pod = "") {
    RunSpec spec;
    spec.id = id;
    spec.cmd = std::move(cmd);
    if (!pod.empty()) {  // what CRI sets on a pod's container
      spec.annotations = {
          {"io.kubernetes.cri.sandbox-namespace", bed_->ns()},
          {"io.kubernetes.cri.sandbox-name", pod},
          {"io.kubernetes.cri.container-name", "main"},
          // The Agent controller's, passed through as stockade.dev/*.
          {"stockade.dev/agent", "researcher"}};
    }
    return bed_->Run(spec, policy);
  }

  // The logged denials of container `id`, once `want` of them are there (or
  // after `wait`, whatever is there then).
  static std::vector<Denial> DenialsOf(
      const std::string& id, size_t want,
      absl::Duration wait = absl::Seconds(10)) {
    absl::Time deadline = absl::Now() + wait;
    std::vector<Denial> mine;
    while (true) {
      mine.clear();
      auto all =
          node::denials::ReadDenials(node::denials::DenialDir(bed_->store()));
      if (all.ok()) {
        for (const Denial& d : *all) {
          if (d.container_id == id) mine.push_back(d);
        }
      }
      if (mine.size() >= want || absl::Now() > deadline) return mine;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // The logged denials of container `id` once the first is there and
  // nothing more has come for half a second (one attack, all its records).
  static std::vector<Denial> SettledDenialsOf(const std::string& id) {
    DenialsOf(id, 1);
    absl::SleepFor(absl::Milliseconds(500));
    return DenialsOf(id, 1, absl::ZeroDuration());
  }

  static inline ConfinedBed* bed_ = nullptr;
  static inline std::string* log_path_ = nullptr;
  static inline std::map<std::string, std::string>* hashes_ = nullptr;
  static inline pid_t collector_pid_ = -1;
};

TEST_F(DenialsTest, SeccompDenialIsOneAttributedRecord) {
  CommandResult r =
      Run("seccomp", {"/bin/probe", "keyctl", "wait:300"}, "agent", "agent-0");
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("keyctl: EPERM"));
  std::vector<Denial> got = SettledDenialsOf("seccomp");
  ASSERT_EQ(got.size(), 1u) << NodeLog();
  const Denial& d = got[0];
  EXPECT_EQ(d.layer, "seccomp");
  EXPECT_EQ(d.mode, "enforced");
  EXPECT_EQ(d.syscall, "keyctl");
  EXPECT_EQ(d.policy_namespace, bed_->ns());
  EXPECT_EQ(d.policy_name, "agent");
  EXPECT_EQ(d.policy_hash, hashes_->at("agent"));
  EXPECT_EQ(d.node, "test-node");
  EXPECT_EQ(d.pod_namespace, bed_->ns());
  EXPECT_EQ(d.pod_name, "agent-0");
  EXPECT_EQ(d.container_name, "main");
  EXPECT_EQ(d.agent, "researcher");
  EXPECT_EQ(d.comm, "probe");
  EXPECT_GT(d.pid, 0);
}

TEST_F(DenialsTest, LandlockExecDenialIsOneAttributedRecord) {
  CommandResult r =
      Run("landlock", {"/bin/probe", "exec:/usr/bin/pip", "wait:300"});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("exec:/usr/bin/pip: EACCES"));
  std::vector<Denial> got = SettledDenialsOf("landlock");
  ASSERT_EQ(got.size(), 1u) << NodeLog();
  EXPECT_EQ(got[0].layer, "landlock");
  EXPECT_EQ(got[0].mode, "enforced");
  EXPECT_EQ(got[0].access, "fs.execute");
  EXPECT_EQ(got[0].path, "/usr/bin/pip");
  EXPECT_EQ(got[0].policy_name, "agent");
}

TEST_F(DenialsTest, LandlockConnectDenialIsOneAttributedRecord) {
  // The egress policy allows TCP port 8080 only: Landlock refuses a connect
  // to 9090 before any packet leaves (the container's own netns).
  CommandResult r =
      Run("portscan", {"/bin/probe", "connect:127.0.0.1:9090", "wait:300"},
          "egress");
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("connect:127.0.0.1:9090: EACCES"));
  std::vector<Denial> got = SettledDenialsOf("portscan");
  ASSERT_EQ(got.size(), 1u) << NodeLog();
  EXPECT_EQ(got[0].layer, "landlock");
  EXPECT_EQ(got[0].access, "net.connect_tcp");
  EXPECT_EQ(got[0].destination, "127.0.0.1");
  EXPECT_EQ(got[0].port, 9090);
  EXPECT_EQ(got[0].policy_name, "egress");
}

TEST_F(DenialsTest, AForkBombIsOneRecordOfThePidsLimit) {
  // processes.max 32: the pids controller refuses the 33rd; the kernel says
  // so once per container.
  CommandResult r = Run("forkbomb", {"/bin/sh", "-c",
                                     "i=0; while [ $i -lt 100 ]; do sleep 3 & "
                                     "i=$((i+1)); done; wait"});
  EXPECT_THAT(r.out + r.err, HasSubstr("can't fork"));
  std::vector<Denial> got = SettledDenialsOf("forkbomb");
  ASSERT_EQ(got.size(), 1u) << NodeLog();
  EXPECT_EQ(got[0].layer, "pids");
  EXPECT_EQ(got[0].mode, "enforced");
  EXPECT_EQ(got[0].operation, "fork");
  EXPECT_EQ(got[0].access, "pids.max 32");
  EXPECT_EQ(got[0].policy_name, "agent");
  EXPECT_EQ(got[0].policy_hash, hashes_->at("agent"));
}

TEST_F(DenialsTest, EgressDropIsOneAttributedRecord) {
  NetnsPair::Options options;
  options.subnet = 92;
  absl::StatusOr<std::unique_ptr<NetnsPair>> pair = NetnsPair::Create(options);
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE((*pair)->Listen({8080}).ok());
  const std::vector<std::string> hosts = (*pair)->remote_ips();
  ASSERT_GE(hosts.size(), 2u);
  RunSpec spec;
  spec.id = "exfil";
  spec.cmd = {"/bin/probe", "connect:" + hosts[1] + ":8080", "wait:300"};
  spec.netns_path = (*pair)->client_path();
  CommandResult r = bed_->Run(spec, "egress");
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("ETIMEDOUT"));  // dropped silently
  std::vector<Denial> got = SettledDenialsOf("exfil");
  // The SYN and its retransmissions: one denial.
  std::string lines;
  for (const Denial& d : got) lines += d.ToLine() + "\n";
  ASSERT_EQ(got.size(), 1u) << lines << NodeLog();
  EXPECT_EQ(got[0].layer, "network");
  EXPECT_EQ(got[0].mode, "enforced");
  EXPECT_EQ(got[0].destination, hosts[1]);
  EXPECT_EQ(got[0].port, 8080);
  EXPECT_EQ(got[0].protocol, "tcp");
  EXPECT_EQ(got[0].policy_name, "egress");
  EXPECT_EQ(got[0].policy_hash, hashes_->at("egress"));
}

TEST_F(DenialsTest, ComplainModeLetsTheCallThroughAndReportsIt) {
  CommandResult r =
      Run("learner", {"/bin/probe", "keyctl", "exec:/usr/bin/pip", "wait:300"},
          "learner");
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("keyctl: EPERM")));
  // The exec happens (busybox as "pip" then fails: no such applet).
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("exec:/usr/bin/pip: EACCES")));
  std::vector<Denial> got = DenialsOf("learner", 1);
  bool keyctl = false;
  for (const Denial& d : got) {
    EXPECT_EQ(d.mode, "complained");
    EXPECT_EQ(d.policy_name, "learner");
    keyctl = keyctl || d.syscall == "keyctl";
  }
  EXPECT_TRUE(keyctl) << NodeLog();
}

TEST_F(DenialsTest, AFloodIsRateLimitedAndCounted) {
  std::vector<std::string> cmd = {"/bin/probe"};
  for (int i = 0; i < 200; ++i) cmd.push_back("unshare");
  cmd.push_back("wait:300");
  CommandResult r = Run("flood", cmd);
  ASSERT_TRUE(r.ok()) << r.ToString();
  // The burst (10) is logged; the rest is counted in summary records once
  // the container goes quiet.
  std::vector<Denial> got = DenialsOf("flood", 11, absl::Seconds(15));
  int64_t logged = 0, suppressed = 0;
  std::string lines;
  for (const Denial& d : got) {
    lines += d.ToLine() + "\n";
    if (d.suppressed > 0) {
      suppressed += d.suppressed;
    } else {
      ++logged;
      EXPECT_EQ(d.syscall, "unshare");
    }
  }
  EXPECT_LE(logged, 12) << "burst 10, refilled at 2/s\n" << lines;
  EXPECT_GE(logged, 10) << lines;
  EXPECT_GT(suppressed, 0) << lines << NodeLog();
  EXPECT_LE(logged + suppressed, 200) << lines;
}

TEST_F(DenialsTest, StockadeDenialsShowsThem) {
  ASSERT_TRUE(
      Run("shown", {"/bin/probe", "ptrace", "wait:300"}, "agent", "shown-0")
          .ok());
  ASSERT_EQ(DenialsOf("shown", 1).size(), 1u) << NodeLog();
  CommandResult table =
      RunCommand({absl::StrCat(STOCKADE_BIN_DIR, "/stockade"), "denials",
                  "--store", bed_->store(), "--container", "shown"});
  ASSERT_TRUE(table.ok()) << table.ToString();
  EXPECT_THAT(table.out, HasSubstr("LAYER"));
  EXPECT_THAT(table.out, HasSubstr("ptrace"));
  EXPECT_THAT(table.out, HasSubstr(absl::StrCat(bed_->ns(), "/agent")));
  EXPECT_THAT(table.out, HasSubstr("shown-0/main"));
  EXPECT_THAT(table.out, HasSubstr("researcher"));
  // By Agent: this one is the researcher's, none is the coder's.
  CommandResult by_agent =
      RunCommand({absl::StrCat(STOCKADE_BIN_DIR, "/stockade"), "denials",
                  "--store", bed_->store(), "--agent", "researcher"});
  ASSERT_TRUE(by_agent.ok()) << by_agent.ToString();
  EXPECT_THAT(by_agent.out, HasSubstr("shown-0/main"));
  CommandResult other =
      RunCommand({absl::StrCat(STOCKADE_BIN_DIR, "/stockade"), "denials",
                  "--store", bed_->store(), "--agent", "coder"});
  ASSERT_TRUE(other.ok()) << other.ToString();
  EXPECT_EQ(other.out, "No denials.\n");
  CommandResult json = RunCommand({absl::StrCat(STOCKADE_BIN_DIR, "/stockade"),
                                   "denials", "--store", bed_->store(),
                                   "--container", "shown", "-o", "json"});
  ASSERT_TRUE(json.ok()) << json.ToString();
  auto d = Denial::FromLine(absl::StripTrailingAsciiWhitespace(json.out));
  ASSERT_TRUE(d.ok()) << json.out;
  EXPECT_EQ(d->syscall, "ptrace");
}

// stockade suggest on a recorded run: under the drafted policy the same run
// passes, and the rest of the attack matrix is still denied.
TEST_F(DenialsTest, SuggestDraftsAPolicyUnderWhichTheRunPasses) {
  const std::vector<std::string> run = {"/bin/probe", "keyctl",
                                        "exec:/usr/bin/pip", "wait:300"};
  CommandResult before = Run("recorded", run);
  ASSERT_TRUE(before.ok()) << before.ToString();
  EXPECT_THAT(before.out, HasSubstr("keyctl: EPERM"));
  EXPECT_THAT(before.out, HasSubstr("exec:/usr/bin/pip: EACCES"));
  ASSERT_GE(DenialsOf("recorded", 2).size(), 2u) << NodeLog();

  const std::string policy_file = bed_->dir() + "/agent.yaml";
  std::ofstream(policy_file) << absl::StrReplaceAll(
      PolicyText("agent", "Enforce"), {{"NS", bed_->ns()}});
  const std::string stockade = absl::StrCat(STOCKADE_BIN_DIR, "/stockade");
  CommandResult draft =
      RunCommand({stockade, "suggest", "--policy", policy_file, "--store",
                  bed_->store(), "--container", "recorded"});
  ASSERT_TRUE(draft.ok()) << draft.ToString();
  EXPECT_THAT(draft.err, HasSubstr("+ syscalls.allow keyctl"));
  EXPECT_THAT(draft.err, HasSubstr("+ exec.allow /usr/bin/pip"));
  // Installed under a name of its own, the draft is a valid policy.
  const std::string draft_file = bed_->dir() + "/suggested.yaml";
  std::ofstream(draft_file)
      << absl::StrReplaceAll(draft.out, {{"name: agent", "name: suggested"}});
  CommandResult installed =
      RunCommand({stockade, "install", "--store", bed_->store(), draft_file});
  ASSERT_TRUE(installed.ok()) << installed.ToString() << draft.out;

  CommandResult after = Run("replayed", run, "suggested");
  ASSERT_TRUE(after.ok()) << after.ToString();
  EXPECT_THAT(after.out, ::testing::Not(HasSubstr("keyctl: EPERM")));
  EXPECT_THAT(after.out,
              ::testing::Not(HasSubstr("exec:/usr/bin/pip: EACCES")));
  CommandResult rest = Run("rest",
                           {"/bin/probe", "unshare", "ptrace", "mount", "bpf",
                            "write:/etc/passwd", "exec:/usr/bin/other"},
                           "suggested");
  ASSERT_TRUE(rest.ok()) << rest.ToString();
  for (const char* denied :
       {"unshare: EPERM", "ptrace: EPERM", "mount: EPERM", "bpf: EPERM",
        "write:/etc/passwd: EROFS", "exec:/usr/bin/other: EACCES"}) {
    EXPECT_THAT(rest.out, HasSubstr(denied));
  }
}

}  // namespace
}  // namespace stockade::testing
