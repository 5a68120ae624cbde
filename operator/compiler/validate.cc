#include "operator/compiler/validate.h"

#include <regex>

#include "absl/strings/str_cat.h"
#include "operator/compiler/capabilities.h"
#include "operator/compiler/cidr.h"
#include "operator/compiler/paths.h"
#include "operator/compiler/quantity.h"
#include "operator/compiler/seccomp/syscall_names.h"

namespace stockade::compiler {
namespace {

using v1::AgentPolicySpec;

// Largest writable tmpfs one path may ask for.
constexpr int64_t kMaxWritableBytes = int64_t{64} << 30;

class Checker {
 public:
  explicit Checker(std::vector<Problem>* out) : out_(out) {}

  void Add(const std::string& path, std::string message) {
    out_->push_back(Problem{"", 0, path, std::move(message)});
  }

  // Checks a path field; returns the clean path ("" on a problem).
  std::string Path(const std::string& field, const std::string& value,
                   bool allow_trailing_slash = false) {
    auto clean = CleanAbsolutePath(value, allow_trailing_slash);
    if (!clean.ok()) {
      Add(field, std::string(clean.status().message()));
      return "";
    }
    return *clean;
  }

  void Quantity(const std::string& field, const std::string& value) {
    if (value.empty()) return;
    auto bytes = ParseQuantity(value);
    if (!bytes.ok()) {
      Add(field, std::string(bytes.status().message()));
    } else if (*bytes <= 0) {
      Add(field, "must be greater than zero");
    } else if (*bytes > kMaxWritableBytes) {
      Add(field, absl::StrCat("\"", value, "\" is larger than the most a ",
                              "writable path may hold (64Gi)"));
    }
  }

  void Syscall(const std::string& field, const std::string& name) {
    if (!IsKnownSyscall(name)) {
      Add(field, absl::StrCat("unknown syscall \"", name,
                              "\" (not known to libseccomp on x86_64 or "
                              "aarch64)"));
    }
  }

  void Capability(const std::string& field, const std::string& name) {
    if (NormalizeCapability(name).empty()) {
      Add(field, absl::StrCat("unknown capability \"", name,
                              "\"; write it as in capabilities(7) without "
                              "CAP_, e.g. NET_BIND_SERVICE"));
    }
  }

  void CidrField(const std::string& field, const std::string& value) {
    auto c = ParseCidr(value);
    if (!c.ok()) Add(field, std::string(c.status().message()));
  }

