#include "cli/kubectl.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/cli.h"
#include "cli/cluster.h"
#include "cli/flags.h"
#include "cli/inputs.h"
#include "cli/status.h"
#include "cli/table.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/explain.h"
#include "operator/controller/agent_reconciler.h"
#include "operator/controller/objects.h"
#include "store/store.h"

namespace stockade::cli {
namespace {

using nlohmann::json;

constexpr char kPluginUsage[] =
    R"(kubectl stockade: Stockade agent policies in the cluster, and offline

Usage:
  kubectl stockade status [-n NAMESPACE | -A] [-o json]
  kubectl stockade explain [-n NAMESPACE] [agent/|agentpolicy/]NAME
  kubectl stockade diff [-n NAMESPACE] FILE
  kubectl stockade denials [-n NAMESPACE | -A] [--agent NAME] [--follow]
                   [-o json]
  kubectl stockade validate|compile|apply-spec|install ...   (local files;
                   see stockade --help)
  kubectl stockade COMMAND --help

Cluster flags: --kubeconfig FILE (else $KUBECONFIG, else ~/.kube/config, else
the pod's service account), --context NAME, -n/--namespace NAME (else the
context's namespace, else "default").

Exit codes: 0 success; 1 not found, invalid, a guardrail violation, or (diff)
the policies differ; 2 bad command line; 3 the cluster could not be read.
)";

const std::map<std::string, std::string>& ClusterHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"denials",
       R"(kubectl stockade denials [-n NAMESPACE | -A] [--agent NAME] [--follow]
                         [-o json]

The denials the nodes reported, as the operator recorded them: Events on the
pods (reason Denied, or Complained in Complain mode; repeats counted), newest
last. --agent NAME shows the pods of that Agent only (the Events the operator
labelled stockade.dev/agent=NAME, from the pods' annotation of the same name,
which the Agent controller sets); --follow keeps printing
new ones and new counts; -o json prints the Events. On a node, `kubectl
stockade denials --store DIR` (or `stockade denials`) reads the node's own
denial log instead. See docs/denials.md.
)"},
      {"status", R"(kubectl stockade status [-n NAMESPACE | -A] [-o json]

The AgentPolicies (hash in force, Compiled, Ready, nodes holding the policy),
the ClusterAgentPolicies (namespaces selected, policies selected and rejected)
and the Agents (policy, hash, ready replicas) of the namespace (-A: every
namespace), with the message of whatever is not ready. -o json prints the same
as JSON with whole hashes.
)"},
      {"explain",
       R"(kubectl stockade explain [-n NAMESPACE] [agent/|agentpolicy/]NAME

The effective policy of an Agent (its AgentPolicy, or the policy written in
it) or of an AgentPolicy, as the operator compiles it now: the AgentPolicy
merged with the ClusterAgentPolicies selecting the namespace, every rule in
words with the layers that enforce it, and the guardrails that shaped it.
NAME is looked up as an Agent first, then as an AgentPolicy.
)"},
      {"diff", R"(kubectl stockade diff [-n NAMESPACE] FILE

Compares the policy in FILE (one AgentPolicy, or an Agent with a policy
written in it) with the deployed one of the same namespace and name, both
merged with the cluster's guardrails: what the agent could do after applying
FILE that it cannot now (+), and the reverse (-). The namespace is the
object's metadata.namespace, else -n. Exit 0 when they allow the same, 1 when
they differ.
)"},
  };
  return *help;
}

const FlagSet& ClusterFlagSet(absl::string_view command) {
  static const auto* status = new FlagSet{
      {"kubeconfig", "context", "namespace", "output"},
      {"all-namespaces"},
      {{'n', "namespace"}, {'o', "output"}, {'A', "all-namespaces"}}};
  static const auto* denials = new FlagSet{
      {"kubeconfig", "context", "namespace", "output", "agent"},
      {"all-namespaces", "follow"},
      {{'n', "namespace"}, {'o', "output"}, {'A', "all-namespaces"}}};
  static const auto* other = new FlagSet{
      {"kubeconfig", "context", "namespace"}, {}, {{'n', "namespace"}}};
  if (command == "denials") return *denials;
  return command == "status" ? *status : *other;
}

ClusterFlags ToClusterFlags(const Flags& flags) {
  return ClusterFlags{flags.Get("kubeconfig"), flags.Get("context"),
                      flags.Get("namespace")};
}

