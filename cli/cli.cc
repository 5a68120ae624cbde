#include "cli/cli.h"

#include <curl/curl.h>
#include <sys/apparmor.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/denials.h"
#include "cli/flags.h"
#include "cli/inputs.h"
#include "cli/kubectl.h"
#include "cli/suggest.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/explain.h"
#include "shim/spec/apply_spec.h"
#include "store/store.h"

namespace stockade::cli {
namespace {

constexpr char kUsage[] = R"(stockade: compile and check agent policies

Usage:
  stockade validate [--guardrails FILE]... FILE...
  stockade compile [--guardrails FILE]... [--format FORMAT] [--name NAME]
                   [--namespace-labels K=V,...] FILE...
  stockade explain [--guardrails FILE]... FILE...
  stockade diff [--guardrails FILE]... OLD NEW
  stockade apply-spec --policy FILE --spec CONFIG_JSON [--guardrails FILE]...
                      [--apparmor auto|on|off] [--output FILE]
  stockade install --store DIR [--guardrails FILE]... FILE...
  stockade status [-n NAMESPACE | -A] [-o json]   (reads the cluster)
  stockade denials --store DIR [--namespace NS] [--policy NAME] [--agent NAME]
                   [--container ID] [--layer L] [--mode M] [-o json] [--follow]
  stockade suggest --policy FILE --store DIR [--container ID] [--output F]
  stockade probe-http --url URL [--expect CODE]
  stockade COMMAND --help

Installed as kubectl-stockade, `kubectl stockade` also explains and diffs the
policies deployed in the cluster (kubectl stockade --help).

FILE is a YAML or JSON manifest (several documents allowed; "-" reads stdin)
holding AgentPolicy, ClusterAgentPolicy and Agent objects. ClusterAgentPolicies
among the files, or given with --guardrails, apply to the namespaces they
select.

Exit codes: 0 success; 1 invalid input, a guardrail violation, or (diff) the
policies differ; 2 bad command line; 3 an operation failed (I/O, store).
)";

const std::map<std::string, std::string>& CommandHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"validate", R"(stockade validate [--guardrails FILE]... FILE...

Checks every document: schema (types, required fields, patterns, ranges),
paths, CIDRs, ports, syscall and capability names, sizes, contradictions, and
the guardrails of the ClusterAgentPolicies given. Prints one line per problem
on stderr as FILE:LINE: field.path: message. Exit 0 when all are valid, 1 when
not.
)"},
      {"compile",
       R"(stockade compile [--guardrails FILE]... [--format FORMAT] [--name NAME]
                 [--namespace-labels K=V,...] FILE...

Compiles each AgentPolicy (and each Agent with an inline policy) into the
policy a node enforces, and prints it on stdout.
  --format json      the CompiledPolicy (proto JSON; default). Several
                     policies print as a JSON array.
  --format apparmor  the AppArmor profile
  --format seccomp   the OCI linux.seccomp object
  --format landlock  the Landlock ruleset (JSON)
  --format oci       the OCI runtime spec changes (JSON)
  --format nft       the nftables egress ruleset
  --name NAME        pick one policy by name (or NAMESPACE/NAME)
  --namespace-labels K=V,...  labels of the policy's namespace, for the
                     namespaceSelector of ClusterAgentPolicies
Formats other than json need exactly one policy.
)"},
      {"explain", R"(stockade explain [--guardrails FILE]... FILE...

Prints every rule of each policy in words, with the layers that enforce it
(OCI spec, seccomp, AppArmor, Landlock, nftables).
)"},
      {"diff", R"(stockade diff [--guardrails FILE]... OLD NEW

Compares two versions of a policy (one policy per file): what the agent may
do after that it could not before (+), and the reverse (-). Exit 0 when they
allow the same, 1 when they differ.
)"},
      {"apply-spec",
       R"(stockade apply-spec --policy FILE --spec CONFIG_JSON [--guardrails FILE]...
                    [--apparmor auto|on|off] [--output FILE]

Rewrites an OCI runtime spec (config.json) exactly as the shim does when it
creates the container: read-only root, tmpfs mounts, masked paths,
capabilities, noNewPrivileges, rlimits, pids limit, seccomp and (where the
kernel has AppArmor, or with --apparmor on) the AppArmor profile.
)"},
      {"denials",
       R"(stockade denials --store DIR [--namespace NS] [--policy NAME]
                 [--agent NAME] [--container ID]
                 [--layer seccomp|apparmor|landlock|network]
                 [--mode enforced|complained] [-o table|json] [--follow]

Shows the denials the node agent collected into DIR/denials (stockade-node
--denials-only on a single host): when, which policy and container (and the
Agent it runs for: its stockade.dev/agent annotation), which layer stopped
what, the process. -o json prints the JSON lines as stored;
--follow keeps printing new ones. See docs/denials.md.
)"},
      {"suggest", R"(stockade suggest --policy FILE --store DIR [--container ID]
                 [--output FILE]

Drafts, from the denials the policy's containers met (DIR/denials, as
`stockade denials` shows them), the least additions to the AgentPolicy in
FILE that would have allowed them: syscalls.allow (or a syscalls.deny entry
taken out), exec.allow, filesystem.writable (the directory written, 64Mi),
network.egress (the destination as /32 or /128 with its port). Prints the
widened policy (YAML) on stdout or into --output, and each change with the
number of denials behind it on stderr. Nothing is applied: review it, then
`stockade diff FILE DRAFT` and apply it yourself. Denials no field can allow
(a path in filesystem.deny) are named and left denied.
)"},
      {"probe-http", R"(stockade probe-http --url URL [--expect CODE]

GETs URL (plain HTTP, 5 s timeout) and exits 0 when the answer has the HTTP
status CODE (default 200), 1 otherwise, printing what came back. The Helm
chart's `helm test` runs it against the operator's /healthz: the images have
no shell and no curl.
)"},
      {"install", R"(stockade install --store DIR [--guardrails FILE]... FILE...

Compiles each policy and writes it into the node store DIR (atomically), where
the shim finds it by namespace and name. Prints namespace/name and hash.
)"},
  };
  return *help;
}

