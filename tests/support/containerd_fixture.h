// Test support: a real containerd (Debian's 1.6) started as a child process in
// a private temp dir, driven with `ctr`, for the shim's integration tests and
// hack/demo. Works with any runtime v2 shim; the stockade one is registered.
#ifndef STOCKADE_TESTS_SUPPORT_CONTAINERD_FIXTURE_H_
#define STOCKADE_TESTS_SUPPORT_CONTAINERD_FIXTURE_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {

// Runtime names as `ctr run --runtime` takes them.
inline constexpr char kRuncV2Runtime[] = "io.containerd.runc.v2";
inline constexpr char kStockadeRuntime[] = "io.containerd.stockade.v1";

// The runtimes every lifecycle test runs against: the ONE place to extend.
struct TestRuntime {
  const char* name;     // a gtest parameter name: letters and digits only
  const char* runtime;  // the `ctr run --runtime` value
};
// The runtimes the lifecycle tests run over (the fixture puts build/bin first
// on containerd's PATH). Nothing skips: a listed runtime whose shim is
// missing makes its tests fail.
inline constexpr TestRuntime kTestRuntimes[] = {
    {"RuncV2", kRuncV2Runtime},
    {"Stockade", kStockadeRuntime},
};
inline void PrintTo(const TestRuntime& r, std::ostream* os) {
  *os << r.name << " (" << r.runtime << ")";
}

struct ContainerdOptions {
  // containerd namespace for Ctr() and Run(); empty: a unique one per fixture
  // ("stockade-test-<pid>-<n>"). Unique namespaces matter: runc-v2 keeps its
  // state in /run/containerd/runc/<ns>/<id> whatever containerd's state dir,
  // and cgroups are /<ns>/<id>.
  std::string ns{};
  // Put first on containerd's PATH, where it finds containerd-shim-*-v1.
  // Empty: the build's bin/ directory (STOCKADE_BIN_DIR).
  std::string bin_dir{};
  // Parent of the private temp dir (it must allow overlayfs upper dirs).
  std::string temp_parent = "/tmp";
  // "overlayfs" or "native". Only images use it: `ctr run --rootfs` does not.
  std::string snapshotter = "overlayfs";
  // containerd's log level (its log is <dir>/containerd.log).
  std::string log_level = "info";
  // The CRI plugin is disabled: ctr needs none of it, and it would want CNI.
  // When true it is loaded (the stockade runtime is registered in its config
  // either way) — for later CRI tests; CNI is not configured.
  bool enable_cri = false;
  // CRI's runtimes.stockade.options ConfigPath (the shim's own config file);
  // empty: no options table.
  std::string stockade_shim_config{};
  // Extra NAME=VALUE entries for containerd's (and so the shims') environment.
  std::vector<std::string> extra_env{};
  // Default timeout of one ctr invocation.
  absl::Duration ctr_timeout = absl::Seconds(60);
  // How long Start/Restart wait for the socket to answer.
  absl::Duration start_timeout = absl::Seconds(20);
};

// What `ctr run` gets from Run(). Defaults: --rm (not -d), the fixture's
// busybox rootfs, runtime runc-v2, PATH set, no tty.
struct RunSpec {
  std::string id{};
  std::vector<std::string> cmd{};  // argv inside the container
  std::string runtime = kRuncV2Runtime;
  std::string rootfs{};  // empty: the fixture's shared busybox rootfs
  std::string image{};   // when set, run this image instead of a rootfs dir
  bool detach = false;
  bool tty = false;  // ctr run -t; Run() then gives ctr a pty (output in out)
  std::vector<std::string> env{};  // NAME=VALUE, after kRootfsPathEnv
  std::vector<std::pair<std::string, std::string>> annotations{};
  std::string netns_path{};               // --with-ns network:<path>
  std::vector<std::string> extra_args{};  // more ctr run flags, before the ref
};

// A private containerd. Create with Start(); the destructor cleans up
// everything (tasks, containers, containerd, mounts, dirs, cgroups of the
// namespace). Must be created and destroyed on the same thread, which must
// outlive it (containerd gets SIGTERM when its parent thread dies).
// Needs root and /usr/bin/containerd, /usr/bin/ctr, runc on PATH.
class ContainerdFixture {
 public:
  static absl::StatusOr<std::unique_ptr<ContainerdFixture>> Start(
      ContainerdOptions options = {});
  ~ContainerdFixture();
  ContainerdFixture(const ContainerdFixture&) = delete;
  ContainerdFixture& operator=(const ContainerdFixture&) = delete;