// A command's error: "<program> <command>: <message>" and its exit code.
int Fail(absl::string_view program, absl::string_view command,
         const absl::Status& status, std::ostream& err) {
  err << program << " " << command << ": " << status.message() << "\n";
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
      return kExitInvalid;
    default:
      return kExitFailure;
  }
}

int Status(const Flags& flags, absl::string_view program, std::ostream& out,
           std::ostream& err) {
  const std::string output = flags.Get("output");
  if (!output.empty() && output != "json") {
    err << program << " status: unknown -o \"" << output
        << "\"; allowed: json (default: tables)\n";
    return kExitUsage;
  }
  if (!flags.positional.empty()) {
    err << program << " status: takes no arguments\n";
    return kExitUsage;
  }
  if (flags.Has("all-namespaces") && flags.Has("namespace")) {
    err << program << " status: give -n or -A, not both\n";
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<Cluster>> cluster =
      Cluster::Connect(ToClusterFlags(flags));
  if (!cluster.ok()) return Fail(program, "status", cluster.status(), err);
  StatusReport report;
  report.namespace_ =
      flags.Has("all-namespaces") ? "" : (*cluster)->namespace_name();
  for (auto [resource, into] :
       {std::make_pair(&kube::kAgentPolicy, &report.policies),
        std::make_pair(&kube::kClusterAgentPolicy, &report.cluster_policies),
        std::make_pair(&kube::kAgent, &report.agents)}) {
    absl::StatusOr<std::vector<json>> items =
        (*cluster)->List(*resource, report.namespace_);
    if (!items.ok()) return Fail(program, "status", items.status(), err);
    *into = *std::move(items);
  }
  if (output == "json") {
    out << StatusJson(report).dump(2) << "\n";
  } else {
    out << FormatStatus(report);
  }
  return kExitOk;
}

// The deployed policy of an Agent or AgentPolicy, ready to compile.
struct Deployed {
  // "Agent agents/researcher" or "AgentPolicy agents/research-agent".
  std::string object;
  // For an Agent: "AgentPolicy agents/x" or "the policy written in it".
  std::string policy_from;
  stockade::v1::AgentPolicy policy;  // metadata (namespace, name) and spec
  std::string source_kind;           // "AgentPolicy" or "Agent" (inline)
  // Field paths of the spec start here ("spec", or "spec.policy").
  std::string spec_path = "spec";
  // The hashes the operator wrote (status.policyHash), by object.
  std::vector<std::pair<std::string, std::string>> hashes;
  std::vector<compiler::Problem> problems;  // the spec does not decode
};

std::string StatusHash(const json& object) {
  return kube::StringAt(object, {"status", "policyHash"});
}

absl::StatusOr<Deployed> FromAgentPolicy(const json& object) {
  absl::StatusOr<controller::AgentPolicyObject> decoded =
      controller::DecodeAgentPolicy(kube::Dump(object));
  if (!decoded.ok()) return decoded.status();
  Deployed d;
  d.object = Describe(kube::kAgentPolicy, kube::NamespaceOf(object),
                      kube::NameOf(object));
  d.policy = std::move(decoded->object);
  d.source_kind = "AgentPolicy";
  d.problems = std::move(decoded->problems);
  if (std::string hash = StatusHash(object); !hash.empty()) {
    d.hashes.emplace_back(d.object, hash);
  }
  return d;
}

// The Agent `agent`: its AgentPolicy (fetched) or the policy written in it.
absl::StatusOr<Deployed> FromAgent(Cluster& cluster, const json& agent) {
  const std::string ns = kube::NamespaceOf(agent);
  const std::string name = kube::NameOf(agent);
  const std::string agent_text = Describe(kube::kAgent, ns, name);
  Deployed d;
  const std::string ref = kube::StringAt(agent, {"spec", "policyRef", "name"});
  if (!ref.empty()) {
    absl::StatusOr<std::optional<json>> policy =
        cluster.Get(kube::kAgentPolicy, ns, ref);
    if (!policy.ok()) return policy.status();
    if (!policy->has_value()) {
      return absl::NotFoundError(
          absl::StrCat(agent_text, " names AgentPolicy ", ref,
                       " (spec.policyRef.name), which does not exist in "
                       "namespace ",
                       ns));
    }
    absl::StatusOr<Deployed> from = FromAgentPolicy(**policy);
    if (!from.ok()) return from.status();
    d = *std::move(from);
    d.policy_from = d.object;
  } else {
    auto it = agent.find("spec");
    if (it == agent.end() || !it->is_object() || !it->contains("policy")) {
      return absl::InvalidArgumentError(absl::StrCat(
          agent_text, " has neither spec.policyRef nor spec.policy"));
    }
    d.policy.mutable_metadata()->set_name(name);
    d.policy.mutable_metadata()->set_namespace_(ns);
    d.problems = compiler::DecodeInto(kube::Dump((*it)["policy"]), "",
                                      d.policy.mutable_spec());
    for (compiler::Problem& p : d.problems) {
      p.path = p.path.empty() ? "spec.policy" : "spec.policy." + p.path;
    }
    d.source_kind = "Agent";
    d.spec_path = "spec.policy";
    d.policy_from = "the policy written in it (spec.policy)";
  }
  d.object = agent_text;
  if (std::string hash = StatusHash(agent); !hash.empty()) {
    d.hashes.emplace_back(agent_text, hash);
  }
  return d;
}

// NAME, agent/NAME or agentpolicy/NAME (kubectl's spellings of the kinds).
absl::StatusOr<Deployed> FetchDeployed(Cluster& cluster, absl::string_view ns,
                                       absl::string_view target) {
  std::string kind, name(target);
  if (const size_t slash = target.find('/'); slash != absl::string_view::npos) {
    kind = std::string(target.substr(0, slash));
    name = std::string(target.substr(slash + 1));
    static const auto* kAgentKinds =
        new std::vector<std::string>{"agent", "agents", "ag"};
    static const auto* kPolicyKinds = new std::vector<std::string>{
        "agentpolicy", "agentpolicies", "ap", "apol"};
    if (absl::c_linear_search(*kAgentKinds, kind)) {
      kind = "Agent";
    } else if (absl::c_linear_search(*kPolicyKinds, kind)) {
      kind = "AgentPolicy";
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", target, "\": want NAME, agent/NAME or agentpolicy/NAME"));
    }
  }
  if (kind != "AgentPolicy") {
    absl::StatusOr<std::optional<json>> agent =
        cluster.Get(kube::kAgent, ns, name);
    if (!agent.ok()) return agent.status();
    if (agent->has_value()) return FromAgent(cluster, **agent);
    if (kind == "Agent") {
      return absl::NotFoundError(
          absl::StrCat("no Agent ", name, " in namespace ", ns));
    }
  }
  absl::StatusOr<std::optional<json>> policy =
      cluster.Get(kube::kAgentPolicy, ns, name);
  if (!policy.ok()) return policy.status();
  if (!policy->has_value()) {
    return absl::NotFoundError(absl::StrCat(
        kind.empty() ? "no Agent or AgentPolicy " : "no AgentPolicy ", name,
        " in namespace ", ns));
  }
  return FromAgentPolicy(**policy);
}

