#include "operator/compiler/compile.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "operator/compiler/apparmor/apparmor.h"
#include "operator/compiler/landlock/landlock.h"
#include "operator/compiler/nftables/nftables.h"
#include "operator/compiler/oci/oci.h"
#include "operator/compiler/seccomp/seccomp.h"
#include "operator/compiler/validate.h"

namespace stockade::compiler {
namespace {

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace

std::string PolicyHash(const EffectivePolicy& policy,
                       const v1::PolicySource& source) {
  std::string input =
      absl::StrCat(kCompilerVersion, "\n", source.kind(), "\n",
                   source.namespace_(), "\n", source.name(), "\n");
  input += DeterministicBytes(policy);
  return Sha256Hex(input);
}

std::string AppArmorProfileName(const v1::PolicySource& source,
                                absl::string_view hash) {
  return absl::StrCat(
      "stockade.",
      source.namespace_().empty() ? "_cluster" : source.namespace_(), ".",
      source.name(), ".", hash.substr(0, 12));
}

absl::StatusOr<v1::CompiledPolicy> CompileEffective(
    const EffectivePolicy& policy, const v1::PolicySource& source) {
  v1::CompiledPolicy out;
  out.set_compiler_version(kCompilerVersion);
  *out.mutable_source() = source;
  *out.mutable_effective() = policy;
  out.set_hash(PolicyHash(policy, source));
  const std::string profile = AppArmorProfileName(source, out.hash());
  out.mutable_apparmor()->set_name(profile);
  out.mutable_apparmor()->set_text(RenderAppArmorProfile(policy, profile));
  absl::StatusOr<std::string> seccomp = CompileSeccomp(policy);
  if (!seccomp.ok()) return seccomp.status();
  out.set_seccomp_json(*std::move(seccomp));
  std::vector<std::string> notes;
  *out.mutable_landlock() = CompileLandlock(policy, &notes);
  *out.mutable_oci() = CompileOciChanges(policy);
  out.set_nftables(CompileNftables(
      policy, source.namespace_().empty()
                  ? source.name()
                  : absl::StrCat(source.namespace_(), "/", source.name())));
  if (policy.mode() == v1::MODE_COMPLAIN) {
    notes.push_back(
        "Complain mode: AppArmor complains instead of denying, seccomp logs "
        "instead of denying, and the Landlock ruleset is not applied (it has "
        "no "
        "complain mode); the OCI limits and nftables egress rules still hold.");
  }
  for (std::string& n : notes) out.add_notes(std::move(n));
  return out;
}

CompileResult CompileAgentPolicy(
    const v1::AgentPolicy& policy,
    absl::Span<const v1::ClusterAgentPolicy> cluster_policies,
    const NamespaceLabels& namespace_labels, absl::string_view source_kind) {
  CompileResult result;
  result.problems = ValidatePolicySpec(policy.spec(), "spec");
  for (const auto& c : cluster_policies) {
    for (Problem p : ValidateClusterPolicySpec(c.spec(), "spec")) {
      p.path = absl::StrCat("ClusterAgentPolicy ", c.metadata().name(), ": ",
                            p.path);
      result.problems.push_back(std::move(p));
    }
  }
  if (!result.problems.empty()) return result;
  MergeResult merged = Merge(policy.spec(), cluster_policies, namespace_labels);
  if (!merged.violations.empty()) {
    result.problems = std::move(merged.violations);
    return result;
  }
  v1::PolicySource source;
  source.set_kind(std::string(source_kind));
  source.set_namespace_(policy.metadata().namespace_());
  source.set_name(policy.metadata().name());
  source.set_generation(policy.metadata().generation());
  for (const std::string& g : merged.guardrails) source.add_guardrails(g);
  auto compiled = CompileEffective(merged.effective, source);
  if (!compiled.ok()) {
    result.problems.push_back(
        Problem{"", 0, "spec", std::string(compiled.status().message())});
    return result;
  }
  result.compiled = *std::move(compiled);
  return result;
}

}  // namespace stockade::compiler
