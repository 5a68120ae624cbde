#include "shim/task/metrics.h"

#include <linux/magic.h>
#include <sys/vfs.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "nlohmann/json.hpp"

namespace stockade::shim {
namespace {

using Json = nlohmann::json;
namespace v1 = ::io::containerd::cgroups::v1;
namespace v2 = ::io::containerd::cgroups::v2;

uint64_t U64(const Json& obj, const char* key) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  const double d = it->get<double>();
  return d < 0 ? 0 : static_cast<uint64_t>(d);
}

const Json& Obj(const Json& obj, const char* key) {
  static const Json kEmpty = Json::object();
  if (!obj.is_object()) return kEmpty;
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

std::string WithoutUnderscores(absl::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != '_') out.push_back(c);
  }
  return out;
}

// Sets every uint64 field of `message` named like a key of `raw` (the
// cgroup's memory.stat, which runc passes through as "raw"); names are
// compared without underscores (memory.stat's "pgfault" is the v1 message's
// "pg_fault").
void SetFromRaw(const Json& raw, google::protobuf::Message* message) {
  if (!raw.is_object()) return;
  const google::protobuf::Descriptor* d = message->GetDescriptor();
  const google::protobuf::Reflection* r = message->GetReflection();
  std::map<std::string, const google::protobuf::FieldDescriptor*> fields;
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (!f->is_repeated() &&
        f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT64) {
      fields[WithoutUnderscores(f->name())] = f;
    }
  }
  for (auto it = raw.begin(); it != raw.end(); ++it) {
    auto f = fields.find(WithoutUnderscores(it.key()));
    if (f == fields.end() || !it.value().is_number()) continue;
    r->SetUInt64(message, f->second, U64(raw, it.key().c_str()));
  }
}

void FillMemoryEntry(const Json& j, v1::MemoryEntry* e) {
  e->set_limit(U64(j, "limit"));
  e->set_usage(U64(j, "usage"));
  e->set_max(U64(j, "max_usage"));
  e->set_failcnt(U64(j, "failcnt"));
}

v1::Metrics V1(const Json& stats) {
  v1::Metrics m;
  const Json& pids = Obj(stats, "pids");
  m.mutable_pids()->set_current(U64(pids, "current"));
  m.mutable_pids()->set_limit(U64(pids, "limit"));

  const Json& cpu = Obj(stats, "cpu");
  const Json& usage = Obj(cpu, "usage");
  v1::CPUUsage* u = m.mutable_cpu()->mutable_usage();
  u->set_total(U64(usage, "total"));
  u->set_kernel(U64(usage, "kernel"));
  u->set_user(U64(usage, "user"));
  if (usage.contains("percpu") && usage["percpu"].is_array()) {
    for (const Json& v : usage["percpu"]) {
      u->add_per_cpu(v.is_number_unsigned() ? v.get<uint64_t>() : 0);
    }
  }
  const Json& thr = Obj(cpu, "throttling");
  m.mutable_cpu()->mutable_throttling()->set_periods(U64(thr, "periods"));
  m.mutable_cpu()->mutable_throttling()->set_throttled_periods(
      U64(thr, "throttled_periods"));
  m.mutable_cpu()->mutable_throttling()->set_throttled_time(
      U64(thr, "throttled_time"));

  const Json& mem = Obj(stats, "memory");
  v1::MemoryStat* ms = m.mutable_memory();
  SetFromRaw(Obj(mem, "raw"), ms);
  ms->set_cache(U64(mem, "cache"));
  FillMemoryEntry(Obj(mem, "usage"), ms->mutable_usage());
  FillMemoryEntry(Obj(mem, "swap_usage"), ms->mutable_swap());
  FillMemoryEntry(Obj(mem, "kernel_usage"), ms->mutable_kernel());
  FillMemoryEntry(Obj(mem, "kernel_tcp_usage"), ms->mutable_kernel_tcp());

  const Json& blkio = Obj(stats, "blkio");
  auto entries = [&](const char* key,
                     google::protobuf::RepeatedPtrField<v1::BlkIOEntry>* out) {
    auto it = blkio.find(key);
    if (it == blkio.end() || !it->is_array()) return;
    for (const Json& e : *it) {
      v1::BlkIOEntry* b = out->Add();
      b->set_major(U64(e, "major"));
      b->set_minor(U64(e, "minor"));
      if (e.contains("op") && e["op"].is_string()) b->set_op(e["op"]);
      b->set_value(U64(e, "value"));
    }
  };
  v1::BlkIOStat* b = m.mutable_blkio();
  entries("ioServiceBytesRecursive", b->mutable_io_service_bytes_recursive());
  entries("ioServicedRecursive", b->mutable_io_serviced_recursive());
  entries("ioQueueRecursive", b->mutable_io_queued_recursive());
  entries("ioServiceTimeRecursive", b->mutable_io_service_time_recursive());
  entries("ioWaitTimeRecursive", b->mutable_io_wait_time_recursive());
  entries("ioMergedRecursive", b->mutable_io_merged_recursive());
  entries("ioTimeRecursive", b->mutable_io_time_recursive());
  entries("sectorsRecursive", b->mutable_sectors_recursive());

  const Json& hugetlb = Obj(stats, "hugetlb");
  for (auto it = hugetlb.begin(); it != hugetlb.end(); ++it) {
    v1::HugetlbStat* h = m.add_hugetlb();
    h->set_pagesize(it.key());
    h->set_usage(U64(it.value(), "usage"));
    h->set_max(U64(it.value(), "max_usage"));
    h->set_failcnt(U64(it.value(), "failcnt"));
  }
  return m;
}

