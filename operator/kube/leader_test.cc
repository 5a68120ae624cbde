// Leader election against a real kube-apiserver: two candidates in one
// process, never two leaders, hand-over on a clean stop (release) and on a
// crash (the lease expires).
#include "operator/kube/leader.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/testing/kube_testing.h"

namespace stockade::kube {
namespace {

using json = nlohmann::json;
using ::stockade::testing::ApiserverFixture;
using ::stockade::testing::CommandResult;
using testing::AdminClient;
using testing::CreateNamespace;
using testing::StartApiserver;
using testing::WaitFor;

constexpr absl::Duration kLease = absl::Seconds(3);
constexpr absl::Duration kRenew = absl::Seconds(2);
constexpr absl::Duration kRetry = absl::Milliseconds(300);

// One candidate with counters.
struct Candidate {
  Candidate(Client* c, const std::string& id, bool release = true) {
    elector = std::make_unique<LeaderElector>(
        c, LeaderElectionConfig{
               .lease_name = "stockade-operator",
               .lease_namespace = "stockade-system",
               .identity = id,
               .lease_duration = kLease,
               .renew_deadline = kRenew,
               .retry_period = kRetry,
               .release_on_stop = release,
               .on_started_leading =
                   [this] {
                     started++;
                     leading = true;
                   },
               .on_stopped_leading =
                   [this] {
                     stopped++;
                     leading = false;
                   },
           });
  }
  std::unique_ptr<LeaderElector> elector;
  std::atomic<int> started{0}, stopped{0};
  std::atomic<bool> leading{false};
};

std::string Holder(const ApiserverFixture& f) {
  CommandResult r =
      f.Kubectl({"get", "lease", "stockade-operator", "-n", "stockade-system",
                 "-o", "jsonpath={.spec.holderIdentity}"});
  return r.ok() ? r.out : "<" + r.err + ">";
}

// Samples both candidates until `until` holds (or timeout); counts samples
// where both claimed to lead.
int WatchForOverlap(Candidate& a, Candidate& b,
                    const std::function<bool()>& until,
                    absl::Duration timeout) {
  int overlaps = 0;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline && !until()) {
    if (a.elector->IsLeader() && b.elector->IsLeader()) ++overlaps;
    if (a.leading && b.leading) ++overlaps;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return overlaps;
}

TEST(KubeLeaderTest, OneLeadsAndAReleasedLeaseIsTakenAtOnce) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c =
      AdminClient(*f, ClientOptions{.request_timeout = absl::Seconds(1)});
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "stockade-system");

  Candidate a(c.get(), "replica-a"), b(c.get(), "replica-b");
  ASSERT_TRUE(a.elector->Start().ok());
  ASSERT_TRUE(b.elector->Start().ok());
  ASSERT_TRUE(
      WaitFor([&] { return a.leading || b.leading; }, absl::Seconds(10)));
  // Two lease durations of steady state: one leader, renewing.
  EXPECT_EQ(WatchForOverlap(
                a, b, [] { return false; }, 2 * kLease),
            0);
  ASSERT_NE(a.leading.load(), b.leading.load());
  Candidate& leader = a.leading ? a : b;
  Candidate& follower = a.leading ? b : a;
  const std::string leader_id = a.leading ? "replica-a" : "replica-b";
  const std::string follower_id = a.leading ? "replica-b" : "replica-a";
  EXPECT_EQ(leader.started.load(), 1);
  EXPECT_EQ(leader.stopped.load(), 0);
  EXPECT_EQ(follower.started.load(), 0);
  EXPECT_EQ(Holder(*f), leader_id);
  EXPECT_EQ(follower.elector->Leader(), leader_id);
  EXPECT_TRUE(leader.elector->IsLeader());
  EXPECT_FALSE(follower.elector->IsLeader());

  // A clean stop releases the lease: the other takes over within about a
  // retry period, far inside the lease duration.
  const absl::Time begin = absl::Now();
  leader.elector->Stop();
  EXPECT_EQ(leader.stopped.load(), 1);
  EXPECT_FALSE(leader.elector->IsLeader());
  EXPECT_EQ(WatchForOverlap(
                a, b, [&] { return follower.leading.load(); }, 2 * kLease),
            0);
  ASSERT_TRUE(follower.leading.load());
  const absl::Duration handover = absl::Now() - begin;
  EXPECT_LT(handover, kLease);
  EXPECT_EQ(Holder(*f), follower_id);
  EXPECT_EQ(follower.elector->Leader(), follower_id);
  CommandResult transitions =
      f->Kubectl({"get", "lease", "stockade-operator", "-n", "stockade-system",
                  "-o", "jsonpath={.spec.leaseTransitions}"});
  ASSERT_TRUE(transitions.ok()) << transitions.ToString();
  EXPECT_EQ(transitions.out, "1");
  fprintf(stderr, "hand-over after a clean stop (release): %s (retry %s)\n",
          absl::FormatDuration(handover).c_str(),
          absl::FormatDuration(kRetry).c_str());

  follower.elector->Stop();
  EXPECT_EQ(Holder(*f), "");  // released
}

// A leader that dies without releasing: the other candidate waits out the
// lease duration (from when it last saw the lease renewed), then takes it.
TEST(KubeLeaderTest, ACrashedLeadersLeaseIsTakenAfterItExpires) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c =
      AdminClient(*f, ClientOptions{.request_timeout = absl::Seconds(1)});
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "stockade-system");

  Candidate crashing(c.get(), "replica-a", /*release=*/false);
  ASSERT_TRUE(crashing.elector->Start().ok());
  ASSERT_TRUE(
      WaitFor([&] { return crashing.leading.load(); }, absl::Seconds(10)));
  Candidate other(c.get(), "replica-b");
  ASSERT_TRUE(other.elector->Start().ok());
  EXPECT_EQ(WatchForOverlap(
                crashing, other, [] { return false; }, kLease),
            0);
  EXPECT_FALSE(other.leading.load());

  const absl::Time begin = absl::Now();
  crashing.elector->Stop();  // no release: as if the process died
  EXPECT_EQ(Holder(*f), "replica-a");
  ASSERT_TRUE(WaitFor([&] { return other.leading.load(); }, 3 * kLease));
  const absl::Duration handover = absl::Now() - begin;
  // The last renewal was up to a retry period before the stop.
  EXPECT_GE(handover, kLease - 2 * kRetry);
  EXPECT_LT(handover, kLease + 5 * kRetry);
  EXPECT_EQ(Holder(*f), "replica-b");
  fprintf(stderr, "hand-over after a crash: %s (lease duration %s, retry %s)\n",
          absl::FormatDuration(handover).c_str(),
          absl::FormatDuration(kLease).c_str(),
          absl::FormatDuration(kRetry).c_str());
}

TEST(KubeLeaderTest, RejectsBadTimings) {
  LeaderElector bad(nullptr, LeaderElectionConfig{
                                 .lease_name = "l",
                                 .lease_namespace = "n",
                                 .identity = "i",
                                 .lease_duration = absl::Seconds(5),
                                 .renew_deadline = absl::Seconds(5),
                             });
  EXPECT_EQ(bad.Start().code(), absl::StatusCode::kInvalidArgument);
  LeaderElector unnamed(nullptr, LeaderElectionConfig{});
  EXPECT_EQ(unnamed.Start().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stockade::kube
