#include "operator/controller/workload_guardrails.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::controller {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ParseImageTest, NormalizesLikeTheRuntimes) {
  ImageReference python = ParseImage("python:3.12");
  EXPECT_EQ(python.registry, "docker.io");
  EXPECT_EQ(python.repository, "docker.io/library/python");
  EXPECT_EQ(python.tag, "3.12");
  EXPECT_EQ(python.digest, "");

  ImageReference user = ParseImage("acme/agent");
  EXPECT_EQ(user.repository, "docker.io/acme/agent");
  EXPECT_EQ(user.tag, "");

  ImageReference port = ParseImage("localhost:5000/agent:v1@" + kDigest);
  EXPECT_EQ(port.registry, "localhost:5000");
  EXPECT_EQ(port.repository, "localhost:5000/agent");
  EXPECT_EQ(port.tag, "v1");
  EXPECT_EQ(port.digest, kDigest);

  EXPECT_EQ(ParseImage("ghcr.io/acme/tools/agent").registry, "ghcr.io");
}

TEST(PinnedByDigestTest, RequiresAFullSha256) {
  EXPECT_TRUE(PinnedByDigest("ghcr.io/acme/agent@" + kDigest));
  EXPECT_TRUE(PinnedByDigest("ghcr.io/acme/agent:v1@" + kDigest));
  EXPECT_FALSE(PinnedByDigest("ghcr.io/acme/agent:v1"));
  EXPECT_FALSE(PinnedByDigest("ghcr.io/acme/agent@sha256:abc"));
  EXPECT_FALSE(
      PinnedByDigest("ghcr.io/acme/agent@sha512:" + kDigest.substr(7)));
  EXPECT_FALSE(
      PinnedByDigest("ghcr.io/acme/agent@sha256:" + std::string(64, 'G')));
}

TEST(RegistryAllowsTest, MatchesWholePathComponents) {
  const ImageReference image = ParseImage("ghcr.io/acme/agent:v1");
  EXPECT_TRUE(RegistryAllows("ghcr.io", image));
  EXPECT_TRUE(RegistryAllows("ghcr.io/acme", image));
  EXPECT_TRUE(RegistryAllows("ghcr.io/acme/", image));
  EXPECT_TRUE(RegistryAllows("ghcr.io/acme/agent", image));
  EXPECT_FALSE(RegistryAllows("ghcr.io/ac", image));
  EXPECT_FALSE(RegistryAllows("ghcr.io/acme/agent2", image));
  EXPECT_FALSE(RegistryAllows("docker.io", image));
  EXPECT_TRUE(RegistryAllows("docker.io/library", ParseImage("python")));
}

v1::ClusterAgentPolicy Guard(const std::string& name) {
  v1::ClusterAgentPolicy c;
  c.mutable_metadata()->set_name(name);
  return c;
}

TEST(CheckWorkloadGuardrailsTest, EachViolationNamesFieldAndGuardrail) {
  v1::ClusterAgentPolicy c = Guard("workloads");
  v1::Guardrails* g = c.mutable_spec()->mutable_guardrails();
  g->set_require_image_digest(true);
  g->add_allowed_registries("registry.example.com");
  g->set_max_replicas(2);
  g->add_required_resource_limits("memory");
  g->add_required_resource_limits("cpu");
  v1::AgentSpec spec;
  spec.set_image("python:3.12");
  spec.set_replicas(3);
  (*spec.mutable_resources()->mutable_limits())["cpu"] = "1";

  std::vector<compiler::Problem> problems =
      CheckWorkloadGuardrails(spec, {c}, {});
  using P = compiler::Problem;
  EXPECT_THAT(
      problems,
      ElementsAre(
          AllOf(Field(&P::path, "spec.image"),
                Field(&P::message,
                      AllOf(HasSubstr("\"python:3.12\" is not pinned by "
                                      "digest"),
                            HasSubstr("ClusterAgentPolicy \"workloads\": "
                                      "guardrails.requireImageDigest")))),
          AllOf(Field(&P::path, "spec.image"),
                Field(&P::message,
                      AllOf(HasSubstr("docker.io/library/python"),
                            HasSubstr("guardrails.allowedRegistries: "
                                      "registry.example.com")))),
          AllOf(Field(&P::path, "spec.replicas"),
                Field(&P::message,
                      AllOf(HasSubstr("3 replicas exceed the maximum of 2"),
                            HasSubstr("guardrails.maxReplicas")))),
          AllOf(Field(&P::path, "spec.resources.limits.memory"),
                Field(&P::message,
                      HasSubstr("guardrails.requiredResourceLimits")))));

  // Within every guardrail: nothing.
  spec.set_image("registry.example.com/agents/research@" + kDigest);
  spec.set_replicas(2);
  (*spec.mutable_resources()->mutable_limits())["memory"] = "256Mi";
  EXPECT_THAT(CheckWorkloadGuardrails(spec, {c}, {}), IsEmpty());
}

TEST(CheckWorkloadGuardrailsTest, DefaultReplicasIsOneAndZeroMaxBlocksIt) {
  v1::ClusterAgentPolicy c = Guard("none");
  c.mutable_spec()->mutable_guardrails()->set_max_replicas(0);
  v1::AgentSpec spec;
  spec.set_image("python");
  EXPECT_THAT(CheckWorkloadGuardrails(spec, {c}, {}),
              ElementsAre(Field(&compiler::Problem::path, "spec.replicas")));
  spec.set_replicas(0);
  EXPECT_THAT(CheckWorkloadGuardrails(spec, {c}, {}), IsEmpty());
}

TEST(CheckWorkloadGuardrailsTest, OnlyGuardrailsSelectingTheNamespace) {
  v1::ClusterAgentPolicy c = Guard("prod-only");
  (*c.mutable_spec()
        ->mutable_namespace_selector()
        ->mutable_match_labels())["env"] = "prod";
  c.mutable_spec()->mutable_guardrails()->set_require_image_digest(true);
  v1::AgentSpec spec;
  spec.set_image("python:3.12");
  EXPECT_THAT(CheckWorkloadGuardrails(spec, {c}, {{"env", "dev"}}), IsEmpty());
  EXPECT_THAT(CheckWorkloadGuardrails(spec, {c}, {{"env", "prod"}}),
              ElementsAre(Field(&compiler::Problem::path, "spec.image")));
}

}  // namespace
}  // namespace stockade::controller
