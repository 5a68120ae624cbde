#include "cli/cluster.h"

#include <sys/stat.h>

#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "operator/controller/objects.h"

namespace stockade::cli {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

std::string Describe(const kube::Resource& resource, absl::string_view ns,
                     absl::string_view name) {
  if (!resource.namespaced || ns.empty()) {
    return absl::StrCat(resource.kind, " ", name);
  }
  return absl::StrCat(resource.kind, " ", ns, "/", name);
}

absl::StatusOr<kube::ClusterConfig> FindClusterConfig(
    const ClusterFlags& flags) {
  if (!flags.kubeconfig.empty()) {
    return kube::LoadKubeconfig(flags.kubeconfig, flags.context);
  }
  if (std::string env = Env("KUBECONFIG"); !env.empty()) {
    return kube::LoadKubeconfig(env, flags.context);
  }
  const std::string home = Env("HOME");
  if (!home.empty() && FileExists(home + "/.kube/config")) {
    return kube::LoadKubeconfig(home + "/.kube/config", flags.context);
  }
  if (!Env("KUBERNETES_SERVICE_HOST").empty()) {
    if (!flags.context.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--context ", flags.context,
          " needs a kubeconfig, and there is none (in a pod: the service "
          "account has no contexts)"));
    }
    return kube::InClusterConfig();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no cluster to talk to: no --kubeconfig, $KUBECONFIG is not set, ",
      home.empty() ? "$HOME is not set" : home + "/.kube/config does not exist",
      " and not in a pod ($KUBERNETES_SERVICE_HOST is not set)"));
}

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Connect(
    const ClusterFlags& flags) {
  absl::StatusOr<kube::ClusterConfig> config = FindClusterConfig(flags);
  if (!config.ok()) return config.status();
  std::string ns = flags.namespace_;
  if (ns.empty()) ns = config->namespace_;
  if (ns.empty()) ns = "default";
  kube::ClientOptions options;
  options.user_agent = "kubectl-stockade";
  options.request_timeout = absl::Seconds(20);
  options.connect_timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<kube::Client>> client =
      kube::Client::FromConfig(*std::move(config), options);
  if (!client.ok()) return client.status();
  return std::unique_ptr<Cluster>(new Cluster(*std::move(client), ns));
}

absl::Status Cluster::Explain(const absl::Status& status,
                              absl::string_view what) {
  if (kube::HttpCode(status) != 0) {
    // The apiserver answered; its message says what it refused and why.
    return absl::Status(status.code(),
                        absl::StrCat(what, ": ", status.message()));
  }
  const kube::ClusterConfig& config = client_->config();
  return absl::Status(
      status.code(),
      absl::StrCat("cannot reach the apiserver at ", config.server, " (",
                   config.source, ") to read ", what, ": ", status.message()));
}

absl::StatusOr<std::vector<nlohmann::json>> Cluster::List(
    const kube::Resource& resource, absl::string_view ns,
    absl::string_view label_selector) {
  absl::StatusOr<kube::ObjectList> list = client_->ListAll(
      resource, resource.namespaced ? ns : "",
      {.label_selector = std::string(label_selector), .limit = 500});
  if (!list.ok()) {
    std::string what = absl::StrCat(resource.plural, ".", resource.group);
    if (resource.group.empty()) what = std::string(resource.plural);
    if (resource.namespaced) {
      absl::StrAppend(&what, ns.empty() ? " in every namespace"
                                        : absl::StrCat(" in namespace ", ns));
    }
    if (kube::HttpCode(list.status()) == 404 && !resource.group.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "the apiserver at ", client_->config().server, " does not serve ",
          what, ": are the Stockade CRDs (crds/) installed?"));
    }
    return Explain(list.status(), what);
  }
  return std::move(list->items);
}

absl::StatusOr<std::optional<nlohmann::json>> Cluster::Get(
    const kube::Resource& resource, absl::string_view ns,
    absl::string_view name) {
  absl::StatusOr<nlohmann::json> object = client_->Get(resource, ns, name);
  if (object.ok()) return std::optional<nlohmann::json>(*std::move(object));
  if (kube::HttpCode(object.status()) == 404 &&
      kube::ApiReason(object.status()) == "NotFound") {
    return std::optional<nlohmann::json>();
  }
  return Explain(object.status(), Describe(resource, ns, name));
}

absl::StatusOr<compiler::NamespaceLabels> Cluster::NamespaceLabels(
    absl::string_view ns) {
  absl::StatusOr<std::optional<nlohmann::json>> object =
      Get(kube::kNamespace, "", ns);
  if (!object.ok()) return object.status();
  if (!object->has_value()) {
    return absl::NotFoundError(absl::StrCat("namespace ", ns, " not found"));
  }
  absl::StatusOr<controller::NamespaceObject> decoded =
      controller::DecodeNamespace(kube::Dump(**object));
  if (!decoded.ok()) return decoded.status();
  return decoded->labels;
}

absl::StatusOr<std::vector<Guardrail>> Cluster::Guardrails() {
  absl::StatusOr<std::vector<nlohmann::json>> items =
      List(kube::kClusterAgentPolicy, "");
  if (!items.ok()) return items.status();
  std::vector<Guardrail> out;
  for (nlohmann::json& item : *items) {
    absl::StatusOr<controller::ClusterAgentPolicyObject> decoded =
        controller::DecodeClusterAgentPolicy(kube::Dump(item));
    if (!decoded.ok()) return decoded.status();
    if (!decoded->problems.empty()) {
      std::vector<std::string> problems;
      for (const compiler::Problem& p : decoded->problems) {
        problems.push_back(absl::StrCat(p.path, ": ", p.message));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "ClusterAgentPolicy ", kube::NameOf(item),
          " is invalid (the operator compiles no policy it selects): ",
          absl::StrJoin(problems, "; ")));
    }
    out.push_back(Guardrail{std::move(item), std::move(decoded->object)});
  }
  return out;
}

}  // namespace stockade::cli
