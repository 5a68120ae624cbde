// A Kubernetes-style work queue of keys ("namespace/name") for controllers:
// a key added several times before a worker takes it is processed once; a
// key added while a worker processes it is processed again after Done, never
// by two workers at once; failed keys come back after a per-key exponential
// delay (AddRateLimited) until Forget. Thread-safe.
#ifndef STOCKADE_OPERATOR_KUBE_WORKQUEUE_H_
#define STOCKADE_OPERATOR_KUBE_WORKQUEUE_H_

#include <cstdint>
#include <deque>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace stockade::kube {

struct WorkQueueOptions {
  // AddRateLimited: the n-th consecutive failure of a key waits
  // base * 2^(n-1), at most max.
  absl::Duration base_delay = absl::Milliseconds(5);
  absl::Duration max_delay = absl::Seconds(1000);
};

class WorkQueue {
 public:
  explicit WorkQueue(WorkQueueOptions options = {});
  ~WorkQueue();  // ShutDown() and joins the delay thread
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues key unless it is queued already (then nothing changes). A key
  // being processed is queued for after its Done. Ignored after ShutDown.
  void Add(absl::string_view key);
  // Adds key once delay has passed (at once when delay <= 0). A key waiting
  // already keeps the earlier of the two times.
  void AddAfter(absl::string_view key, absl::Duration delay);
  // AddAfter(key, the key's next back-off delay); counts a failure.
  void AddRateLimited(absl::string_view key);
  // Ends the back-off of key (after it was processed successfully).
  void Forget(absl::string_view key);
  // Failures counted for key since its last Forget.
  int NumRequeues(absl::string_view key) const;

  // Blocks until a key is queued, marks it processing and returns true; after
  // ShutDown, returns the keys still queued, then false.
  bool Get(std::string* key);
  // A worker has finished key (successfully or not); if it was added again
  // meanwhile, it is queued now.
  void Done(absl::string_view key);

  // Keys queued (not those processing or waiting for their delay).
  size_t Len() const;
  // Keys waiting for their delay (AddAfter, AddRateLimited).
  size_t NumWaiting() const;

  // Wakes every Get; later Adds are ignored; waiting keys are dropped.
  void ShutDown();
  bool ShuttingDown() const;

 private:
  void AddLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DelayLoop();

  const WorkQueueOptions options_;
  mutable absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> dirty_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> processing_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  // Delayed adds: the time each key is due, and a min-heap of (time, key)
  // whose stale entries (time no longer the key's) are skipped.
  absl::flat_hash_map<std::string, absl::Time> waiting_ ABSL_GUARDED_BY(mu_);
  using Due = std::pair<absl::Time, std::string>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> heap_
      ABSL_GUARDED_BY(mu_);
  int64_t heap_generation_ ABSL_GUARDED_BY(mu_) = 0;  // wakes the delay thread

  absl::flat_hash_map<std::string, int> failures_ ABSL_GUARDED_BY(mu_);
  std::thread delay_thread_;
};

}  // namespace stockade::kube

#endif  // STOCKADE_OPERATOR_KUBE_WORKQUEUE_H_
