// Task/Stats: the cgroup statistics runc reports (`runc events --stats`,
// JSON) turned into containerd's cgroups Metrics message, v1 or v2 as the
// node's cgroup hierarchy is, packed in the Any that containerd (ctr task
// metrics, the CRI plugin's container stats for kubelet) decodes.
#ifndef STOCKADE_SHIM_TASK_METRICS_H_
#define STOCKADE_SHIM_TASK_METRICS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/any.pb.h"

namespace stockade::shim {

enum class CgroupVersion { kV1, kV2 };

// The hierarchy mounted at /sys/fs/cgroup (cgroup2 filesystem: v2).
CgroupVersion HostCgroupVersion();

// `runc_stats_json` is the "data" object of `runc events --stats`. The Any's
// type URL is io.containerd.cgroups.v1.Metrics or ...v2.Metrics.
absl::StatusOr<google::protobuf::Any> MetricsFromRuncStats(
    absl::string_view runc_stats_json, CgroupVersion version);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_TASK_METRICS_H_
