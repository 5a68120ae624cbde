#include "operator/controller/objects.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operator/controller/reconciler.h"

namespace stockade::controller {
namespace {

namespace v1 = ::stockade::v1;
using ::nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string SourceDir() {
  const char* root = std::getenv("STOCKADE_SOURCE_DIR");
  EXPECT_NE(root, nullptr) << "STOCKADE_SOURCE_DIR is not set (run via ctest)";
  return root ? root : ".";
}

// An AgentPolicy as the API server returns it from a GET, a list or a watch.
constexpr char kServerObject[] = R"json({
  "apiVersion": "stockade.dev/v1alpha1",
  "kind": "AgentPolicy",
  "metadata": {
    "name": "research-agent",
    "namespace": "agents",
    "uid": "6f1c2f3e-1111-4c4c-9a9a-0123456789ab",
    "generation": 3,
    "resourceVersion": "48213",
    "creationTimestamp": "2026-01-01T00:00:00Z",
    "labels": {"team": "research"},
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    "managedFields": [{"manager": "kubectl", "operation": "Update",
                       "fieldsV1": {"f:spec": {}}}]
  },
  "spec": {
    "mode": "Complain",
    "filesystem": {"readOnlyRoot": false,
                   "writable": [{"path": "/tmp/agent", "sizeLimit": "64Mi"}]},
    "procfs": "Full",
    "network": {"dns": true,
                "egress": [{"cidrs": ["10.0.0.0/8"],
                            "ports": [{"port": 443, "protocol": "TCP"}]}]},
    "processes": {"max": 64}
  },
  "status": {
    "observedGeneration": 2,
    "policyHash": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "conditions": [{"type": "Compiled", "status": "True", "reason": "Compiled",
                    "message": "ok", "observedGeneration": 2,
                    "lastTransitionTime": "2026-01-01T00:00:05Z"}],
    "nodes": {"ready": 2, "total": 3, "summary": "2/3"}
  }
})json";

TEST(ObjectsTest, DecodesServerObjectWithCrdSpellings) {
  absl::StatusOr<AgentPolicyObject> got = DecodeAgentPolicy(kServerObject);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->problems, IsEmpty());
  const v1::AgentPolicy& p = got->object;
  EXPECT_EQ(p.kind(), "AgentPolicy");
  EXPECT_EQ(p.metadata().name(), "research-agent");
  EXPECT_EQ(p.metadata().namespace_(), "agents");
  EXPECT_EQ(p.metadata().uid(), "6f1c2f3e-1111-4c4c-9a9a-0123456789ab");
  EXPECT_EQ(p.metadata().generation(), 3);
  EXPECT_EQ(p.metadata().resource_version(), "48213");
  EXPECT_EQ(p.metadata().labels().at("team"), "research");
  EXPECT_EQ(p.spec().mode(), v1::MODE_COMPLAIN);
  EXPECT_EQ(p.spec().procfs(), v1::PROCFS_EXPOSURE_FULL);
  ASSERT_TRUE(p.spec().filesystem().has_read_only_root());
  EXPECT_FALSE(p.spec().filesystem().read_only_root());
  EXPECT_EQ(p.spec().network().egress(0).ports(0).protocol(), v1::PROTOCOL_TCP);
  EXPECT_EQ(p.status().observed_generation(), 2);
  ASSERT_EQ(p.status().conditions_size(), 1);
  EXPECT_EQ(p.status().conditions(0).status(), v1::CONDITION_STATUS_TRUE);
  EXPECT_EQ(p.status().conditions(0).last_transition_time(),
            "2026-01-01T00:00:05Z");
  EXPECT_EQ(p.status().nodes().summary(), "2/3");
}

