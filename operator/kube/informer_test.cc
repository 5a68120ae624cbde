// The informer against a real kube-apiserver: initial sync over several
// pages, changes, a relist after 410 Gone that reports what vanished while
// the informer was cut off, and an apiserver restart.
#include "operator/kube/informer.h"

#include <malloc.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/testing/kube_testing.h"
#include "operator/kube/testing/tcp_proxy.h"

namespace stockade::kube {
namespace {

using json = nlohmann::json;
using ::stockade::testing::ApiserverFixture;
using testing::AdminClient;
using testing::CreateNamespace;
using ::testing::ElementsAre;
using testing::StartApiserver;
using testing::TcpProxy;
using testing::WaitFor;

// What the handlers were told, as "add ns/name", "update ns/name <old
// data.v> -> <new data.v>", "delete ns/name".
class Recorder {
 public:
  InformerHandlers Handlers() {
    return InformerHandlers{
        .on_add =
            [this](const ObjectPtr& o) {
              Push(absl::StrCat("add ", KeyOf(*o)));
            },
        .on_update =
            [this](const ObjectPtr& old, const ObjectPtr& o) {
              Push(absl::StrCat("update ", KeyOf(*o), " ",
                                StringAt(*old, {"data", "v"}), " -> ",
                                StringAt(*o, {"data", "v"})));
            },
        .on_delete =
            [this](const ObjectPtr& o) {
              Push(absl::StrCat("delete ", KeyOf(*o)));
            },
    };
  }
  std::vector<std::string> Take() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    out.swap(log_);
    return out;
  }
  size_t Count(const std::string& entry) {
    absl::MutexLock lock(&mu_);
    return std::count(log_.begin(), log_.end(), entry);
  }
  bool Has(const std::string& entry) { return Count(entry) > 0; }

 private:
  void Push(std::string s) {
    absl::MutexLock lock(&mu_);
    log_.push_back(std::move(s));
  }
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

json Cm(const std::string& name, const std::string& v) {
  return {{"metadata", {{"name", name}}}, {"data", {{"v", v}}}};
}

TEST(KubeInformerTest, SyncsInPagesThenFollowsChanges) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "inf");
  CreateNamespace(c.get(), "other");
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(
        c->Create(kConfigMap, "inf", Cm(absl::StrCat("c", i), "0")).ok());
  }
  ASSERT_TRUE(c->Create(kConfigMap, "other", Cm("not-mine", "0")).ok());

  Recorder rec;
  Informer inf(c.get(), kConfigMap,
               InformerOptions{.namespace_ = "inf", .page_size = 3});
  inf.AddHandlers(rec.Handlers());
  EXPECT_FALSE(inf.HasSynced());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(absl::Seconds(10)));
  EXPECT_EQ(inf.Size(), 7u);
  EXPECT_EQ(rec.Take().size(), 7u);  // adds, delivered before HasSynced
  EXPECT_THAT(inf.Keys(), ::testing::Contains("inf/c0"));
  ObjectPtr c3 = inf.Get("inf/c3");
  ASSERT_NE(c3, nullptr);
  EXPECT_EQ(StringAt(*c3, {"kind"}), "ConfigMap");
  EXPECT_EQ(inf.Get("other/not-mine"), nullptr);

  // Create, update, delete.
  ASSERT_TRUE(c->Create(kConfigMap, "inf", Cm("new", "1")).ok());
  ASSERT_TRUE(c->Patch(kConfigMap, "inf", "c3", PatchType::kMerge,
                       {{"data", {{"v", "2"}}}})
                  .ok());
  ASSERT_TRUE(c->Delete(kConfigMap, "inf", "c5").ok());
  ASSERT_TRUE(c->Create(kConfigMap, "other", Cm("still-not-mine", "0")).ok());
  ASSERT_TRUE(
      WaitFor([&] { return rec.Has("delete inf/c5"); }, absl::Seconds(10)));
  EXPECT_THAT(rec.Take(), ElementsAre("add inf/new", "update inf/c3 0 -> 2",
                                      "delete inf/c5"));
  EXPECT_EQ(inf.Size(), 7u);
  EXPECT_EQ(inf.Get("inf/c5"), nullptr);
  EXPECT_EQ(StringAt(*inf.Get("inf/c3"), {"data", "v"}), "2");
  // The object handed out before is unchanged (objects are immutable).
  EXPECT_EQ(StringAt(*c3, {"data", "v"}), "0");

  Informer::Stats stats = inf.stats();
  EXPECT_EQ(stats.lists, 1);
  EXPECT_EQ(stats.relists_gone, 0);
  EXPECT_EQ(stats.events, 3);

  const absl::Time begin = absl::Now();
  inf.Stop();
  EXPECT_LT(absl::Now() - begin, absl::Milliseconds(500));
}

