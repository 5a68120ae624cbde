#include "cli/status.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"

namespace stockade::cli {
namespace {

using nlohmann::json;

// value[path...] when every step exists, else nullptr.
const json* At(const json& value, std::initializer_list<const char*> path) {
  const json* cur = &value;
  for (const char* key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string Str(const json& value, std::initializer_list<const char*> path) {
  const json* v = At(value, path);
  return v != nullptr && v->is_string() ? v->get<std::string>() : "";
}

std::optional<int64_t> Int(const json& value,
                           std::initializer_list<const char*> path) {
  const json* v = At(value, path);
  if (v == nullptr || !v->is_number_integer()) return std::nullopt;
  return v->get<int64_t>();
}

std::string IntText(const json& value,
                    std::initializer_list<const char*> path) {
  std::optional<int64_t> v = Int(value, path);
  return v.has_value() ? absl::StrCat(*v) : "";
}

// The condition of `type` in status.conditions, or nullptr.
const json* Condition(const json& object, absl::string_view type) {
  const json* conditions = At(object, {"status", "conditions"});
  if (conditions == nullptr || !conditions->is_array()) return nullptr;
  for (const json& c : *conditions) {
    if (c.is_object() && Str(c, {"type"}) == type) return &c;
  }
  return nullptr;
}

// "True", or "False (Reason)"; "" when the condition is absent.
std::string ConditionText(const json& object, absl::string_view type) {
  const json* c = Condition(object, type);
  if (c == nullptr) return "";
  const std::string status = Str(*c, {"status"});
  const std::string reason = Str(*c, {"reason"});
  if (status == "True" || reason.empty()) return status;
  return absl::StrCat(status, " (", reason, ")");
}

// What a person should read: that the operator has not caught up, or the
// message of the first of `types` that is not True.
std::string Message(const json& object,
                    absl::Span<const absl::string_view> types) {
  const std::optional<int64_t> generation =
      Int(object, {"metadata", "generation"});
  const std::optional<int64_t> observed =
      Int(object, {"status", "observedGeneration"});
  if (At(object, {"status"}) == nullptr) return "not seen by the operator yet";
  if (generation.has_value() && observed.has_value() &&
      *observed < *generation) {
    return absl::StrCat("the operator has not seen generation ", *generation,
                        " yet (status is of generation ", *observed, ")");
  }
  for (absl::string_view type : types) {
    const json* c = Condition(object, type);
    if (c != nullptr && Str(*c, {"status"}) != "True") {
      return Str(*c, {"message"});
    }
  }
  return "";
}

std::string Short(const std::string& hash) {
  return hash.substr(0, kShortHash);
}

std::string Selector(const json& object) {
  const json* selector = At(object, {"spec", "namespaceSelector"});
  std::vector<std::string> parts;
  if (selector != nullptr) {
    if (const json* labels = At(*selector, {"matchLabels"});
        labels != nullptr && labels->is_object()) {
      for (const auto& [k, v] : labels->items()) {
        parts.push_back(
            absl::StrCat(k, "=", v.is_string() ? v.get<std::string>() : ""));
      }
    }
    if (const json* exprs = At(*selector, {"matchExpressions"});
        exprs != nullptr && exprs->is_array()) {
      for (const json& e : *exprs) {
        std::vector<std::string> values;
        if (const json* vs = At(e, {"values"});
            vs != nullptr && vs->is_array()) {
          for (const json& v : *vs) {
            if (v.is_string()) values.push_back(v.get<std::string>());
          }
        }
        std::string part =
            absl::StrCat(Str(e, {"key"}), " ", Str(e, {"operator"}));
        if (!values.empty()) {
          absl::StrAppend(&part, " (", absl::StrJoin(values, ","), ")");
        }
        parts.push_back(std::move(part));
      }
    }
  }
  return parts.empty() ? "all" : absl::StrJoin(parts, ",");
}

// "ready/total" from status.nodes, "" without.
std::string Nodes(const json& policy) {
  std::optional<int64_t> ready = Int(policy, {"status", "nodes", "ready"});
  std::optional<int64_t> total = Int(policy, {"status", "nodes", "total"});
  if (!total.has_value()) return "";
  return absl::StrCat(ready.value_or(0), "/", *total);
}

std::string AgentPolicyName(const json& agent) {
  std::string name = Str(agent, {"spec", "policyRef", "name"});
  if (name.empty() && At(agent, {"spec", "policy"}) != nullptr) {
    return "(inline)";
  }
  return name;
}

// "ready/wanted" replicas of an Agent (spec.replicas defaults to 1).
std::string Replicas(const json& agent) {
  return absl::StrCat(Int(agent, {"status", "readyReplicas"}).value_or(0), "/",
                      Int(agent, {"spec", "replicas"}).value_or(1));
}

std::vector<json> Sorted(std::vector<json> objects) {
  std::sort(objects.begin(), objects.end(), [](const json& a, const json& b) {
    return std::make_pair(Str(a, {"metadata", "namespace"}),
                          Str(a, {"metadata", "name"})) <
           std::make_pair(Str(b, {"metadata", "namespace"}),
                          Str(b, {"metadata", "name"}));
  });
  return objects;
}

constexpr absl::string_view kPolicyConditions[] = {"Compiled", "Ready"};
constexpr absl::string_view kAgentConditions[] = {"PolicyReady", "Available"};
constexpr absl::string_view kClusterConditions[] = {"Ready"};

std::string Section(absl::string_view title, absl::string_view where,
                    const TableRow& headers,
                    const std::vector<TableRow>& rows) {
  if (rows.empty()) return absl::StrCat("No ", title, where, ".\n");
  return absl::StrCat(title, where, ":\n", FormatTable(headers, rows));
}

}  // namespace

TableRow PolicyHeaders() {
  return {"namespace", "name", "hash", "compiled", "ready", "nodes", "message"};
}

std::vector<TableRow> PolicyRows(const std::vector<json>& policies) {
  std::vector<TableRow> rows;
  for (const json& p : Sorted(policies)) {
    rows.push_back(
        {Str(p, {"metadata", "namespace"}), Str(p, {"metadata", "name"}),
         Short(Str(p, {"status", "policyHash"})), ConditionText(p, "Compiled"),
         ConditionText(p, "Ready"), Nodes(p), Message(p, kPolicyConditions)});
  }
  return rows;
}

TableRow ClusterPolicyHeaders() {
  return {"name", "namespaces", "policies", "rejected", "ready", "message"};
}

std::vector<TableRow> ClusterPolicyRows(
    const std::vector<json>& cluster_policies) {
  std::vector<TableRow> rows;
  for (const json& c : Sorted(cluster_policies)) {
    rows.push_back({Str(c, {"metadata", "name"}), Selector(c),
                    IntText(c, {"status", "selectedPolicies"}),
                    IntText(c, {"status", "rejectedPolicies"}),
                    ConditionText(c, "Ready"), Message(c, kClusterConditions)});
  }
  return rows;
}

TableRow AgentHeaders() {
  return {"namespace", "name", "policy", "hash", "ready", "message"};
}

std::vector<TableRow> AgentRows(const std::vector<json>& agents) {
  std::vector<TableRow> rows;
  for (const json& a : Sorted(agents)) {
    rows.push_back({Str(a, {"metadata", "namespace"}),
                    Str(a, {"metadata", "name"}), AgentPolicyName(a),
                    Short(Str(a, {"status", "policyHash"})), Replicas(a),
                    Message(a, kAgentConditions)});
  }
  return rows;
}

std::string FormatStatus(const StatusReport& report) {
  const std::string where =
      report.namespace_.empty()
          ? " in any namespace"
          : absl::StrCat(" in namespace ", report.namespace_);
  return absl::StrCat(
      Section("AgentPolicies", where, PolicyHeaders(),
              PolicyRows(report.policies)),
      "\n",
      Section("ClusterAgentPolicies", "", ClusterPolicyHeaders(),
              ClusterPolicyRows(report.cluster_policies)),
      "\n", Section("Agents", where, AgentHeaders(), AgentRows(report.agents)));
}

json StatusJson(const StatusReport& report) {
  json policies = json::array(), cluster = json::array(),
       agents = json::array();
  for (const json& p : Sorted(report.policies)) {
    policies.push_back(
        {{"namespace", Str(p, {"metadata", "namespace"})},
         {"name", Str(p, {"metadata", "name"})},
         {"hash", Str(p, {"status", "policyHash"})},
         {"compiled", ConditionText(p, "Compiled")},
         {"ready", ConditionText(p, "Ready")},
         {"nodesReady", Int(p, {"status", "nodes", "ready"}).value_or(0)},
         {"nodesTotal", Int(p, {"status", "nodes", "total"}).value_or(0)},
         {"message", Message(p, kPolicyConditions)}});
  }
  for (const json& c : Sorted(report.cluster_policies)) {
    cluster.push_back({{"name", Str(c, {"metadata", "name"})},
                       {"namespaces", Selector(c)},
                       {"selectedPolicies",
                        Int(c, {"status", "selectedPolicies"}).value_or(0)},
                       {"rejectedPolicies",
                        Int(c, {"status", "rejectedPolicies"}).value_or(0)},
                       {"ready", ConditionText(c, "Ready")},
                       {"message", Message(c, kClusterConditions)}});
  }
  for (const json& a : Sorted(report.agents)) {
    agents.push_back(
        {{"namespace", Str(a, {"metadata", "namespace"})},
         {"name", Str(a, {"metadata", "name"})},
         {"policy", AgentPolicyName(a)},
         {"hash", Str(a, {"status", "policyHash"})},
         {"readyReplicas", Int(a, {"status", "readyReplicas"}).value_or(0)},
         {"replicas", Int(a, {"spec", "replicas"}).value_or(1)},
         {"message", Message(a, kAgentConditions)}});
  }
  return {{"agentPolicies", policies},
          {"clusterAgentPolicies", cluster},
          {"agents", agents}};
}

}  // namespace stockade::cli
