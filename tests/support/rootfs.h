// Test support: container root filesystems built from Debian's busybox-static,
// as a directory for `ctr run --rootfs DIR` and as an OCI image archive for
// `ctr image import` (made with umoci). No registry is involved.
#ifndef STOCKADE_TESTS_SUPPORT_ROOTFS_H_
#define STOCKADE_TESTS_SUPPORT_ROOTFS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::testing {

// The statically linked busybox that Debian's busybox-static installs.
inline constexpr char kBusyboxBinary[] = "/bin/busybox";

// `ctr run --rootfs` gives the process no environment at all (no image
// config): pass this with --env so that `sh`, `echo`... resolve.
inline constexpr char kRootfsPathEnv[] = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";

// Applets the tests rely on; BusyboxRootfs fails if busybox lacks one.
const std::vector<std::string>& RequiredApplets();

// Creates a minimal root filesystem in `dir` (created if missing; must be
// empty): /bin/busybox (a copy, so a container writing to it cannot touch the
// host's), a /bin/<applet> symlink for every applet `busybox --list` names,
// /etc/passwd, /etc/group, /etc/hosts, and empty /tmp (1777), /proc, /sys,
// /dev, /run, /root, /var/tmp, /usr/bin, /sbin.
// Fails with the reason if busybox is missing or not statically linked.
absl::Status BusyboxRootfs(const std::string& dir);

// Packs `rootfs` into an OCI image layout tarball at `tar_path` with one layer
// and the reference name `tag` (the org.opencontainers.image.ref.name
// annotation), config Env=[kRootfsPathEnv's value] and Cmd=["sh"]. Uses umoci
// and tar; scratch files go into `work_dir` (created, left for the caller).
// `ctr image import --base-name NAME tar` then yields the image NAME:tag.
absl::Status BuildOciArchive(const std::string& rootfs,
                             const std::string& work_dir, absl::string_view tag,
                             const std::string& tar_path);

// Unpacks the image `tag` of the OCI archive `tar_path` (hack/images) into
// `work_dir` (created) with umoci; returns the root filesystem's path
// (<work_dir>/bundle/rootfs), so a test runs the image's own binaries.
absl::StatusOr<std::string> UnpackOciArchive(const std::string& tar_path,
                                             const std::string& work_dir,
                                             absl::string_view tag);

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_ROOTFS_H_
