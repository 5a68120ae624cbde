#include "operator/controller/conditions.h"

#include "gtest/gtest.h"

namespace stockade::controller {
namespace {

namespace v1 = ::stockade::v1;

TEST(ConditionsTest, FormatTimeIsRfc3339Utc) {
  EXPECT_EQ(Rfc3339(absl::FromUnixSeconds(1767225600)), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339(absl::FromUnixMillis(1767225600999)),
            "2026-01-01T00:00:00Z");
}

TEST(ConditionsTest, TransitionTimeMovesOnlyWithStatus) {
  Conditions prev;
  *prev.Add() = MakeCondition({}, "Compiled", v1::CONDITION_STATUS_TRUE,
                              "Compiled", "a", 1, "T1");
  EXPECT_EQ(prev[0].last_transition_time(), "T1");
  // Same status, other reason and message: the time stays.
  v1::Condition same = MakeCondition(
      prev, "Compiled", v1::CONDITION_STATUS_TRUE, "Other", "b", 2, "T2");
  EXPECT_EQ(same.last_transition_time(), "T1");
  EXPECT_EQ(same.reason(), "Other");
  EXPECT_EQ(same.observed_generation(), 2);
  // Another status: now.
  v1::Condition changed =
      MakeCondition(prev, "Compiled", v1::CONDITION_STATUS_FALSE, "InvalidSpec",
                    "c", 2, "T2");
  EXPECT_EQ(changed.last_transition_time(), "T2");
  // Another type: now.
  v1::Condition other = MakeCondition(prev, "Ready", v1::CONDITION_STATUS_TRUE,
                                      "Ready", "", 2, "T3");
  EXPECT_EQ(other.last_transition_time(), "T3");
}

TEST(ConditionsTest, TruncateKeepsUtf8Whole) {
  EXPECT_EQ(Truncate("short", 100), "short");
  // "é" is two bytes; a cut inside it backs up before it.
  std::string s = std::string(20, 'a') + "\xc3\xa9" + std::string(20, 'b');
  std::string t = Truncate(s, 33);  // 33 - 12 = 21: inside the "é"
  EXPECT_EQ(t, std::string(20, 'a') + " [truncated]");
  EXPECT_LE(t.size(), 33u);
  EXPECT_EQ(Truncate(std::string(40000, 'x'), kMaxConditionMessage).size(),
            kMaxConditionMessage);
}

}  // namespace
}  // namespace stockade::controller
