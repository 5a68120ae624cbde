// The shim's configuration file (YAML, proto/stockade/v1/shim_config.proto),
// named by containerd's runtime options (ConfigPath), with its defaults.
#ifndef STOCKADE_SHIM_SHIM_CONFIG_H_
#define STOCKADE_SHIM_SHIM_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "shim/task/task_service.h"

namespace stockade::shim {

// Loads `path` ("" = defaults only). `self_dir` is the directory of the shim
// binary (stockade-init is looked up beside it by default).
absl::StatusOr<TaskServiceConfig> LoadShimConfig(
    const std::string& path, const std::string& self_dir,
    const std::string& containerd_ns);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_SHIM_CONFIG_H_
