#include "operator/compiler/merge.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "operator/compiler/capabilities.h"
#include "operator/compiler/cidr.h"
#include "operator/compiler/paths.h"
#include "operator/compiler/quantity.h"

namespace stockade::compiler {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using v1::AgentPolicySpec;
using v1::ClusterAgentPolicy;
using v1::Guardrails;

// Copies into `target` every field of `defaults` that `target` leaves unset.
// Lists are taken whole, never mixed.
void FillDefaults(Message* target, const Message& defaults) {
  const Reflection* tr = target->GetReflection();
  const Reflection* dr = defaults.GetReflection();
  const auto* desc = target->GetDescriptor();
  for (int i = 0; i < desc->field_count(); ++i) {
    const FieldDescriptor* f = desc->field(i);
    if (f->is_repeated()) {
      if (tr->FieldSize(*target, f) == 0 && dr->FieldSize(defaults, f) > 0) {
        for (int j = 0; j < dr->FieldSize(defaults, f); ++j) {
          if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            tr->AddMessage(target, f)->CopyFrom(
                dr->GetRepeatedMessage(defaults, f, j));
          } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
            tr->AddString(target, f, dr->GetRepeatedString(defaults, f, j));
          } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
            tr->AddInt32(target, f, dr->GetRepeatedInt32(defaults, f, j));
          }
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (dr->HasField(defaults, f)) {
        FillDefaults(tr->MutableMessage(target, f),
                     dr->GetMessage(defaults, f));
      }
    } else if (f->has_presence()) {
      if (!tr->HasField(*target, f) && dr->HasField(defaults, f)) {
        switch (f->cpp_type()) {
          case FieldDescriptor::CPPTYPE_BOOL:
            tr->SetBool(target, f, dr->GetBool(defaults, f));
            break;
          case FieldDescriptor::CPPTYPE_INT32:
            tr->SetInt32(target, f, dr->GetInt32(defaults, f));
            break;
          default:
            break;
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
      if (tr->GetEnumValue(*target, f) == 0) {
        tr->SetEnumValue(target, f, dr->GetEnumValue(defaults, f));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (tr->GetString(*target, f).empty()) {
        tr->SetString(target, f, dr->GetString(defaults, f));
      }
    }
  }
}

void ApplyStockadeDefaults(AgentPolicySpec* e) {
  if (e->mode() == v1::MODE_UNSPECIFIED) e->set_mode(v1::MODE_ENFORCE);
  auto* fs = e->mutable_filesystem();
  if (!fs->has_read_only_root()) fs->set_read_only_root(true);
  for (auto& w : *fs->mutable_writable()) {
    if (w.size_limit().empty()) w.set_size_limit(kDefaultWritableSize);
  }
  if (e->procfs() == v1::PROCFS_EXPOSURE_UNSPECIFIED) {
    e->set_procfs(v1::PROCFS_EXPOSURE_MINIMAL);
  }
  if (e->sysfs() == v1::SYSFS_EXPOSURE_UNSPECIFIED) {
    e->set_sysfs(v1::SYSFS_EXPOSURE_NONE);
  }
  auto* net = e->mutable_network();
  if (!net->has_dns()) net->set_dns(false);
  if (!net->has_raw_sockets()) net->set_raw_sockets(false);
  for (auto& rule : *net->mutable_egress()) {
    for (auto& port : *rule.mutable_ports()) {
      if (port.protocol() == v1::PROTOCOL_UNSPECIFIED) {
        port.set_protocol(v1::PROTOCOL_TCP);
      }
    }
  }
  auto* sc = e->mutable_syscalls();
  if (sc->baseline() == v1::SYSCALL_BASELINE_UNSPECIFIED) {
    sc->set_baseline(v1::SYSCALL_BASELINE_RUNTIME_DEFAULT);
  }
  if (sc->default_action() == v1::SYSCALL_ACTION_UNSPECIFIED) {
    sc->set_default_action(v1::SYSCALL_ACTION_ERRNO);
  }
  e->mutable_capabilities();
  auto* proc = e->mutable_processes();
  if (!proc->has_max()) proc->set_max(kDefaultMaxProcesses);
}

// Lowers what the agent did not ask for explicitly to what every guardrail
// allows, and adds what guardrails always deny.
void Tighten(const AgentPolicySpec& requested, const Guardrails& g,
             AgentPolicySpec* e) {
  if (g.forbid_complain_mode() && requested.mode() == v1::MODE_UNSPECIFIED) {
    e->set_mode(v1::MODE_ENFORCE);
  }
  if (g.require_read_only_root() &&
      !requested.filesystem().has_read_only_root()) {
    e->mutable_filesystem()->set_read_only_root(true);
  }
  if (!g.max_writable_size().empty()) {
    const int64_t max = ParseQuantity(g.max_writable_size()).value_or(0);
    for (int i = 0; i < e->filesystem().writable_size(); ++i) {
      auto* w = e->mutable_filesystem()->mutable_writable(i);
      const bool asked =
          i < requested.filesystem().writable_size() &&
          !requested.filesystem().writable(i).size_limit().empty();
      if (!asked && ParseQuantity(w->size_limit()).value_or(0) > max) {
        w->set_size_limit(g.max_writable_size());
      }
    }
  }
  if (g.max_procfs() != v1::PROCFS_EXPOSURE_UNSPECIFIED &&
      requested.procfs() == v1::PROCFS_EXPOSURE_UNSPECIFIED &&
      e->procfs() > g.max_procfs()) {
    e->set_procfs(g.max_procfs());
  }
  if (g.max_sysfs() != v1::SYSFS_EXPOSURE_UNSPECIFIED &&
      requested.sysfs() == v1::SYSFS_EXPOSURE_UNSPECIFIED &&
      e->sysfs() > g.max_sysfs()) {
    e->set_sysfs(g.max_sysfs());
  }
  if (g.require_strict_syscalls() &&
      requested.syscalls().baseline() == v1::SYSCALL_BASELINE_UNSPECIFIED) {
    e->mutable_syscalls()->set_baseline(v1::SYSCALL_BASELINE_STRICT);
  }
  if (g.forbid_dns() && !requested.network().has_dns()) {
    e->mutable_network()->set_dns(false);
  }
  if (g.forbid_raw_sockets() && !requested.network().has_raw_sockets()) {
    e->mutable_network()->set_raw_sockets(false);
  }
  if (g.has_max_processes() && !requested.processes().has_max() &&
      e->processes().max() > g.max_processes()) {
    e->mutable_processes()->set_max(g.max_processes());
  }
  for (const std::string& p : g.denied_paths()) {
    e->mutable_filesystem()->add_deny(p);
  }
  for (const std::string& s : g.denied_syscalls()) {
    e->mutable_syscalls()->add_deny(s);
  }
}

class ViolationList {
 public:
  ViolationList(std::string guardrail, std::vector<Problem>* out)
      : guardrail_(std::move(guardrail)), out_(out) {}

  void Add(const std::string& path, const std::string& what,
           const std::string& rule, const std::string& detail = "") {
    std::string msg =
        absl::StrCat(what, " is forbidden by ClusterAgentPolicy \"", guardrail_,
                     "\" (guardrails.", rule);
    if (!detail.empty()) absl::StrAppend(&msg, ": ", detail);
    msg.push_back(')');
    out_->push_back(Problem{"", 0, path, std::move(msg)});
  }

 private:
  std::string guardrail_;
  std::vector<Problem>* out_;
};

std::string Quoted(const std::string& s) { return absl::StrCat("\"", s, "\""); }

std::string ProcfsName(v1::ProcfsExposure p) {
  return v1::ProcfsExposure_descriptor()
      ->FindValueByNumber(p)
      ->options()
      .GetExtension(v1::value);
}
std::string SysfsName(v1::SysfsExposure p) {
  return v1::SysfsExposure_descriptor()
      ->FindValueByNumber(p)
      ->options()
      .GetExtension(v1::value);
}

void Check(const AgentPolicySpec& e, const Guardrails& g, ViolationList v) {
  if (g.forbid_complain_mode() && e.mode() == v1::MODE_COMPLAIN) {
    v.Add("spec.mode", "Complain", "forbidComplainMode");
  }
  if (g.require_read_only_root() && !e.filesystem().read_only_root()) {
    v.Add("spec.filesystem.readOnlyRoot", "readOnlyRoot: false",
          "requireReadOnlyRoot");
  }
  const int64_t max_size =
      g.max_writable_size().empty()
          ? 0
          : ParseQuantity(g.max_writable_size()).value_or(0);
  for (int i = 0; i < e.filesystem().writable_size(); ++i) {
    const auto& w = e.filesystem().writable(i);
    const std::string path = absl::StrCat("spec.filesystem.writable[", i, "]");
    if (g.allowed_writable_paths_size() > 0 &&
        std::none_of(
            g.allowed_writable_paths().begin(),
            g.allowed_writable_paths().end(),
            [&](const std::string& a) { return IsBeneath(w.path(), a); })) {
      v.Add(path + ".path", absl::StrCat("writable ", Quoted(w.path())),
            "allowedWritablePaths",
            absl::StrCat("allowed beneath ",
                         absl::StrJoin(g.allowed_writable_paths(), ", ")));
    }
    if (max_size > 0 && ParseQuantity(w.size_limit()).value_or(0) > max_size) {
      v.Add(path + ".sizeLimit", absl::StrCat("sizeLimit ", w.size_limit()),
            "maxWritableSize", absl::StrCat("at most ", g.max_writable_size()));
    }
    for (const std::string& d : g.denied_paths()) {
      if (IsBeneath(w.path(), d) || IsBeneath(d, w.path())) {
        v.Add(path + ".path", absl::StrCat("writable ", Quoted(w.path())),
              "deniedPaths", absl::StrCat(Quoted(d), " is always denied"));
      }
    }
  }
  for (int i = 0; i < e.exec().allow_size(); ++i) {
    const std::string& x = e.exec().allow(i);
    const std::string path = absl::StrCat("spec.exec.allow[", i, "]");
    for (const std::string& d : g.denied_executables()) {
      const bool dir = !x.empty() && x.back() == '/';
      if (x == d || (dir && IsBeneath(d, x))) {
        v.Add(path, absl::StrCat("executing ", Quoted(x)), "deniedExecutables",
              absl::StrCat(Quoted(d), " may never run"));
      }
    }
    for (const std::string& d : g.denied_paths()) {
      if (IsBeneath(x, d)) {
        v.Add(path, absl::StrCat("executing ", Quoted(x)), "deniedPaths",
              absl::StrCat(Quoted(d), " is always denied"));
      }
    }
  }
  if (g.max_procfs() != v1::PROCFS_EXPOSURE_UNSPECIFIED &&
      e.procfs() > g.max_procfs()) {
    v.Add("spec.procfs", absl::StrCat("procfs ", ProcfsName(e.procfs())),
          "maxProcfs", absl::StrCat("at most ", ProcfsName(g.max_procfs())));
  }
  if (g.max_sysfs() != v1::SYSFS_EXPOSURE_UNSPECIFIED &&
      e.sysfs() > g.max_sysfs()) {
    v.Add("spec.sysfs", absl::StrCat("sysfs ", SysfsName(e.sysfs())),
          "maxSysfs", absl::StrCat("at most ", SysfsName(g.max_sysfs())));
  }
  if (g.require_strict_syscalls() &&
      e.syscalls().baseline() != v1::SYSCALL_BASELINE_STRICT) {
    v.Add("spec.syscalls.baseline", "baseline RuntimeDefault",
          "requireStrictSyscalls");
  }
  for (int i = 0; i < e.syscalls().allow_size(); ++i) {
    for (const std::string& d : g.denied_syscalls()) {
      if (e.syscalls().allow(i) == d) {
        v.Add(absl::StrCat("spec.syscalls.allow[", i, "]"),
              absl::StrCat("syscall ", Quoted(d)), "deniedSyscalls");
      }
    }
  }
  std::set<std::string> allowed_caps;
  for (const std::string& c : g.allowed_capabilities()) {
    allowed_caps.insert(NormalizeCapability(c));
  }
  for (int i = 0; i < e.capabilities().add_size(); ++i) {
    const std::string cap = NormalizeCapability(e.capabilities().add(i));
    if (!allowed_caps.count(cap)) {
      v.Add(absl::StrCat("spec.capabilities.add[", i, "]"),
            absl::StrCat("capability ", cap), "allowedCapabilities",
            allowed_caps.empty()
                ? "none allowed"
                : absl::StrCat("allowed: ",
                               absl::StrJoin(g.allowed_capabilities(), ", ")));
    }
  }
  std::vector<Cidr> allowed_nets;
  for (const std::string& c : g.allowed_egress_cidrs()) {
    if (auto parsed = ParseCidr(c); parsed.ok())
      allowed_nets.push_back(*parsed);
  }
  const std::set<int> allowed_ports(g.allowed_egress_ports().begin(),
                                    g.allowed_egress_ports().end());
  for (int i = 0; i < e.network().egress_size(); ++i) {
    const auto& rule = e.network().egress(i);
    const std::string path = absl::StrCat("spec.network.egress[", i, "]");
    for (int j = 0; j < rule.cidrs_size(); ++j) {
      auto c = ParseCidr(rule.cidrs(j));
      if (!c.ok() || allowed_nets.empty()) continue;
      if (std::none_of(allowed_nets.begin(), allowed_nets.end(),
                       [&](const Cidr& a) { return a.Contains(*c); })) {
        v.Add(absl::StrCat(path, ".cidrs[", j, "]"),
              absl::StrCat("egress to ", rule.cidrs(j)), "allowedEgressCidrs",
              absl::StrCat("allowed within ",
                           absl::StrJoin(g.allowed_egress_cidrs(), ", ")));
      }
    }
    if (allowed_ports.empty()) continue;
    const std::string port_list = absl::StrJoin(g.allowed_egress_ports(), ", ");
    if (rule.ports_size() == 0) {
      v.Add(path + ".ports", "egress on every port", "allowedEgressPorts",
            absl::StrCat("allowed: ", port_list));
    }
    for (int j = 0; j < rule.ports_size(); ++j) {
      const auto& p = rule.ports(j);
      const int last = p.end_port() > p.port() ? p.end_port() : p.port();
      for (int port = p.port(); port <= last; ++port) {
        if (!allowed_ports.count(port)) {
          v.Add(absl::StrCat(path, ".ports[", j, "]"),
                absl::StrCat("egress to port ", port), "allowedEgressPorts",
                absl::StrCat("allowed: ", port_list));
          break;
        }
      }
    }
  }
  if (g.forbid_dns() && e.network().dns()) {
    v.Add("spec.network.dns", "dns: true", "forbidDns");
  }
  if (g.forbid_raw_sockets() && e.network().raw_sockets()) {
    v.Add("spec.network.rawSockets", "rawSockets: true", "forbidRawSockets");
  }
  if (g.has_max_processes() && e.processes().max() > g.max_processes()) {
    v.Add("spec.processes.max",
          absl::StrCat("max processes ", e.processes().max()), "maxProcesses",
          absl::StrCat("at most ", g.max_processes()));
  }
}

template <typename List>
void SortUnique(List* list) {
  std::sort(list->begin(), list->end());
  list->erase(std::unique(list->begin(), list->end()), list->end());
}

// Rewrites values into their canonical spelling, in place: list positions
// stay those of the request, so violations can name them.
void Canonicalize(AgentPolicySpec* e) {
  auto* fs = e->mutable_filesystem();
  for (auto& w : *fs->mutable_writable()) {
    w.set_path(CleanAbsolutePath(w.path()).value_or(w.path()));
    if (auto bytes = ParseQuantity(w.size_limit()); bytes.ok()) {
      w.set_size_limit(FormatQuantity(*bytes));
    }
  }
  for (auto* list : {fs->mutable_read_only(), fs->mutable_deny()}) {
    for (auto& p : *list) p = CleanAbsolutePath(p).value_or(p);
  }
  for (auto& p : *e->mutable_exec()->mutable_allow()) {
    p = CleanAbsolutePath(p, /*keep_trailing_slash=*/true).value_or(p);
  }
  for (auto& rule : *e->mutable_network()->mutable_egress()) {
    for (auto& c : *rule.mutable_cidrs()) {
      if (auto parsed = ParseCidr(c); parsed.ok()) c = parsed->ToString();
    }
    for (auto& p : *rule.mutable_ports()) {
      if (p.end_port() <= p.port()) p.set_end_port(0);
    }
  }
  for (auto& c : *e->mutable_capabilities()->mutable_add()) {
    c = NormalizeCapability(c);
  }
}

// Sorts and de-duplicates every list, and lets deny win over allow.
void SortLists(AgentPolicySpec* e) {
  auto* fs = e->mutable_filesystem();
  std::sort(fs->mutable_writable()->begin(), fs->mutable_writable()->end(),
            [](const auto& a, const auto& b) { return a.path() < b.path(); });
  SortUnique(fs->mutable_read_only());
  SortUnique(fs->mutable_deny());
  SortUnique(e->mutable_exec()->mutable_allow());
  for (auto& rule : *e->mutable_network()->mutable_egress()) {
    SortUnique(rule.mutable_cidrs());
    std::sort(rule.mutable_ports()->begin(), rule.mutable_ports()->end(),
              [](const auto& a, const auto& b) {
                return std::tuple(a.protocol(), a.port(), a.end_port()) <
                       std::tuple(b.protocol(), b.port(), b.end_port());
              });
  }
  auto* sc = e->mutable_syscalls();
  SortUnique(sc->mutable_allow());
  SortUnique(sc->mutable_deny());
  const std::set<std::string> denied(sc->deny().begin(), sc->deny().end());
  auto* allow = sc->mutable_allow();
  allow->erase(
      std::remove_if(allow->begin(), allow->end(),
                     [&](const std::string& s) { return denied.count(s) > 0; }),
      allow->end());
  SortUnique(e->mutable_capabilities()->mutable_add());
}

}  // namespace

bool SelectorMatches(const v1::LabelSelector& selector,
                     const NamespaceLabels& labels) {
  for (const auto& [key, value] : selector.match_labels()) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  for (const auto& req : selector.match_expressions()) {
    auto it = labels.find(req.key());
    const bool has = it != labels.end();
    const bool in_values =
        has && std::find(req.values().begin(), req.values().end(),
                         it->second) != req.values().end();
    switch (req.operator_()) {
      case v1::SELECTOR_OPERATOR_IN:
        if (!in_values) return false;
        break;
      case v1::SELECTOR_OPERATOR_NOT_IN:
        if (in_values) return false;
        break;
      case v1::SELECTOR_OPERATOR_EXISTS:
        if (!has) return false;
        break;
      case v1::SELECTOR_OPERATOR_DOES_NOT_EXIST:
        if (has) return false;
        break;
      default:
        return false;  // unknown operator: select nothing (fail closed)
    }
  }
  return true;
}

MergeResult Merge(const AgentPolicySpec& requested,
                  absl::Span<const ClusterAgentPolicy> cluster_policies,
                  const NamespaceLabels& namespace_labels) {
  std::vector<const ClusterAgentPolicy*> selected;
  for (const ClusterAgentPolicy& c : cluster_policies) {
    if (SelectorMatches(c.spec().namespace_selector(), namespace_labels)) {
      selected.push_back(&c);
    }
  }
  std::sort(selected.begin(), selected.end(), [](const auto* a, const auto* b) {
    return a->metadata().name() < b->metadata().name();
  });
  MergeResult result;
  result.effective = requested;
  for (const ClusterAgentPolicy* c : selected) {
    result.guardrails.push_back(c->metadata().name());
    FillDefaults(&result.effective, c->spec().defaults());
  }
  ApplyStockadeDefaults(&result.effective);
  for (const ClusterAgentPolicy* c : selected) {
    Tighten(requested, c->spec().guardrails(), &result.effective);
  }
  Canonicalize(&result.effective);
  for (const ClusterAgentPolicy* c : selected) {
    Check(result.effective, c->spec().guardrails(),
          ViolationList(c->metadata().name(), &result.violations));
  }
  SortLists(&result.effective);
  return result;
}

}  // namespace stockade::compiler
