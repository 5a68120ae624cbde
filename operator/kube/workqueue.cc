#include "operator/kube/workqueue.h"

#include "absl/time/clock.h"

namespace stockade::kube {

WorkQueue::WorkQueue(WorkQueueOptions options) : options_(options) {
  delay_thread_ = std::thread([this] { DelayLoop(); });
}

WorkQueue::~WorkQueue() {
  ShutDown();
  if (delay_thread_.joinable()) delay_thread_.join();
}

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_) return;
  if (!dirty_.insert(key).second) return;  // queued already
  if (processing_.contains(key)) return;   // queued by Done
  queue_.push_back(key);
}

void WorkQueue::Add(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  AddLocked(std::string(key));
}

void WorkQueue::AddAfter(absl::string_view key, absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  std::string k(key);
  if (delay <= absl::ZeroDuration()) {
    AddLocked(k);
    return;
  }
  const absl::Time due = absl::Now() + delay;
  auto it = waiting_.find(k);
  if (it != waiting_.end() && it->second <= due) return;
  waiting_[k] = due;
  heap_.emplace(due, std::move(k));
  ++heap_generation_;
}

void WorkQueue::AddRateLimited(absl::string_view key) {
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    int& n = failures_[std::string(key)];
    delay = options_.base_delay;
    for (int i = 0; i < n && delay < options_.max_delay; ++i) delay *= 2;
    if (delay > options_.max_delay) delay = options_.max_delay;
    ++n;
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  failures_.erase(std::string(key));
}

int WorkQueue::NumRequeues(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto it = failures_.find(std::string(key));
  return it == failures_.end() ? 0 : it->second;
}

bool WorkQueue::Get(std::string* key) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || shutting_down_;
  };
  mu_.Await(absl::Condition(&ready));
  if (queue_.empty()) return false;  // shutting down and drained
  *key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(*key);
  dirty_.erase(*key);
  return true;
}

void WorkQueue::Done(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  std::string k(key);
  processing_.erase(k);
  if (dirty_.contains(k)) queue_.push_back(std::move(k));
}

size_t WorkQueue::Len() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

size_t WorkQueue::NumWaiting() const {
  absl::MutexLock lock(&mu_);
  return waiting_.size();
}

void WorkQueue::ShutDown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  waiting_.clear();
  heap_ = {};
  ++heap_generation_;
}

bool WorkQueue::ShuttingDown() const {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

void WorkQueue::DelayLoop() {
  absl::MutexLock lock(&mu_);
  while (!shutting_down_) {
    const absl::Time now = absl::Now();
    while (!heap_.empty() && heap_.top().first <= now) {
      Due due = heap_.top();
      heap_.pop();
      auto it = waiting_.find(due.second);
      if (it == waiting_.end() || it->second != due.first) continue;  // stale
      waiting_.erase(it);
      AddLocked(due.second);
    }
    const int64_t generation = heap_generation_;
    auto changed = [this, generation]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return shutting_down_ || heap_generation_ != generation;
    };
    if (heap_.empty()) {
      mu_.Await(absl::Condition(&changed));
    } else {
      mu_.AwaitWithDeadline(absl::Condition(&changed), heap_.top().first);
    }
  }
}

}  // namespace stockade::kube
