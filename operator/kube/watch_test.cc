// Client::Watch against a real kube-apiserver: the event types in order and
// how fast they arrive, bookmarks, stopping (callback, CancelToken), and 410
// Gone once etcd has compacted the version a watch or list asks for.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/client.h"
#include "operator/kube/testing/kube_testing.h"

namespace stockade::kube {
namespace {

using json = nlohmann::json;
using ::stockade::testing::ApiserverFixture;
using testing::AdminClient;
using testing::CreateNamespace;
using ::testing::HasSubstr;
using testing::OperatorClient;
using testing::StartApiserver;
using testing::WaitFor;

struct Seen {
  WatchEventType type;
  std::string name;
  std::string rv;
  absl::Time at;
};

// Runs a watch on its own thread, recording every event.
class Watcher {
 public:
  Watcher(Client* c, const Resource& r, std::string ns, WatchOptions o)
      : thread_([this, c, r, ns, o]() mutable {
          o.cancel = &cancel_;
          absl::Status s = c->Watch(r, ns, o, [this](WatchEvent& e) {
            absl::MutexLock lock(&mu_);
            seen_.push_back(Seen{e.type, NameOf(e.object),
                                 ResourceVersionOf(e.object), absl::Now()});
            if (e.type == WatchEventType::kError) error_object_ = e.object;
            return true;
          });
          absl::MutexLock lock(&mu_);
          result_ = s;
          done_ = true;
        }) {}
  ~Watcher() { Stop(); }

  void Stop() {
    cancel_.Cancel();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Seen> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  absl::Status result() {
    absl::MutexLock lock(&mu_);
    return result_;
  }
  json error_object() {
    absl::MutexLock lock(&mu_);
    return error_object_;
  }
  size_t Count(WatchEventType t, const std::string& name = "") {
    absl::MutexLock lock(&mu_);
    return std::count_if(seen_.begin(), seen_.end(), [&](const Seen& s) {
      return s.type == t && (name.empty() || s.name == name);
    });
  }

 private:
  CancelToken cancel_;
  absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  absl::Status result_ ABSL_GUARDED_BY(mu_);
  json error_object_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

TEST(KubeWatchTest, AddedModifiedDeletedInOrderAndFast) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "w");
  ASSERT_TRUE(
      c->Create(kAgentPolicy, "w",
                {{"metadata", {{"name", "before"}}}, {"spec", json::object()}})
          .ok());
  absl::StatusOr<ObjectList> list = c->List(kAgentPolicy, "w");
  ASSERT_TRUE(list.ok()) << list.status();

  // From the list's version: "before" is not replayed.
  Watcher w(c.get(), kAgentPolicy, "w",
            WatchOptions{.resource_version = list->resource_version,
                         .timeout_seconds = 60});
  absl::SleepFor(absl::Milliseconds(300));  // the watch is established

  std::vector<absl::Duration> latencies;
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) {
    const std::string name = absl::StrCat("p", i);
    const absl::Time t0 = absl::Now();
    absl::StatusOr<json> created = c->Create(
        kAgentPolicy, "w",
        {{"metadata", {{"name", name}}}, {"spec", {{"mode", "Enforce"}}}});
    ASSERT_TRUE(created.ok()) << created.status();
    ASSERT_TRUE(
        WaitFor([&] { return w.Count(WatchEventType::kAdded, name) == 1; },
                absl::Seconds(10)));
    for (const Seen& s : w.seen()) {
      if (s.type == WatchEventType::kAdded && s.name == name) {
        latencies.push_back(s.at - t0);
      }
    }
    json modified = *created;
    modified["spec"]["mode"] = "Complain";
    ASSERT_TRUE(c->Update(kAgentPolicy, "w", modified).ok());
    ASSERT_TRUE(c->Delete(kAgentPolicy, "w", name).ok());
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        return w.Count(WatchEventType::kDeleted) ==
               static_cast<size_t>(kRounds);
      },
      absl::Seconds(10)));
  w.Stop();
  EXPECT_EQ(w.result().code(), absl::StatusCode::kCancelled) << w.result();

  std::vector<Seen> seen = w.seen();
  EXPECT_EQ(w.Count(WatchEventType::kAdded, "before"), 0u);
  for (int i = 0; i < kRounds; ++i) {
    const std::string name = absl::StrCat("p", i);
    std::vector<WatchEventType> types;
    for (const Seen& s : seen) {
      if (s.name == name) types.push_back(s.type);
    }
    EXPECT_THAT(types, ::testing::ElementsAre(WatchEventType::kAdded,
                                              WatchEventType::kModified,
                                              WatchEventType::kDeleted))
        << name;
  }
  std::sort(latencies.begin(), latencies.end());
  ASSERT_EQ(latencies.size(), static_cast<size_t>(kRounds));
  fprintf(stderr,
          "create -> ADDED event (includes the create request): min %s, "
          "median %s, max %s\n",
          absl::FormatDuration(latencies.front()).c_str(),
          absl::FormatDuration(latencies[kRounds / 2]).c_str(),
          absl::FormatDuration(latencies.back()).c_str());
  EXPECT_LT(latencies[kRounds / 2], absl::Milliseconds(500));
}

