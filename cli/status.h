// `kubectl stockade status`, without I/O: the AgentPolicies,
// ClusterAgentPolicies and Agents as the apiserver lists them -> rows of
// what a person checks first (hash in force, Compiled/Ready, nodes holding
// the policy, replicas ready, and the message of whatever is not ready),
// printed as aligned tables or as JSON.
#ifndef STOCKADE_CLI_STATUS_H_
#define STOCKADE_CLI_STATUS_H_

#include <string>
#include <vector>

#include "cli/table.h"
#include "nlohmann/json.hpp"

namespace stockade::cli {

// Hashes in tables are cut to this many hex digits (as in AppArmor profile
// names); -o json has them whole.
inline constexpr size_t kShortHash = 12;

struct StatusReport {
  // Where the namespaced objects were listed: a namespace, or "" for all.
  std::string namespace_;
  std::vector<nlohmann::json> policies;          // AgentPolicy objects
  std::vector<nlohmann::json> cluster_policies;  // ClusterAgentPolicy objects
  std::vector<nlohmann::json> agents;            // Agent objects
};

// Headers and rows of each table, sorted by namespace and name.
TableRow PolicyHeaders();
std::vector<TableRow> PolicyRows(const std::vector<nlohmann::json>& policies);
TableRow ClusterPolicyHeaders();
std::vector<TableRow> ClusterPolicyRows(
    const std::vector<nlohmann::json>& cluster_policies);
TableRow AgentHeaders();
std::vector<TableRow> AgentRows(const std::vector<nlohmann::json>& agents);

// The three tables under titles; "No ... in namespace X." for an empty one.
std::string FormatStatus(const StatusReport& report);
// The same as JSON: {"agentPolicies": [...], "clusterAgentPolicies": [...],
// "agents": [...]}, one object per row with full hashes.
nlohmann::json StatusJson(const StatusReport& report);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_STATUS_H_
