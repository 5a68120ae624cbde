#include "operator/controller/workload_guardrails.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace stockade::controller {
namespace {

constexpr char kDockerHub[] = "docker.io";
constexpr size_t kSha256HexLength = 64;

// The guardrail's name in messages: ClusterAgentPolicy "x": guardrails.field.
std::string Guardrail(const stockade::v1::ClusterAgentPolicy& c,
                      absl::string_view field) {
  return absl::StrCat("ClusterAgentPolicy \"", c.metadata().name(),
                      "\": guardrails.", field);
}

}  // namespace

ImageReference ParseImage(absl::string_view image) {
  ImageReference out;
  absl::string_view name = image;
  if (size_t at = name.find('@'); at != absl::string_view::npos) {
    out.digest = std::string(name.substr(at + 1));
    name = name.substr(0, at);
  }
  const size_t slash = name.rfind('/');
  if (size_t colon = name.rfind(':');
      colon != absl::string_view::npos &&
      (slash == absl::string_view::npos || colon > slash)) {
    out.tag = std::string(name.substr(colon + 1));
    name = name.substr(0, colon);
  }
  // The first component is a registry when it looks like a host.
  const size_t first = name.find('/');
  absl::string_view head =
      first == absl::string_view::npos ? "" : name.substr(0, first);
  if (!head.empty() && (absl::StrContains(head, '.') ||
                        absl::StrContains(head, ':') || head == "localhost")) {
    out.registry = std::string(head);
    out.repository = std::string(name);
  } else {
    out.registry = kDockerHub;
    out.repository = first == absl::string_view::npos
                         ? absl::StrCat(kDockerHub, "/library/", name)
                         : absl::StrCat(kDockerHub, "/", name);
  }
  return out;
}

bool PinnedByDigest(absl::string_view image) {
  const ImageReference ref = ParseImage(image);
  absl::string_view digest = ref.digest;
  if (!absl::ConsumePrefix(&digest, "sha256:")) return false;
  if (digest.size() != kSha256HexLength) return false;
  for (char c : digest) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

bool RegistryAllows(absl::string_view entry, const ImageReference& image) {
  absl::string_view prefix = entry;
  absl::ConsumeSuffix(&prefix, "/");
  if (prefix.empty()) return false;
  return image.repository == prefix ||
         absl::StartsWith(image.repository, absl::StrCat(prefix, "/"));
}

std::vector<compiler::Problem> CheckWorkloadGuardrails(
    const stockade::v1::AgentSpec& spec,
    absl::Span<const stockade::v1::ClusterAgentPolicy> cluster_policies,
    const compiler::NamespaceLabels& namespace_labels) {
  std::vector<compiler::Problem> out;
  auto add = [&out](absl::string_view path, std::string message) {
    out.push_back(
        compiler::Problem{"", 0, std::string(path), std::move(message)});
  };
  const ImageReference image = ParseImage(spec.image());
  const int replicas = spec.has_replicas() ? spec.replicas() : 1;
  for (const stockade::v1::ClusterAgentPolicy& c : cluster_policies) {
    if (!compiler::SelectorMatches(c.spec().namespace_selector(),
                                   namespace_labels)) {
      continue;
    }
    const stockade::v1::Guardrails& g = c.spec().guardrails();
    if (g.require_image_digest() && !PinnedByDigest(spec.image())) {
      add("spec.image",
          absl::StrCat("image \"", spec.image(), "\" is not pinned by digest (",
                       Guardrail(c, "requireImageDigest"), "); use ",
                       image.repository, "@sha256:<digest>"));
    }
    if (g.allowed_registries_size() > 0) {
      bool allowed = false;
      for (const std::string& entry : g.allowed_registries()) {
        allowed = allowed || RegistryAllows(entry, image);
      }
      if (!allowed) {
        add("spec.image",
            absl::StrCat("image \"", spec.image(), "\" (repository ",
                         image.repository,
                         ") is not from an allowed registry (",
                         Guardrail(c, "allowedRegistries"), ": ",
                         absl::StrJoin(g.allowed_registries(), ", "), ")"));
      }
    }
    if (g.has_max_replicas() && replicas > g.max_replicas()) {
      add("spec.replicas",
          absl::StrCat(replicas, " replicas exceed the maximum of ",
                       g.max_replicas(), " (", Guardrail(c, "maxReplicas"),
                       ")"));
    }
    for (const std::string& resource : g.required_resource_limits()) {
      if (!spec.resources().limits().contains(resource)) {
        add(absl::StrCat("spec.resources.limits.", resource),
            absl::StrCat("a ", resource, " limit is required (",
                         Guardrail(c, "requiredResourceLimits"), ")"));
      }
    }
  }
  return out;
}

}  // namespace stockade::controller