// What the compiler needs from the cluster besides the policy.
struct Context {
  compiler::NamespaceLabels labels;
  std::vector<Guardrail> guardrails;
  std::vector<stockade::v1::ClusterAgentPolicy> policies() const {
    std::vector<stockade::v1::ClusterAgentPolicy> out;
    for (const Guardrail& g : guardrails) out.push_back(g.policy);
    return out;
  }
};

absl::StatusOr<Context> FetchContext(Cluster& cluster, absl::string_view ns) {
  Context c;
  absl::StatusOr<compiler::NamespaceLabels> labels =
      cluster.NamespaceLabels(ns);
  if (!labels.ok()) return labels.status();
  c.labels = *std::move(labels);
  absl::StatusOr<std::vector<Guardrail>> guardrails = cluster.Guardrails();
  if (!guardrails.ok()) return guardrails.status();
  c.guardrails = *std::move(guardrails);
  return c;
}

// Compiles the deployed policy as the operator does; problems (an invalid
// spec, a guardrail violation) become one InvalidArgument naming the
// object and every field.
absl::StatusOr<stockade::v1::CompiledPolicy> CompileDeployed(
    const Deployed& d, const Context& context) {
  std::vector<compiler::Problem> problems = d.problems;
  std::optional<stockade::v1::CompiledPolicy> compiled;
  if (problems.empty()) {
    compiler::CompileResult result = compiler::CompileAgentPolicy(
        d.policy, context.policies(), context.labels, d.source_kind);
    for (compiler::Problem& p : result.problems) {
      if (d.spec_path != "spec" && absl::StartsWith(p.path, "spec")) {
        p.path = d.spec_path + p.path.substr(4);
      }
      problems.push_back(std::move(p));
    }
    compiled = std::move(result.compiled);
  }
  if (!problems.empty() || !compiled.has_value()) {
    std::vector<std::string> lines;
    for (const compiler::Problem& p : problems) {
      lines.push_back(absl::StrCat("  ", p.path, ": ", p.message));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        d.object, " does not compile:\n", absl::StrJoin(lines, "\n")));
  }
  return *std::move(compiled);
}

