// Test helpers for policy distribution: synthetic compiled policies of a
// chosen size, and the index entries that name them.
#ifndef STOCKADE_OPERATOR_DISTRIBUTION_TESTING_POLICIES_H_
#define STOCKADE_OPERATOR_DISTRIBUTION_TESTING_POLICIES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "operator/compiler/packed_policy.h"
#include "operator/distribution/desired.h"
#include "stockade/v1/compiled.pb.h"
#include "store/store.h"

namespace stockade::distribution::testing {

// A compiled policy for (ns, name); seed varies the content and so the
// hash; padding adds that many bytes of nftables text (a realistic compiled
// policy is 10-30 KB).
inline stockade::v1::CompiledPolicy MakePolicy(const std::string& ns,
                                               const std::string& name,
                                               const std::string& seed,
                                               size_t padding = 0) {
  stockade::v1::CompiledPolicy p;
  p.set_hash(store::Sha256Hex(ns + "/" + name + "/" + seed));
  p.mutable_source()->set_kind("AgentPolicy");
  p.mutable_source()->set_namespace_(ns);
  p.mutable_source()->set_name(name);
  p.mutable_source()->set_generation(1);
  p.mutable_apparmor()->set_name("stockade." + (ns.empty() ? "_cluster" : ns) +
                                 "." + name + "." + p.hash().substr(0, 12));
  p.set_seccomp_json(R"({"defaultAction":"SCMP_ACT_ERRNO"})");
  p.mutable_oci()->set_pids_limit(64);
  p.set_nftables("table inet stockade {}\n# " + seed + "\n" +
                 std::string(padding, '#'));
  p.set_compiler_version("test");
  return p;
}

inline IndexEntry EntryFor(const stockade::v1::CompiledPolicy& p) {
  return {p.source().namespace_(), p.source().name(), p.hash()};
}

inline IndexEntry EntryFor(const compiler::PackedPolicy& p) {
  return {p.source().namespace_(), p.source().name(), p.hash()};
}

// The policies packed, as the operator holds them.
inline std::vector<PolicyPtr> Packed(
    const std::vector<stockade::v1::CompiledPolicy>& policies) {
  std::vector<PolicyPtr> out;
  for (const auto& p : policies) {
    out.push_back(*compiler::PackedPolicy::Pack(p));
  }
  return out;
}

inline std::vector<IndexEntry> EntriesFor(
    const std::vector<stockade::v1::CompiledPolicy>& policies) {
  std::vector<IndexEntry> out;
  for (const auto& p : policies) out.push_back(EntryFor(p));
  return out;
}

}  // namespace stockade::distribution::testing

#endif  // STOCKADE_OPERATOR_DISTRIBUTION_TESTING_POLICIES_H_
