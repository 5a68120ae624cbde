#include "operator/compiler/manifest/manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> ProblemLines(absl::string_view text) {
  std::vector<std::string> out;
  for (const auto& p : DecodeManifests(text, "f.yaml").problems) {
    out.push_back(p.ToString());
  }
  return out;
}

constexpr char kHeader[] =
    "apiVersion: stockade.dev/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: "
    "a\nspec:\n";

TEST(ManifestTest, DecodesPolicyWithDefaultsNamespace) {
  DecodeResult r = DecodeManifests(
      std::string(kHeader) +
          "  mode: Complain\n  filesystem:\n    writable:\n      - path: /tmp\n"
          "        sizeLimit: 1Mi\n  processes:\n    max: 10\n",
      "f.yaml");
  ASSERT_TRUE(r.problems.empty()) << r.problems[0].ToString();
  ASSERT_EQ(r.documents.size(), 1u);
  const auto& p = std::get<v1::AgentPolicy>(r.documents[0].object);
  EXPECT_EQ(p.metadata().namespace_(), "default");
  EXPECT_EQ(p.spec().mode(), v1::MODE_COMPLAIN);
  EXPECT_EQ(p.spec().filesystem().writable(0).path(), "/tmp");
  EXPECT_EQ(p.spec().processes().max(), 10);
  EXPECT_TRUE(p.spec().processes().has_max());
  EXPECT_FALSE(p.spec().filesystem().has_read_only_root());
  EXPECT_EQ(r.documents[0].LineOf("spec.filesystem.writable[0].path"), 9);
}

TEST(ManifestTest, UnknownFieldNamesLineAndAllowed) {
  auto lines = ProblemLines(std::string(kHeader) + "  filesytem: {}\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("f.yaml:6: spec.filesytem: unknown field"));
  EXPECT_THAT(lines[0], HasSubstr("filesystem"));
}

TEST(ManifestTest, WrongTypes) {
  auto lines =
      ProblemLines(std::string(kHeader) +
                   "  processes:\n    max: \"64\"\n"
                   "  filesystem:\n    readOnlyRoot: yes\n"
                   "    deny: /etc\n"
                   "  network:\n    egress:\n      - cidrs: [1.2.3.4/32]\n"
                   "        ports:\n          - port: 70000\n");
  ASSERT_EQ(lines.size(), 4u) << testing::PrintToString(lines);
  EXPECT_THAT(lines[0], HasSubstr("f.yaml:7: spec.processes.max: expected an "
                                  "integer, got a string"));
  EXPECT_THAT(lines[1],
              HasSubstr("spec.filesystem.readOnlyRoot: expected a boolean"));
  EXPECT_THAT(lines[2], HasSubstr("spec.filesystem.deny: expected a list"));
  EXPECT_THAT(lines[3], HasSubstr("f.yaml:15: spec.network.egress[0].ports[0]"
                                  ".port: 70000 is above the maximum 65535"));
}

TEST(ManifestTest, EnumSpellingsAndPatterns) {
  auto lines = ProblemLines(std::string(kHeader) +
                            "  mode: enforce\n  exec:\n    allow: [bin/sh]\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("unsupported value \"enforce\"; allowed: "
                                  "Enforce, Complain"));
  EXPECT_THAT(lines[1], HasSubstr("spec.exec.allow[0]: \"bin/sh\" does not "
                                  "match the pattern ^/"));
}

TEST(ManifestTest, NumberWhereStringExpected) {
  auto lines = ProblemLines(std::string(kHeader) +
                            "  filesystem:\n    writable:\n      - path: /x\n"
                            "        sizeLimit: 64\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("expected a string, got an integer (quote "
                                  "it: \"64\")"));
}

TEST(ManifestTest, DuplicatesInSetsAndRequired) {
  auto lines = ProblemLines(std::string(kHeader) +
                            "  filesystem:\n    deny: [/a, /a]\n    "
                            "writable:\n      - sizeLimit: 1Mi\n");
  ASSERT_EQ(lines.size(), 2u) << testing::PrintToString(lines);
  EXPECT_THAT(lines[0], HasSubstr("duplicate entry \"/a\""));
  EXPECT_THAT(lines[1],
              HasSubstr("spec.filesystem.writable[0].path: required"));
}

TEST(ManifestTest, MultiDocumentSkipsOtherGroupsAndChecksVersion) {
  DecodeResult r = DecodeManifests(
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: agents\n---\n" +
          std::string(kHeader) +
          "  mode: Enforce\n---\n"
          "apiVersion: stockade.dev/v1\nkind: AgentPolicy\n---\n"
          "apiVersion: stockade.dev/v1alpha1\nkind: Pod\n",
      "f.yaml");
  EXPECT_EQ(r.documents.size(), 1u);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_EQ(r.skipped[0], "Namespace agents");
  ASSERT_EQ(r.problems.size(), 2u);
  EXPECT_THAT(r.problems[0].ToString(),
              HasSubstr("f.yaml:13: apiVersion: unsupported version"));
  EXPECT_THAT(r.problems[1].ToString(), HasSubstr("unsupported kind \"Pod\""));
}

TEST(ManifestTest, ClusterScopedRejectsNamespaceAndNamesChecked) {
  auto lines = ProblemLines(
      "apiVersion: stockade.dev/v1alpha1\nkind: ClusterAgentPolicy\n"
      "metadata:\n  name: Bad_Name\n  namespace: x\nspec: {}\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0],
              HasSubstr("metadata.name: \"Bad_Name\" is not a valid name"));
  EXPECT_THAT(lines[1], HasSubstr("cluster-scoped"));
}

TEST(ManifestTest, JsonInput) {
  DecodeResult r = DecodeManifests(
      R"({"apiVersion":"stockade.dev/v1alpha1","kind":"AgentPolicy",
          "metadata":{"name":"j","namespace":"n"},
          "spec":{"processes":{"max":5},"exec":{"allow":["/bin/x"]}}})",
      "f.json");
  ASSERT_TRUE(r.problems.empty()) << r.problems[0].ToString();
  const auto& p = std::get<v1::AgentPolicy>(r.documents[0].object);
  EXPECT_EQ(p.spec().processes().max(), 5);
}

TEST(ManifestTest, SyntaxErrorHasLine) {
  auto lines = ProblemLines("a: [1, 2\nb: c\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("not valid YAML or JSON"));
}

TEST(ManifestTest, MalformedDocumentsNeitherHangNorVanish) {
  // yaml-cpp's LoadAll loops forever on this; Load reads null from it.
  auto lines = ProblemLines(", no\nkey: v\n---\n" + std::string(kHeader) +
                            "  mode: Enforce\n");
  ASSERT_EQ(lines.size(), 1u) << testing::PrintToString(lines);
  EXPECT_THAT(lines[0], HasSubstr("f.yaml:1: not valid YAML or JSON"));
  // Comments, markers and empty documents are fine.
  EXPECT_TRUE(ProblemLines("# only a comment\n---\n---\n...\n").empty());
}

TEST(ManifestTest, NodeCountIsBounded) {
  std::string text = "labels: {";
  for (int i = 0; i < 210000; ++i) text += "k" + std::to_string(i) + ": v,";
  text += "}\n";
  v1::ObjectMeta meta;
  auto problems = DecodeInto(text, "f", &meta);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0].message, HasSubstr("document too large"));
}

TEST(ManifestTest, OversizedFileRejected) {
  DecodeResult r =
      DecodeManifests(std::string(kMaxManifestBytes + 1, '#'), "f");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_THAT(r.problems[0].message, HasSubstr("file too large"));
}

}  // namespace
}  // namespace stockade::compiler
