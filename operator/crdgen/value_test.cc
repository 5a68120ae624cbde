#include "operator/crdgen/value.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace stockade::crdgen {
namespace {

TEST(NeedsQuotesTest, QuotesWhatYaml11WouldReadAsAnotherType) {
  for (const char* s :
       {"",      "True", "false",      "yes",  "No", "on", "OFF", "y",
        "~",     "null", "1",          "64Mi", "-5", "+1", ".5",  ".inf",
        "-.inf", ".NaN", "2001-12-14", "0x1F", "=",  "<<"}) {
    EXPECT_TRUE(NeedsQuotes(s)) << s;
  }
  for (const char* s : {"Enforce", "Complain", "Unknown", "string", "^/",
                        ".spec.mode", "-x", "None", "Truee", "nope"}) {
    EXPECT_FALSE(NeedsQuotes(s)) << s;
  }
}

TEST(EmitYamlTest, KeepsKeyOrderAndTypes) {
  Value v = Value::Map();
  v["zeta"] = "True";
  v["alpha"] = 5;
  v["mid"] = true;
  v["list"].Append("64Mi");
  v["list"].Append("plain");
  v["empty"] = Value::Map();
  v["none"] = Value::List();
  const std::string text = EmitYaml(v, "header line");
  EXPECT_EQ(text,
            "# header line\n"
            "zeta: \"True\"\n"
            "alpha: 5\n"
            "mid: true\n"
            "list:\n"
            "  - \"64Mi\"\n"
            "  - plain\n"
            "empty: {}\n"
            "none: []\n");
}

TEST(EmitYamlTest, MultiLineStringsReadBackExactly) {
  Value v = Value::Map();
  v["description"] = "First paragraph: one.\n\nSecond \"quoted\" # paragraph.";
  const YAML::Node node = YAML::Load(EmitYaml(v, ""));
  EXPECT_EQ(node["description"].as<std::string>(),
            "First paragraph: one.\n\nSecond \"quoted\" # paragraph.");
}

TEST(ValueTest, SortKeysIsStableAndFindWorks) {
  Value v = Value::Map();
  v["b"] = 1;
  v["a"] = 2;
  v["c"] = 3;
  v.SortKeys([](const std::string& x, const std::string& y) { return x < y; });
  EXPECT_THAT(v.keys(), testing::ElementsAre("a", "b", "c"));
  ASSERT_NE(v.Find("b"), nullptr);
  EXPECT_EQ(v.Find("b")->int_value(), 1);
  v.Erase("b");
  EXPECT_EQ(v.Find("b"), nullptr);
  EXPECT_THAT(v.keys(), testing::ElementsAre("a", "c"));
}

}  // namespace
}  // namespace stockade::crdgen
