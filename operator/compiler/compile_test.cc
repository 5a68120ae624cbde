#include "operator/compiler/compile.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

using ::testing::HasSubstr;

std::string ReadExample(const std::string& name) {
  const char* root = std::getenv("STOCKADE_SOURCE_DIR");
  std::ifstream in(std::string(root ? root : ".") + "/examples/policies/" +
                   name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

v1::AgentPolicy Example(const std::string& name) {
  DecodeResult r = DecodeManifests(ReadExample(name), name);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.documents.size(), 1u);
  return std::get<v1::AgentPolicy>(r.documents.at(0).object);
}

v1::ClusterAgentPolicy Guardrails() {
  DecodeResult r = DecodeManifests(ReadExample("cluster-guardrails.yaml"), "g");
  EXPECT_TRUE(r.problems.empty());
  return std::get<v1::ClusterAgentPolicy>(r.documents.at(0).object);
}

TEST(CompileTest, DeterministicBytesAndHash) {
  v1::AgentPolicy p = Example("research-agent.yaml");
  CompileResult a = CompileAgentPolicy(p, {}, {});
  CompileResult b = CompileAgentPolicy(p, {}, {});
  ASSERT_TRUE(a.compiled && b.compiled);
  EXPECT_EQ(a.compiled->SerializeAsString(), b.compiled->SerializeAsString());
  EXPECT_TRUE(std::regex_match(a.compiled->hash(), std::regex("[0-9a-f]{64}")));
  EXPECT_EQ(
      a.compiled->apparmor().name(),
      "stockade.agents.research-agent." + a.compiled->hash().substr(0, 12));
  EXPECT_THAT(a.compiled->apparmor().text(),
              HasSubstr(a.compiled->apparmor().name()));
  EXPECT_EQ(a.compiled->source().kind(), "AgentPolicy");
  EXPECT_EQ(a.compiled->compiler_version(), kCompilerVersion);
}

TEST(CompileTest, HashFollowsMeaningNotSpelling) {
  v1::AgentPolicy p = Example("research-agent.yaml");
  const std::string base = CompileAgentPolicy(p, {}, {}).compiled->hash();
  v1::AgentPolicy same = p;
  same.mutable_spec()
      ->mutable_filesystem()
      ->mutable_writable(0)
      ->set_size_limit("67108864");
  same.mutable_metadata()->set_generation(7);
  EXPECT_EQ(CompileAgentPolicy(same, {}, {}).compiled->hash(), base);
  v1::AgentPolicy other = p;
  other.mutable_spec()->mutable_processes()->set_max(65);
  EXPECT_NE(CompileAgentPolicy(other, {}, {}).compiled->hash(), base);
  v1::AgentPolicy renamed = p;
  renamed.mutable_metadata()->set_name("other");
  EXPECT_NE(CompileAgentPolicy(renamed, {}, {}).compiled->hash(), base);
}

TEST(CompileTest, GuardrailsShapeEveryLayer) {
  v1::AgentPolicy p = Example("research-agent.yaml");
  CompileResult r =
      CompileAgentPolicy(p, {Guardrails()}, {{"stockade.dev/enforce", "true"}});
  ASSERT_TRUE(r.compiled) << r.problems.at(0).ToString();
  EXPECT_THAT(r.compiled->source().guardrails(),
              testing::ElementsAre("baseline"));
  const auto& e = r.compiled->effective();
  EXPECT_THAT(e.filesystem().deny(),
              testing::Contains("/var/run/secrets/kubernetes.io"));
  // Guardrail-denied syscalls appear in no unconditional allow rule.
  nlohmann::json j = nlohmann::json::parse(r.compiled->seccomp_json());
  for (const auto& rule : j["syscalls"]) {
    if (rule["action"] != "SCMP_ACT_ALLOW") continue;
    for (const auto& name : rule["names"]) {
      EXPECT_NE(name, "ptrace");
      EXPECT_NE(name, "userfaultfd");
      EXPECT_NE(name, "process_vm_readv");
    }
  }
  // The OCI changes hold the process limit and the masked deny paths.
  EXPECT_EQ(r.compiled->oci().pids_limit(), 64);
  EXPECT_THAT(r.compiled->oci().masked_paths(),
              testing::Contains("/var/run/secrets/kubernetes.io"));
}

TEST(CompileTest, ViolationsAreProblemsNotPolicies) {
  v1::AgentPolicy p = Example("research-agent.yaml");
  p.mutable_spec()->mutable_exec()->add_allow("/usr/bin/pip3");
  p.mutable_spec()->mutable_capabilities()->add_add("SYS_ADMIN");
  CompileResult r =
      CompileAgentPolicy(p, {Guardrails()}, {{"stockade.dev/enforce", "true"}});
  EXPECT_FALSE(r.compiled);
  ASSERT_EQ(r.problems.size(), 2u);
  EXPECT_EQ(r.problems[0].path, "spec.exec.allow[2]");
  EXPECT_THAT(r.problems[0].message, HasSubstr("/usr/bin/pip3"));
  EXPECT_THAT(r.problems[1].message, HasSubstr("SYS_ADMIN"));
}

TEST(CompileTest, GuardrailNotSelectingNamespaceDoesNotApply) {
  v1::AgentPolicy p = Example("research-agent.yaml");
  p.mutable_spec()->mutable_capabilities()->add_add("SYS_ADMIN");
  CompileResult r = CompileAgentPolicy(p, {Guardrails()}, {});
  ASSERT_TRUE(r.compiled);
  EXPECT_TRUE(r.compiled->source().guardrails().empty());
}

}  // namespace
}  // namespace stockade::compiler