void PrintProblems(const std::vector<compiler::Problem>& problems,
                   std::ostream& err) {
  for (const auto& p : problems) err << p.ToString() << "\n";
}

// Loads the files of a command plus its --guardrails files. Returns false
// (after printing the problems) when any input is invalid.
bool Load(const Flags& flags, const std::vector<std::string>& files,
          Inputs* inputs, std::vector<v1::ClusterAgentPolicy>* guardrails,
          std::ostream& err) {
  *inputs = LoadInputs(files);
  Inputs extra = LoadInputs(flags.All("guardrails"));
  for (const auto& doc : extra.documents) {
    if (!std::holds_alternative<v1::ClusterAgentPolicy>(doc.object)) {
      extra.problems.push_back(compiler::Problem{
          doc.file, doc.line, "kind",
          absl::StrCat("--guardrails files hold ClusterAgentPolicy objects, "
                       "not ",
                       doc.Kind())});
    }
  }
  *guardrails = inputs->ClusterPolicies();
  auto more = extra.ClusterPolicies();
  guardrails->insert(guardrails->end(), more.begin(), more.end());
  std::vector<compiler::Problem> problems = extra.problems;
  problems.insert(problems.end(), inputs->problems.begin(),
                  inputs->problems.end());
  PrintProblems(problems, err);
  return problems.empty();
}

bool ParseLabels(const std::string& text, compiler::NamespaceLabels* labels,
                 std::ostream& err) {
  for (absl::string_view kv : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first.empty() || kv.find('=') == absl::string_view::npos) {
      err << "stockade: --namespace-labels wants KEY=VALUE pairs separated by "
             "commas, got \""
          << kv << "\"\n";
      return false;
    }
    (*labels)[p.first] = p.second;
  }
  return true;
}

