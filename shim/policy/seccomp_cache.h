// The BPF program of a container's seccomp filter, for stockade-init to load:
// built with libseccomp from the spec's linux.seccomp exactly as runc would
// (shim/init/seccomp_loader.h), and kept in a content-addressed cache so
// that only the first container of a policy on a node pays libseccomp's
// tens of milliseconds; every later one reads a few KiB.
#ifndef STOCKADE_SHIM_POLICY_SECCOMP_CACHE_H_
#define STOCKADE_SHIM_POLICY_SECCOMP_CACHE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::shim {

// Where the shim keeps generated programs unless its config says otherwise:
// runtime state (tmpfs), rebuilt after a reboot or a libseccomp upgrade.
inline constexpr char kDefaultSeccompCacheDir[] = "/run/stockade/seccomp";

// Returns the BPF program (a struct sock_filter array) of `seccomp_json`, an
// OCI linux.seccomp object. The cache file's name is the sha256 of the
// object, the native architecture and the libseccomp version; a missing or
// malformed entry is rebuilt and written atomically (mode 0600 in a 0700
// directory). A cache that cannot be written is not an error: the program
// is returned all the same. An empty `cache_dir` disables the cache.
absl::StatusOr<std::string> SeccompBpf(absl::string_view seccomp_json,
                                       const std::string& cache_dir);

// The cache file SeccompBpf uses for `seccomp_json` (for tests and
// diagnostics).
std::string SeccompCachePath(absl::string_view seccomp_json,
                             const std::string& cache_dir);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_POLICY_SECCOMP_CACHE_H_
