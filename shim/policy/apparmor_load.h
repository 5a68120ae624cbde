// Loads a policy's AppArmor profile into the kernel when it is not loaded
// yet, so that a container whose spec names it can start (runc fails on an
// unknown profile). The node agent normally loads profiles ahead of time;
// this is the shim's fallback at Create. Only called where the kernel has
// AppArmor (aa_is_enabled()).
#ifndef STOCKADE_SHIM_POLICY_APPARMOR_LOAD_H_
#define STOCKADE_SHIM_POLICY_APPARMOR_LOAD_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace stockade::shim {

struct AppArmorLoader {
  // The kernel's list of loaded profiles ("NAME (MODE)" per line).
  std::string profiles_file = "/sys/kernel/security/apparmor/profiles";
  // Reads the profile source on stdin and loads (replaces) it.
  std::vector<std::string> command = {"apparmor_parser", "--replace"};
};

// True when `name` is among the loaded profiles.
bool AppArmorProfileLoaded(const AppArmorLoader& loader,
                           absl::string_view name);

// Loads `text` (the compiled profile's source) unless a profile `name` is
// loaded already. Errors carry the parser's output.
absl::Status EnsureAppArmorProfile(const AppArmorLoader& loader,
                                   absl::string_view name,
                                   absl::string_view text);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_POLICY_APPARMOR_LOAD_H_
