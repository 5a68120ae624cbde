#include "shim/task/metrics.h"

#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"
#include "gtest/gtest.h"

namespace stockade::shim {
namespace {

// Trimmed from `runc events --stats` of a busybox container (cgroup v1).
constexpr char kRuncStats[] = R"({
  "cpu": {"usage": {"total": 10528906, "percpu": [1330199, 9198707],
                    "kernel": 5000000, "user": 4000000},
          "throttling": {"periods": 3, "throttled_periods": 1,
                         "throttled_time": 2000}},
  "memory": {"cache": 200704,
             "usage": {"limit": 9223372036854771712, "usage": 1015808,
                       "max_usage": 2000000, "failcnt": 0},
             "swap_usage": {"limit": 1, "usage": 2},
             "raw": {"rss": 4096, "total_rss": 8192, "pgfault": 77,
                     "not_a_field": 5, "cache": 1}},
  "pids": {"current": 3, "limit": 128},
  "blkio": {"ioServiceBytesRecursive": [
      {"major": 8, "minor": 0, "op": "Read", "value": 4096}]},
  "hugetlb": {"2MB": {"usage": 0, "max_usage": 0, "failcnt": 0}}
})";

TEST(MetricsTest, CgroupV1) {
  absl::StatusOr<google::protobuf::Any> any =
      MetricsFromRuncStats(kRuncStats, CgroupVersion::kV1);
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(any->type_url(), "io.containerd.cgroups.v1.Metrics");
  io::containerd::cgroups::v1::Metrics m;
  ASSERT_TRUE(m.ParseFromString(any->value()));
  EXPECT_EQ(m.pids().current(), 3u);
  EXPECT_EQ(m.pids().limit(), 128u);
  EXPECT_EQ(m.cpu().usage().total(), 10528906u);
  ASSERT_EQ(m.cpu().usage().per_cpu_size(), 2);
  EXPECT_EQ(m.cpu().usage().per_cpu(1), 9198707u);
  EXPECT_EQ(m.cpu().throttling().throttled_time(), 2000u);
  EXPECT_EQ(m.memory().usage().usage(), 1015808u);
  EXPECT_EQ(m.memory().usage().max(), 2000000u);
  EXPECT_EQ(m.memory().cache(), 200704u);  // runc's own field wins
  EXPECT_EQ(m.memory().rss(), 4096u);
  EXPECT_EQ(m.memory().total_rss(), 8192u);
  EXPECT_EQ(m.memory().pg_fault(), 77u);  // memory.stat "pgfault"
  EXPECT_EQ(m.memory().swap().usage(), 2u);
  ASSERT_EQ(m.blkio().io_service_bytes_recursive_size(), 1);
  EXPECT_EQ(m.blkio().io_service_bytes_recursive(0).op(), "Read");
  ASSERT_EQ(m.hugetlb_size(), 1);
  EXPECT_EQ(m.hugetlb(0).pagesize(), "2MB");
}

TEST(MetricsTest, CgroupV2) {
  absl::StatusOr<google::protobuf::Any> any = MetricsFromRuncStats(
      R"({"cpu": {"usage": {"total": 5000000, "user": 3000000,
                            "kernel": 2000000}},
          "memory": {"usage": {"usage": 1048576, "limit": 2097152},
                     "raw": {"anon": 4096, "file": 8192}},
          "pids": {"current": 2, "limit": 8}})",
      CgroupVersion::kV2);
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(any->type_url(), "io.containerd.cgroups.v2.Metrics");
  io::containerd::cgroups::v2::Metrics m;
  ASSERT_TRUE(m.ParseFromString(any->value()));
  EXPECT_EQ(m.pids().current(), 2u);
  EXPECT_EQ(m.cpu().usage_usec(), 5000u);
  EXPECT_EQ(m.cpu().system_usec(), 2000u);
  EXPECT_EQ(m.memory().usage(), 1048576u);
  EXPECT_EQ(m.memory().usage_limit(), 2097152u);
  EXPECT_EQ(m.memory().anon(), 4096u);
}

TEST(MetricsTest, MalformedStatsAreAnError) {
  EXPECT_FALSE(MetricsFromRuncStats("not json", CgroupVersion::kV1).ok());
  EXPECT_FALSE(MetricsFromRuncStats("[1]", CgroupVersion::kV1).ok());
  // Fields of the wrong type are read as zero, never a crash.
  absl::StatusOr<google::protobuf::Any> any = MetricsFromRuncStats(
      R"({"pids": {"current": "x"}, "cpu": {"usage": {"percpu": "y"}},
          "memory": {"raw": [1]}, "blkio": {"ioServicedRecursive": 3}})",
      CgroupVersion::kV1);
  EXPECT_TRUE(any.ok());
}

}  // namespace
}  // namespace stockade::shim
