// StoreSync on real store directories, fed the parts the server's own
// generators (operator/distribution/desired.h) produce, and hand-made
// protocol violations.
#include "node/sync.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/distribution/desired.h"
#include "operator/distribution/testing/policies.h"

namespace stockade::node {
namespace {

namespace fs = std::filesystem;
using ::stockade::distribution::DeltaParts;
using ::stockade::distribution::DesiredState;
using ::stockade::distribution::MakeDesiredState;
using ::stockade::distribution::PolicyPtr;
using ::stockade::distribution::SnapshotParts;
using ::stockade::distribution::testing::EntriesFor;
using ::stockade::distribution::testing::MakePolicy;
using ::stockade::distribution::testing::Packed;
using ::stockade::v1::CompiledPolicy;
using ::stockade::v1::NodeStatus;
using ::stockade::v1::PolicyUpdate;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

class SyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/node_sync_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/store";
    Reopen();
  }
  void TearDown() override {
    sync_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void Reopen(bool apparmor = false) {
    sync_.reset();
    SyncOptions options;
    options.store_root = root_;
    options.apparmor = apparmor;
    options.apparmor_options.work_dir = dir_;
    options.stale_ref_age = absl::Minutes(10);
    auto sync = StoreSync::Open(options);
    ASSERT_TRUE(sync.ok()) << sync.status();
    sync_ = *std::move(sync);
  }

  // The desired state of policies, all indexed, at version.
  std::shared_ptr<const DesiredState> State(
      const std::vector<CompiledPolicy>& policies, uint64_t version,
      const std::vector<CompiledPolicy>& unindexed = {}) {
    std::vector<CompiledPolicy> all = policies;
    all.insert(all.end(), unindexed.begin(), unindexed.end());
    auto state = MakeDesiredState(Packed(all), EntriesFor(policies));
    EXPECT_TRUE(state.ok()) << state.status();
    state->version = version;
    return std::make_shared<const DesiredState>(*std::move(state));
  }

  // Applies every part of source; the result of the last.
  absl::StatusOr<StoreSync::PartResult> ApplyAll(
      distribution::PartSource& source) {
    PolicyUpdate part;
    absl::StatusOr<StoreSync::PartResult> result =
        absl::InternalError("no parts");
    while (source.Next(&part)) {
      result = sync_->Apply(part);
      if (!result.ok()) return result;
      EXPECT_EQ(*result == StoreSync::PartResult::kApplied, part.last_part());
    }
    return result;
  }

  void Snapshot(const std::vector<CompiledPolicy>& policies, uint64_t version,
                const std::vector<CompiledPolicy>& unindexed = {},
                const absl::flat_hash_set<std::string>& held = {}) {
    auto source = SnapshotParts(State(policies, version, unindexed), held,
                                "srv", 1 << 20);
    auto result = ApplyAll(*source);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, StoreSync::PartResult::kApplied);
  }

  void Delta(const std::vector<CompiledPolicy>& from,
             const std::vector<CompiledPolicy>& to, uint64_t version) {
    auto delta =
        std::make_shared<const distribution::Delta>(distribution::ComputeDelta(
            *State(from, version - 1), *State(to, version)));
    auto source = DeltaParts(delta, "srv", 1 << 20);
    auto result = ApplyAll(*source);
    ASSERT_TRUE(result.ok()) << result.status();
  }

  std::string ResolveHash(const std::string& ns, const std::string& name) {
    auto p = sync_->store().Resolve(ns, name);
    return p.ok() ? p->hash() : std::string(p.status().message());
  }

  std::vector<std::string> IndexNames() {
    std::vector<std::string> out;
    auto list = sync_->store().List();
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) {
      for (const auto& e : *list) out.push_back(e.namespace_ + "/" + e.name);
    }
    return out;
  }

  // The store as the shim opens it.
  store::Store Shim() {
    auto s = store::Store::Open(root_);
    EXPECT_TRUE(s.ok());
    return *std::move(s);
  }

  std::string dir_;
  std::string root_;
  std::unique_ptr<StoreSync> sync_;
};