// A deployed policy, what it is compiled against, and the result.
struct Resolved {
  Deployed deployed;
  Context context;
  stockade::v1::CompiledPolicy compiled;
};

absl::StatusOr<Resolved> Resolve(Cluster& cluster, absl::string_view ns,
                                 absl::string_view target) {
  absl::StatusOr<Deployed> deployed = FetchDeployed(cluster, ns, target);
  if (!deployed.ok()) return deployed.status();
  absl::StatusOr<Context> context = FetchContext(cluster, ns);
  if (!context.ok()) return context.status();
  absl::StatusOr<stockade::v1::CompiledPolicy> compiled =
      CompileDeployed(*deployed, *context);
  if (!compiled.ok()) return compiled.status();
  return Resolved{*std::move(deployed), *std::move(context),
                  *std::move(compiled)};
}

// One guardrail value in words: strings as they are, lists joined.
std::string ValueText(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    std::vector<std::string> items;
    for (const json& v : value) items.push_back(ValueText(v));
    return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
  }
  return kube::Dump(value);
}

std::string GuardrailsText(const Context& context,
                           const stockade::v1::CompiledPolicy& compiled) {
  const auto& applied = compiled.source().guardrails();
  if (applied.empty()) {
    return "Guardrails: no ClusterAgentPolicy selects the namespace.\n";
  }
  std::string out = "Guardrails that shaped it:\n";
  for (const Guardrail& g : context.guardrails) {
    const std::string name = kube::NameOf(g.object);
    if (!absl::c_linear_search(applied, name)) continue;
    absl::StrAppend(&out, "  ClusterAgentPolicy ", name, "\n");
    for (const char* part : {"guardrails", "defaults"}) {
      const json* values = nullptr;
      if (auto spec = g.object.find("spec");
          spec != g.object.end() && spec->is_object()) {
        if (auto it = spec->find(part); it != spec->end()) values = &*it;
      }
      if (values == nullptr || !values->is_object() || values->empty()) {
        continue;
      }
      absl::StrAppend(&out, "    ", part, ":\n");
      for (const auto& [key, value] : values->items()) {
        absl::StrAppend(&out, "      ", key, ": ", ValueText(value), "\n");
      }
    }
  }
  return out;
}

std::string LabelsText(const compiler::NamespaceLabels& labels) {
  if (labels.empty()) return "no labels";
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrCat("labels ", absl::StrJoin(parts, ","));
}

