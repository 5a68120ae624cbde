// Kubernetes client configuration: where the apiserver is and how to
// authenticate to it, from a kubeconfig file (development, `kubectl`'s format)
// or from the pod's service account (in-cluster). The operator calls
// LoadConfig(--kubeconfig flag) and hands the result to kube::Client.
#ifndef STOCKADE_OPERATOR_KUBE_KUBECONFIG_H_
#define STOCKADE_OPERATOR_KUBE_KUBECONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::kube {

// How to reach and authenticate to one apiserver. For each TLS item either
// the file or the data (PEM bytes, already base64-decoded) is set, not both.
struct ClusterConfig {
  std::string server{};  // "https://host:port", no trailing slash

  std::string ca_file{};  // PEM bundle trusted for the server certificate
  std::string ca_data{};  // the same inline; neither set: the system roots
  bool insecure_skip_tls_verify = false;

  std::string client_cert_file{};  // client certificate (PEM)
  std::string client_cert_data{};
  std::string client_key_file{};  // its private key (PEM)
  std::string client_key_data{};

  std::string token{};       // bearer token
  std::string token_file{};  // bearer token re-read from this file (rotation)
  std::string username{}, password{};  // HTTP basic (kubeconfig only)

  // The context's namespace (kubeconfig) or the pod's (in-cluster); may be
  // empty.
  std::string namespace_{};
  // Where this came from ("kubeconfig /path, context x", "in-cluster"), for
  // messages.
  std::string source{};
};

// The kubeconfig at `path` (several, separated by ':', are merged the way
// kubectl does: the first file that sets a name or current-context wins), in
// context `context` (empty: its current-context). Relative file references
// resolve against the directory of the file that holds them. Errors name the
// file and the field. Exec and auth-provider plugins are not supported
// (InvalidArgument saying so).
absl::StatusOr<ClusterConfig> LoadKubeconfig(absl::string_view path,
                                             absl::string_view context = "");

// Where a pod's service account is mounted.
inline constexpr char kServiceAccountDir[] =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// The pod's service account: server https://$KUBERNETES_SERVICE_HOST:
// $KUBERNETES_SERVICE_PORT, CA <dir>/ca.crt, token <dir>/token (re-read by the
// client, which the kubelet rotates), namespace <dir>/namespace.
// FailedPrecondition when the environment variables are missing (not in a
// pod); NotFound / InvalidArgument naming the file otherwise.
absl::StatusOr<ClusterConfig> InClusterConfig(
    absl::string_view service_account_dir = kServiceAccountDir);

// The operator's rule: `flag_path` when given; else $KUBECONFIG; else the
// in-cluster config when $KUBERNETES_SERVICE_HOST is set; else
// $HOME/.kube/config. The error says what was tried.
absl::StatusOr<ClusterConfig> LoadConfig(
    absl::string_view flag_path,
    absl::string_view service_account_dir = kServiceAccountDir);

}  // namespace stockade::kube

#endif  // STOCKADE_OPERATOR_KUBE_KUBECONFIG_H_
