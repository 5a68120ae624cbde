#include "operator/kube/workqueue.h"

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace stockade::kube {
namespace {

TEST(KubeWorkQueueTest, AddIsDeduplicatedAndFifo) {
  WorkQueue q;
  q.Add("a");
  q.Add("b");
  q.Add("a");
  EXPECT_EQ(q.Len(), 2u);
  std::string k;
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "a");
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "b");
  EXPECT_EQ(q.Len(), 0u);
  q.Done("a");
  q.Done("b");
}

TEST(KubeWorkQueueTest, KeyAddedWhileProcessingComesBackAfterDone) {
  WorkQueue q;
  q.Add("a");
  std::string k;
  ASSERT_TRUE(q.Get(&k));
  q.Add("a");  // while processing: not handed to another worker
  q.Add("a");
  EXPECT_EQ(q.Len(), 0u);
  q.Done("a");
  EXPECT_EQ(q.Len(), 1u);  // once
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "a");
  q.Done("a");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(KubeWorkQueueTest, GetBlocksUntilAddAndReturnsFalseAfterShutDownDrains) {
  WorkQueue q;
  std::atomic<bool> got{false};
  std::thread worker([&] {
    std::string k;
    if (q.Get(&k) && k == "late") got = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(got.load());
  q.Add("late");
  worker.join();
  EXPECT_TRUE(got.load());

  q.Add("left");
  q.ShutDown();
  q.Add("ignored");
  std::string k;
  ASSERT_TRUE(q.Get(&k));  // still queued before ShutDown
  EXPECT_EQ(k, "left");
  EXPECT_FALSE(q.Get(&k));
  EXPECT_TRUE(q.ShuttingDown());
}

TEST(KubeWorkQueueTest, ShutDownWakesBlockedWorkers) {
  WorkQueue q;
  std::vector<std::thread> workers;
  std::atomic<int> exited{0};
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([&] {
      std::string k;
      while (q.Get(&k)) q.Done(k);
      exited++;
    });
  }
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time begin = absl::Now();
  q.ShutDown();
  for (auto& t : workers) t.join();
  EXPECT_EQ(exited.load(), 4);
  EXPECT_LT(absl::Now() - begin, absl::Milliseconds(500));
}

TEST(KubeWorkQueueTest, AddAfterWaitsAndKeepsTheEarlierTime) {
  WorkQueue q;
  const absl::Time begin = absl::Now();
  q.AddAfter("x", absl::Milliseconds(1000));
  q.AddAfter("x", absl::Milliseconds(200));   // earlier wins
  q.AddAfter("x", absl::Milliseconds(1500));  // later: ignored
  EXPECT_EQ(q.Len(), 0u);
  EXPECT_EQ(q.NumWaiting(), 1u);
  std::string k;
  ASSERT_TRUE(q.Get(&k));
  const absl::Duration waited = absl::Now() - begin;
  EXPECT_EQ(k, "x");
  EXPECT_GE(waited, absl::Milliseconds(200));
  EXPECT_LT(waited, absl::Milliseconds(900));
  q.Done("x");
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(q.Len(), 0u);  // the stale 1 and 1.5 s entries added nothing

  q.AddAfter("now", absl::ZeroDuration());
  EXPECT_EQ(q.Len(), 1u);
}

TEST(KubeWorkQueueTest, AddRateLimitedBacksOffExponentiallyUntilForget) {
  WorkQueue q(WorkQueueOptions{.base_delay = absl::Milliseconds(50),
                               .max_delay = absl::Milliseconds(400)});
  std::vector<absl::Duration> waits;
  std::string k;
  for (int i = 0; i < 5; ++i) {
    const absl::Time begin = absl::Now();
    q.AddRateLimited("k");
    ASSERT_TRUE(q.Get(&k));
    waits.push_back(absl::Now() - begin);
    q.Done(k);
  }
  EXPECT_EQ(q.NumRequeues("k"), 5);
  // 50, 100, 200, 400, 400 (capped) ms.
  const int64_t want[] = {50, 100, 200, 400, 400};
  for (int i = 0; i < 5; ++i) {
    EXPECT_GE(waits[i], absl::Milliseconds(want[i])) << i;
    EXPECT_LT(waits[i], absl::Milliseconds(want[i] + 250)) << i;
  }
  q.Forget("k");
  EXPECT_EQ(q.NumRequeues("k"), 0);
  const absl::Time begin = absl::Now();
  q.AddRateLimited("k");
  ASSERT_TRUE(q.Get(&k));
  EXPECT_LT(absl::Now() - begin, absl::Milliseconds(300));
  q.Done(k);

  // The default limits: 5 ms doubling to 1000 s.
  WorkQueue d;
  for (int i = 0; i < 40; ++i) d.AddRateLimited("slow");
  EXPECT_EQ(d.NumRequeues("slow"), 40);
  EXPECT_EQ(d.NumWaiting(), 1u);
}

TEST(KubeWorkQueueTest, ShutDownDropsWaitingKeys) {
  WorkQueue q;
  q.AddAfter("later", absl::Milliseconds(50));
  q.ShutDown();
  absl::SleepFor(absl::Milliseconds(100));
  std::string k;
  EXPECT_FALSE(q.Get(&k));
  EXPECT_EQ(q.NumWaiting(), 0u);
}

// Many producers and workers: a key is never processed by two workers at
// once, and every Add is followed by a processing that starts after it.
TEST(KubeWorkQueueTest, ConcurrentProducersAndWorkers) {
  WorkQueue q;
  constexpr int kKeys = 50, kProducers = 4, kWorkers = 6, kAdds = 5000;
  absl::Mutex mu;
  std::map<std::string, int> added_gen;      // generation of the last Add
  std::map<std::string, int> processed_gen;  // generation seen at Get
  std::map<std::string, int> in_flight;
  std::atomic<int> overlaps{0}, processed{0};

  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      std::string k;
      while (q.Get(&k)) {
        {
          absl::MutexLock lock(&mu);
          if (++in_flight[k] > 1) overlaps++;
          processed_gen[k] = added_gen[k];
        }
        if (processed.fetch_add(1) % 7 == 0) {
          absl::SleepFor(absl::Microseconds(50));
        }
        {
          absl::MutexLock lock(&mu);
          --in_flight[k];
        }
        q.Done(k);
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      absl::BitGen gen;
      for (int i = 0; i < kAdds; ++i) {
        const std::string k =
            absl::StrCat("ns/key-", absl::Uniform(gen, 0, kKeys));
        {
          absl::MutexLock lock(&mu);
          ++added_gen[k];
        }
        q.Add(k);
        if (i % 500 == p) absl::SleepFor(absl::Microseconds(100));
      }
    });
  }
  for (auto& t : producers) t.join();
  // Drain: wait until every key's last Add has been picked up.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    bool done = q.Len() == 0;
    {
      absl::MutexLock lock(&mu);
      for (const auto& [k, g] : added_gen) {
        if (processed_gen[k] != g || in_flight[k] != 0) done = false;
      }
    }
    if (done) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  q.ShutDown();
  for (auto& t : workers) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(added_gen.size(), static_cast<size_t>(kKeys));
  for (const auto& [k, g] : added_gen) {
    EXPECT_EQ(processed_gen[k], g) << k << ": an Add was never processed";
  }
  // De-duplication worked: far fewer processings than adds.
  EXPECT_LT(processed.load(), kProducers * kAdds);
  fprintf(stderr, "%d adds -> %d processings\n", kProducers * kAdds,
          processed.load());
}

}  // namespace
}  // namespace stockade::kube