int Explain(const Flags& flags, absl::string_view program, std::ostream& out,
            std::ostream& err) {
  if (flags.positional.size() != 1) {
    err << program << " explain: want one NAME (an Agent or AgentPolicy)\n";
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<Cluster>> cluster =
      Cluster::Connect(ToClusterFlags(flags));
  if (!cluster.ok()) return Fail(program, "explain", cluster.status(), err);
  const std::string ns = (*cluster)->namespace_name();
  absl::StatusOr<Resolved> resolved =
      Resolve(**cluster, ns, flags.positional[0]);
  if (!resolved.ok()) return Fail(program, "explain", resolved.status(), err);
  const Deployed* deployed = &resolved->deployed;
  const Context* context = &resolved->context;
  const stockade::v1::CompiledPolicy* compiled = &resolved->compiled;

  out << deployed->object;
  if (!deployed->policy_from.empty() &&
      deployed->policy_from != deployed->object) {
    out << ", confined by " << deployed->policy_from;
  }
  out << "\nNamespace " << ns << ": " << LabelsText(context->labels) << "\n"
      << GuardrailsText(*context, *compiled);
  for (const auto& [object, hash] : deployed->hashes) {
    out << "In force per " << object << " status: hash "
        << hash.substr(0, kShortHash)
        << (hash == compiled->hash()
                ? " (the same as compiled now)"
                : " (differs from the hash compiled now: the operator has "
                  "not caught up, or runs another compiler version)")
        << "\n";
  }
  out << "\n" << compiler::ExplainPolicy(*compiled);
  return kExitOk;
}

int Diff(const Flags& flags, absl::string_view program, std::ostream& out,
         std::ostream& err) {
  if (flags.positional.size() != 1) {
    err << program << " diff: want one FILE (an AgentPolicy, or an Agent "
        << "with spec.policy)\n";
    return kExitUsage;
  }
  const std::string& file = flags.positional[0];
  Inputs inputs = LoadInputs({file});
  for (const compiler::Problem& p : inputs.problems) {
    err << p.ToString() << "\n";
  }
  if (!inputs.problems.empty()) return kExitInvalid;
  std::vector<const compiler::Document*> targets;
  for (const compiler::Document& doc : inputs.documents) {
    const auto* agent = std::get_if<stockade::v1::Agent>(&doc.object);
    if (std::holds_alternative<stockade::v1::AgentPolicy>(doc.object) ||
        (agent != nullptr && agent->spec().has_policy())) {
      targets.push_back(&doc);
    }
  }
  if (targets.size() != 1) {
    err << file << ": want exactly one AgentPolicy (or Agent with "
        << "spec.policy), found " << targets.size() << "\n";
    return kExitInvalid;
  }
  const compiler::Document& doc = *targets[0];
  absl::StatusOr<std::unique_ptr<Cluster>> cluster =
      Cluster::Connect(ToClusterFlags(flags));
  if (!cluster.ok()) return Fail(program, "diff", cluster.status(), err);
  std::string ns = doc.Metadata().namespace_();
  if (ns.empty()) ns = (*cluster)->namespace_name();
  absl::StatusOr<Resolved> resolved =
      Resolve(**cluster, ns,
              absl::StrCat(doc.Kind() == "Agent" ? "agent/" : "agentpolicy/",
                           doc.Metadata().name()));
  if (!resolved.ok()) return Fail(program, "diff", resolved.status(), err);
  const Deployed* deployed = &resolved->deployed;
  const Context* context = &resolved->context;
  const stockade::v1::CompiledPolicy* before = &resolved->compiled;

  // The file's policy in the deployed one's namespace.
  Inputs local;
  local.documents.push_back(doc);
  std::visit(
      [&](auto& object) { object.mutable_metadata()->set_namespace_(ns); },
      local.documents[0].object);
  std::vector<compiler::Problem> problems;
  std::vector<Compiled> after =
      CompileAll(local, context->policies(), context->labels, &problems);
  for (const compiler::Problem& p : problems) err << p.ToString() << "\n";
  if (!problems.empty() || after.size() != 1) return kExitInvalid;

  out << "--- " << deployed->object << " (deployed, hash "
      << before->hash().substr(0, kShortHash) << ")\n"
      << "+++ " << file << " (hash "
      << after[0].policy.hash().substr(0, kShortHash) << ")\n";
  compiler::PolicyDiff d = compiler::DiffPolicies(*before, after[0].policy);
  out << d.ToString();
  return d.empty() ? kExitOk : kExitInvalid;
}

// A string field of an Event ("" when absent or null).
std::string EventString(const nlohmann::json& e, const char* key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : "";
}

// When an Event last happened (lastTimestamp, else eventTime).
std::string EventLastSeen(const nlohmann::json& e) {
  std::string t = EventString(e, "lastTimestamp");
  return t.empty() ? EventString(e, "eventTime") : t;
}

// The Events of denials in `ns` ("" every namespace), oldest first.
absl::StatusOr<std::vector<nlohmann::json>> DenialEvents(
    Cluster& cluster, const std::string& ns, const std::string& agent) {
  // The operator labels the Events of an Agent's pods with its name.
  absl::StatusOr<std::vector<nlohmann::json>> events = cluster.List(
      kube::kEvent, ns,
      agent.empty() ? "" : absl::StrCat(controller::kAgentLabel, "=", agent));
  if (!events.ok()) return events.status();
  std::vector<nlohmann::json> out;
  for (nlohmann::json& e : *events) {
    const std::string reason = EventString(e, "reason");
    if (reason != "Denied" && reason != "Complained") continue;
    out.push_back(std::move(e));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const nlohmann::json& a, const nlohmann::json& b) {
                     return EventLastSeen(a) < EventLastSeen(b);
                   });
  return out;
}

