// The OCI compiler: effective policy -> the changes to a container's runtime
// spec (read-only root, tmpfs mounts, masked and read-only paths,
// capabilities, noNewPrivileges, rlimits, pids limit).
//
// What each field holds and why:
//
// - readonly_root: filesystem.read_only_root.
// - mounts: one tmpfs per writable path, sorted by destination, options
//   "nosuid", "nodev", ["noexec"], "size=<bytes>", "mode=1777". noexec is left
//   out only when an exec.allow entry needs it: the writable path lies at or
//   beneath an allowed directory ("/opt/tools/"), or an allowed executable or
//   directory lies beneath the writable path (noexec is per mount, so one
//   allowed program inside the tmpfs needs the whole mount exec-able; AppArmor
//   and Landlock still limit execution to the allowed paths). A size of zero
//   bytes becomes a read-only tmpfs (tmpfs reads size=0 as "unlimited").
// - masked_paths: the container runtimes' default list, plus:
//   procfs Minimal: kernel-wide files that leak host details or side channels
//     (kallsyms, modules, interrupts, slab/vmalloc/zone/buddy info, iomem,
//     ioports, config.gz, cmdline, kpage*, kmsg, locks, diskstats, vmstat,
//     pressure, ...). Kept: what libc and language runtimes read (meminfo,
//     cpuinfo, stat, loadavg, uptime, version, filesystems) and /proc/sys,
//     which stays read-only (glibc and runtimes read sysctls such as
//     kernel/ngroups_max and vm/overcommit_memory).
//   procfs None: the Minimal list plus every remaining kernel-wide file and
//     /proc/sys. /proc itself cannot be masked here: runc still uses
//     /proc/self after it masks paths, so the per-process entries stay and
//     AppArmor / Landlock deny them where available.
//   /proc/net is never masked: it is a symlink to /proc/self/net (runc would
//     mask only the init process's view) and shows only the container's own
//     network namespace, which the nftables layer confines.
//   sysfs None: "/sys". sysfs ReadOnly: /sys/kernel/{security,debug,tracing}.
//   filesystem.deny: runc masks a file with /dev/null and a directory with an
//     empty read-only tmpfs; a path missing from the image is skipped.
// - readonly_paths: /proc/bus, /proc/fs, /proc/irq, /proc/sys,
//   /proc/sysrq-trigger, filesystem.read_only, and "/sys" for sysfs ReadOnly.
//   A path both read-only and masked is harmless: runc masks after it
//   remounts read-only.
// - capabilities: "CAP_" + capabilities.add, sorted.
// - no_new_privileges: always true.
// - rlimits: RLIMIT_CORE 0/0 and RLIMIT_NPROC processes.max (sorted by type).
//   RLIMIT_NPROC counts every process of the agent's uid on the host and does
//   not bind uid 0; pids_limit is the real bound, NPROC a second layer.
// - pids_limit: processes.max.
#ifndef STOCKADE_OPERATOR_COMPILER_OCI_OCI_H_
#define STOCKADE_OPERATOR_COMPILER_OCI_OCI_H_

#include "operator/compiler/effective.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::compiler {

// Deterministic: every repeated field is sorted and unique.
stockade::v1::OciChanges CompileOciChanges(const EffectivePolicy& policy);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_OCI_OCI_H_
