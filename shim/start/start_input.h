// What containerd hands the shim on stdin: for `start`, the runtime options
// (a bare google.protobuf.Any on containerd 1.6 to 2.2, BootstrapParams with
// the options in its extensions from 2.3); for `-info`, the options alone.
// Turns them into the shim config path (runtimeoptions.v1.Options
// config_path) and builds the `-info` answer.
#ifndef STOCKADE_SHIM_START_START_INPUT_H_
#define STOCKADE_SHIM_START_START_INPUT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace stockade::shim {

// The ConfigPath of the runtime options in `input` (either form), or "" when
// there are none, they are of another type, or the bytes do not parse.
std::string ConfigPathFromStartInput(absl::string_view input);

// The serialized RuntimeInfo for `-info`: name io.containerd.stockade.v1,
// `version`, the options of `input` echoed, and `runtime_features_json`
// (`runc features`; omitted when empty) as the features Any.
std::string RuntimeInfoBytes(absl::string_view input,
                             const std::string& version,
                             const std::string& runtime_features_json);

// The type URL containerd gives the OCI runtime features it decodes.
inline constexpr char kFeaturesTypeUrl[] =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_START_START_INPUT_H_