TEST(KubeInformerTest, CustomResourcesInEveryNamespace) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "a");
  CreateNamespace(c.get(), "b");
  Recorder rec;
  Informer inf(c.get(), kAgentPolicy);
  inf.AddHandlers(rec.Handlers());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(absl::Seconds(10)));
  EXPECT_EQ(inf.Size(), 0u);
  for (const char* ns : {"a", "b"}) {
    ASSERT_TRUE(c->Create(kAgentPolicy, ns,
                          {{"metadata", {{"name", "p"}}},
                           {"spec", {{"mode", "Enforce"}}}})
                    .ok());
  }
  ASSERT_TRUE(WaitFor([&] { return inf.Size() == 2; }, absl::Seconds(10)));
  EXPECT_THAT(inf.Keys(), ElementsAre("a/p", "b/p"));
  EXPECT_EQ(StringAt(*inf.Get("b/p"), {"kind"}), "AgentPolicy");
  // A status write is an update too.
  ASSERT_TRUE(c->PatchStatus(kAgentPolicy, "a", "p", PatchType::kMerge,
                             {{"status", {{"policyHash", "h"}}}})
                  .ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        ObjectPtr p = inf.Get("a/p");
        return p && StringAt(*p, {"status", "policyHash"}) == "h";
      },
      absl::Seconds(10)));
}

