// What the operator does with the denials the nodes report (NodeReport.
// denials): counts them in stockade_denials_total, records an Event on the
// pod (on the policy when no pod is known) — repeats aggregated by the
// EventRecorder, one Event per pod, layer and attempt with a count — and
// keeps the per-policy counters of AgentPolicy status.denials, written as a
// status merge patch at most every flush interval per policy.
#ifndef STOCKADE_OPERATOR_MANAGER_DENIAL_RECORDER_H_
#define STOCKADE_OPERATOR_MANAGER_DENIAL_RECORDER_H_

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "operator/distribution/log.h"
#include "operator/kube/client.h"
#include "operator/kube/events.h"
#include "operator/manager/metrics.h"
#include "stockade/v1/distribution.pb.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::manager {

class DenialRecorder {
 public:
  DenialRecorder(kube::Client* client, kube::EventRecorder* events,
                 OperatorMetrics* metrics, distribution::LogFn log,
                 absl::Duration flush_interval = absl::Seconds(2));
  ~DenialRecorder();  // writes what is pending, then stops

  // From a gRPC thread: queues and returns.
  void Add(const std::string& node,
           const google::protobuf::RepeatedPtrField<v1::NodeDenial>& denials);

  // The message of a denial's Event ("seccomp denied syscall keyctl in
  // container main (policy agents/research)").
  static std::string EventMessage(const v1::NodeDenial& d);

  // How many policies' counters are held (a deleted policy's are dropped at
  // the next flush).
  size_t tracked_policies();

 private:
  void Run();
  void Handle(const std::string& node, const v1::NodeDenial& d);
  void FlushCounts();

  kube::Client* const client_;
  kube::EventRecorder* const events_;
  OperatorMetrics* const metrics_;
  const distribution::LogFn log_;
  const absl::Duration flush_interval_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::deque<std::pair<std::string, v1::NodeDenial>> queue_;
  // Per policy (namespace/name): the counters as last read or written, and
  // whether they changed since.
  struct Counts {
    bool loaded = false;
    bool dirty = false;
    v1::DenialCounts counts;
  };
  std::map<std::pair<std::string, std::string>, Counts> policies_;
  std::thread thread_;
};

}  // namespace stockade::manager

#endif  // STOCKADE_OPERATOR_MANAGER_DENIAL_RECORDER_H_