TEST_F(SyncTest, SnapshotWritesPoliciesAsTheyArriveAndTheIndexAtTheEnd) {
  std::vector<CompiledPolicy> policies;
  for (int i = 0; i < 6; ++i) {
    policies.push_back(
        MakePolicy("team-a", "p" + std::to_string(i), "1", 5000));
  }
  sync_->BeginStream();
  auto source =
      SnapshotParts(State(policies, 4), {}, "srv", /*part_bytes=*/12'000);
  PolicyUpdate part;
  ASSERT_TRUE(source->Next(&part));
  ASSERT_FALSE(part.last_part());
  ASSERT_GT(part.policies_size(), 0);
  auto r = sync_->Apply(part);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, StoreSync::PartResult::kPending);
  // Written, not indexed.
  EXPECT_TRUE(fs::exists(sync_->store().PolicyPath(part.policies(0).hash())));
  EXPECT_THAT(IndexNames(), IsEmpty());
  EXPECT_FALSE(sync_->last_applied().has_value());
  while (source->Next(&part)) {
    r = sync_->Apply(part);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(*r, StoreSync::PartResult::kApplied);
  EXPECT_EQ(IndexNames().size(), 6u);
  EXPECT_EQ(ResolveHash("team-a", "p3"), policies[3].hash());
  ASSERT_TRUE(sync_->last_applied().has_value());
  EXPECT_EQ(sync_->last_applied()->version(), 4u);

  const NodeStatus report = sync_->Report();
  EXPECT_EQ(report.held_added_size(), 6);
  EXPECT_EQ(report.applied().version(), 4u);
  EXPECT_EQ(report.applied().server_id(), "srv");
  // Nothing new since.
  EXPECT_FALSE(sync_->HasNews());
  EXPECT_EQ(sync_->Report().held_added_size(), 0);
}

TEST_F(SyncTest, DeltasMoveEntriesAndCollectWhatNothingUses) {
  const CompiledPolicy a1 = MakePolicy("team-a", "one", "1");
  const CompiledPolicy a2 = MakePolicy("team-a", "one", "2");
  const CompiledPolicy b = MakePolicy("team-a", "two", "b");
  const CompiledPolicy c = MakePolicy("", "cluster", "c");
  sync_->BeginStream();
  Snapshot({a1, b}, 1);
  sync_->Report();
  // A container runs on a1.
  ASSERT_TRUE(Shim().AddRef(a1.hash(), "k8s.io@c1").ok());

  Delta({a1, b}, {a2, c}, 2);
  EXPECT_EQ(ResolveHash("team-a", "one"), a2.hash());
  EXPECT_EQ(ResolveHash("", "cluster"), c.hash());
  EXPECT_THAT(ResolveHash("team-a", "two"), HasSubstr("no policy"));
  // b: dropped, unindexed, unreferenced: collected. a1: referenced: kept.
  EXPECT_FALSE(fs::exists(sync_->store().PolicyPath(b.hash())));
  EXPECT_TRUE(fs::exists(sync_->store().PolicyPath(a1.hash())));
  NodeStatus report = sync_->Report();
  EXPECT_THAT(report.in_use_added(), ElementsAre(a1.hash()));
  EXPECT_THAT(report.held_removed(), ElementsAre(b.hash()));
  EXPECT_THAT(report.held_added(),
              UnorderedElementsAreArray({a2.hash(), c.hash()}));
  EXPECT_EQ(report.applied().version(), 2u);

  // The container is deleted: the next collection takes a1.
  ASSERT_TRUE(Shim().RemoveRef(a1.hash(), "k8s.io@c1").ok());
  ASSERT_TRUE(sync_->CollectGarbage().ok());
  EXPECT_FALSE(fs::exists(sync_->store().PolicyPath(a1.hash())));
  EXPECT_TRUE(sync_->HasNews());
  report = sync_->Report();
  EXPECT_THAT(report.held_removed(), ElementsAre(a1.hash()));
  EXPECT_THAT(report.in_use_removed(), ElementsAre(a1.hash()));
}

TEST_F(SyncTest, DesiredButUnindexedPoliciesStay) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy spare = MakePolicy("team-a", "one", "next");
  sync_->BeginStream();
  Snapshot({a}, 1, {spare});
  ASSERT_TRUE(sync_->CollectGarbage().ok());
  EXPECT_TRUE(fs::exists(sync_->store().PolicyPath(spare.hash())));
  EXPECT_EQ(ResolveHash("team-a", "one"), a.hash());
}

TEST_F(SyncTest, SnapshotRemovesEntriesItLacks) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy b = MakePolicy("team-b", "two", "2");
  sync_->BeginStream();
  Snapshot({a, b}, 1);
  // A new stream (operator restarted) whose state lacks b.
  sync_->EndStream();
  sync_->BeginStream();
  Snapshot({a}, 1, {}, {a.hash(), b.hash()});
  EXPECT_THAT(IndexNames(), ElementsAre("team-a/one"));
  EXPECT_FALSE(fs::exists(sync_->store().PolicyPath(b.hash())));
}