// Why the objects do not go through protobuf's JSON mapping: told to ignore
// unknown fields (as it must, for metadata), it also drops enum values it
// does not know, and the CRD's spellings are exactly those. A Complain-mode
// policy would silently become an Enforce one, Full /proc the default.
TEST(ObjectsTest, ProtobufJsonMappingWouldLoseTheEnums) {
  v1::AgentPolicy p;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status =
      google::protobuf::util::JsonStringToMessage(kServerObject, &p, options);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(p.spec().mode(), v1::MODE_UNSPECIFIED);
  EXPECT_EQ(p.spec().procfs(), v1::PROCFS_EXPOSURE_UNSPECIFIED);
  // And it writes int64 as a string, which the CRD (type: integer) refuses.
  v1::AgentPolicyStatus s;
  s.set_observed_generation(3);
  std::string out;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(s, &out).ok());
  EXPECT_THAT(out, HasSubstr("\"3\""));
  EXPECT_THAT(ToCrdJson(s), HasSubstr("\"observedGeneration\":3"));
}

TEST(ObjectsTest, SpecProblemsNameTheField) {
  json doc = json::parse(kServerObject);
  doc["spec"]["mode"] = "Sometimes";
  doc["spec"]["filesystem"]["writable"][0]["path"] = "tmp";
  doc["spec"]["surprise"] = 1;
  absl::StatusOr<AgentPolicyObject> got = DecodeAgentPolicy(doc.dump());
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<std::string> rendered;
  for (const auto& p : got->problems) {
    rendered.push_back(p.path + ": " + p.message);
  }
  EXPECT_THAT(rendered,
              testing::UnorderedElementsAre(
                  HasSubstr("spec.mode: unsupported value \"Sometimes\""),
                  HasSubstr("spec.filesystem.writable[0].path: \"tmp\" does "
                            "not match"),
                  HasSubstr("spec.surprise: unknown field")));
  // Metadata is still there: the reconciler can name the object.
  EXPECT_EQ(got->object.metadata().name(), "research-agent");

  doc.erase("spec");
  got = DecodeAgentPolicy(doc.dump());
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->problems.size(), 1u);
  EXPECT_EQ(got->problems[0].path, "spec");
}

TEST(ObjectsTest, RefusesWhatIsNotAnAgentPolicy) {
  EXPECT_FALSE(DecodeAgentPolicy("not json").ok());
  EXPECT_FALSE(DecodeAgentPolicy("[]").ok());
  json doc = json::parse(kServerObject);
  doc["kind"] = "ClusterAgentPolicy";
  EXPECT_THAT(std::string(DecodeAgentPolicy(doc.dump()).status().message()),
              HasSubstr("expected kind AgentPolicy"));
  doc = json::parse(kServerObject);
  doc["apiVersion"] = "stockade.dev/v2";
  EXPECT_THAT(std::string(DecodeAgentPolicy(doc.dump()).status().message()),
              HasSubstr("unsupported apiVersion"));
  doc = json::parse(kServerObject);
  doc["metadata"].erase("name");
  EXPECT_FALSE(DecodeAgentPolicy(doc.dump()).ok());
}

TEST(ObjectsTest, StatusOfAnotherVersionIsDropped) {
  json doc = json::parse(kServerObject);
  doc["status"]["futureField"] = {{"a", 1}};
  absl::StatusOr<AgentPolicyObject> got = DecodeAgentPolicy(doc.dump());
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(got->problems, IsEmpty());
  EXPECT_FALSE(got->object.has_status());
}

TEST(ObjectsTest, DecodesClusterAgentPolicyAndNamespace) {
  constexpr char kCluster[] = R"json({
    "apiVersion": "stockade.dev/v1alpha1", "kind": "ClusterAgentPolicy",
    "metadata": {"name": "baseline", "uid": "u1", "generation": 7},
    "spec": {"namespaceSelector": {"matchExpressions": [
               {"key": "tier", "operator": "In", "values": ["a", "b"]}]},
             "guardrails": {"maxProcfs": "Minimal", "maxProcesses": 256},
             "defaults": {"sysfs": "None"}}})json";
  absl::StatusOr<ClusterAgentPolicyObject> c =
      DecodeClusterAgentPolicy(kCluster);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->problems, IsEmpty());
  EXPECT_EQ(c->object.metadata().generation(), 7);
  EXPECT_EQ(
      c->object.spec().namespace_selector().match_expressions(0).operator_(),
      v1::SELECTOR_OPERATOR_IN);
  EXPECT_EQ(c->object.spec().guardrails().max_procfs(),
            v1::PROCFS_EXPOSURE_MINIMAL);
  EXPECT_EQ(c->object.spec().guardrails().max_processes(), 256);

  absl::StatusOr<NamespaceObject> ns = DecodeNamespace(R"json({
    "apiVersion": "v1", "kind": "Namespace",
    "metadata": {"name": "agents", "uid": "x",
                 "labels": {"stockade.dev/enforce": "true",
                            "kubernetes.io/metadata.name": "agents"}},
    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})json");
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ(ns->name, "agents");
  EXPECT_EQ(ns->labels.at("stockade.dev/enforce"), "true");
}

