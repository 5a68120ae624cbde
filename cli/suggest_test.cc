#include "cli/suggest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::cli {
namespace {

using node::denials::Denial;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Denial Of(std::string layer) {
  Denial d;
  d.layer = std::move(layer);
  d.mode = "enforced";
  return d;
}

TEST(SuggestTest, LeastAdditionsForEachLayer) {
  v1::AgentPolicy policy;
  policy.mutable_metadata()->set_name("agent");
  policy.mutable_spec()->mutable_syscalls()->add_deny("ptrace");
  policy.mutable_spec()->mutable_filesystem()->add_deny("/etc/shadow");
  auto* w = policy.mutable_spec()->mutable_filesystem()->add_writable();
  w->set_path("/tmp/agent");
  std::vector<Denial> denials;
  Denial seccomp = Of("seccomp");
  seccomp.syscall = "keyctl";
  denials.push_back(seccomp);
  denials.push_back(seccomp);  // twice: one change, counted
  Denial traced = Of("seccomp");
  traced.syscall = "ptrace";
  denials.push_back(traced);
  Denial exec = Of("landlock");
  exec.access = "fs.execute";
  exec.path = "/usr/bin/git";
  denials.push_back(exec);
  Denial write = Of("landlock");
  write.access = "fs.make_reg";
  write.path = "/workspace/out.txt";
  denials.push_back(write);
  Denial inside = Of("landlock");
  inside.access = "fs.write_file";
  inside.path = "/tmp/agent/x";  // writable already: nothing to add
  denials.push_back(inside);
  Denial shadow = Of("landlock");
  shadow.access = "fs.read_file";
  shadow.path = "/etc/shadow";
  denials.push_back(shadow);
  Denial net = Of("network");
  net.destination = "203.0.113.9";
  net.protocol = "tcp";
  net.port = 443;
  denials.push_back(net);
  Denial fork = Of("pids");
  fork.operation = "fork";
  fork.access = "pids.max 32";
  denials.push_back(fork);  // a limit: noted, never raised
  Denial summary = Of("seccomp");
  summary.suppressed = 50;  // a rate-limit summary asks for nothing
  denials.push_back(summary);

  std::vector<std::string> changes = SuggestAdditions(denials, &policy);
  EXPECT_THAT(changes, Contains("+ syscalls.allow keyctl  (2 denials)"));
  EXPECT_THAT(changes, Contains("- syscalls.deny ptrace  (1 denial)"));
  EXPECT_THAT(changes, Contains("+ exec.allow /usr/bin/git  (1 denial)"));
  EXPECT_THAT(changes,
              Contains("+ filesystem.writable /workspace  (1 denial)"));
  EXPECT_THAT(changes,
              Contains("+ network.egress 203.0.113.9/32 port 443  (1 denial)"));
  EXPECT_THAT(changes,
              Contains(HasSubstr("/etc/shadow is in filesystem.deny")));
  EXPECT_THAT(changes, Contains(HasSubstr(
                           "processes.max refused a fork (pids.max 32): left "
                           "as is")));
  EXPECT_FALSE(policy.spec().has_processes());
  const v1::AgentPolicySpec& spec = policy.spec();
  EXPECT_THAT(spec.syscalls().allow(), ElementsAre("keyctl"));
  EXPECT_TRUE(spec.syscalls().deny().empty());
  EXPECT_THAT(spec.exec().allow(), ElementsAre("/usr/bin/git"));
  ASSERT_EQ(spec.filesystem().writable_size(), 2);
  EXPECT_EQ(spec.filesystem().writable(1).path(), "/workspace");
  EXPECT_THAT(spec.filesystem().deny(), ElementsAre("/etc/shadow"));
  ASSERT_EQ(spec.network().egress_size(), 1);
  EXPECT_EQ(spec.network().egress(0).ports(0).port(), 443);
  // The YAML names the fields as the CRD does.
  std::string yaml = PolicyYaml(policy);
  EXPECT_THAT(yaml, HasSubstr("kind: AgentPolicy"));
  EXPECT_THAT(yaml, HasSubstr("sizeLimit: 64Mi"));
}

}  // namespace
}  // namespace stockade::cli
