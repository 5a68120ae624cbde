#include "operator/distribution/desired.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/distribution/testing/policies.h"

namespace stockade::distribution {
namespace {

using ::stockade::v1::CompiledPolicy;
using ::stockade::v1::PolicyUpdate;
using ::testing::ElementsAre;
using testing::EntriesFor;
using testing::EntryFor;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::MakePolicy;
using testing::Packed;

TEST(MakeDesiredStateTest, Valid) {
  const std::vector<CompiledPolicy> policies = {
      MakePolicy("team-a", "one", "1"), MakePolicy("", "cluster", "c"),
      MakePolicy("team-a", "one", "old")};
  auto state = MakeDesiredState(Packed(policies),
                                {EntryFor(policies[0]), EntryFor(policies[1])});
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->policies.size(), 3u);
  EXPECT_EQ(state->index.size(), 2u);
  EXPECT_EQ(state->index.at({"team-a", "one"}), policies[0].hash());
  EXPECT_EQ(state->policies.at(policies[0].hash()).bytes,
            policies[0].ByteSizeLong());
  // The same policy twice is fine.
  EXPECT_TRUE(MakeDesiredState(Packed({policies[0], policies[0]}), {}).ok());
}

TEST(MakeDesiredStateTest, Rejects) {
  const CompiledPolicy a = MakePolicy("team-a", "one", "1");
  const CompiledPolicy b = MakePolicy("team-a", "two", "2");
  auto error = [](std::vector<CompiledPolicy> policies,
                  std::vector<IndexEntry> index) {
    auto s = MakeDesiredState(Packed(policies), index);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.status().message());
  };
  CompiledPolicy bad_hash = a;
  bad_hash.set_hash("ABC");
  EXPECT_THAT(error({bad_hash}, {}), HasSubstr("not a sha256 hex string"));
  CompiledPolicy bad_name = a;
  bad_name.mutable_source()->set_name("Not_A_Name");
  EXPECT_THAT(error({bad_name}, {}), HasSubstr("invalid policy name"));
  CompiledPolicy same_hash = b;
  same_hash.set_hash(a.hash());
  EXPECT_THAT(error({a, same_hash}, {}),
              HasSubstr("two different policies have hash"));
  EXPECT_THAT(error({a}, {EntryFor(b)}),
              HasSubstr("not among the desired policies"));
  EXPECT_THAT(error({a, b}, {{"team-a", "one", b.hash()}}),
              HasSubstr("compiled for team-a/two"));
  EXPECT_THAT(error({a}, {EntryFor(a), EntryFor(a)}), HasSubstr("twice"));
  EXPECT_THAT(error({a}, {{"team-a", "../x", a.hash()}}),
              HasSubstr("invalid policy name"));
  auto big = MakeDesiredState(Packed({MakePolicy("a", "b", "c", 2000)}), {},
                              /*max_policy_bytes=*/1000);
  EXPECT_THAT(big.status().message(), HasSubstr("more than the 1000"));
}

TEST(ComputeDeltaTest, AddsDropsAndMovesEntries) {
  const CompiledPolicy a1 = MakePolicy("team-a", "one", "1");
  const CompiledPolicy a2 = MakePolicy("team-a", "one", "2");
  const CompiledPolicy b = MakePolicy("team-a", "two", "b");
  const CompiledPolicy c = MakePolicy("", "three", "c");
  auto from = MakeDesiredState(Packed({a1, b}), EntriesFor({a1, b}));
  auto to = MakeDesiredState(Packed({a2, c}), EntriesFor({a2, c}));
  ASSERT_TRUE(from.ok() && to.ok());
  to->version = 7;
  const Delta d = ComputeDelta(*from, *to);
  EXPECT_EQ(d.version, 7u);
  std::set<std::string> upserts;
  for (const auto& p : d.upserts) upserts.insert(p.policy->hash());
  EXPECT_EQ(upserts, (std::set<std::string>{a2.hash(), c.hash()}));
  std::set<std::string> dropped(d.dropped.begin(), d.dropped.end());
  EXPECT_EQ(dropped, (std::set<std::string>{a1.hash(), b.hash()}));
  ASSERT_EQ(d.index_set.size(), 2u);
  EXPECT_THAT(d.index_removed, ElementsAre(IndexKey{"team-a", "two"}));
  EXPECT_TRUE(ComputeDelta(*to, *to).empty());
}

