// Turns an OCI runtime-spec linux.seccomp object (JSON) into a libseccomp
// filter and loads it into the calling thread, the way runc 1.1 does. Used by
// the enforcement tests and by stockade-init.
#ifndef STOCKADE_SHIM_INIT_SECCOMP_LOADER_H_
#define STOCKADE_SHIM_INIT_SECCOMP_LOADER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stockade::shim {

// A libseccomp filter built from an OCI linux.seccomp object, not loaded yet.
// What runc does, and so what this does:
// - every listed architecture is added to the filter (the native one always);
// - names libseccomp cannot resolve on the native architecture are skipped;
// - SCMP_ACT_ERRNO/SCMP_ACT_TRACE use errnoRet (EPERM when absent);
// - a rule whose action equals the default action is skipped (redundant);
// - several conditions on the same argument become one rule per condition
//   (libseccomp cannot AND them), all conditions on distinct arguments one
//   rule (AND).
// The no_new_privs bit is NOT set by Load(): set it first (as runc does with
// process.noNewPrivileges), or hold CAP_SYS_ADMIN.
// Refused: "flags", "listenerPath" (runc 1.1 supports neither),
// SCMP_ACT_NOTIFY, unknown actions, operators or architectures, argument index
// > 5.
class OciSeccompFilter {
 public:
  static absl::StatusOr<OciSeccompFilter> Build(std::string_view json);

  OciSeccompFilter(OciSeccompFilter&& other) noexcept;
  OciSeccompFilter& operator=(OciSeccompFilter&& other) noexcept;
  OciSeccompFilter(const OciSeccompFilter&) = delete;
  OciSeccompFilter& operator=(const OciSeccompFilter&) = delete;
  ~OciSeccompFilter();

  // Loads the filter into the calling thread (and what it execs/forks).
  absl::Status Load() const;

  // The BPF program libseccomp generates, for inspection (not loaded).
  absl::StatusOr<std::string> ExportBpf() const;

  // Names skipped because libseccomp does not know them on this
  // architecture, sorted, unique.
  const std::vector<std::string>& skipped_names() const { return skipped_; }

 private:
  explicit OciSeccompFilter(void* ctx) : ctx_(ctx) {}
  void* ctx_;  // scmp_filter_ctx
  std::vector<std::string> skipped_;
};

// Build(json) then Load().
absl::Status LoadOciSeccomp(std::string_view json);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_INIT_SECCOMP_LOADER_H_
