#include "operator/compiler/explain.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/compile.h"

namespace stockade::compiler {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

v1::CompiledPolicy Compile(const v1::AgentPolicySpec& spec) {
  v1::AgentPolicy p;
  p.mutable_metadata()->set_name("a");
  p.mutable_metadata()->set_namespace_("ns");
  *p.mutable_spec() = spec;
  CompileResult r = CompileAgentPolicy(p, {}, {});
  EXPECT_TRUE(r.compiled) << (r.problems.empty() ? ""
                                                 : r.problems[0].ToString());
  return r.compiled.value_or(v1::CompiledPolicy());
}

TEST(ExplainTest, EveryRuleWithItsLayers) {
  v1::AgentPolicySpec spec;
  spec.mutable_filesystem()->add_writable()->set_path("/tmp/agent");
  spec.mutable_exec()->add_allow("/usr/bin/python3");
  auto* rule = spec.mutable_network()->add_egress();
  rule->add_cidrs("10.0.0.0/8");
  rule->add_ports()->set_port(443);
  const std::string text = ExplainPolicy(Compile(spec));
  EXPECT_THAT(text, HasSubstr("Policy AgentPolicy ns/a"));
  EXPECT_THAT(text, HasSubstr("May write beneath /tmp/agent, at most 64Mi"));
  EXPECT_THAT(text, HasSubstr("May run /usr/bin/python3."));
  EXPECT_THAT(text, HasSubstr("including shells, pip, apt"));
  EXPECT_THAT(text, HasSubstr("May connect to 10.0.0.0/8 tcp/443."));
  EXPECT_THAT(text, HasSubstr("At most 128 processes"));
  EXPECT_THAT(text, HasSubstr("enforced by: seccomp"));
  EXPECT_THAT(text, HasSubstr("Landlock EXECUTE"));
}

TEST(DiffTest, GainedAndLost) {
  v1::AgentPolicySpec before;
  before.mutable_exec()->add_allow("/usr/bin/python3");
  before.mutable_processes()->set_max(64);
  v1::AgentPolicySpec after = before;
  after.mutable_exec()->add_allow("/bin/sh");
  after.mutable_processes()->set_max(32);
  after.mutable_syscalls()->add_allow("io_uring_setup");
  PolicyDiff d = DiffPolicies(Compile(before), Compile(after));
  EXPECT_THAT(d.gained, Contains("execute /bin/sh"));
  EXPECT_THAT(d.gained, Contains("call io_uring_setup"));
  EXPECT_THAT(d.lost, Contains(HasSubstr("run up to 64 processes (64 -> 32)")));
  EXPECT_THAT(d.ToString(), HasSubstr("+ execute /bin/sh"));
  EXPECT_TRUE(DiffPolicies(Compile(before), Compile(before)).empty());
}

}  // namespace
}  // namespace stockade::compiler