  // Runs /usr/bin/ctr --address <address> --namespace <ns> args...
  // (CONTAINERD_* variables removed from its environment).
  CommandResult Ctr(const std::vector<std::string>& args,
                    std::optional<absl::Duration> timeout = std::nullopt,
                    const std::string& stdin_data = "") const;
  // Same in another namespace (e.g. "k8s.io").
  CommandResult CtrIn(absl::string_view ns,
                      const std::vector<std::string>& args,
                      std::optional<absl::Duration> timeout = std::nullopt,
                      const std::string& stdin_data = "") const;
  // Full control (e.g. pty = true for `task exec -t`); options.env is
  // replaced by ctr's environment.
  CommandResult CtrWith(absl::string_view ns,
                        const std::vector<std::string>& args,
                        CommandOptions options) const;
  // The `ctr run` argument list Run() uses (without ctr's global flags).
  // Note: ctr 1.6's attached `run` never closes the container's stdin (EOF
  // is not forwarded), so a command reading stdin to EOF hangs there; feed
  // stdin through `task exec` instead, which does close it.
  std::vector<std::string> RunArgs(const RunSpec& spec) const;
  CommandResult Run(const RunSpec& spec,
                    std::optional<absl::Duration> timeout = std::nullopt,
                    const std::string& stdin_data = "") const;

  // Stops containerd with SIGTERM (SIGKILL after 10 s) and starts it again on
  // the same config and dirs; running tasks (their shims) survive.
  absl::Status Restart();
  // Just the stop half of Restart (to test a containerd that is down).
  absl::Status Stop();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // A fresh busybox rootfs <dir>/rootfs-<name> for a test that writes to it
  // (the shared one is used r/w by every container run on it).
  absl::StatusOr<std::string> NewRootfs(absl::string_view name) const;
  // Builds the busybox OCI archive (umoci) once and imports it into the
  // current namespace; returns the reference "stockade.test/busybox:latest".
  absl::StatusOr<std::string> ImportBusyboxImage();

  // Task ids `ctr task ls -q` lists (empty on error).
  std::vector<std::string> Tasks() const;
  // "RUNNING", "STOPPED", ... of a task from `ctr task ls`; empty if absent.
  std::string TaskStatus(absl::string_view id) const;
  // Polls TaskStatus until it equals `status` or the timeout passes.
  bool WaitForTaskStatus(absl::string_view id, absl::string_view status,
                         absl::Duration timeout = absl::Seconds(10)) const;

  const std::string& dir() const { return dir_; }  // the private temp dir
  const std::string& address() const { return address_; }  // gRPC socket
  const std::string& ttrpc_address() const { return ttrpc_address_; }
  const std::string& root() const { return root_; }
  const std::string& state() const { return state_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& ns() const { return options_.ns; }
  const std::string& rootfs() const { return rootfs_; }  // shared busybox
  const std::string& bin_dir() const { return options_.bin_dir; }
  // The last `max_lines` lines of containerd's log (without the
  // "loading plugin" lines of each start).
  std::string LogTail(int max_lines = 80) const;
  // The config.toml this fixture writes (exposed for tests and the demo).
  std::string ConfigToml() const;
  // Wall time of the last successful (re)start until the socket answered.
  absl::Duration last_start_duration() const { return last_start_; }

 private:
  explicit ContainerdFixture(ContainerdOptions options);
  absl::Status Init();
  absl::Status Launch();
  void CleanUp();

  ContainerdOptions options_;
  std::string dir_, address_, ttrpc_address_, root_, state_, config_path_,
      log_path_, rootfs_, image_ref_;
  pid_t pid_ = -1;
  bool started_once_ = false;  // cleanup restarts containerd only if it ran
  absl::Duration last_start_;
};

// Checks that must fail loudly when the machine cannot run the fixture: root,
// containerd, ctr, runc, containerd-shim-runc-v2, busybox-static.
absl::Status CheckContainerdPrerequisites();

// Mount points (from /proc/self/mountinfo) equal to or below `dir`.
std::vector<std::string> MountsUnder(absl::string_view dir);

// Live (non-zombie) processes tied to a fixture: a command line naming its
// temp `dir` (containerd's --config, the shims' -address) or a cgroup path
// containing "/<ns>/" (container processes). Each entry is "pid cmdline".
std::vector<std::string> ProcessesOf(absl::string_view dir,
                                     absl::string_view ns);

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_CONTAINERD_FIXTURE_H_