TEST_F(SyncTest, ProtocolViolationsChangeNothing) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy b = MakePolicy("team-a", "two", "2");
  auto expect_error = [&](const PolicyUpdate& u, const std::string& what) {
    auto r = sync_->Apply(u);
    ASSERT_FALSE(r.ok()) << u.DebugString();
    EXPECT_THAT(r.status().message(), HasSubstr(what));
  };
  sync_->BeginStream();
  PolicyUpdate delta;
  delta.set_server_id("srv");
  delta.set_version(1);
  delta.set_kind(PolicyUpdate::DELTA);
  delta.set_last_part(true);
  expect_error(delta, "before the stream's snapshot");

  PolicyUpdate unknown;
  unknown.set_last_part(true);
  expect_error(unknown, "unknown kind");

  Snapshot({a}, 5);
  delta.set_version(7);  // A gap.
  expect_error(delta, "does not follow applied version 5");

  PolicyUpdate old_snapshot;
  old_snapshot.set_server_id("srv");
  old_snapshot.set_version(4);
  old_snapshot.set_kind(PolicyUpdate::SNAPSHOT);
  old_snapshot.set_last_part(true);
  expect_error(old_snapshot, "older than applied version 5");

  PolicyUpdate snapshot_drops = old_snapshot;
  snapshot_drops.set_version(6);
  snapshot_drops.add_dropped_hashes(a.hash());
  expect_error(snapshot_drops, "cannot drop");

  // Parts of two versions interleaved.
  PolicyUpdate first;
  first.set_server_id("srv");
  first.set_version(6);
  first.set_kind(PolicyUpdate::DELTA);
  *first.add_policies() = b;
  ASSERT_TRUE(sync_->Apply(first).ok());
  PolicyUpdate other = first;
  other.set_version(7);
  expect_error(other, "arrived while version 6 was incomplete");

  // An index entry naming a policy the node does not hold.
  PolicyUpdate dangling;
  dangling.set_server_id("srv");
  dangling.set_version(6);
  dangling.set_kind(PolicyUpdate::DELTA);
  dangling.set_last_part(true);
  auto* e = dangling.add_index_set();
  e->mutable_key()->set_namespace_("team-a");
  e->mutable_key()->set_name("three");
  e->set_hash(MakePolicy("team-a", "three", "x").hash());
  expect_error(dangling, "the node does not hold");

  // Garbage hashes and policies.
  PolicyUpdate bad_hash = dangling;
  bad_hash.mutable_index_set(0)->set_hash("../../etc/passwd");
  expect_error(bad_hash, "not a policy hash");
  PolicyUpdate bad_policy;
  bad_policy.set_server_id("srv");
  bad_policy.set_version(6);
  bad_policy.set_kind(PolicyUpdate::DELTA);
  CompiledPolicy evil = a;
  evil.set_hash("../../../../tmp/evil");
  *bad_policy.add_policies() = evil;
  expect_error(bad_policy, "not a sha256 hex string");
  CompiledPolicy evil_name = a;
  evil_name.mutable_source()->set_name("../x");
  bad_policy.clear_policies();
  *bad_policy.add_policies() = evil_name;
  expect_error(bad_policy, "invalid policy name");

  // Through all of it: the index of version 5, and version 5 applied.
  EXPECT_THAT(IndexNames(), ElementsAre("team-a/one"));
  EXPECT_EQ(sync_->last_applied()->version(), 5u);
  // A correct delta still applies.
  Delta({a}, {a, b}, 6);
  EXPECT_EQ(ResolveHash("team-a", "two"), b.hash());
}

