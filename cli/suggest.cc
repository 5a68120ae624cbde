#include "cli/suggest.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/inputs.h"
#include "nlohmann/json.hpp"
#include "node/denials/denial_log.h"
#include "operator/compiler/compile.h"
#include "operator/controller/objects.h"
#include "yaml-cpp/yaml.h"

namespace stockade::cli {
namespace {

using node::denials::Denial;

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list,
              const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Whether `path` lies at or beneath directory `dir`.
bool Beneath(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  std::string d =
      absl::EndsWith(dir, "/") ? dir.substr(0, dir.size() - 1) : dir;
  return path == d || absl::StartsWith(path, d + "/");
}

std::string Parent(const std::string& path) {
  std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "/" : p;
}

bool IsWrite(const std::string& access) {
  for (const char* w : {"fs.write_file", "fs.make_", "fs.remove_",
                        "fs.truncate", "fs.refer", "w", "a", "c", "d"}) {
    if (absl::StartsWith(access, w) || access == w) return true;
  }
  return false;
}

void Emit(YAML::Emitter& out, const nlohmann::json& j) {
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      out << YAML::Key << it.key() << YAML::Value;
      Emit(out, it.value());
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    bool flat = std::all_of(j.begin(), j.end(), [](const nlohmann::json& v) {
      return v.is_primitive();
    });
    out << (flat ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
    for (const auto& v : j) Emit(out, v);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    out << j.get<std::string>();
  } else if (j.is_boolean()) {
    out << j.get<bool>();
  } else if (j.is_number_integer()) {
    out << j.get<int64_t>();
  } else if (j.is_number()) {
    out << j.get<double>();
  } else {
    out << YAML::Null;
  }
}

// Drops what the JSON mapping prints for unset fields (empty strings, zero
// numbers, empty lists and maps); booleans stay (readOnlyRoot: false means
// something).
void Prune(nlohmann::json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      Prune(it.value());
      const nlohmann::json& v = it.value();
      bool empty = (v.is_string() && v.get<std::string>().empty()) ||
                   (v.is_number() && v == 0) ||
                   ((v.is_array() || v.is_object()) && v.empty()) ||
                   v.is_null();
      it = empty ? j.erase(it) : std::next(it);
    }
  } else if (j.is_array()) {
    for (auto& v : j) Prune(v);
  }
}

}  // namespace

std::vector<std::string> SuggestAdditions(const std::vector<Denial>& denials,
                                          v1::AgentPolicy* policy) {
  v1::AgentPolicySpec& spec = *policy->mutable_spec();
  // What to add, with how many denials asked for it (sorted output).
  std::map<std::string, int> changes;
  std::map<std::string, int> unallowable;
  for (const Denial& d : denials) {
    if (d.suppressed > 0) continue;
    const std::string& what = d.layer;
    if (d.layer == "seccomp" && !d.syscall.empty()) {
      if (Contains(spec.syscalls().deny(), d.syscall)) {
        auto* deny = spec.mutable_syscalls()->mutable_deny();
        deny->erase(std::remove(deny->begin(), deny->end(), d.syscall),
                    deny->end());
        ++changes[absl::StrCat("- syscalls.deny ", d.syscall)];
      } else if (!Contains(spec.syscalls().allow(), d.syscall)) {
        spec.mutable_syscalls()->add_allow(d.syscall);
        ++changes[absl::StrCat("+ syscalls.allow ", d.syscall)];
      } else {
        ++changes[absl::StrCat("+ syscalls.allow ", d.syscall)];
      }
      continue;
    }
    if ((d.layer == "landlock" || d.layer == "apparmor") && !d.path.empty()) {
      if (d.access == "fs.execute" || d.access == "x") {
        bool allowed = false;
        for (const std::string& a : spec.exec().allow()) {
          allowed = allowed || a == d.path ||
                    (absl::EndsWith(a, "/") && Beneath(d.path, a));
        }
        if (!allowed) spec.mutable_exec()->add_allow(d.path);
        ++changes[absl::StrCat("+ exec.allow ", d.path)];
        continue;
      }
      if (IsWrite(d.access)) {
        const std::string dir = Parent(d.path);
        bool writable = false;
        for (const v1::WritablePath& w : spec.filesystem().writable()) {
          writable = writable || Beneath(d.path, w.path());
        }
        if (!writable) {
          v1::WritablePath* w = spec.mutable_filesystem()->add_writable();
          w->set_path(dir);
          w->set_size_limit("64Mi");
        }
        ++changes[absl::StrCat("+ filesystem.writable ", dir)];
        continue;
      }
      for (const std::string& denied : spec.filesystem().deny()) {
        if (Beneath(d.path, denied)) {
          ++unallowable[absl::StrCat(
              "  ", d.path, " is in filesystem.deny (", denied,
              "): left denied; remove it by hand if the agent needs it")];
        }
      }
      continue;
    }
    if (d.layer == "pids") {
      // A limit, not a permission: a runaway fork loop looks the same as a
      // busy agent, so it is never raised by a draft.
      ++unallowable[absl::StrCat(
          "  processes.max refused a fork",
          d.access.empty() ? "" : absl::StrCat(" (", d.access, ")"),
          ": left as is; raise spec.processes.max by hand if the agent needs "
          "more processes")];
      continue;
    }
    if (!d.destination.empty()) {
      const bool v6 = absl::StrContains(d.destination, ':');
      const std::string cidr = absl::StrCat(d.destination, v6 ? "/128" : "/32");
      v1::EgressRule* rule = nullptr;
      for (v1::EgressRule& r : *spec.mutable_network()->mutable_egress()) {
        if (Contains(r.cidrs(), cidr)) rule = &r;
      }
      if (rule == nullptr) {
        rule = spec.mutable_network()->add_egress();
        rule->add_cidrs(cidr);
      }
      if (d.port != 0) {
        bool has = false;
        for (const v1::PortRule& p : rule->ports()) {
          has = has || (d.port >= p.port() &&
                        d.port <= std::max(p.port(), p.end_port()));
        }
        if (!has) rule->add_ports()->set_port(d.port);
      }
      ++changes[absl::StrCat("+ network.egress ", cidr,
                             d.port ? absl::StrCat(" port ", d.port) : "")];
      continue;
    }
    ++unallowable[absl::StrCat("  a ", what, " denial no policy field allows (",
                               d.access, d.syscall, ")")];
  }
  std::vector<std::string> out;
  for (const auto& [change, n] : changes) {
    out.push_back(
        absl::StrCat(change, "  (", n, n == 1 ? " denial)" : " denials)"));
  }
  for (const auto& [note, n] : unallowable) out.push_back(note);
  return out;
}

