#include "operator/compiler/validate.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Problems(absl::string_view yaml) {
  DecodeResult r = DecodeManifests(
      absl::StrCat("apiVersion: stockade.dev/v1alpha1\nkind: AgentPolicy\n"
                   "metadata:\n  name: a\nspec:\n",
                   yaml),
      "p.yaml");
  std::vector<std::string> out;
  for (const auto& p : r.problems) out.push_back(p.ToString());
  for (const auto& d : r.documents) {
    for (const auto& p : ValidateDocument(d)) out.push_back(p.ToString());
  }
  return out;
}

TEST(ValidateTest, ValidPolicyHasNoProblems) {
  EXPECT_THAT(
      Problems("  filesystem:\n    writable: [{path: /tmp/a, sizeLimit: 1Gi}]\n"
               "  exec:\n    allow: [/usr/bin/python3, /opt/tools/]\n"
               "  syscalls:\n    allow: [io_uring_setup]\n    deny: [ptrace]\n"
               "  capabilities:\n    add: [NET_BIND_SERVICE, CAP_CHOWN]\n"),
      testing::IsEmpty());
}

TEST(ValidateTest, RelativeAndDotDotPaths) {
  auto p = Problems(
      "  filesystem:\n    writable:\n      - path: /tmp/../etc\n"
      "    readOnly: [/a/./b]\n");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0], HasSubstr("p.yaml:8: spec.filesystem.writable[0].path: "
                              "\"/tmp/../etc\" contains a \"..\" component"));
  EXPECT_THAT(p[1], HasSubstr("spec.filesystem.readOnly[0]"));
}

TEST(ValidateTest, WritableAndDeniedConflict) {
  auto p = Problems(
      "  filesystem:\n    writable:\n      - path: /data/x\n"
      "    deny: [/data]\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0], HasSubstr("\"/data/x\" is both writable and denied"));
}

TEST(ValidateTest, WritableInsideReadOnly) {
  auto p = Problems(
      "  filesystem:\n    writable:\n      - path: /etc/app\n"
      "    readOnly: [/etc]\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0],
              HasSubstr("p.yaml:8: spec.filesystem.writable[0].path: "
                        "\"/etc/app\" lies in the read-only path \"/etc\""));
}

TEST(ValidateTest, KernelFilesystemsAndRootNotWritable) {
  auto p = Problems(
      "  filesystem:\n    writable:\n      - path: /proc/sys\n"
      "      - path: /\n");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0], HasSubstr("kernel filesystem"));
  EXPECT_THAT(p[1], HasSubstr("readOnlyRoot: false"));
}

TEST(ValidateTest, BadCidrsAndPorts) {
  auto p = Problems(
      "  network:\n    egress:\n      - cidrs: [10.0.0.1/8, 300.1.1.1, "
      "\"::1/129\", 10.0.0.0/8]\n        ports:\n"
      "          - {port: 443, endPort: 80}\n");
  ASSERT_EQ(p.size(), 4u) << testing::PrintToString(p);
  EXPECT_THAT(p[0], HasSubstr("has host bits set; did you mean 10.0.0.0/8?"));
  EXPECT_THAT(p[1], HasSubstr("bad IPv4 address"));
  EXPECT_THAT(p[2], HasSubstr("prefix length must be 0 to 128"));
  EXPECT_THAT(p[3], HasSubstr("endPort 80 is below port 443"));
}

TEST(ValidateTest, UnknownSyscallsAndCapabilities) {
  auto p = Problems(
      "  syscalls:\n    allow: [not_a_syscall, read]\n    deny: [read]\n"
      "  capabilities:\n    add: [SUPERPOWER]\n");
  ASSERT_EQ(p.size(), 3u) << testing::PrintToString(p);
  EXPECT_THAT(p[0], HasSubstr("unknown syscall \"not_a_syscall\""));
  EXPECT_THAT(p[1], HasSubstr("\"read\" is in both allow and deny"));
  EXPECT_THAT(p[2], HasSubstr("unknown capability \"SUPERPOWER\""));
}

TEST(ValidateTest, BadQuantities) {
  auto p = Problems(
      "  filesystem:\n    writable:\n      - {path: /a, sizeLimit: 64MB}\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0],
              HasSubstr("sizeLimit: \"64MB\" does not match the pattern"));
  p = Problems(
      "  filesystem:\n    writable:\n      - {path: /b, sizeLimit: 1Ti}\n"
      "      - {path: /c, sizeLimit: \"0\"}\n");
  ASSERT_EQ(p.size(), 2u) << testing::PrintToString(p);
  EXPECT_THAT(p[0], HasSubstr("larger than the most"));
  EXPECT_THAT(p[1], HasSubstr("greater than zero"));
}

TEST(ValidateTest, ExecInsideDeniedAndExecRoot) {
  auto p = Problems(
      "  filesystem:\n    deny: [/opt/secret]\n"
      "  exec:\n    allow: [/opt/secret/tool, /]\n");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0], HasSubstr("lies in the denied path"));
  EXPECT_THAT(p[1], HasSubstr("defeats the exec allowlist"));
}

TEST(ValidateTest, AgentNeedsExactlyOnePolicy) {
  DecodeResult r = DecodeManifests(
      "apiVersion: stockade.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: a\n"
      "spec:\n  image: x\n  resources:\n    limits: {cpu: lots}\n",
      "a.yaml");
  ASSERT_EQ(r.documents.size(), 1u);
  auto p = ValidateDocument(r.documents[0]);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0].ToString(), HasSubstr("exactly one of policyRef or policy"));
  EXPECT_THAT(p[1].ToString(), HasSubstr("spec.resources.limits.cpu: \"lots\" "
                                         "is not a quantity"));
}

}  // namespace
}  // namespace stockade::compiler