// --- The JSON written to /status against the CRD's own schema. -------------

// Checks `value` against an OpenAPI v3 schema of a CRD (the subset crdgen
// emits). An unknown key fails: the API server would prune it silently.
void CheckSchema(const json& value, const YAML::Node& schema,
                 const std::string& path) {
  const std::string type =
      schema["type"] ? schema["type"].as<std::string>() : "";
  if (type == "object") {
    ASSERT_TRUE(value.is_object()) << path << ": " << value.dump();
    const YAML::Node props = schema["properties"];
    for (const auto& [key, child] : value.items()) {
      ASSERT_TRUE(props && props[key])
          << path << "." << key << ": not in the CRD schema";
      CheckSchema(child, props[key], path + "." + key);
    }
    if (schema["required"]) {
      for (const auto& r : schema["required"]) {
        EXPECT_TRUE(value.contains(r.as<std::string>()))
            << path << ": required " << r.as<std::string>() << " missing";
      }
    }
  } else if (type == "array") {
    ASSERT_TRUE(value.is_array()) << path;
    for (size_t i = 0; i < value.size(); ++i) {
      CheckSchema(value[i], schema["items"],
                  path + "[" + std::to_string(i) + "]");
    }
  } else if (type == "string") {
    ASSERT_TRUE(value.is_string()) << path << ": " << value.dump();
    const std::string s = value.get<std::string>();
    if (schema["minLength"]) {
      EXPECT_GE(s.size(), schema["minLength"].as<size_t>()) << path;
    }
    if (schema["maxLength"]) {
      EXPECT_LE(s.size(), schema["maxLength"].as<size_t>()) << path;
    }
    if (schema["pattern"]) {
      EXPECT_TRUE(
          std::regex_search(s, std::regex(schema["pattern"].as<std::string>())))
          << path << ": " << s;
    }
    if (schema["enum"]) {
      bool found = false;
      for (const auto& e : schema["enum"]) found |= e.as<std::string>() == s;
      EXPECT_TRUE(found) << path << ": " << s << " not in the enum";
    }
    if (schema["format"] && schema["format"].as<std::string>() == "date-time") {
      EXPECT_TRUE(std::regex_match(
          s,
          std::regex("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z")))
          << path << ": " << s;
    }
  } else if (type == "integer") {
    ASSERT_TRUE(value.is_number_integer()) << path << ": " << value.dump();
    if (schema["minimum"]) {
      EXPECT_GE(value.get<int64_t>(), schema["minimum"].as<int64_t>()) << path;
    }
    if (schema["maximum"]) {
      EXPECT_LE(value.get<int64_t>(), schema["maximum"].as<int64_t>()) << path;
    }
  } else if (type == "boolean") {
    ASSERT_TRUE(value.is_boolean()) << path;
  } else {
    FAIL() << path << ": schema type \"" << type
           << "\" not handled by the test";
  }
}

YAML::Node StatusSchema(const std::string& crd_file) {
  YAML::Node crd = YAML::LoadFile(SourceDir() + "/crds/" + crd_file);
  return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["status"];
}

