#include "operator/compiler/oci/oci.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "operator/compiler/quantity.h"

namespace stockade::compiler {
namespace {

// What containerd, CRI-O and Docker mask by default.
constexpr std::string_view kRuntimeDefaultMasked[] = {
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
};

// procfs Minimal: kernel-wide files that describe the host (addresses,
// modules, hardware, boot command line) or give side channels (interrupt,
// slab, scheduler and disk statistics). None of them is read by libc or the
// usual language runtimes.
constexpr std::string_view kProcMinimalMasked[] = {
    "/proc/bootconfig",  "/proc/buddyinfo",  "/proc/cmdline",
    "/proc/config.gz",   "/proc/devices",    "/proc/diskstats",
    "/proc/dma",         "/proc/driver",     "/proc/interrupts",
    "/proc/iomem",       "/proc/ioports",    "/proc/kallsyms",
    "/proc/key-users",   "/proc/kmsg",       "/proc/kpagecgroup",
    "/proc/kpagecount",  "/proc/kpageflags", "/proc/locks",
    "/proc/modules",     "/proc/mtrr",       "/proc/pagetypeinfo",
    "/proc/partitions",  "/proc/pressure",   "/proc/schedstat",
    "/proc/slabinfo",    "/proc/softirqs",   "/proc/swaps",
    "/proc/vmallocinfo", "/proc/vmstat",     "/proc/zoneinfo",
};

// procfs None, on top of Minimal: every other kernel-wide entry. /proc/sys
// is masked one level down: /proc/sys/kernel stays (read-only) because runc
// and libcap read kernel/cap_last_cap after the masks are in place.
constexpr std::string_view kProcNoneMasked[] = {
    "/proc/bus",        "/proc/cgroups",       "/proc/consoles",
    "/proc/cpuinfo",    "/proc/crypto",        "/proc/execdomains",
    "/proc/fb",         "/proc/filesystems",   "/proc/fs",
    "/proc/irq",        "/proc/loadavg",       "/proc/meminfo",
    "/proc/misc",       "/proc/stat",          "/proc/sys/abi",
    "/proc/sys/crypto", "/proc/sys/debug",     "/proc/sys/dev",
    "/proc/sys/fs",     "/proc/sys/net",       "/proc/sys/user",
    "/proc/sys/vm",     "/proc/sysrq-trigger", "/proc/sysvipc",
    "/proc/tty",        "/proc/uptime",        "/proc/version",
};

// sysfs ReadOnly: security and debugging interfaces.
constexpr std::string_view kSysReadOnlyMasked[] = {
    "/sys/kernel/debug",
    "/sys/kernel/security",
    "/sys/kernel/tracing",
};

// What containerd, CRI-O and Docker make read-only by default.
constexpr std::string_view kRuntimeDefaultReadOnly[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

// The tmpfs size when a quantity fails to parse (impossible for an
// effective policy); the documented default.
constexpr int64_t kDefaultTmpfsBytes = int64_t{64} << 20;

// True if path is dir or lies beneath it. dir may end in "/".
bool IsWithin(std::string_view path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir == "/") return true;
  if (!path.starts_with(dir)) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

// True if some exec.allow entry needs executables on the tmpfs at path.
bool NeedsExec(const EffectivePolicy& policy, std::string_view path) {
  for (const std::string& allow : policy.exec().allow()) {
    const bool is_dir = allow.ends_with("/");
    // The writable directory lies within an allowed directory.
    if (is_dir && IsWithin(path, allow)) return true;
    // An allowed executable or directory lies beneath the writable path.
    if (IsWithin(allow, path) && allow != path) return true;
  }
  return false;
}

stockade::v1::OciMount TmpfsMount(const EffectivePolicy& policy,
                                  const stockade::v1::WritablePath& writable) {
  stockade::v1::OciMount mount;
  mount.set_destination(writable.path());
  mount.set_type("tmpfs");
  mount.set_source("tmpfs");
  absl::StatusOr<int64_t> bytes = ParseQuantity(writable.size_limit());
  const int64_t size = bytes.ok() ? *bytes : kDefaultTmpfsBytes;
  mount.add_options("nosuid");
  mount.add_options("nodev");
  if (!NeedsExec(policy, writable.path())) mount.add_options("noexec");
  if (size == 0) {
    // tmpfs takes size=0 as "no limit": a directory that may hold nothing is
    // a read-only one.
    mount.add_options("ro");
    mount.add_options("size=4096");
  } else {
    mount.add_options(absl::StrCat("size=", size));
  }
  mount.add_options("mode=1777");
  return mount;
}

template <typename Container>
void AddAll(std::set<std::string>& out, const Container& items) {
  for (const auto& item : items) out.insert(std::string(item));
}

}  // namespace

stockade::v1::OciChanges CompileOciChanges(const EffectivePolicy& policy) {
  stockade::v1::OciChanges out;
  const auto& fs = policy.filesystem();
  out.set_readonly_root(fs.read_only_root());

  std::vector<const stockade::v1::WritablePath*> writable;
  for (const auto& w : fs.writable()) writable.push_back(&w);
  std::stable_sort(
      writable.begin(), writable.end(),
      [](const auto* a, const auto* b) { return a->path() < b->path(); });
  std::string last;
  for (const auto* w : writable) {
    if (!out.mounts().empty() && w->path() == last) continue;
    *out.add_mounts() = TmpfsMount(policy, *w);
    last = w->path();
  }

  std::set<std::string> masked;
  AddAll(masked, kRuntimeDefaultMasked);
  const auto procfs = policy.procfs();
  if (procfs == stockade::v1::PROCFS_EXPOSURE_MINIMAL ||
      procfs == stockade::v1::PROCFS_EXPOSURE_NONE) {
    AddAll(masked, kProcMinimalMasked);
  }
  if (procfs == stockade::v1::PROCFS_EXPOSURE_NONE) {
    AddAll(masked, kProcNoneMasked);
  }
  std::set<std::string> readonly;
  AddAll(readonly, kRuntimeDefaultReadOnly);
  if (policy.sysfs() == stockade::v1::SYSFS_EXPOSURE_READ_ONLY) {
    readonly.insert("/sys");
    AddAll(masked, kSysReadOnlyMasked);
  } else {
    // None, and anything unexpected: no /sys at all.
    masked.insert("/sys");
  }
  AddAll(masked, fs.deny());
  AddAll(readonly, fs.read_only());
  for (const std::string& p : masked) out.add_masked_paths(p);
  for (const std::string& p : readonly) out.add_readonly_paths(p);

  std::set<std::string> caps;
  for (const std::string& c : policy.capabilities().add()) {
    caps.insert(absl::StrCat("CAP_", c));
  }
  for (const std::string& c : caps) out.add_capabilities(c);

  out.set_no_new_privileges(true);

  const uint64_t max_processes =
      policy.processes().max() > 0
          ? static_cast<uint64_t>(policy.processes().max())
          : 1;
  stockade::v1::OciRlimit* core = out.add_rlimits();
  core->set_type("RLIMIT_CORE");
  core->set_hard(0);
  core->set_soft(0);
  stockade::v1::OciRlimit* nproc = out.add_rlimits();
  nproc->set_type("RLIMIT_NPROC");
  nproc->set_hard(max_processes);
  nproc->set_soft(max_processes);
  out.set_pids_limit(static_cast<int64_t>(max_processes));
  return out;
}

}  // namespace stockade::compiler
