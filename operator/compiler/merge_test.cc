#include "operator/compiler/merge.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/cidr.h"
#include "operator/compiler/paths.h"
#include "operator/compiler/quantity.h"
#include "operator/compiler/validate.h"

namespace stockade::compiler {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using v1::AgentPolicySpec;
using v1::ClusterAgentPolicy;

ClusterAgentPolicy Cap(const std::string& name) {
  ClusterAgentPolicy c;
  c.mutable_metadata()->set_name(name);
  return c;
}

TEST(MergeTest, StockadeDefaultsFillEverything) {
  MergeResult r = Merge(AgentPolicySpec(), {}, {});
  const auto& e = r.effective;
  EXPECT_TRUE(r.violations.empty());
  EXPECT_EQ(e.mode(), v1::MODE_ENFORCE);
  EXPECT_TRUE(e.filesystem().read_only_root());
  EXPECT_EQ(e.procfs(), v1::PROCFS_EXPOSURE_MINIMAL);
  EXPECT_EQ(e.sysfs(), v1::SYSFS_EXPOSURE_NONE);
  EXPECT_FALSE(e.network().dns());
  EXPECT_FALSE(e.network().raw_sockets());
  EXPECT_EQ(e.syscalls().baseline(), v1::SYSCALL_BASELINE_RUNTIME_DEFAULT);
  EXPECT_EQ(e.syscalls().default_action(), v1::SYSCALL_ACTION_ERRNO);
  EXPECT_EQ(e.processes().max(), kDefaultMaxProcesses);
}

TEST(MergeTest, GuardrailDefaultsApplyOnlyToUnsetFields) {
  ClusterAgentPolicy c = Cap("defaults");
  c.mutable_spec()->mutable_defaults()->mutable_processes()->set_max(10);
  c.mutable_spec()->mutable_defaults()->set_procfs(v1::PROCFS_EXPOSURE_NONE);
  c.mutable_spec()->mutable_defaults()->mutable_exec()->add_allow("/bin/a");
  AgentPolicySpec req;
  req.set_procfs(v1::PROCFS_EXPOSURE_FULL);
  MergeResult r = Merge(req, {c}, {});
  EXPECT_EQ(r.effective.processes().max(), 10);
  EXPECT_EQ(r.effective.procfs(), v1::PROCFS_EXPOSURE_FULL);
  EXPECT_THAT(r.effective.exec().allow(), ElementsAre("/bin/a"));
  EXPECT_THAT(r.guardrails, ElementsAre("defaults"));
}

TEST(MergeTest, ViolationNamesFieldValueAndGuardrail) {
  ClusterAgentPolicy c = Cap("baseline");
  auto* g = c.mutable_spec()->mutable_guardrails();
  g->set_max_processes(50);
  g->add_allowed_capabilities("NET_BIND_SERVICE");
  g->add_allowed_egress_cidrs("10.0.0.0/8");
  g->add_allowed_egress_ports(443);
  g->add_denied_executables("/usr/bin/pip3");
  AgentPolicySpec req;
  req.mutable_processes()->set_max(100);
  req.mutable_capabilities()->add_add("SYS_ADMIN");
  auto* rule = req.mutable_network()->add_egress();
  rule->add_cidrs("0.0.0.0/0");
  rule->add_ports()->set_port(22);
  req.mutable_exec()->add_allow("/usr/bin/");
  MergeResult r = Merge(req, {c}, {});
  std::vector<std::string> lines;
  for (const auto& v : r.violations) lines.push_back(v.path + ": " + v.message);
  EXPECT_THAT(
      lines,
      testing::UnorderedElementsAre(
          HasSubstr("spec.processes.max: max processes 100 is forbidden by "
                    "ClusterAgentPolicy \"baseline\" (guardrails.maxProcesses: "
                    "at most 50)"),
          HasSubstr(
              "spec.capabilities.add[0]: capability SYS_ADMIN is forbidden"),
          HasSubstr("spec.network.egress[0].cidrs[0]: egress to 0.0.0.0/0"),
          HasSubstr("spec.network.egress[0].ports[0]: egress to port 22"),
          HasSubstr(
              "spec.exec.allow[0]: executing \"/usr/bin/\" is forbidden by "
              "ClusterAgentPolicy \"baseline\" (guardrails.deniedExecutables: "
              "\"/usr/bin/pip3\" may never run)")));
}

TEST(MergeTest, UnsetFieldsAreClampedNotRejected) {
  ClusterAgentPolicy c = Cap("tight");
  auto* g = c.mutable_spec()->mutable_guardrails();
  g->set_max_processes(20);
  g->set_max_procfs(v1::PROCFS_EXPOSURE_NONE);
  g->set_require_strict_syscalls(true);
  g->set_max_writable_size("1Mi");
  g->add_denied_paths("/secret");
  g->add_denied_syscalls("ptrace");
  AgentPolicySpec req;
  req.mutable_filesystem()->add_writable()->set_path("/tmp");
  MergeResult r = Merge(req, {c}, {});
  EXPECT_TRUE(r.violations.empty()) << r.violations[0].message;
  EXPECT_EQ(r.effective.processes().max(), 20);
  EXPECT_EQ(r.effective.procfs(), v1::PROCFS_EXPOSURE_NONE);
  EXPECT_EQ(r.effective.syscalls().baseline(), v1::SYSCALL_BASELINE_STRICT);
  EXPECT_EQ(r.effective.filesystem().writable(0).size_limit(), "1Mi");
  EXPECT_THAT(r.effective.filesystem().deny(), ElementsAre("/secret"));
  EXPECT_THAT(r.effective.syscalls().deny(), ElementsAre("ptrace"));
}

TEST(MergeTest, NamespaceSelector) {
  ClusterAgentPolicy c = Cap("prod-only");
  (*c.mutable_spec()
        ->mutable_namespace_selector()
        ->mutable_match_labels())["env"] = "prod";
  auto* expr =
      c.mutable_spec()->mutable_namespace_selector()->add_match_expressions();
  expr->set_key("team");
  expr->set_operator_(v1::SELECTOR_OPERATOR_NOT_IN);
  expr->add_values("platform");
  c.mutable_spec()->mutable_guardrails()->set_max_processes(1);
  EXPECT_TRUE(
      Merge(AgentPolicySpec(), {c}, {{"env", "dev"}}).guardrails.empty());
  EXPECT_EQ(Merge(AgentPolicySpec(), {c}, {{"env", "prod"}})
                .effective.processes()
                .max(),
            1);
  EXPECT_TRUE(
      Merge(AgentPolicySpec(), {c}, {{"env", "prod"}, {"team", "platform"}})
          .guardrails.empty());
}

TEST(MergeTest, NormalizesForStableHashes) {
  AgentPolicySpec req;
  req.mutable_filesystem()->add_writable()->set_path("/b//");
  req.mutable_filesystem()->mutable_writable(0)->set_size_limit("67108864");
  req.mutable_filesystem()->add_writable()->set_path("/a");
  req.mutable_capabilities()->add_add("CAP_NET_RAW");
  req.mutable_syscalls()->add_allow("read");
  req.mutable_syscalls()->add_deny("read");
  MergeResult r = Merge(req, {}, {});
  EXPECT_EQ(r.effective.filesystem().writable(0).path(), "/a");
  EXPECT_EQ(r.effective.filesystem().writable(1).path(), "/b");
  EXPECT_EQ(r.effective.filesystem().writable(1).size_limit(), "64Mi");
  EXPECT_THAT(r.effective.capabilities().add(), ElementsAre("NET_RAW"));
  EXPECT_TRUE(r.effective.syscalls().allow().empty());
}

// Property: whatever an AgentPolicy asks, when Merge reports no violation the
// effective policy allows nothing any selecting guardrail forbids.
class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}
  bool Coin() { return rng_() % 2 == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }
  int Int(int lo, int hi) {
    return lo + static_cast<int>(rng_() % (hi - lo + 1));
  }

  AgentPolicySpec Policy() {
    AgentPolicySpec p;
    if (Coin()) p.set_mode(Coin() ? v1::MODE_ENFORCE : v1::MODE_COMPLAIN);
    if (Coin()) p.mutable_filesystem()->set_read_only_root(Coin());
    for (int i = Int(0, 2); i > 0; --i) {
      auto* w = p.mutable_filesystem()->add_writable();
      w->set_path(Pick(kPaths));
      if (Coin()) w->set_size_limit(Pick(kSizes));
    }
    for (int i = Int(0, 2); i > 0; --i)
      p.mutable_exec()->add_allow(Pick(kExecs));
    if (Coin()) p.set_procfs(static_cast<v1::ProcfsExposure>(Int(1, 3)));
    if (Coin()) p.set_sysfs(static_cast<v1::SysfsExposure>(Int(1, 2)));
    for (int i = Int(0, 2); i > 0; --i) {
      auto* rule = p.mutable_network()->add_egress();
      rule->add_cidrs(Pick(kCidrs));
      for (int j = Int(0, 2); j > 0; --j) {
        auto* port = rule->add_ports();
        port->set_port(Pick(kPorts));
        if (Coin()) port->set_end_port(port->port() + Int(0, 3));
      }
    }
    if (Coin()) p.mutable_network()->set_dns(Coin());
    if (Coin()) p.mutable_network()->set_raw_sockets(Coin());
    if (Coin())
      p.mutable_syscalls()->set_baseline(
          static_cast<v1::SyscallBaseline>(Int(1, 2)));
    for (int i = Int(0, 2); i > 0; --i)
      p.mutable_syscalls()->add_allow(Pick(kSyscalls));
    for (int i = Int(0, 2); i > 0; --i)
      p.mutable_capabilities()->add_add(Pick(kCaps));
    if (Coin()) p.mutable_processes()->set_max(Int(1, 500));
    return p;
  }

  ClusterAgentPolicy Guard(int n) {
    ClusterAgentPolicy c = Cap("g" + std::to_string(n));
    auto* g = c.mutable_spec()->mutable_guardrails();
    g->set_forbid_complain_mode(Coin());
    g->set_require_read_only_root(Coin());
    if (Coin()) g->add_allowed_writable_paths(Pick(kPaths));
    if (Coin()) g->set_max_writable_size(Pick(kSizes));
    if (Coin()) g->add_denied_paths(Pick(kPaths));
    if (Coin()) g->add_denied_executables(Pick(kExecs));
    if (Coin()) g->set_max_procfs(static_cast<v1::ProcfsExposure>(Int(1, 3)));
    if (Coin()) g->set_max_sysfs(static_cast<v1::SysfsExposure>(Int(1, 2)));
    g->set_require_strict_syscalls(Coin());
    if (Coin()) g->add_denied_syscalls(Pick(kSyscalls));
    if (Coin()) g->add_allowed_capabilities(Pick(kCaps));
    if (Coin()) g->add_allowed_egress_cidrs(Pick(kCidrs));
    if (Coin()) g->add_allowed_egress_ports(Pick(kPorts));
    g->set_forbid_dns(Coin());
    g->set_forbid_raw_sockets(Coin());
    if (Coin()) g->set_max_processes(Int(1, 300));
    if (Coin()) *c.mutable_spec()->mutable_defaults() = Policy();
    return c;
  }

 private:
  std::mt19937 rng_;
  const std::vector<std::string> kPaths = {"/tmp",  "/tmp/a",  "/workspace",
                                           "/data", "/data/x", "/var/tmp"};
  const std::vector<std::string> kSizes = {"1Mi", "64Mi", "1Gi", "2Gi"};
  const std::vector<std::string> kExecs = {"/usr/bin/python3", "/usr/bin/",
                                           "/usr/bin/pip3", "/data/tool",
                                           "/opt/bin/"};
  const std::vector<std::string> kCidrs = {"10.0.0.0/8",    "10.1.0.0/16",
                                           "0.0.0.0/0",     "203.0.113.0/24",
                                           "2001:db8::/32", "::/0"};
  const std::vector<int> kPorts = {53, 80, 443, 8443};
  const std::vector<std::string> kSyscalls = {"ptrace", "bpf", "io_uring_setup",
                                              "unshare", "mount"};
  const std::vector<std::string> kCaps = {"NET_BIND_SERVICE", "SYS_ADMIN",
                                          "NET_RAW", "CHOWN"};
};