 private:
  std::vector<Problem>* out_;
};

bool IsKernelFs(const std::string& path) {
  return IsBeneath(path, "/proc") || IsBeneath(path, "/sys") ||
         IsBeneath(path, "/dev");
}

}  // namespace

std::vector<Problem> ValidatePolicySpec(const AgentPolicySpec& spec,
                                        const std::string& prefix) {
  std::vector<Problem> out;
  Checker check(&out);
  const std::string fs = absl::StrCat(prefix, ".filesystem");
  std::vector<std::string> denied;
  for (int i = 0; i < spec.filesystem().deny_size(); ++i) {
    const std::string field = absl::StrCat(fs, ".deny[", i, "]");
    std::string p = check.Path(field, spec.filesystem().deny(i));
    if (p == "/") {
      check.Add(field,
                "denying \"/\" would deny everything; list the paths "
                "to hide instead");
    } else if (!p.empty()) {
      denied.push_back(p);
    }
  }
  for (int i = 0; i < spec.filesystem().writable_size(); ++i) {
    const auto& w = spec.filesystem().writable(i);
    const std::string field = absl::StrCat(fs, ".writable[", i, "]");
    std::string p = check.Path(field + ".path", w.path());
    if (p == "/") {
      check.Add(field + ".path",
                "\"/\" cannot be writable; set readOnlyRoot: false instead");
    } else if (!p.empty() && IsKernelFs(p)) {
      check.Add(field + ".path",
                absl::StrCat("\"", p,
                             "\" is on a kernel filesystem (/proc, /sys, "
                             "/dev) and cannot be a writable directory"));
    } else if (!p.empty()) {
      for (const std::string& d : denied) {
        if (IsBeneath(p, d) || IsBeneath(d, p)) {
          check.Add(
              field + ".path",
              absl::StrCat("\"", p, "\" is both writable and denied (", fs,
                           ".deny has \"", d, "\"); remove one of them"));
        }
      }
    }
    check.Quantity(field + ".sizeLimit", w.size_limit());
  }
  for (int i = 0; i < spec.filesystem().read_only_size(); ++i) {
    const std::string ro = check.Path(absl::StrCat(fs, ".readOnly[", i, "]"),
                                      spec.filesystem().read_only(i));
    for (int j = 0; !ro.empty() && j < spec.filesystem().writable_size(); ++j) {
      const std::string& w = spec.filesystem().writable(j).path();
      if (IsBeneath(w, ro)) {
        check.Add(absl::StrCat(fs, ".writable[", j, "].path"),
                  absl::StrCat("\"", w, "\" lies in the read-only path \"", ro,
                               "\" and could never be written; remove one "
                               "of them"));
      }
    }
  }
  for (int i = 0; i < spec.exec().allow_size(); ++i) {
    const std::string field = absl::StrCat(prefix, ".exec.allow[", i, "]");
    std::string p = check.Path(field, spec.exec().allow(i), true);
    if (p == "/") {
      check.Add(field,
                "allowing every executable (\"/\") defeats the exec "
                "allowlist; list directories or files");
    }
    for (const std::string& d : denied) {
      if (!p.empty() && IsBeneath(p, d)) {
        check.Add(field, absl::StrCat("\"", p, "\" lies in the denied path \"",
                                      d, "\" and could never run"));
      }
    }
  }
  const std::string net = absl::StrCat(prefix, ".network");
  for (int i = 0; i < spec.network().egress_size(); ++i) {
    const auto& rule = spec.network().egress(i);
    const std::string field = absl::StrCat(net, ".egress[", i, "]");
    for (int j = 0; j < rule.cidrs_size(); ++j) {
      check.CidrField(absl::StrCat(field, ".cidrs[", j, "]"), rule.cidrs(j));
    }
    for (int j = 0; j < rule.ports_size(); ++j) {
      const auto& port = rule.ports(j);
      if (port.end_port() != 0 && port.end_port() < port.port()) {
        check.Add(absl::StrCat(field, ".ports[", j, "].endPort"),
                  absl::StrCat("endPort ", port.end_port(), " is below port ",
                               port.port()));
      }
    }
  }
  const std::string sc = absl::StrCat(prefix, ".syscalls");
  for (int i = 0; i < spec.syscalls().allow_size(); ++i) {
    const std::string& name = spec.syscalls().allow(i);
    const std::string field = absl::StrCat(sc, ".allow[", i, "]");
    check.Syscall(field, name);
    for (const std::string& d : spec.syscalls().deny()) {
      if (d == name) {
        check.Add(field,
                  absl::StrCat("\"", name, "\" is in both allow and deny"));
      }
    }
  }
  for (int i = 0; i < spec.syscalls().deny_size(); ++i) {
    check.Syscall(absl::StrCat(sc, ".deny[", i, "]"), spec.syscalls().deny(i));
  }
  for (int i = 0; i < spec.capabilities().add_size(); ++i) {
    check.Capability(absl::StrCat(prefix, ".capabilities.add[", i, "]"),
                     spec.capabilities().add(i));
  }
  return out;
}

std::vector<Problem> ValidateClusterPolicySpec(
    const v1::ClusterAgentPolicySpec& spec, const std::string& prefix) {
  std::vector<Problem> out =
      ValidatePolicySpec(spec.defaults(), absl::StrCat(prefix, ".defaults"));
  Checker check(&out);
  const auto& g = spec.guardrails();
  const std::string gp = absl::StrCat(prefix, ".guardrails");
  for (int i = 0; i < g.allowed_writable_paths_size(); ++i) {
    check.Path(absl::StrCat(gp, ".allowedWritablePaths[", i, "]"),
               g.allowed_writable_paths(i));
  }
  check.Quantity(gp + ".maxWritableSize", g.max_writable_size());
  for (int i = 0; i < g.denied_paths_size(); ++i) {
    check.Path(absl::StrCat(gp, ".deniedPaths[", i, "]"), g.denied_paths(i));
  }
  for (int i = 0; i < g.denied_executables_size(); ++i) {
    check.Path(absl::StrCat(gp, ".deniedExecutables[", i, "]"),
               g.denied_executables(i));
  }
  for (int i = 0; i < g.denied_syscalls_size(); ++i) {
    check.Syscall(absl::StrCat(gp, ".deniedSyscalls[", i, "]"),
                  g.denied_syscalls(i));
  }
  for (int i = 0; i < g.allowed_capabilities_size(); ++i) {
    check.Capability(absl::StrCat(gp, ".allowedCapabilities[", i, "]"),
                     g.allowed_capabilities(i));
  }
  for (int i = 0; i < g.allowed_egress_cidrs_size(); ++i) {
    check.CidrField(absl::StrCat(gp, ".allowedEgressCidrs[", i, "]"),
                    g.allowed_egress_cidrs(i));
  }
  return out;
}

std::vector<Problem> ValidateAgentSpec(const v1::AgentSpec& spec,
                                       const std::string& prefix) {
  std::vector<Problem> out;
  Checker check(&out);
  const bool has_ref = spec.has_policy_ref();
  const bool has_inline = spec.has_policy();
  if (has_ref == has_inline) {
    check.Add(prefix + ".policyRef",
              "exactly one of policyRef or policy must be set");
  }
  if (has_inline) {
    auto more = ValidatePolicySpec(spec.policy(), prefix + ".policy");
    out.insert(out.end(), more.begin(), more.end());
  }
  static const std::regex kResourceQuantity(
      "^[0-9]+(\\.[0-9]+)?(m|[KMGTPE]i?|k|[eE][0-9]+)?$");
  for (const auto* map :
       {&spec.resources().limits(), &spec.resources().requests()}) {
    const char* which =
        map == &spec.resources().limits() ? "limits" : "requests";
    for (const auto& [name, value] : *map) {
      if (value.size() > 64 || !std::regex_match(value, kResourceQuantity)) {
        check.Add(absl::StrCat(prefix, ".resources.", which, ".", name),
                  absl::StrCat("\"", value.substr(0, 64),
                               "\" is not a quantity (e.g. 500m, 256Mi)"));
      }
    }
  }
  return out;
}

std::vector<Problem> ValidateDocument(const Document& doc) {
  std::vector<Problem> out;
  if (const auto* p = std::get_if<v1::AgentPolicy>(&doc.object)) {
    out = ValidatePolicySpec(p->spec(), "spec");
  } else if (const auto* c = std::get_if<v1::ClusterAgentPolicy>(&doc.object)) {
    out = ValidateClusterPolicySpec(c->spec(), "spec");
  } else if (const auto* a = std::get_if<v1::Agent>(&doc.object)) {
    out = ValidateAgentSpec(a->spec(), "spec");
  }
  for (Problem& p : out) {
    p.file = doc.file;
    p.line = doc.LineOf(p.path);
  }
  return out;
}

}  // namespace stockade::compiler