v2::Metrics V2(const Json& stats) {
  v2::Metrics m;
  const Json& pids = Obj(stats, "pids");
  m.mutable_pids()->set_current(U64(pids, "current"));
  m.mutable_pids()->set_limit(U64(pids, "limit"));
  // runc reports v2 CPU times in nanoseconds, containerd's v2 message in
  // microseconds.
  const Json& cpu = Obj(stats, "cpu");
  const Json& usage = Obj(cpu, "usage");
  const Json& thr = Obj(cpu, "throttling");
  m.mutable_cpu()->set_usage_usec(U64(usage, "total") / 1000);
  m.mutable_cpu()->set_user_usec(U64(usage, "user") / 1000);
  m.mutable_cpu()->set_system_usec(U64(usage, "kernel") / 1000);
  m.mutable_cpu()->set_nr_periods(U64(thr, "periods"));
  m.mutable_cpu()->set_nr_throttled(U64(thr, "throttled_periods"));
  m.mutable_cpu()->set_throttled_usec(U64(thr, "throttled_time") / 1000);
  const Json& mem = Obj(stats, "memory");
  SetFromRaw(Obj(mem, "raw"), m.mutable_memory());
  m.mutable_memory()->set_usage(U64(Obj(mem, "usage"), "usage"));
  m.mutable_memory()->set_usage_limit(U64(Obj(mem, "usage"), "limit"));
  m.mutable_memory()->set_swap_usage(U64(Obj(mem, "swap_usage"), "usage"));
  m.mutable_memory()->set_swap_limit(U64(Obj(mem, "swap_usage"), "limit"));
  return m;
}

}  // namespace

CgroupVersion HostCgroupVersion() {
  struct statfs fs;
  if (statfs("/sys/fs/cgroup", &fs) == 0 &&
      static_cast<unsigned long>(fs.f_type) == CGROUP2_SUPER_MAGIC) {
    return CgroupVersion::kV2;
  }
  return CgroupVersion::kV1;
}

absl::StatusOr<google::protobuf::Any> MetricsFromRuncStats(
    absl::string_view runc_stats_json, CgroupVersion version) {
  Json stats = Json::parse(runc_stats_json.begin(), runc_stats_json.end(),
                           nullptr, /*allow_exceptions=*/false);
  if (!stats.is_object()) {
    return absl::InternalError(absl::StrCat(
        "runc stats are not a JSON object: ", runc_stats_json.substr(0, 200)));
  }
  google::protobuf::Any any;
  if (version == CgroupVersion::kV2) {
    any.set_type_url("io.containerd.cgroups.v2.Metrics");
    any.set_value(V2(stats).SerializeAsString());
  } else {
    any.set_type_url("io.containerd.cgroups.v1.Metrics");
    any.set_value(V1(stats).SerializeAsString());
  }
  return any;
}

}  // namespace stockade::shim