int Denials(const Flags& flags, absl::string_view program, std::ostream& out,
            std::ostream& err) {
  if (flags.Has("all-namespaces") && flags.Has("namespace")) {
    err << program << " denials: -A and -n exclude each other\n";
    return kExitUsage;
  }
  const std::string output = flags.Get("output", "table");
  if (output != "table" && output != "json") {
    err << program << " denials: -o " << output << ": want table or json\n";
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<Cluster>> cluster =
      Cluster::Connect(ToClusterFlags(flags));
  if (!cluster.ok()) return Fail(program, "denials", cluster.status(), err);
  const std::string ns =
      flags.Has("all-namespaces") ? "" : (*cluster)->namespace_name();
  const std::string agent = flags.Get("agent");
  if (!agent.empty() && !store::CheckIndexKey("", agent).ok()) {
    err << program << " denials: --agent " << agent
        << ": want an Agent name (lowercase letters, digits, '-', '.')\n";
    return kExitUsage;
  }
  std::map<std::string, int64_t> seen;  // uid -> count printed
  bool header = true;
  while (true) {
    absl::StatusOr<std::vector<nlohmann::json>> events =
        DenialEvents(**cluster, ns, agent);
    if (!events.ok()) return Fail(program, "denials", events.status(), err);
    std::vector<TableRow> rows;
    for (const nlohmann::json& e : *events) {
      const std::string uid =
          e.contains("metadata") ? EventString(e["metadata"], "uid") : "";
      const int64_t count =
          e.contains("count") && e["count"].is_number_integer()
              ? e["count"].get<int64_t>()
              : 1;
      if (seen.count(uid) && seen[uid] >= count) continue;
      seen[uid] = count;
      if (output == "json") {
        out << e.dump() << "\n";
        continue;
      }
      const nlohmann::json about =
          e.contains("involvedObject") ? e["involvedObject"] : nlohmann::json();
      rows.push_back({EventLastSeen(e), absl::StrCat(count),
                      absl::StrCat(EventString(about, "namespace"), "/",
                                   EventString(about, "name")),
                      EventString(e, "reason"), EventString(e, "message")});
    }
    if (!rows.empty()) {
      std::string table = FormatTable(
          {"LAST SEEN", "COUNT", "OBJECT", "REASON", "MESSAGE"}, rows);
      if (!header) table = table.substr(table.find('\n') + 1);
      out << table;
      header = false;
    } else if (header && output == "table" && !flags.Has("follow")) {
      out << "No denials reported"
          << (ns.empty() ? "" : absl::StrCat(" in namespace ", ns)) << ".\n";
    }
    out.flush();
    if (!flags.Has("follow") || !out) return kExitOk;
    absl::SleepFor(absl::Seconds(2));
  }
}

}  // namespace

bool IsKubectlPlugin(absl::string_view argv0) {
  return absl::EndsWith(argv0, kPluginName);
}

bool IsClusterCommand(absl::string_view command, bool plugin) {
  return command == "status" ||
         (plugin &&
          (command == "explain" || command == "diff" || command == "denials"));
}

int RunClusterCommand(const std::vector<std::string>& args,
                      absl::string_view program, std::ostream& out,
                      std::ostream& err) {
  const std::string& command = args[0];
  Flags flags;
  if (!ParseFlags(args, 1, ClusterFlagSet(command),
                  absl::StrCat(program, " ", command), &flags, err)) {
    return kExitUsage;
  }
  if (flags.help) {
    out << ClusterHelp().at(command);
    return kExitOk;
  }
  if (command == "status") return Status(flags, program, out, err);
  if (command == "explain") return Explain(flags, program, out, err);
  if (command == "denials") return Denials(flags, program, out, err);
  return Diff(flags, program, out, err);
}

int RunKubectlPlugin(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err) {
  constexpr absl::string_view kProgram = "kubectl stockade";
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      args[0] == "help") {
    if (args.size() > 1 && IsClusterCommand(args[1], true)) {
      out << ClusterHelp().at(args[1]);
      return kExitOk;
    }
    (args.empty() ? err : out) << kPluginUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  // `kubectl stockade denials --store DIR`: a node's own log, as stockade.
  const bool local_denials =
      args[0] == "denials" &&
      std::any_of(args.begin(), args.end(), [](const std::string& a) {
        return absl::StartsWith(a, "--store");
      });
  if (IsClusterCommand(args[0], true) && !local_denials) {
    return RunClusterCommand(args, kProgram, out, err);
  }
  return Run(args, out, err);
}

}  // namespace stockade::cli
