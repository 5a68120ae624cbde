#include "cli/table.h"

#include "gtest/gtest.h"

namespace stockade::cli {
namespace {

TEST(TableTest, AlignsColumnsAndUpperCasesHeaders) {
  EXPECT_EQ(FormatTable({"namespace", "name", "hash"},
                        {{"agents", "research-agent", "3f1a2b4c5d6e"},
                         {"ops", "strict", "9e8d7c6b5a41"}}),
            "NAMESPACE   NAME             HASH\n"
            "agents      research-agent   3f1a2b4c5d6e\n"
            "ops         strict           9e8d7c6b5a41\n");
}

TEST(TableTest, EmptyCellsShowNoneAndShortRowsArePadded) {
  EXPECT_EQ(FormatTable({"name", "hash", "ready"}, {{"a", "", "1/1"}, {"b"}}),
            "NAME   HASH     READY\n"
            "a      <none>   1/1\n"
            "b      <none>   <none>\n");
}

TEST(TableTest, NoRowsPrintsTheHeaderOnly) {
  EXPECT_EQ(FormatTable({"name"}, {}), "NAME\n");
}

TEST(TableTest, WidthCountsCharactersNotBytes) {
  EXPECT_EQ(FormatTable({"a", "b"}, {{"é", "x"}, {"ab", "y"}}),
            "A    B\n"
            "é    x\n"
            "ab   y\n");
}

}  // namespace
}  // namespace stockade::cli