void ExpectWithin(const AgentPolicySpec& e, const v1::Guardrails& g,
                  const std::string& ctx) {
  if (g.forbid_complain_mode()) {
    EXPECT_EQ(e.mode(), v1::MODE_ENFORCE) << ctx;
  }
  if (g.require_read_only_root()) {
    EXPECT_TRUE(e.filesystem().read_only_root()) << ctx;
  }
  for (const auto& w : e.filesystem().writable()) {
    if (g.allowed_writable_paths_size() > 0) {
      bool ok = false;
      for (const auto& a : g.allowed_writable_paths())
        ok |= IsBeneath(w.path(), a);
      EXPECT_TRUE(ok) << ctx;
    }
    if (!g.max_writable_size().empty()) {
      EXPECT_LE(*ParseQuantity(w.size_limit()),
                *ParseQuantity(g.max_writable_size()))
          << ctx;
    }
    for (const auto& d : g.denied_paths()) {
      EXPECT_FALSE(IsBeneath(w.path(), d) || IsBeneath(d, w.path())) << ctx;
    }
  }
  for (const auto& d : g.denied_paths()) {
    EXPECT_THAT(e.filesystem().deny(), testing::Contains(d)) << ctx;
  }
  for (const auto& x : e.exec().allow()) {
    for (const auto& d : g.denied_executables()) {
      EXPECT_FALSE(x == d || (x.back() == '/' && IsBeneath(d, x))) << ctx;
    }
    for (const auto& d : g.denied_paths()) EXPECT_FALSE(IsBeneath(x, d)) << ctx;
  }
  if (g.max_procfs()) {
    EXPECT_LE(e.procfs(), g.max_procfs()) << ctx;
  }
  if (g.max_sysfs()) {
    EXPECT_LE(e.sysfs(), g.max_sysfs()) << ctx;
  }
  if (g.require_strict_syscalls()) {
    EXPECT_EQ(e.syscalls().baseline(), v1::SYSCALL_BASELINE_STRICT) << ctx;
  }
  for (const auto& s : g.denied_syscalls()) {
    EXPECT_THAT(e.syscalls().deny(), testing::Contains(s)) << ctx;
    EXPECT_THAT(e.syscalls().allow(), testing::Not(testing::Contains(s)))
        << ctx;
  }
  for (const auto& c : e.capabilities().add()) {
    EXPECT_THAT(g.allowed_capabilities(), testing::Contains(c)) << ctx;
  }
  for (const auto& rule : e.network().egress()) {
    if (g.allowed_egress_cidrs_size() > 0) {
      for (const auto& c : rule.cidrs()) {
        bool ok = false;
        for (const auto& a : g.allowed_egress_cidrs()) {
          ok |= ParseCidr(a)->Contains(*ParseCidr(c));
        }
        EXPECT_TRUE(ok) << ctx;
      }
    }
    if (g.allowed_egress_ports_size() > 0) {
      EXPECT_GT(rule.ports_size(), 0) << ctx;
      for (const auto& p : rule.ports()) {
        for (int port = p.port(); port <= std::max(p.port(), p.end_port());
             ++port) {
          EXPECT_THAT(g.allowed_egress_ports(), testing::Contains(port)) << ctx;
        }
      }
    }
  }
  if (g.forbid_dns()) {
    EXPECT_FALSE(e.network().dns()) << ctx;
  }
  if (g.forbid_raw_sockets()) {
    EXPECT_FALSE(e.network().raw_sockets()) << ctx;
  }
  if (g.has_max_processes()) {
    EXPECT_LE(e.processes().max(), g.max_processes()) << ctx;
  }
}

TEST(MergePropertyTest, GuardrailsAreNeverLoosened) {
  Generator gen(20261125);
  int accepted = 0;
  for (int i = 0; i < 30000; ++i) {
    AgentPolicySpec req = gen.Policy();
    std::vector<ClusterAgentPolicy> guards;
    for (int n = gen.Int(1, 3); n > 0; --n) guards.push_back(gen.Guard(n));
    if (!ValidatePolicySpec(req, "spec").empty()) continue;
    MergeResult r = Merge(req, guards, {});
    if (!r.violations.empty()) continue;
    ++accepted;
    const std::string ctx =
        "case " + std::to_string(i) + ": " + req.ShortDebugString();
    for (const auto& g : guards)
      ExpectWithin(r.effective, g.spec().guardrails(), ctx);
    if (testing::Test::HasFailure()) break;
  }
  // The generator must exercise the accepting path, not only rejections.
  EXPECT_GT(accepted, 200);
}

}  // namespace
}  // namespace stockade::compiler