TEST(KubeWatchTest, BookmarksStopAndCancel) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "w");
  absl::StatusOr<ObjectList> list = c->List(kConfigMap, "w");
  ASSERT_TRUE(list.ok()) << list.status();

  // A change this watch does not select (another namespace) advances the
  // version; the apiserver tells the watcher with a bookmark (here 2 s before
  // the watch's timeout), so that it can resume from there.
  CreateNamespace(c.get(), "elsewhere");
  std::vector<WatchEvent> events;
  std::string other_rv;
  absl::Time begin = absl::Now();
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(300));
    absl::StatusOr<json> other =
        c->Create(kConfigMap, "elsewhere", {{"metadata", {{"name", "o"}}}});
    if (other.ok()) other_rv = ResourceVersionOf(*other);
  });
  absl::Status s =
      c->Watch(kConfigMap, "w",
               WatchOptions{.resource_version = list->resource_version,
                            .allow_bookmarks = true,
                            .timeout_seconds = 4},
               [&](WatchEvent& e) {
                 events.push_back(e);
                 return true;
               });
  writer.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(absl::Now() - begin, absl::Seconds(3));
  // Only bookmarks (usually one), the last at the version of that change
  // (or of a later one: the apiserver may write ConfigMaps of its own).
  std::string got;
  for (const WatchEvent& e : events) {
    absl::StrAppend(&got, WatchEventTypeName(e.type), " ",
                    ResourceVersionOf(e.object), "; ");
  }
  ASSERT_FALSE(events.empty());
  for (const WatchEvent& e : events) {
    EXPECT_EQ(e.type, WatchEventType::kBookmark) << got;
    EXPECT_EQ(StringAt(e.object, {"kind"}), "ConfigMap");
  }
  int64_t last = 0, other = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ResourceVersionOf(events.back().object), &last))
      << got;
  ASSERT_TRUE(absl::SimpleAtoi(other_rv, &other)) << other_rv;
  EXPECT_GE(last, other) << got;

  // The callback stops the watch by returning false (OK).
  ASSERT_TRUE(c->Create(kConfigMap, "w", {{"metadata", {{"name", "x"}}}}).ok());
  int calls = 0;
  s = c->Watch(kConfigMap, "w",
               WatchOptions{.resource_version = list->resource_version,
                            .timeout_seconds = 60},
               [&](WatchEvent& e) {
                 ++calls;
                 return false;
               });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 1);

  // A CancelToken ends an idle watch at once.
  CancelToken cancel;
  std::atomic<int64_t> cancelled_at{0};
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(500));
    cancelled_at = absl::ToUnixMicros(absl::Now());
    cancel.Cancel();
  });
  s = c->Watch(kConfigMap, "w", WatchOptions{.cancel = &cancel},
               [&](WatchEvent&) { return true; });
  const absl::Duration stop_latency =
      absl::Now() - absl::FromUnixMicros(cancelled_at.load());
  canceller.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  fprintf(stderr, "watch ended %s after Cancel()\n",
          absl::FormatDuration(stop_latency).c_str());
  EXPECT_LT(stop_latency, absl::Milliseconds(200));

  // Without RBAC the watch fails before streaming.
  std::unique_ptr<Client> op = OperatorClient(*f);
  ASSERT_NE(op, nullptr);
  s = op->Watch(kAgentPolicy, "", WatchOptions{.timeout_seconds = 5},
                [](WatchEvent&) { return true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr("cannot watch"));
}

// With the watch cache off, watches and lists read etcd, which the
// apiserver compacts every second here: an old resourceVersion is gone. A
// list says so with HTTP 410, a watch with an ERROR event of code 410.
TEST(KubeWatchTest, GoneOnceCompacted) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  absl::Status restarted = f->RestartApiserver(
      {"--watch-cache=false", "--etcd-compaction-interval=1s"});
  ASSERT_TRUE(restarted.ok()) << restarted;
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "w");
  absl::StatusOr<ObjectList> list = c->List(kConfigMap, "w");
  ASSERT_TRUE(list.ok()) << list.status();
  const std::string old_rv = list->resource_version;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c->Create(kConfigMap, "w",
                          {{"metadata", {{"name", absl::StrCat("c", i)}}}})
                    .ok());
  }
  absl::Status gone;
  ASSERT_TRUE(WaitFor(
      [&] {
        gone = c->List(kConfigMap, "w",
                       ListOptions{.resource_version = old_rv,
                                   .resource_version_match = "Exact"})
                   .status();
        return !gone.ok();
      },
      absl::Seconds(20)))
      << "etcd was not compacted";
  EXPECT_TRUE(IsGone(gone)) << gone;
  EXPECT_EQ(gone.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ApiReason(gone), "Expired");

  Watcher w(c.get(), kConfigMap, "w",
            WatchOptions{.resource_version = old_rv, .timeout_seconds = 30});
  ASSERT_TRUE(WaitFor([&] { return w.Count(WatchEventType::kError) > 0; },
                      absl::Seconds(10)));
  absl::Status from_event = StatusFromWatchError(w.error_object());
  EXPECT_TRUE(IsGone(from_event)) << from_event;
  EXPECT_THAT(from_event.message(), HasSubstr("too old"));
  EXPECT_EQ(w.Count(WatchEventType::kAdded), 0u);
}

}  // namespace
}  // namespace stockade::kube