// Compiles the inputs; prints problems. Returns false on any problem.
bool CompileInputs(const Flags& flags, const std::vector<std::string>& files,
                   Inputs* inputs, std::vector<Compiled>* compiled,
                   std::ostream& err) {
  std::vector<v1::ClusterAgentPolicy> guardrails;
  if (!Load(flags, files, inputs, &guardrails, err)) return false;
  compiler::NamespaceLabels labels;
  if (!ParseLabels(flags.Get("namespace-labels"), &labels, err)) return false;
  std::vector<compiler::Problem> problems;
  *compiled = CompileAll(*inputs, guardrails, labels, &problems);
  PrintProblems(problems, err);
  return problems.empty();
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

int Validate(const Flags& flags, std::ostream& out, std::ostream& err) {
  if (flags.positional.empty()) {
    err << "stockade validate: no files given\n";
    return kExitUsage;
  }
  Inputs inputs;
  std::vector<Compiled> compiled;
  if (!CompileInputs(flags, flags.positional, &inputs, &compiled, err)) {
    return kExitInvalid;
  }
  out << "valid: " << inputs.documents.size() << " object"
      << (inputs.documents.size() == 1 ? "" : "s") << " in "
      << flags.positional.size() << " file"
      << (flags.positional.size() == 1 ? "" : "s");
  if (!inputs.skipped.empty()) {
    out << " (not Stockade objects, not checked: "
        << absl::StrJoin(inputs.skipped, ", ") << ")";
  }
  out << "\n";
  return kExitOk;
}

// Picks --name among compiled policies.
std::vector<Compiled> Select(std::vector<Compiled> all,
                             const std::string& name) {
  if (name.empty()) return all;
  std::vector<Compiled> out;
  for (auto& c : all) {
    const auto& src = c.policy.source();
    if (src.name() == name ||
        absl::StrCat(src.namespace_(), "/", src.name()) == name) {
      out.push_back(std::move(c));
    }
  }
  return out;
}

int CompileCommand(const Flags& flags, std::ostream& out, std::ostream& err) {
  static const std::vector<std::string> kFormats = {
      "json", "apparmor", "seccomp", "landlock", "oci", "nft"};
  const std::string format = flags.Get("format", "json");
  if (std::find(kFormats.begin(), kFormats.end(), format) == kFormats.end()) {
    err << "stockade compile: unknown --format \"" << format
        << "\"; allowed: " << absl::StrJoin(kFormats, ", ") << "\n";
    return kExitUsage;
  }
  if (flags.positional.empty()) {
    err << "stockade compile: no files given\n";
    return kExitUsage;
  }
  Inputs inputs;
  std::vector<Compiled> compiled;
  if (!CompileInputs(flags, flags.positional, &inputs, &compiled, err)) {
    return kExitInvalid;
  }
  compiled = Select(std::move(compiled), flags.Get("name"));
  if (compiled.empty()) {
    err << "stockade compile: no AgentPolicy"
        << (flags.Get("name").empty() ? "" : " named " + flags.Get("name"))
        << " in the files given\n";
    return kExitInvalid;
  }
  if (format == "json") {
    if (compiled.size() == 1) {
      out << ToJson(compiled[0].policy);
    } else {
      out << "[\n";
      for (size_t i = 0; i < compiled.size(); ++i) {
        out << ToJson(compiled[i].policy)
            << (i + 1 < compiled.size() ? ",\n" : "\n");
      }
      out << "]\n";
    }
    return kExitOk;
  }
  if (compiled.size() != 1) {
    err << "stockade compile: --format " << format << " prints one policy, but "
        << compiled.size() << " were compiled; pick one with --name\n";
    return kExitUsage;
  }
  const v1::CompiledPolicy& p = compiled[0].policy;
  if (format == "apparmor") out << p.apparmor().text();
  if (format == "seccomp") {
    out << nlohmann::json::parse(p.seccomp_json()).dump(2) << "\n";
  }
  if (format == "landlock") out << ToJson(p.landlock());
  if (format == "oci") out << ToJson(p.oci());
  if (format == "nft") out << p.nftables();
  return kExitOk;
}

int Explain(const Flags& flags, std::ostream& out, std::ostream& err) {
  if (flags.positional.empty()) {
    err << "stockade explain: no files given\n";
    return kExitUsage;
  }
  Inputs inputs;
  std::vector<Compiled> compiled;
  if (!CompileInputs(flags, flags.positional, &inputs, &compiled, err)) {
    return kExitInvalid;
  }
  for (size_t i = 0; i < compiled.size(); ++i) {
    if (i > 0) out << "\n";
    out << compiler::ExplainPolicy(compiled[i].policy);
  }
  return kExitOk;
}

int Diff(const Flags& flags, std::ostream& out, std::ostream& err) {
  if (flags.positional.size() != 2) {
    err << "stockade diff: want two files, OLD and NEW\n";
    return kExitUsage;
  }
  std::vector<v1::CompiledPolicy> sides;
  for (const std::string& file : flags.positional) {
    Inputs inputs;
    std::vector<Compiled> compiled;
    if (!CompileInputs(flags, {file}, &inputs, &compiled, err)) {
      return kExitInvalid;
    }
    if (compiled.size() != 1) {
      err << file << ": want exactly one policy, found " << compiled.size()
          << "\n";
      return kExitInvalid;
    }
    sides.push_back(compiled[0].policy);
  }
  compiler::PolicyDiff d = compiler::DiffPolicies(sides[0], sides[1]);
  out << d.ToString();
  return d.empty() ? kExitOk : kExitInvalid;
}

bool ReadWholeFile(const std::string& name, std::string* out) {
  std::ifstream in(name, std::ios::binary);
  if (!in) return false;
  std::ostringstream buf;
  buf << in.rdbuf();
  *out = buf.str();
  return !in.bad();
}

int ApplySpecCommand(const Flags& flags, std::ostream& out, std::ostream& err) {
  const std::string policy = flags.Get("policy");
  const std::string spec = flags.Get("spec");
  if (policy.empty() || spec.empty() || !flags.positional.empty()) {
    err << "stockade apply-spec: want --policy FILE and --spec CONFIG_JSON\n";
    return kExitUsage;
  }
  const std::string apparmor = flags.Get("apparmor", "auto");
  if (apparmor != "auto" && apparmor != "on" && apparmor != "off") {
    err << "stockade apply-spec: --apparmor must be auto, on or off\n";
    return kExitUsage;
  }
  Inputs inputs;
  std::vector<Compiled> compiled;
  if (!CompileInputs(flags, {policy}, &inputs, &compiled, err)) {
    return kExitInvalid;
  }
  if (compiled.size() != 1) {
    err << policy << ": want exactly one policy, found " << compiled.size()
        << "\n";
    return kExitInvalid;
  }
  std::string config;
  if (!ReadWholeFile(spec, &config)) {
    err << spec << ": cannot read: " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  shim::ApplySpecOptions options;
  options.set_apparmor_profile =
      apparmor == "on" || (apparmor == "auto" && aa_is_enabled() == 1);
  auto rewritten = shim::ApplySpec(config, compiled[0].policy, options);
  if (!rewritten.ok()) {
    err << spec << ": " << rewritten.status().message() << "\n";
    return kExitInvalid;
  }
  const std::string output = flags.Get("output");
  if (output.empty()) {
    out << *rewritten;
    return kExitOk;
  }
  std::ofstream file(output, std::ios::binary | std::ios::trunc);
  file << *rewritten;
  file.close();
  if (!file) {
    err << output << ": cannot write\n";
    return kExitFailure;
  }
  return kExitOk;
}

int Install(const Flags& flags, std::ostream& out, std::ostream& err) {
  const std::string root = flags.Get("store");
  if (root.empty() || flags.positional.empty()) {
    err << "stockade install: want --store DIR and at least one FILE\n";
    return kExitUsage;
  }
  Inputs inputs;
  std::vector<Compiled> compiled;
  if (!CompileInputs(flags, flags.positional, &inputs, &compiled, err)) {
    return kExitInvalid;
  }
  auto store = store::Store::Open(root);
  if (!store.ok()) {
    err << "stockade install: " << store.status().message() << "\n";
    return kExitFailure;
  }
  for (const Compiled& c : compiled) {
    if (absl::Status s = store->Install(c.policy); !s.ok()) {
      err << "stockade install: " << s.message() << "\n";
      return kExitFailure;
    }
    const auto& src = c.policy.source();
    out << "installed " << src.namespace_() << "/" << src.name() << " "
        << c.policy.hash() << "\n";
  }
  return kExitOk;
}

size_t CollectBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

int ProbeHttp(const Flags& flags, std::ostream& out, std::ostream& err) {
  const std::string url = flags.Get("url");
  const std::string expect_text =
      flags.Get("expect").empty() ? "200" : flags.Get("expect");
  long expect = 0;
  if (url.empty() || !absl::SimpleAtoi(expect_text, &expect)) {
    err << "stockade probe-http: want --url URL and --expect a status code\n";
    return kExitUsage;
  }
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    err << "stockade probe-http: cannot start libcurl\n";
    return kExitFailure;
  }
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 5L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    err << "stockade probe-http: " << url << ": " << curl_easy_strerror(rc)
        << "\n";
    return kExitInvalid;
  }
  out << url << ": HTTP " << code << " " << body.substr(0, 200) << "\n";
  if (code != expect) {
    err << "stockade probe-http: " << url << " answered " << code
        << ", expected " << expect << "\n";
    return kExitInvalid;
  }
  return kExitOk;
}

}  // namespace

