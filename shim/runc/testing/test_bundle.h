// Test support for tests that run real containers with runc: a temporary
// directory, a busybox root filesystem (Debian's busybox-static) and OCI
// bundles whose config.json comes from `runc spec`.
#ifndef STOCKADE_SHIM_RUNC_TESTING_TEST_BUNDLE_H_
#define STOCKADE_SHIM_RUNC_TESTING_TEST_BUNDLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stockade::shim::testing {

// Runs argv to completion through Spawn and the Reaper (which must be
// started; nothing else may waitpid in a process that has the Reaper).
// Returns the exit status; stdout goes to `out` when given.
absl::StatusOr<int> RunAndWait(const std::vector<std::string>& argv,
                               std::string* out = nullptr);

// A fresh directory under /tmp, removed with everything in it (mounts
// beneath are detached first) when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Creates `dir` holding /bin/busybox (a copy), a /bin symlink per applet
// the tests use, and empty /proc /sys /dev /tmp /etc. Fails loudly when
// busybox-static is not installed.
absl::Status MakeBusyboxRootfs(const std::string& dir);

struct BundleOptions {
  std::vector<std::string> args = {"true"};
  bool terminal = false;
  // Without it the container shares the shim's pid namespace.
  bool pid_namespace = true;
  // root.path: absolute, or relative to the bundle.
  std::string root_path = "rootfs";
  bool readonly_root = true;
  int64_t memory_limit = 0;  // bytes; 0 = none
};

// Writes <bundle>/config.json: `runc spec` output with `options` applied
// and PATH set for busybox. Creates `bundle` if needed.
absl::Status WriteBundle(const std::string& bundle,
                         const BundleOptions& options);

// An OCI Process object (JSON) running `args` as root in "/".
std::string ProcessJson(const std::vector<std::string>& args,
                        bool terminal = false);

// A container id unique to this test process.
std::string UniqueId(absl::string_view prefix);

// Reads a FIFO (opened O_RDONLY|O_NONBLOCK) until every writer that
// connected has gone, or `timeout`. Returns what was read.
std::string ReadFifoUntilEof(int fd, absl::Duration timeout);

// True if `path` is a mount point (per /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

}  // namespace stockade::shim::testing

#endif  // STOCKADE_SHIM_RUNC_TESTING_TEST_BUNDLE_H_