// Every part of a source, checked for shape.
std::vector<PolicyUpdate> Drain(PartSource& source) {
  std::vector<PolicyUpdate> parts;
  PolicyUpdate part;
  EXPECT_FALSE(source.started());
  while (source.Next(&part)) {
    parts.push_back(part);
    EXPECT_TRUE(source.started());
    if (parts.size() > 10000) break;
  }
  EXPECT_FALSE(parts.empty());
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(parts[i].last_part(), i + 1 == parts.size()) << i;
    EXPECT_EQ(parts[i].version(), source.version());
    EXPECT_EQ(parts[i].kind(), source.kind());
    EXPECT_EQ(parts[i].server_id(), "srv");
  }
  return parts;
}

TEST(PartsTest, SnapshotSplitsAndSkipsHeldBodies) {
  std::vector<CompiledPolicy> policies;
  for (int i = 0; i < 20; ++i) {
    policies.push_back(
        MakePolicy("team-a", "p" + std::to_string(i), "s", 10'000));
  }
  auto state = MakeDesiredState(Packed(policies), EntriesFor(policies));
  ASSERT_TRUE(state.ok());
  state->version = 3;
  auto shared = std::make_shared<const DesiredState>(*state);
  absl::flat_hash_set<std::string> held = {policies[0].hash(),
                                           policies[5].hash()};
  auto source = SnapshotParts(shared, held, "srv", 50'000);
  const auto parts = Drain(*source);
  EXPECT_GE(parts.size(), 4u);  // 18 bodies of 10 KB in 50 KB parts.
  std::set<std::string> bodies, hashes;
  std::set<IndexKey> index;
  for (const auto& part : parts) {
    EXPECT_LE(part.ByteSizeLong(), 50'000u + 11'000u);
    for (const auto& p : part.policies()) bodies.insert(p.hash());
    for (const auto& h : part.desired_hashes()) hashes.insert(h);
    for (const auto& e : part.index_set()) {
      index.insert({e.key().namespace_(), e.key().name()});
    }
    EXPECT_THAT(part.dropped_hashes(), IsEmpty());
    EXPECT_THAT(part.index_removed(), IsEmpty());
  }
  EXPECT_EQ(bodies.size(), 18u);
  EXPECT_FALSE(bodies.contains(policies[0].hash()));
  EXPECT_EQ(hashes.size(), 20u);
  EXPECT_EQ(index.size(), 20u);
  EXPECT_EQ(source->policies_sent(), 18u);
}

TEST(PartsTest, EmptySnapshotIsOneLastPart) {
  auto state = std::make_shared<DesiredState>();
  state->version = 1;
  auto source = SnapshotParts(state, {}, "srv", 1000);
  const auto parts = Drain(*source);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_TRUE(parts[0].last_part());
  EXPECT_THAT(parts[0].desired_hashes(), IsEmpty());
}

TEST(PartsTest, DeltaCarriesEverything) {
  std::vector<CompiledPolicy> before, after;
  for (int i = 0; i < 10; ++i) {
    before.push_back(MakePolicy("ns", "p" + std::to_string(i), "old", 3000));
    after.push_back(MakePolicy("ns", "q" + std::to_string(i), "new", 3000));
  }
  auto from = MakeDesiredState(Packed(before), EntriesFor(before));
  auto to = MakeDesiredState(Packed(after), EntriesFor(after));
  ASSERT_TRUE(from.ok() && to.ok());
  to->version = 2;
  auto delta = std::make_shared<const Delta>(ComputeDelta(*from, *to));
  auto source = DeltaParts(delta, "srv", 8000);
  const auto parts = Drain(*source);
  size_t bodies = 0, dropped = 0, set = 0, removed = 0;
  for (const auto& part : parts) {
    bodies += part.policies_size();
    dropped += part.dropped_hashes_size();
    set += part.index_set_size();
    removed += part.index_removed_size();
    EXPECT_THAT(part.desired_hashes(), IsEmpty());
  }
  EXPECT_EQ(bodies, 10u);
  EXPECT_EQ(dropped, 10u);
  EXPECT_EQ(set, 10u);
  EXPECT_EQ(removed, 10u);
  EXPECT_GE(parts.size(), 5u);
}

}  // namespace
}  // namespace stockade::distribution