v1::AgentPolicyStatus FullStatus() {
  v1::AgentPolicyStatus s;
  s.set_observed_generation(4);
  s.set_policy_hash(std::string(64, 'a'));
  for (const char* type : {"Compiled", "Distributed", "Ready"}) {
    v1::Condition* c = s.add_conditions();
    c->set_type(type);
    c->set_status(v1::CONDITION_STATUS_FALSE);
    c->set_reason("InvalidSpec");
    c->set_message("spec.mode: \"x\" \xc3\xa9");
    c->set_observed_generation(4);
    c->set_last_transition_time("2026-01-01T00:00:00Z");
  }
  s.mutable_nodes()->set_ready(1);
  s.mutable_nodes()->set_total(2);
  s.mutable_nodes()->set_summary("1/2");
  s.mutable_denials()->set_total(5);
  s.add_active_layers("seccomp");
  return s;
}

TEST(ObjectsTest, StatusPatchMatchesTheCrdSchema) {
  const json patch = json::parse(StatusMergePatch(FullStatus()));
  ASSERT_EQ(patch.size(), 1u);
  CheckSchema(patch["status"], StatusSchema("stockade.dev_agentpolicies.yaml"),
              "status");
  EXPECT_EQ(patch["status"]["conditions"][0]["status"], "False");
  EXPECT_EQ(patch["status"]["observedGeneration"], 4);
  EXPECT_EQ(patch["status"]["nodes"]["summary"], "1/2");

  v1::ClusterAgentPolicyStatus c;
  c.set_observed_generation(2);
  c.set_selected_policies(10);
  c.set_rejected_policies(1);
  v1::Condition* ready = c.add_conditions();
  ready->set_type("Ready");
  ready->set_status(v1::CONDITION_STATUS_TRUE);
  ready->set_reason("Applied");
  ready->set_last_transition_time("2026-01-01T00:00:00Z");
  const json cpatch = json::parse(StatusMergePatch(c));
  CheckSchema(cpatch["status"],
              StatusSchema("stockade.dev_clusteragentpolicies.yaml"), "status");
  EXPECT_EQ(cpatch["status"]["selectedPolicies"], 10);
}

// Every status the reconciler produces, good or bad, passes the CRD schema
// (reasons match its pattern, messages fit, enums are spelled right).
TEST(ObjectsTest, ReconcilerStatusesMatchTheCrdSchema) {
  auto policy = [](const std::string& ns, const std::string& name) {
    AgentPolicyObject p;
    p.object.mutable_metadata()->set_namespace_(ns);
    p.object.mutable_metadata()->set_name(name);
    p.object.mutable_metadata()->set_uid(ns + "/" + name);
    p.object.mutable_metadata()->set_generation(1);
    p.object.mutable_spec()->mutable_exec()->add_allow("/usr/bin/node");
    return p;
  };
  Snapshot s;
  s.policies.push_back(policy("a", "good"));
  s.policies.push_back(policy("a", "invalid"));
  for (int i = 0; i < 3000;
       ++i) {  // 3000 problems: 20 listed, the rest counted
    s.policies.back().object.mutable_spec()->mutable_syscalls()->add_allow(
        "no_such_call_" + std::to_string(i));
  }
  s.policies.push_back(policy("a", "violating"));
  s.policies.back().object.mutable_spec()->mutable_capabilities()->add_add(
      "SYS_ADMIN");
  s.policies.push_back(policy("nowhere", "unknown-namespace"));
  s.policies.push_back(policy("a", "undecodable"));
  s.policies.back().problems.push_back(
      compiler::Problem{"", 0, "spec.mode", "unsupported value"});
  ClusterAgentPolicyObject guard;
  guard.object.mutable_metadata()->set_name("g");
  guard.object.mutable_metadata()->set_generation(3);
  guard.object.mutable_spec()->mutable_guardrails()->add_allowed_capabilities(
      "NET_BIND_SERVICE");
  s.cluster_policies.push_back(guard);
  ClusterAgentPolicyObject bad = guard;
  bad.object.mutable_metadata()->set_name("bad");
  bad.object.mutable_spec()
      ->mutable_namespace_selector()
      ->mutable_match_labels()
      ->insert({"x", "y"});
  bad.object.mutable_spec()->mutable_guardrails()->add_denied_syscalls("nope");
  s.cluster_policies.push_back(bad);
  s.namespaces["a"] = {};
  s.nodes.push_back(NodeState{"n1", {}, {}});
  PolicyReconciler reconciler;
  for (int round = 0; round < 2; ++round) {
    ReconcileResult r = reconciler.Reconcile(s);
    ASSERT_EQ(r.policies.size(), s.policies.size());
    for (const AgentPolicyResult& p : r.policies) {
      SCOPED_TRACE(p.object.name);
      EXPECT_EQ(p.status.conditions_size(), 3);
      if (p.object.name == "invalid") {
        EXPECT_THAT(p.status.conditions(0).message(),
                    HasSubstr("and 2980 more"));
      }
      CheckSchema(json::parse(StatusMergePatch(p.status))["status"],
                  StatusSchema("stockade.dev_agentpolicies.yaml"), "status");
    }
    for (const ClusterAgentPolicyResult& c : r.cluster_policies) {
      SCOPED_TRACE(c.object.name);
      CheckSchema(json::parse(StatusMergePatch(c.status))["status"],
                  StatusSchema("stockade.dev_clusteragentpolicies.yaml"),
                  "status");
    }
    for (auto& node : s.nodes) {
      for (const auto& [hash, body] : r.desired.policies)
        node.held.insert(hash);
    }
  }
}

