// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
// candidates take the lease when it is free, released or not renewed for
// its leaseDurationSeconds (measured on the local clock from when this
// candidate last saw the record change, so clocks need not agree); writes use
// the lease's resourceVersion, so of two candidates only one wins. The leader
// renews every retry period; if it cannot renew within the renew deadline it
// steps down. A clean Stop releases the lease (empty holder) so that another
// candidate takes over within one retry period instead of a lease duration.
#ifndef STOCKADE_OPERATOR_KUBE_LEADER_H_
#define STOCKADE_OPERATOR_KUBE_LEADER_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "operator/kube/client.h"

namespace stockade::kube {

struct LeaderElectionConfig {
  std::string lease_name{};
  std::string lease_namespace{};
  std::string identity{};  // unique per candidate (e.g. the pod name)
  // lease_duration > renew_deadline > 1.2 * retry_period. The client's
  // request timeout should be below renew_deadline.
  absl::Duration lease_duration = absl::Seconds(15);
  absl::Duration renew_deadline = absl::Seconds(10);
  absl::Duration retry_period = absl::Seconds(2);
  bool release_on_stop = true;
  // Called on the elector's thread; must return promptly (start work on
  // other threads). After on_stopped_leading the elector competes again;
  // an operator usually exits instead, to drop any state of its term.
  std::function<void()> on_started_leading{};
  std::function<void()> on_stopped_leading{};
  // The holder changed (as observed; "" when released).
  std::function<void(const std::string& identity)> on_new_leader{};
  // Told about failed lease requests.
  std::function<void(const absl::Status&)> on_error{};
};

class LeaderElector {
 public:
  LeaderElector(Client* client, LeaderElectionConfig config);
  ~LeaderElector();  // Stop()
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // InvalidArgument for a bad config; starts the elector's thread.
  absl::Status Start();
  // Stops competing; if leading, releases the lease (when release_on_stop)
  // and calls on_stopped_leading. Joins (not from a callback, whose thread
  // it is). Idempotent.
  void Stop();

  // Leading, with the last successful renewal within the renew deadline.
  bool IsLeader() const;
  // The holder last observed ("" when none).
  std::string Leader() const;

 private:
  void Run();
  // One attempt to take or renew the lease; true when this candidate holds
  // it afterwards.
  bool TryAcquireOrRenew();
  void Release();
  bool Sleep(absl::Duration d);
  void ReportError(const absl::Status& s);
  void ObserveHolder(const std::string& holder);

  Client* const client_;
  const LeaderElectionConfig config_;
  std::thread thread_;

  // The record as last observed, and when it last changed (local clock).
  std::string observed_record_{};
  absl::Time observed_time_;
  nlohmann::json observed_lease_{};  // the whole Lease, for Release

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_renew_ ABSL_GUARDED_BY(mu_);
  std::string leader_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stockade::kube

#endif  // STOCKADE_OPERATOR_KUBE_LEADER_H_