// The informer reaches the apiserver through a relay the test cuts. While
// cut off, objects change and etcd compacts the version the informer knows:
// when it reconnects its watch gets 410 Gone, it lists again and reports the
// differences, including the deletion it never saw.
TEST(KubeInformerTest, RelistsAfterGoneAndReportsWhatVanished) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  absl::Status restarted = f->RestartApiserver(
      {"--watch-cache=false", "--etcd-compaction-interval=1s"});
  ASSERT_TRUE(restarted.ok()) << restarted;
  std::unique_ptr<Client> direct = AdminClient(*f);
  ASSERT_NE(direct, nullptr);
  CreateNamespace(direct.get(), "r");
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_TRUE(direct->Create(kConfigMap, "r", Cm(name, "0")).ok());
  }

  absl::StatusOr<std::unique_ptr<TcpProxy>> proxy =
      TcpProxy::Start(testing::PortOf(f->server()));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  std::unique_ptr<Client> relayed =
      AdminClient(*f, ClientOptions{.request_timeout = absl::Seconds(5)},
                  absl::StrCat("https://127.0.0.1:", (*proxy)->port()));
  ASSERT_NE(relayed, nullptr);
  Recorder rec;
  absl::Mutex errors_mu;
  std::vector<std::string> errors;
  Informer inf(relayed.get(), kConfigMap,
               InformerOptions{.namespace_ = "r",
                               .min_backoff = absl::Milliseconds(50),
                               .max_backoff = absl::Milliseconds(500),
                               .on_error = [&](const absl::Status& s) {
                                 absl::MutexLock lock(&errors_mu);
                                 errors.push_back(s.ToString());
                               }});
  inf.AddHandlers(rec.Handlers());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(absl::Seconds(10)));
  EXPECT_EQ(rec.Take().size(), 3u);
  const std::string known_rv = inf.stats().resource_version;

  // Cut off: the watch breaks, reconnects fail.
  (*proxy)->SetEnabled(false);
  ASSERT_TRUE(
      WaitFor([&] { return inf.stats().failures >= 2; }, absl::Seconds(10)));
  ASSERT_TRUE(direct->Delete(kConfigMap, "r", "b").ok());
  ASSERT_TRUE(direct
                  ->Patch(kConfigMap, "r", "c", PatchType::kMerge,
                          {{"data", {{"v", "1"}}}})
                  .ok());
  absl::StatusOr<nlohmann::json> d =
      direct->Create(kConfigMap, "r", Cm("d", "0"));
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string d_rv = (*d)["metadata"]["resourceVersion"];
  // Wait until etcd has compacted past the last change: then a watch from
  // any version the informer knows (<= d_rv - 1, starting at <= d_rv) must
  // get 410. (Compacting past known_rv alone is not enough: a watch starts
  // at the next revision, which may survive.) Writes elsewhere move etcd's
  // revision on, so that the compaction can pass d_rv.
  CreateNamespace(direct.get(), "filler");
  absl::Status compacted;
  int filler = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        (void)direct->Create(kConfigMap, "filler",
                             Cm(absl::StrCat("f", filler++), "0"));
        compacted = direct
                        ->List(kConfigMap, "r",
                               ListOptions{.resource_version = d_rv,
                                           .resource_version_match = "Exact"})
                        .status();
        return IsGone(compacted);
      },
      absl::Seconds(30)))
      << compacted;
  EXPECT_FALSE(known_rv.empty());
  EXPECT_TRUE(rec.Take().empty());  // nothing seen while cut off

  (*proxy)->SetEnabled(true);
  ASSERT_TRUE(
      WaitFor([&] { return rec.Has("delete r/b"); }, absl::Seconds(20)));
  std::vector<std::string> seen = rec.Take();
  EXPECT_THAT(seen, ::testing::UnorderedElementsAre(
                        "add r/d", "update r/c 0 -> 1", "delete r/b"));
  EXPECT_THAT(inf.Keys(), ElementsAre("r/a", "r/c", "r/d"));
  Informer::Stats stats = inf.stats();
  EXPECT_GE(stats.relists_gone, 1);
  EXPECT_GE(stats.lists, 2);
  fprintf(stderr,
          "lists %ld, relists after 410 %ld, watches %ld, failures %ld\n",
          static_cast<long>(stats.lists), static_cast<long>(stats.relists_gone),
          static_cast<long>(stats.watches), static_cast<long>(stats.failures));
  {
    absl::MutexLock lock(&errors_mu);
    ASSERT_FALSE(errors.empty());
    EXPECT_THAT(errors.front(), ::testing::HasSubstr("UNAVAILABLE"));
  }

  // And it keeps following changes.
  ASSERT_TRUE(direct->Create(kConfigMap, "r", Cm("e", "0")).ok());
  ASSERT_TRUE(WaitFor([&] { return rec.Has("add r/e"); }, absl::Seconds(10)));
}

// A restart of kube-apiserver: the informer's watch drops, it reconnects
// (backing off meanwhile) and goes on; nothing is reported twice.
TEST(KubeInformerTest, SurvivesAnApiserverRestart) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c =
      AdminClient(*f, ClientOptions{.request_timeout = absl::Seconds(5)});
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "s");
  ASSERT_TRUE(c->Create(kConfigMap, "s", Cm("before", "0")).ok());
  Recorder rec;
  Informer inf(
      c.get(), kConfigMap,
      InformerOptions{.namespace_ = "s", .max_backoff = absl::Seconds(2)});
  inf.AddHandlers(rec.Handlers());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(absl::Seconds(10)));
  EXPECT_THAT(rec.Take(), ElementsAre("add s/before"));

  const absl::Time begin = absl::Now();
  absl::Status restarted = f->RestartApiserver();
  ASSERT_TRUE(restarted.ok()) << restarted;
  const absl::Duration restart = absl::Now() - begin;
  ASSERT_TRUE(c->Create(kConfigMap, "s", Cm("after", "0")).ok());
  ASSERT_TRUE(
      WaitFor([&] { return rec.Has("add s/after"); }, absl::Seconds(30)));
  const absl::Duration caught_up = absl::Now() - begin;
  EXPECT_THAT(rec.Take(), ElementsAre("add s/after"));
  EXPECT_THAT(inf.Keys(), ElementsAre("s/after", "s/before"));
  Informer::Stats stats = inf.stats();
  EXPECT_GE(stats.failures, 1);
  fprintf(stderr,
          "apiserver restart took %s; the informer had the new object %s "
          "after the restart began (lists %ld, relists after 410 %ld, "
          "failures %ld)\n",
          absl::FormatDuration(restart).c_str(),
          absl::FormatDuration(caught_up).c_str(),
          static_cast<long>(stats.lists), static_cast<long>(stats.relists_gone),
          static_cast<long>(stats.failures));
}

