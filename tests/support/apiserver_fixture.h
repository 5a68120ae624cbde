// Test support: a real Kubernetes control plane for the operator's tests —
// etcd and kube-apiserver (built at pinned versions by hack/kube-tools) on
// loopback in a private temp dir, started and stopped by hack/apiserver, with
// client-certificate and token authentication, Node+RBAC authorization and the
// repository's CRDs (crds/) applied and Established. kubectl drives it.
#ifndef STOCKADE_TESTS_SUPPORT_APISERVER_FIXTURE_H_
#define STOCKADE_TESTS_SUPPORT_APISERVER_FIXTURE_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {

struct ApiserverOptions {
  // Parent of the private temp dir.
  std::string temp_parent = "/tmp";
  // How long `hack/apiserver up` may take (certificates, etcd, the apiserver
  // until /readyz, the CRDs until Established).
  absl::Duration start_timeout = absl::Seconds(180);
  // Default timeout of one kubectl invocation.
  absl::Duration kubectl_timeout = absl::Seconds(60);
  // kube-controller-manager controllers to run (e.g. "garbagecollector",
  // which deletes what a deleted owner owned); none when empty.
  std::vector<std::string> controllers = {};
};

// A private control plane. Create with Start(); the destructor stops it and
// removes its dir. If the test process dies without that, hack/apiserver's
// watcher (--owner-pid) stops it within about a second.
class ApiserverFixture {
 public:
  static absl::StatusOr<std::unique_ptr<ApiserverFixture>> Start(
      ApiserverOptions options = {});
  ~ApiserverFixture();
  ApiserverFixture(const ApiserverFixture&) = delete;
  ApiserverFixture& operator=(const ApiserverFixture&) = delete;

  // `hack/apiserver down`, then a check that no process of this fixture is
  // left (any that is gets SIGKILL and makes this an error). Idempotent.
  absl::Status Stop();
  bool running() const { return running_; }

  // Stops kube-apiserver (SIGTERM; SIGKILL after `grace`: with a watch open
  // it would take its 60 s shutdown timeout) and starts it again on the same
  // port with the same command line plus extra_flags (later flags win, e.g.
  // {"--watch-cache=false", "--etcd-compaction-interval=1s"}), then waits for
  // /readyz. etcd and its data stay. Clients see their connections drop, as
  // in a real apiserver restart. The new process is a child of the caller:
  // call this from the test's main thread (it gets SIGTERM when the thread
  // that started it ends).
  absl::Status RestartApiserver(
      const std::vector<std::string>& extra_flags = {},
      absl::Duration grace = absl::Seconds(5));

  // kubectl --kubeconfig <kubeconfig()> args... as the admin
  // (system:masters).
  CommandResult Kubectl(const std::vector<std::string>& args,
                        std::optional<absl::Duration> timeout = std::nullopt,
                        const std::string& stdin_data = "") const;
  // The same as user "stockade-operator" (bearer token, no rights until a
  // test binds a Role or ClusterRole to it).
  CommandResult KubectlAsOperator(
      const std::vector<std::string>& args,
      std::optional<absl::Duration> timeout = std::nullopt,
      const std::string& stdin_data = "") const;
  // With any kubeconfig.
  CommandResult KubectlWith(absl::string_view kubeconfig,
                            const std::vector<std::string>& args,
                            std::optional<absl::Duration> timeout,
                            const std::string& stdin_data) const;

  const std::string& dir() const { return dir_; }  // the private temp dir
  const std::string& bin_dir() const { return bin_dir_; }
  const std::string& kubectl() const { return kubectl_; }
  // Admin kubeconfig (client certificate in group system:masters).
  const std::string& kubeconfig() const { return kubeconfig_; }
  // Kubeconfig of user "stockade-operator" (bearer token).
  const std::string& operator_kubeconfig() const {
    return operator_kubeconfig_;
  }
  const std::string& operator_token() const { return operator_token_; }
  const std::string& server() const { return server_; }  // https://127.0.0.1:N
  const std::string& etcd_url() const { return etcd_url_; }
  const std::string& ca_file() const { return ca_file_; }
  const std::string& admin_cert_file() const { return admin_cert_file_; }
  const std::string& admin_key_file() const { return admin_key_file_; }
  pid_t etcd_pid() const { return etcd_pid_; }
  pid_t apiserver_pid() const { return apiserver_pid_; }
  // The last lines of DIR/<component>.log ("etcd", "kube-apiserver").
  std::string LogTail(absl::string_view component, int max_lines = 40) const;
  // Wall time of `hack/apiserver up`.
  absl::Duration start_duration() const { return start_duration_; }

 private:
  explicit ApiserverFixture(ApiserverOptions options);
  absl::Status Init();

  ApiserverOptions options_;
  std::string source_dir_, bin_dir_, kubectl_, dir_, kubeconfig_,
      operator_kubeconfig_, operator_token_, server_, etcd_url_, ca_file_,
      admin_cert_file_, admin_key_file_;
  pid_t etcd_pid_ = -1, apiserver_pid_ = -1;
  bool apiserver_is_child_ = false;  // restarted by RestartApiserver
  bool running_ = false;
  absl::Duration start_duration_;
};

// The source tree: $STOCKADE_SOURCE_DIR (ctest sets it), else the tree this
// library was built from.
std::string SourceDir();

// The dir holding etcd, kube-apiserver, kube-controller-manager and kubectl
// for the current pins
// (`hack/kube-tools --print-bindir`); FailedPrecondition saying to run
// hack/kube-tools when they are not built.
absl::StatusOr<std::string> KubeToolsBinDir();

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_APISERVER_FIXTURE_H_