int Run(const std::vector<std::string>& args, std::ostream& out,
        std::ostream& err) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      args[0] == "help") {
    if (args.size() > 1 && CommandHelp().count(args[1])) {
      out << CommandHelp().at(args[1]);
      return kExitOk;
    }
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  if (IsClusterCommand(args[0], /*plugin=*/false)) {
    return RunClusterCommand(args, "stockade", out, err);
  }
  struct Command {
    FlagSet flags;
    std::function<int(const Flags&, std::ostream&, std::ostream&)> run;
  };
  static const auto* commands = new std::map<std::string, Command>{
      {"validate", {{{"guardrails", "namespace-labels"}}, Validate}},
      {"compile",
       {{{"guardrails", "format", "name", "namespace-labels"}},
        CompileCommand}},
      {"explain", {{{"guardrails", "namespace-labels"}}, Explain}},
      {"diff", {{{"guardrails", "namespace-labels"}}, Diff}},
      {"apply-spec",
       {{{"policy", "spec", "guardrails", "apparmor", "output",
          "namespace-labels"}},
        ApplySpecCommand}},
      {"install", {{{"store", "guardrails", "namespace-labels"}}, Install}},
      {"probe-http", {{{"url", "expect"}}, ProbeHttp}},
      {"suggest",
       {{{"policy", "store", "container", "output"}}, SuggestCommand}},
      {"denials",
       {{{"store", "namespace", "policy", "agent", "container", "layer", "mode",
          "output"},
         {"follow"},
         {{'n', "namespace"}, {'o', "output"}}},
        DenialsCommand}},
  };
  auto it = commands->find(args[0]);
  if (it == commands->end()) {
    err << "stockade: unknown command \"" << args[0] << "\"\n\n" << kUsage;
    return kExitUsage;
  }
  Flags flags;
  if (!ParseFlags(args, 1, it->second.flags, "stockade", &flags, err)) {
    return kExitUsage;
  }
  if (flags.help) {
    out << CommandHelp().at(args[0]);
    return kExitOk;
  }
  return it->second.run(flags, out, err);
}

}  // namespace stockade::cli