// Bytes allocated with malloc, in every arena.
size_t HeapInUse() { return mallinfo2().uordblks; }

// The operator's initial sync with 1,000 policies like the research-agent
// example: how long it takes and what the cache costs.
TEST(KubeInformerTest, SyncsAThousandPolicies) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "agents");
  ::stockade::testing::CommandResult example =
      f->Kubectl({"create", "--dry-run=client", "-o", "json", "-f",
                  ::stockade::testing::SourceDir() +
                      "/examples/policies/research-agent.yaml"});
  ASSERT_TRUE(example.ok()) << example.ToString();
  absl::StatusOr<json> policy = ParseJson(example.out);
  ASSERT_TRUE(policy.ok()) << policy.status();
  constexpr int kPolicies = 1000, kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kPolicies; i += kThreads) {
        json p = *policy;
        p["metadata"]["name"] = absl::StrCat("agent-", i);
        if (!c->Create(kAgentPolicy, "agents", p).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);

  const size_t heap_before = HeapInUse();
  const absl::Time begin = absl::Now();
  auto inf = std::make_unique<Informer>(c.get(), kAgentPolicy);
  inf->Start();
  ASSERT_TRUE(inf->WaitForSync(absl::Seconds(30)));
  const absl::Duration sync = absl::Now() - begin;
  EXPECT_EQ(inf->Size(), static_cast<size_t>(kPolicies));
  const size_t heap_after = HeapInUse();
  fprintf(stderr,
          "informer sync of %d AgentPolicies (pages of 500): %s; heap +%zu "
          "KiB (%.1f KiB per cached policy)\n",
          kPolicies, absl::FormatDuration(sync).c_str(),
          (heap_after - heap_before) / 1024,
          static_cast<double>(heap_after - heap_before) / 1024 / kPolicies);
  EXPECT_LT(sync, absl::Seconds(10));
}

TEST(KubeInformerTest, CompactObjectKeepsKeysVersionsAndTheWholeText) {
  const json full = json::parse(R"({
    "apiVersion": "stockade.dev/v1alpha1", "kind": "AgentPolicy",
    "metadata": {"name": "a", "namespace": "team", "uid": "u1",
                 "generation": 3, "resourceVersion": "42",
                 "labels": {"x": "y"}},
    "spec": {"mode": "Enforce"},
    "status": {"policyHash": "abc"}})");
  json compact = full;
  CompactObject(compact);
  EXPECT_EQ(KeyOf(compact), "team/a");
  EXPECT_EQ(ResourceVersionOf(compact), "42");
  EXPECT_EQ(compact["metadata"]["generation"], 3);
  EXPECT_FALSE(compact.contains("spec"));
  EXPECT_FALSE(compact["metadata"].contains("labels"));
  EXPECT_EQ(json::parse(ObjectText(compact)), full);
  // An object never compacted is its own text.
  EXPECT_EQ(json::parse(ObjectText(full)), full);
}

TEST(KubeInformerTest, BackoffGrowsWithJitterAndIsCapped) {
  Backoff b(absl::Milliseconds(200), absl::Seconds(30));
  std::vector<absl::Duration> d;
  for (int i = 0; i < 12; ++i) d.push_back(b.Next());
  for (int i = 0; i < 12; ++i) {
    const absl::Duration nominal =
        std::min(absl::Milliseconds(200) * (1 << i), absl::Seconds(30));
    EXPECT_GE(d[i], nominal * 0.75) << i;
    EXPECT_LE(d[i], nominal * 1.25) << i;
  }
  b.Reset();
  EXPECT_LE(b.Next(), absl::Milliseconds(250));
}

}  // namespace
}  // namespace stockade::kube