TEST_F(SyncTest, RestartReportsWhatTheStoreHoldsAndFlagsCorruptFiles) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy b = MakePolicy("team-a", "two", "2");
  sync_->BeginStream();
  Snapshot({a, b}, 1);
  // Corrupt b's file, then restart the agent.
  {
    std::ofstream out(sync_->store().PolicyPath(b.hash()),
                      std::ios::binary | std::ios::trunc);
    out << "garbage";
  }
  Reopen();
  NodeStatus hello = sync_->BeginStream();
  EXPECT_THAT(hello.held_added(), ElementsAre(a.hash()));
  EXPECT_FALSE(hello.has_applied());
  ASSERT_EQ(hello.errors_size(), 1);
  EXPECT_EQ(hello.errors(0).hash(), b.hash());
  EXPECT_THAT(hello.errors(0).message(), HasSubstr("does not parse"));
  // No collection until this process applied a snapshot.
  ASSERT_TRUE(sync_->CollectGarbage().ok());
  EXPECT_TRUE(fs::exists(sync_->store().PolicyPath(b.hash())));
  // The snapshot resends b (the node did not claim it) and repairs it.
  Snapshot({a, b}, 1, {}, {a.hash()});
  EXPECT_EQ(ResolveHash("team-a", "two"), b.hash());
  EXPECT_THAT(sync_->Errors(), IsEmpty());
}

TEST_F(SyncTest, NoCollectionBetweenHelloAndSnapshot) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy spare = MakePolicy("team-a", "one", "spare");
  sync_->BeginStream();
  Snapshot({a}, 1, {spare});
  sync_->EndStream();
  // The hello of the next stream claims spare; until the snapshot arrives
  // the claim must stay true.
  NodeStatus hello = sync_->BeginStream();
  EXPECT_EQ(hello.held_added_size(), 2);
  ASSERT_TRUE(sync_->CollectGarbage().ok());
  EXPECT_TRUE(fs::exists(sync_->store().PolicyPath(spare.hash())));
  // The new state does not want spare: collected after the snapshot.
  Snapshot({a}, 1, {}, {a.hash(), spare.hash()});
  EXPECT_FALSE(fs::exists(sync_->store().PolicyPath(spare.hash())));
}

std::string GoldenProfile() {
  const char* dir = std::getenv("STOCKADE_SOURCE_DIR");
  std::ifstream in(std::string(dir != nullptr ? dir : ".") +
                   "/tests/golden/research-agent.apparmor");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << "set STOCKADE_SOURCE_DIR";
  return ss.str();
}

TEST_F(SyncTest, AppArmorErrorsAreReportedPerPolicy) {
  // AppArmor forced on. The profile compiles (real apparmor_parser); where
  // the kernel has no AppArmor (this project's machines) loading fails and
  // the node says so about that policy, while the store still gets it.
  Reopen(/*apparmor=*/true);
  CompiledPolicy good = MakePolicy("agents", "research-agent", "1");
  good.mutable_apparmor()->set_name(
      "stockade.agents.research-agent.eca96e2818d3");
  good.mutable_apparmor()->set_text(GoldenProfile());
  CompiledPolicy broken = MakePolicy("agents", "broken", "1");
  broken.mutable_apparmor()->set_text("profile " + broken.apparmor().name() +
                                      " {\n  this is not a rule,\n}\n");
  sync_->BeginStream();
  Snapshot({good, broken}, 1);
  EXPECT_EQ(ResolveHash("agents", "research-agent"), good.hash());
  EXPECT_EQ(ResolveHash("agents", "broken"), broken.hash());
  NodeStatus report = sync_->Report();
  std::map<std::string, std::string> errors;
  for (const auto& e : report.errors()) errors[e.hash()] = e.message();
  ASSERT_TRUE(errors.contains(broken.hash()));
  EXPECT_THAT(errors[broken.hash()], HasSubstr("rejected the profile"));
  if (AppArmorKernelEnabled()) {
    EXPECT_FALSE(errors.contains(good.hash()));
    EXPECT_THAT(report.profiles_added(),
                ElementsAre("stockade.agents.research-agent.eca96e2818d3"));
  } else {
    ASSERT_TRUE(errors.contains(good.hash()));
    EXPECT_THAT(errors[good.hash()],
                HasSubstr("cannot open the kernel's policy interface"));
    EXPECT_THAT(report.profiles_added(), IsEmpty());
  }
  // The broken profile is not compiled again; the load is retried.
  auto policy_errors = [&] {
    size_t n = 0;
    for (const auto& e : sync_->Errors()) n += e.hash().empty() ? 0 : 1;
    return n;
  };
  ASSERT_TRUE(sync_->CollectGarbage().ok());
  EXPECT_EQ(policy_errors(), AppArmorKernelEnabled() ? 1u : 2u);
  // Dropping the policies clears their errors.
  sync_->EndStream();
  sync_->BeginStream();
  Snapshot({}, 2, {}, {});
  EXPECT_EQ(policy_errors(), 0u);
}

}  // namespace
}  // namespace stockade::node
