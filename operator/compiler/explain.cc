#include "operator/compiler/explain.h"

#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "operator/compiler/manifest/manifest.h"

namespace stockade::compiler {
namespace {

using v1::AgentPolicySpec;
using v1::CompiledPolicy;

template <typename Enum>
std::string Spelling(Enum value, const google::protobuf::EnumDescriptor* desc) {
  const auto* v = desc->FindValueByNumber(value);
  return v == nullptr ? "?" : EnumSpelling(v);
}

std::string PortText(const v1::PortRule& p) {
  std::string proto = p.protocol() == v1::PROTOCOL_UDP ? "udp" : "tcp";
  if (p.end_port() > 0)
    return absl::StrCat(proto, "/", p.port(), "-", p.end_port());
  return absl::StrCat(proto, "/", p.port());
}

// Every (destination, port) the policy allows, in words.
std::set<std::string> EgressSet(const AgentPolicySpec& e) {
  std::set<std::string> out;
  for (const auto& rule : e.network().egress()) {
    for (const auto& cidr : rule.cidrs()) {
      if (rule.ports().empty()) {
        out.insert(absl::StrCat("connect to ", cidr, " on any port"));
      }
      for (const auto& p : rule.ports()) {
        out.insert(absl::StrCat("connect to ", cidr, " ", PortText(p)));
      }
    }
  }
  if (e.network().dns()) out.insert("make DNS lookups (UDP and TCP port 53)");
  if (e.network().raw_sockets()) out.insert("use raw and packet sockets");
  return out;
}

// Syscall names the seccomp profile allows without conditions.
std::set<std::string> AllowedSyscalls(const CompiledPolicy& p) {
  std::set<std::string> out;
  nlohmann::json j = nlohmann::json::parse(p.seccomp_json(), nullptr, false);
  if (!j.is_object() || !j["syscalls"].is_array()) return out;
  for (const auto& rule : j["syscalls"]) {
    if (!rule.is_object() || rule.value("action", "") != "SCMP_ACT_ALLOW") {
      continue;
    }
    if (rule.contains("args") && !rule["args"].empty()) continue;
    for (const auto& n : rule.value("names", nlohmann::json::array())) {
      if (n.is_string()) out.insert(n.get<std::string>());
    }
  }
  return out;
}

std::set<std::string> Writable(const AgentPolicySpec& e) {
  std::set<std::string> out;
  if (!e.filesystem().read_only_root())
    out.insert("write anywhere on the root filesystem");
  for (const auto& w : e.filesystem().writable()) {
    out.insert(absl::StrCat("write beneath ", w.path(), " (up to ",
                            w.size_limit(), ")"));
  }
  return out;
}

template <typename Set>
void SetDiff(const Set& before, const Set& after, const std::string& prefix,
             PolicyDiff* d) {
  for (const auto& x : after) {
    if (!before.count(x)) d->gained.push_back(absl::StrCat(prefix, x));
  }
  for (const auto& x : before) {
    if (!after.count(x)) d->lost.push_back(absl::StrCat(prefix, x));
  }
}

std::set<std::string> ToSet(
    const google::protobuf::RepeatedPtrField<std::string>& r) {
  return {r.begin(), r.end()};
}

}  // namespace

std::string ExplainPolicy(const CompiledPolicy& p) {
  const AgentPolicySpec& e = p.effective();
  std::string out;
  auto line = [&](const std::string& s) { absl::StrAppend(&out, s, "\n"); };
  auto rule = [&](const std::string& what, const std::string& layers) {
    absl::StrAppend(&out, "  - ", what, "\n      enforced by: ", layers, "\n");
  };
  const auto& src = p.source();
  line(absl::StrCat("Policy ", src.kind(), " ",
                    src.namespace_().empty() ? "" : src.namespace_() + "/",
                    src.name(), "  hash ", p.hash().substr(0, 12)));
  line(absl::StrCat("Mode: ", Spelling(e.mode(), v1::Mode_descriptor()),
                    e.mode() == v1::MODE_COMPLAIN
                        ? " (violations are reported, not blocked)"
                        : " (violations are blocked)"));
  if (!src.guardrails().empty()) {
    line(absl::StrCat("Guardrails applied: ",
                      absl::StrJoin(src.guardrails(), ", ")));
  }
  line("");
  line("Files:");
  if (e.filesystem().read_only_root()) {
    rule("The root filesystem is read-only.",
         "OCI root.readonly; AppArmor deny write; Landlock (no write rights "
         "outside writable paths)");
  } else {
    rule("The root filesystem is writable.", "(not restricted)");
  }
  for (const auto& w : e.filesystem().writable()) {
    rule(absl::StrCat("May write beneath ", w.path(), ", at most ",
                      w.size_limit(), " (a private tmpfs, not executable)."),
         "OCI tmpfs mount size=; Landlock write rights; AppArmor rw");
  }
  for (const auto& r : e.filesystem().read_only()) {
    rule(absl::StrCat("May read but never write ", r, "."),
         "OCI readonlyPaths; AppArmor deny w; Landlock");
  }
  for (const auto& d : e.filesystem().deny()) {
    rule(absl::StrCat("May neither read nor write ", d, "."),
         "OCI maskedPaths; AppArmor deny; Landlock (no rights granted)");
  }
  line("Programs:");
  if (e.exec().allow().empty()) {
    rule(
        "No program may be executed (exec.allow is empty); the entrypoint "
        "itself must be listed to start.",
        "Landlock EXECUTE; AppArmor");
  } else {
    for (const auto& x : e.exec().allow()) {
      rule(x.back() == '/'
               ? absl::StrCat("May run every program beneath ", x, ".")
               : absl::StrCat("May run ", x, "."),
           "Landlock EXECUTE; AppArmor ix");
    }
    rule(
        "Every other program, including shells, pip, apt and anything "
        "downloaded, cannot be executed.",
        "Landlock EXECUTE; AppArmor (no x permission); writable paths mounted "
        "noexec");
  }
  line("Kernel interfaces:");
  rule(absl::StrCat("/proc exposure: ",
                    Spelling(e.procfs(), v1::ProcfsExposure_descriptor()), "."),
       "OCI maskedPaths/readonlyPaths; AppArmor; Landlock (None)");
  rule(absl::StrCat("/sys exposure: ",
                    Spelling(e.sysfs(), v1::SysfsExposure_descriptor()), "."),
       "OCI maskedPaths/readonlyPaths; AppArmor; Landlock (None)");
  line("Network:");
  const auto egress = EgressSet(e);
  if (egress.empty()) {
    rule("No outbound network access at all.",
         "nftables default drop in the pod's netns; Landlock TCP connect");
  }
  for (const auto& x : egress) {
    rule(absl::StrCat("May ", x, "."),
         "nftables allowlist (everything else dropped); Landlock TCP connect "
         "ports; NetworkPolicy");
  }
  if (!e.network().raw_sockets()) {
    rule("No raw or packet sockets.",
         "seccomp socket() filter; AppArmor network rules");
  }
  line("System calls:");
  rule(absl::StrCat(
           "Baseline ",
           Spelling(e.syscalls().baseline(), v1::SyscallBaseline_descriptor()),
           ": ", AllowedSyscalls(p).size(),
           " system calls allowed; namespaces, mount, ptrace, bpf, keyrings, "
           "kexec, io_uring and module loading are not."),
       "seccomp");
  if (!e.syscalls().allow().empty()) {
    rule(absl::StrCat(
             "Also allowed: ", absl::StrJoin(e.syscalls().allow(), ", "), "."),
         "seccomp");
  }
  if (!e.syscalls().deny().empty()) {
    rule(absl::StrCat(
             "Always denied: ", absl::StrJoin(e.syscalls().deny(), ", "), "."),
         "seccomp");
  }
  rule(absl::StrCat("A denied call ", e.syscalls().default_action() ==
                                              v1::SYSCALL_ACTION_KILL_PROCESS
                                          ? "kills the process."
                                          : "fails with EPERM."),
       "seccomp");
  line("Privileges:");
  rule(e.capabilities().add().empty()
           ? "No Linux capabilities at all."
           : absl::StrCat("Only the capabilities ",
                          absl::StrJoin(e.capabilities().add(), ", "), "."),
       "OCI capabilities (all sets); AppArmor capability rules");
  rule("Cannot gain privileges (setuid binaries, file capabilities).",
       "OCI noNewPrivileges");
  rule(absl::StrCat("At most ", e.processes().max(),
                    " processes and threads (fork bombs stop there)."),
       "OCI pids limit; RLIMIT_NPROC");
  if (!p.notes().empty()) {
    line("Notes:");
    for (const auto& n : p.notes()) line(absl::StrCat("  - ", n));
  }
  return out;
}

std::string PolicyDiff::ToString() const {
  std::string out;
  if (!gained.empty()) {
    absl::StrAppend(&out, "The agent may now (could not before):\n");
    for (const auto& g : gained) absl::StrAppend(&out, "+ ", g, "\n");
  }
  if (!lost.empty()) {
    absl::StrAppend(&out, "The agent may no longer (could before):\n");
    for (const auto& l : lost) absl::StrAppend(&out, "- ", l, "\n");
  }
  if (!other.empty()) {
    absl::StrAppend(&out, "Other changes:\n");
    for (const auto& o : other) absl::StrAppend(&out, "~ ", o, "\n");
  }
  if (out.empty()) out = "No difference in what the agent may do.\n";
  return out;
}

PolicyDiff DiffPolicies(const CompiledPolicy& before,
                        const CompiledPolicy& after) {
  PolicyDiff d;
  const AgentPolicySpec& a = before.effective();
  const AgentPolicySpec& b = after.effective();
  if (a.mode() != b.mode()) {
    (b.mode() == v1::MODE_COMPLAIN ? d.gained : d.lost)
        .push_back("act beyond the policy (Complain mode only reports)");
  }
  SetDiff(Writable(a), Writable(b), "", &d);
  // Denied and read-only paths: fewer is more allowed.
  SetDiff(ToSet(b.filesystem().deny()), ToSet(a.filesystem().deny()),
          "read and write ", &d);
  SetDiff(ToSet(b.filesystem().read_only()), ToSet(a.filesystem().read_only()),
          "write ", &d);
  SetDiff(ToSet(a.exec().allow()), ToSet(b.exec().allow()), "execute ", &d);
  if (a.procfs() != b.procfs()) {
    (b.procfs() > a.procfs() ? d.gained : d.lost)
        .push_back(absl::StrCat("see /proc as ",
                                Spelling(std::max(a.procfs(), b.procfs()),
                                         v1::ProcfsExposure_descriptor())));
  }
  if (a.sysfs() != b.sysfs()) {
    (b.sysfs() > a.sysfs() ? d.gained : d.lost).push_back("read /sys");
  }
  SetDiff(EgressSet(a), EgressSet(b), "", &d);
  SetDiff(AllowedSyscalls(before), AllowedSyscalls(after), "call ", &d);
  SetDiff(ToSet(a.capabilities().add()), ToSet(b.capabilities().add()),
          "use capability ", &d);
  if (a.processes().max() != b.processes().max()) {
    (b.processes().max() > a.processes().max() ? d.gained : d.lost)
        .push_back(absl::StrCat(
            "run up to ", std::max(a.processes().max(), b.processes().max()),
            " processes (", a.processes().max(), " -> ", b.processes().max(),
            ")"));
  }
  if (a.syscalls().default_action() != b.syscalls().default_action()) {
    d.other.push_back(absl::StrCat(
        "a denied system call now ",
        b.syscalls().default_action() == v1::SYSCALL_ACTION_KILL_PROCESS
            ? "kills the process"
            : "fails with EPERM"));
  }
  return d;
}

}  // namespace stockade::compiler