TEST(ObjectsTest, EveryOwnedFieldIsWrittenSoAMergePatchLeavesNothingStale) {
  // A policy that no longer compiles and has no nodes: zeros and empty
  // strings must be in the patch, or the old values would stay.
  v1::AgentPolicyStatus s;
  s.set_observed_generation(5);
  s.mutable_nodes();
  const json patch = json::parse(StatusMergePatch(s));
  EXPECT_EQ(patch["status"]["policyHash"], "");
  EXPECT_EQ(patch["status"]["nodes"]["ready"], 0);
  EXPECT_EQ(patch["status"]["nodes"]["summary"], "");
  EXPECT_EQ(patch["status"]["conditions"], json::array());
}

TEST(ObjectsTest, InvalidUtf8IsReplacedNotThrown) {
  v1::AgentPolicyStatus s;
  v1::Condition* c = s.add_conditions();
  c->set_type("Compiled");
  c->set_message("path \"/tmp/\xc3\" cut inside a character");
  std::string patch;
  ASSERT_NO_THROW(patch = StatusMergePatch(s));
  const json j = json::parse(patch);
  EXPECT_EQ(j["status"]["conditions"][0]["message"],
            "path \"/tmp/\xef\xbf\xbd\" cut inside a character");
}

TEST(ObjectsTest, WrittenStatusDecodesToTheSameStatus) {
  json doc = json::parse(kServerObject);
  doc["status"] = json::parse(StatusMergePatch(FullStatus()))["status"];
  absl::StatusOr<AgentPolicyObject> got = DecodeAgentPolicy(doc.dump());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      got->object.status(), FullStatus()))
      << got->object.status().DebugString();
}

TEST(ObjectsTest, SpecJsonKeepsPresence) {
  v1::AgentPolicySpec spec;
  spec.mutable_filesystem()->add_deny("/etc/shadow");
  spec.set_mode(v1::MODE_ENFORCE);
  const json j = json::parse(ToCrdJson(spec));
  EXPECT_EQ(j["mode"], "Enforce");
  EXPECT_FALSE(j["filesystem"].contains("readOnlyRoot"));  // unset optional
  EXPECT_FALSE(j.contains("network"));                     // unset message
  EXPECT_FALSE(j.contains("procfs"));                      // UNSPECIFIED
  spec.mutable_filesystem()->set_read_only_root(false);
  EXPECT_EQ(json::parse(ToCrdJson(spec))["filesystem"]["readOnlyRoot"], false);
}

}  // namespace
}  // namespace stockade::controller
