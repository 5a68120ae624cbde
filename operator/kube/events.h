// Kubernetes Events (core/v1) for the operator: what a person sees in
// `kubectl describe` / `kubectl get events` about an AgentPolicy. Repeats of
// the same event (same object, type, reason and message) within ten minutes
// bump count and lastTimestamp of the first one instead of creating more.
#ifndef STOCKADE_OPERATOR_KUBE_EVENTS_H_
#define STOCKADE_OPERATOR_KUBE_EVENTS_H_

#include <cstdint>
#include <list>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "operator/kube/client.h"

namespace stockade::kube {

// The object an event is about.
struct ObjectReference {
  std::string api_version{};
  std::string kind{};
  std::string namespace_{};  // "" for cluster-scoped objects
  std::string name{};
  std::string uid{};
  std::string resource_version{};
};

// The reference to a (fetched) object.
ObjectReference ReferenceTo(const nlohmann::json& object);

enum class EventType { kNormal, kWarning };

struct EventRecorderOptions {
  std::string host{};      // source.host (the node or pod name), optional
  std::string instance{};  // reportingInstance, e.g. the pod name, optional
  // Repeats within this window are aggregated into one event.
  absl::Duration aggregation_window = absl::Minutes(10);
  size_t max_tracked = 4096;  // events remembered for aggregation
};

class EventRecorder {
 public:
  // component: source.component and reportingComponent ("stockade-operator").
  EventRecorder(Client* client, std::string component,
                EventRecorderOptions options = {});

  // Creates (or bumps) the Event in the object's namespace, or in "default"
  // for cluster-scoped objects. reason: CamelCase ("Compiled"); message: for
  // a person. labels: on the Event, so `kubectl get events -l` selects it
  // (a value that is not a valid label value is left out). Thread-safe.
  // Returns the apiserver's error, if any.
  absl::Status Record(const ObjectReference& object, EventType type,
                      absl::string_view reason, absl::string_view message,
                      const std::map<std::string, std::string>& labels = {});

 private:
  struct Tracked {
    std::string namespace_, name;  // of the Event object
    int64_t count = 0;
    absl::Time last;
    std::list<std::string>::iterator lru;
  };

  Client* const client_;
  const std::string component_;
  const EventRecorderOptions options_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Tracked> tracked_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // front: most recent
};

// RFC 3339 in UTC, seconds ("2025-01-02T03:04:05Z") and microseconds
// (metav1.MicroTime, "2025-01-02T03:04:05.123456Z").
std::string Rfc3339(absl::Time t);
std::string Rfc3339Micro(absl::Time t);

}  // namespace stockade::kube

#endif  // STOCKADE_OPERATOR_KUBE_EVENTS_H_
