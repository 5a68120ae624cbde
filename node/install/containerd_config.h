// Adding the stockade runtime handler to containerd's configuration and
// taking it out again, as text, so that an uninstall gives back the file
// byte for byte.
//
// containerd 1.6/1.7 (config version 2, or 1) replace a plugin's whole
// section with the one an imported file carries (containerd#5837): a drop-in
// holding only the stockade runtime would drop every other CRI setting (the
// runc runtime, the CNI paths, registry mirrors). So the entry goes into the
// main file as a block between two marker comments. containerd 2.x
// (version 3) merges imported sections key by key: there the entry is a
// drop-in file, when the main file already imports a pattern that covers it.
#ifndef STOCKADE_NODE_INSTALL_CONTAINERD_CONFIG_H_
#define STOCKADE_NODE_INSTALL_CONTAINERD_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::node::install {

// What the runtime entry says. Paths are as the host sees them.
struct RuntimeEntry {
  std::string handler = "stockade";  // the RuntimeClass handler
  std::string shim_path;             // runtime_path
  std::string shim_config_path;      // options.ConfigPath
};

// s as a TOML basic string ("...", with '"' and '\\' escaped).
std::string TomlString(absl::string_view s);

inline constexpr char kBlockBegin[] =
    "# BEGIN stockade runtime (added by stockade-node-install; its uninstall "
    "removes this block)";
inline constexpr char kBlockEnd[] = "# END stockade runtime";
// First line of a configuration file the installer created (none was there);
// uninstall deletes such a file.
inline constexpr char kCreatedMarker[] =
    "# Created by stockade-node-install (no containerd configuration was "
    "here); its uninstall deletes this file.";

// The `version` key of a containerd configuration: 1 when absent (containerd
// 1.x reads such a file as version 1), else 2 or 3. InvalidArgument for any
// other value.
absl::StatusOr<int> ConfigVersion(absl::string_view config);

// The runtime tables for a configuration of `version` (no markers): the CRI
// plugin is "cri" in version 1, "io.containerd.grpc.v1.cri" in version 2 and
// "io.containerd.cri.v1.runtime" in version 3.
std::string RuntimeTables(int version, const RuntimeEntry& entry);

// `config` with the marked block for `entry` appended (replacing a block an
// earlier install added, so installing twice changes nothing). When the file
// defines no runc runtime, the block defines containerd's default one too:
// containerd decodes a runtimes table in place of its default map, which
// would otherwise lose runc, the default runtime of every other pod.
// FailedPrecondition when the file defines a runtime named entry.handler
// outside the block: the installer never edits what someone else wrote.
absl::StatusOr<std::string> AddRuntimeBlock(absl::string_view config,
                                            const RuntimeEntry& entry);

// `config` without the marked block; unchanged when it has none.
std::string RemoveRuntimeBlock(absl::string_view config);

// A whole configuration file for a host that had none (kCreatedMarker,
// `version = 2`, the block).
std::string NewConfigFile(const RuntimeEntry& entry);

// A drop-in file for a version 3 configuration `main_config` (with the
// default runc runtime when main_config defines none, as above).
std::string DropInFile(absl::string_view main_config,
                       const RuntimeEntry& entry);

// The imported path patterns of `config` (`imports = [...]`, one line or
// several), resolved against `config_dir` when relative.
std::vector<std::string> Imports(absl::string_view config,
                                 absl::string_view config_dir);

// Whether one of `imports` (glob patterns) matches `path`.
bool ImportsCover(const std::vector<std::string>& imports,
                  absl::string_view path);

}  // namespace stockade::node::install

#endif  // STOCKADE_NODE_INSTALL_CONTAINERD_CONFIG_H_
