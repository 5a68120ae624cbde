// AppArmor on the node: compiles a compiled policy's profile text to the
// kernel's binary format with apparmor_parser, loads and unloads it through
// libapparmor, and lists what the kernel has loaded. Only where the kernel
// has AppArmor enabled; elsewhere the node agent reports so and skips it.
#ifndef STOCKADE_NODE_APPARMOR_H_
#define STOCKADE_NODE_APPARMOR_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stockade::node {

// Whether the running kernel has AppArmor enabled (aa_is_enabled()).
bool AppArmorKernelEnabled();

class AppArmor {
 public:
  struct Options {
    // The apparmor_parser binary (looked up in PATH without a '/').
    std::string parser = "apparmor_parser";
    // A directory for the parser's temporary input and output files.
    std::string work_dir = "/tmp";
    // apparmor_parser is killed after this long.
    absl::Duration parser_timeout = absl::Seconds(60);
  };

  explicit AppArmor(Options options) : options_(std::move(options)) {}

  // The kernel's binary policy for profile text: apparmor_parser -Q
  // (compile only) -K (no cache) -o OUT. InvalidArgument with the parser's
  // messages when the text does not compile; Unavailable when the parser
  // cannot be run.
  absl::StatusOr<std::string> Compile(std::string_view text) const;

  // Loads binary into the kernel, replacing a loaded profile of the same
  // name (libapparmor aa_kernel_interface_replace_policy).
  absl::Status Load(std::string_view binary) const;

  // Removes the profile name from the kernel. OK when it is not loaded.
  absl::Status Unload(std::string_view name) const;

  // The names of the profiles the kernel has loaded, from
  // <securityfs>/apparmor/profiles.
  absl::StatusOr<std::vector<std::string>> Loaded() const;

 private:
  Options options_;
};

}  // namespace stockade::node

#endif  // STOCKADE_NODE_APPARMOR_H_
