// The denial collector of a node: reads the kernel's audit records (the audit
// netlink socket's read-only multicast group, which every record reaches
// whether or not auditd runs and without the kernel log's rate limit) and
// the kernel log (/dev/kmsg: the nftables egress log lines), attributes each
// denial to its container and policy (attribution.h), rate-limits them per
// container and appends them to the node's denial log (denial_log.h).
// Denials of processes in no Stockade container are not Stockade's: they are
// counted, not logged.
#ifndef STOCKADE_NODE_DENIALS_COLLECTOR_H_
#define STOCKADE_NODE_DENIALS_COLLECTOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "node/denials/denial.h"

namespace stockade::node::denials {

struct CollectorOptions {
  std::string store_root = "/var/lib/stockade";
  std::string node_name;
  std::string kmsg = "/dev/kmsg";
  std::string proc = "/proc";
  // Per container: at most `burst` denials at once, refilled at `rate` per
  // second; the rest are counted and reported as one summary record
  // (Denial::suppressed) once the container may log again.
  int burst = 20;
  double rate = 5;
  int64_t max_log_bytes = 16 << 20;
  // Turn the kernel's audit on (AUDIT_SET enabled=1, as auditd does) when it
  // is off, and back off when the collector stops. Landlock reports denials
  // only while audit is enabled; seccomp and the nftables log do either way.
  // Needs CAP_AUDIT_CONTROL. Audit on costs every syscall a little (an audit
  // context), even with no rules.
  bool enable_audit = false;
  // Set net.netfilter.nf_log_all_netns to 1 when it is 0 (and back when the
  // collector stops): the kernel drops log lines from network namespaces
  // other than the host's, which every pod's is, unless it is set.
  bool log_all_netns = false;
  // Called for every denial logged (after the rate limit), on the
  // collector's thread.
  std::function<void(const Denial&)> on_denial;
};

struct CollectorStats {
  std::atomic<int64_t> logged{0};
  std::atomic<int64_t> suppressed{0};    // dropped by the rate limit
  std::atomic<int64_t> unattributed{0};  // not a Stockade container's
  std::atomic<int64_t> repeated{0};      // the same packet retransmitted
  // Times the kernel found the audit socket's buffer full and dropped
  // records (ENOBUFS): a flood faster than the collector reads.
  std::atomic<int64_t> overflows{0};
};

class Collector {
 public:
  // Opens the sources and the log, then collects on a thread of its own.
  // Fails when neither source can be read (needs CAP_AUDIT_READ for the
  // audit socket, CAP_SYSLOG for /dev/kmsg).
  static absl::StatusOr<std::unique_ptr<Collector>> Start(
      CollectorOptions options);
  ~Collector();  // stops
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  const CollectorStats& stats() const { return stats_; }
  // Whether this collector turned audit on (and turns it off again).
  bool enabled_audit() const { return enabled_audit_; }
  // What the collector could not set up but runs without, or "".
  const std::string& warning() const { return warning_; }
  // Which sources are read ("audit-netlink", "kmsg").
  const std::string& sources() const { return sources_; }

 private:
  struct State;
  Collector() = default;
  void Run();

  CollectorOptions options_;
  CollectorStats stats_;
  std::string sources_;
  bool enabled_audit_ = false;
  std::string warning_;
  std::string buffer_warning_;
  bool enabled_netns_log_ = false;
  int audit_fd_ = -1, kmsg_fd_ = -1, stop_fd_ = -1;
  std::unique_ptr<State> state_;
  std::thread thread_;
};

}  // namespace stockade::node::denials

#endif  // STOCKADE_NODE_DENIALS_COLLECTOR_H_