std::string PolicyYaml(const v1::AgentPolicy& policy) {
  nlohmann::json j = nlohmann::json::parse(controller::ToCrdJson(policy));
  j.erase("status");
  for (const char* server_set :
       {"uid", "resourceVersion", "generation", "creationTimestamp",
        "managedFields", "ownerReferences"}) {
    j["metadata"].erase(server_set);
  }
  if (j["metadata"].contains("annotations")) {
    j["metadata"]["annotations"].erase(
        "kubectl.kubernetes.io/last-applied-configuration");
  }
  Prune(j);
  j["apiVersion"] = "stockade.dev/v1alpha1";
  j["kind"] = "AgentPolicy";
  YAML::Emitter out;
  Emit(out, j);
  return std::string(out.c_str()) + "\n";
}

int SuggestCommand(const Flags& flags, std::ostream& out, std::ostream& err) {
  const std::string file = flags.Get("policy");
  const std::string store = flags.Get("store");
  if (file.empty() || store.empty()) {
    err << "stockade suggest: want --policy FILE (the AgentPolicy to widen) "
           "and --store DIR (where the node logged the denials)\n";
    return 2;
  }
  Inputs inputs = LoadInputs({file});
  for (const compiler::Problem& p : inputs.problems) {
    err << p.ToString() << "\n";
  }
  const v1::AgentPolicy* found = nullptr;
  for (const compiler::Document& doc : inputs.documents) {
    if (const auto* p = std::get_if<v1::AgentPolicy>(&doc.object)) found = p;
  }
  if (!inputs.problems.empty() || found == nullptr) {
    err << "stockade suggest: " << file << " holds no valid AgentPolicy\n";
    return 1;
  }
  v1::AgentPolicy policy = *found;
  const std::string ns = policy.metadata().namespace_().empty()
                             ? "default"
                             : policy.metadata().namespace_();
  auto all = node::denials::ReadDenials(node::denials::DenialDir(store));
  if (!all.ok()) {
    err << "stockade suggest: " << all.status().message() << "\n";
    return 3;
  }
  std::vector<Denial> mine;
  const std::string container = flags.Get("container");
  for (const Denial& d : *all) {
    if (d.policy_name != policy.metadata().name() || d.policy_namespace != ns) {
      continue;
    }
    if (!container.empty() && d.container_id != container &&
        d.pod_name != container) {
      continue;
    }
    mine.push_back(d);
  }
  if (mine.empty()) {
    err << "stockade suggest: no denials of policy " << ns << "/"
        << policy.metadata().name() << (container.empty() ? "" : " in ")
        << container << " in " << store << ": nothing to suggest\n";
    out << PolicyYaml(policy);
    return 0;
  }
  std::vector<std::string> changes = SuggestAdditions(mine, &policy);
  // The draft must compile: what is suggested is a policy, not a wish.
  auto compiled = compiler::CompileAgentPolicy(policy, {}, {});
  if (!compiled.compiled) {
    err << "stockade suggest: the draft does not compile: "
        << compiled.problems.at(0).ToString() << "\n";
    return 1;
  }
  err << "stockade suggest: " << mine.size() << " denials of " << ns << "/"
      << policy.metadata().name() << "; review before applying:\n";
  for (const std::string& c : changes) err << "  " << c << "\n";
  const std::string output = flags.Get("output");
  if (output.empty()) {
    out << PolicyYaml(policy);
    return 0;
  }
  std::ofstream f(output, std::ios::trunc);
  f << PolicyYaml(policy);
  if (!f) {
    err << "stockade suggest: cannot write " << output << "\n";
    return 3;
  }
  return 0;
}

}  // namespace stockade::cli
