// Mounting a container's root filesystem from the mounts containerd sends in
// Create (overlay, bind, ...) and unmounting it again at Delete.
#ifndef STOCKADE_SHIM_PROCESS_MOUNT_H_
#define STOCKADE_SHIM_PROCESS_MOUNT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "shim/process/container.h"

namespace stockade::shim {

// Creates `rootfs` (mode 0711) and mounts each of `mounts` on it in order
// (a mount's target, when set, is relative to `rootfs`). On failure every
// mount made so far is undone. No mounts: nothing is done at all.
absl::Status MountRootfs(const std::string& rootfs,
                         const std::vector<RootfsMount>& mounts);

// Unmounts everything mounted on `path` (repeatedly, lazily) until it is no
// longer a mount point. A missing path is fine.
absl::Status UnmountAll(const std::string& path);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_PROCESS_MOUNT_H_
