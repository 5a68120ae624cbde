#include "cli/status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::cli {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const char kHash[] =
    "3f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

json Policy(const std::string& ns, const std::string& name) {
  return {
      {"metadata", {{"namespace", ns}, {"name", name}, {"generation", 2}}},
      {"status",
       {{"observedGeneration", 2},
        {"policyHash", kHash},
        {"nodes", {{"ready", 2}, {"total", 3}, {"summary", "2/3"}}},
        {"conditions",
         {{{"type", "Compiled"}, {"status", "True"}, {"reason", "Compiled"}},
          {{"type", "Ready"},
           {"status", "False"},
           {"reason", "Distributing"},
           {"message", "1 of 3 nodes does not hold it yet: node-c"}}}}}}};
}

TEST(StatusTest, PolicyRowsSortedWithShortHashAndWhatIsNotReady) {
  json unseen = {{"metadata", {{"namespace", "agents"}, {"name", "new"}}}};
  json stale = Policy("agents", "stale");
  stale["metadata"]["generation"] = 3;
  std::vector<TableRow> rows =
      PolicyRows({Policy("ops", "strict"), unseen, stale,
                  Policy("agents", "research-agent")});
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], (TableRow{"agents", "new", "", "", "", "",
                               "not seen by the operator yet"}));
  EXPECT_EQ(rows[1], (TableRow{"agents", "research-agent", "3f1a2b4c5d6e",
                               "True", "False (Distributing)", "2/3",
                               "1 of 3 nodes does not hold it yet: node-c"}));
  EXPECT_EQ(rows[2][6],
            "the operator has not seen generation 3 yet (status is of "
            "generation 2)");
  EXPECT_EQ(rows[3][0], "ops");
}

TEST(StatusTest, ClusterPolicyRowsShowTheSelector) {
  json baseline = {
      {"metadata", {{"name", "baseline"}}},
      {"spec",
       {{"namespaceSelector",
         {{"matchLabels", {{"stockade.dev/enforce", "true"}}},
          {"matchExpressions",
           {{{"key", "team"}, {"operator", "In"}, {"values", {"a", "b"}}}}}}}}},
      {"status",
       {{"selectedPolicies", 2},
        {"rejectedPolicies", 0},
        {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
  json all = {{"metadata", {{"name", "all"}}}, {"spec", json::object()}};
  std::vector<TableRow> rows = ClusterPolicyRows({baseline, all});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0], "all");
  EXPECT_EQ(rows[0][1], "all");
  EXPECT_EQ(rows[1],
            (TableRow{"baseline", "stockade.dev/enforce=true,team In (a,b)",
                      "2", "0", "True", ""}));
}

TEST(StatusTest, AgentRowsShowPolicyAndReplicas) {
  json ref = {
      {"metadata", {{"namespace", "agents"}, {"name", "researcher"}}},
      {"spec", {{"replicas", 2}, {"policyRef", {{"name", "research-agent"}}}}},
      {"status",
       {{"readyReplicas", 1},
        {"policyHash", kHash},
        {"conditions",
         {{{"type", "PolicyReady"}, {"status", "True"}},
          {{"type", "Available"},
           {"status", "False"},
           {"reason", "MinimumReplicasUnavailable"},
           {"message", "1 of 2 pods ready"}}}}}}};
  json inline_policy = {
      {"metadata", {{"namespace", "agents"}, {"name", "inline"}}},
      {"spec", {{"policy", json::object()}}},
      {"status", json::object()}};
  std::vector<TableRow> rows = AgentRows({ref, inline_policy});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (TableRow{"agents", "inline", "(inline)", "", "0/1", ""}));
  EXPECT_EQ(rows[1], (TableRow{"agents", "researcher", "research-agent",
                               "3f1a2b4c5d6e", "1/2", "1 of 2 pods ready"}));
}

TEST(StatusTest, FormatsTablesAndSaysWhatIsEmpty) {
  StatusReport report{"agents", {Policy("agents", "research-agent")}, {}, {}};
  EXPECT_EQ(FormatStatus(report),
            "AgentPolicies in namespace agents:\n"
            "NAMESPACE   NAME             HASH           COMPILED   READY"
            "                  NODES   MESSAGE\n"
            "agents      research-agent   3f1a2b4c5d6e   True       False "
            "(Distributing)   2/3     1 of 3 nodes does not hold it yet: "
            "node-c\n"
            "\n"
            "No ClusterAgentPolicies.\n"
            "\n"
            "No Agents in namespace agents.\n");
  report.namespace_ = "";
  EXPECT_THAT(FormatStatus(report), HasSubstr("No Agents in any namespace.\n"));
}

TEST(StatusTest, JsonHasWholeHashesAndNumbers) {
  StatusReport report{"agents", {Policy("agents", "research-agent")}, {}, {}};
  json j = StatusJson(report);
  ASSERT_EQ(j["agentPolicies"].size(), 1u);
  EXPECT_EQ(j["agentPolicies"][0]["hash"], kHash);
  EXPECT_EQ(j["agentPolicies"][0]["nodesReady"], 2);
  EXPECT_EQ(j["agentPolicies"][0]["nodesTotal"], 3);
  EXPECT_EQ(j["clusterAgentPolicies"], json::array());
  EXPECT_EQ(j["agents"], json::array());
}

}  // namespace
}  // namespace stockade::cli
