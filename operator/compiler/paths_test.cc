#include "operator/compiler/paths.h"

#include "gtest/gtest.h"
#include "operator/compiler/capabilities.h"
#include "operator/compiler/cidr.h"

namespace stockade::compiler {
namespace {

TEST(PathsTest, Clean) {
  EXPECT_EQ(CleanAbsolutePath("/a//b/").value(), "/a/b");
  EXPECT_EQ(CleanAbsolutePath("/a/b/", true).value(), "/a/b/");
  EXPECT_EQ(CleanAbsolutePath("/").value(), "/");
  EXPECT_FALSE(CleanAbsolutePath("a/b").ok());
  EXPECT_FALSE(CleanAbsolutePath("/a/../b").ok());
  EXPECT_FALSE(CleanAbsolutePath("/a/./b").ok());
  EXPECT_FALSE(CleanAbsolutePath(std::string("/a\nb")).ok());
  EXPECT_FALSE(CleanAbsolutePath(std::string("/a\0b", 4)).ok());
}

TEST(PathsTest, IsBeneath) {
  EXPECT_TRUE(IsBeneath("/tmp/a", "/tmp"));
  EXPECT_TRUE(IsBeneath("/tmp", "/tmp/"));
  EXPECT_TRUE(IsBeneath("/x", "/"));
  EXPECT_FALSE(IsBeneath("/tmpfoo", "/tmp"));
  EXPECT_FALSE(IsBeneath("/tmp", "/tmp/a"));
}

TEST(CidrTest, ParseAndContain) {
  EXPECT_EQ(ParseCidr("10.0.0.0/8")->ToString(), "10.0.0.0/8");
  EXPECT_EQ(ParseCidr("1.2.3.4")->ToString(), "1.2.3.4/32");
  EXPECT_EQ(ParseCidr("2001:DB8::/32")->ToString(), "2001:db8::/32");
  EXPECT_TRUE(ParseCidr("10.0.0.0/8")->Contains(*ParseCidr("10.1.0.0/16")));
  EXPECT_FALSE(ParseCidr("10.1.0.0/16")->Contains(*ParseCidr("10.0.0.0/8")));
  EXPECT_FALSE(ParseCidr("::/0")->Contains(*ParseCidr("10.0.0.0/8")));
  EXPECT_TRUE(ParseCidr("0.0.0.0/0")->Contains(*ParseCidr("8.8.8.8")));
  for (const char* bad : {"10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "x/8",
                          "10.0.0.0/-1", "10.0.0.0/+8", "::1/200", ""}) {
    EXPECT_FALSE(ParseCidr(bad).ok()) << bad;
  }
}

TEST(CapabilitiesTest, Normalize) {
  EXPECT_EQ(NormalizeCapability("CAP_NET_RAW"), "NET_RAW");
  EXPECT_EQ(NormalizeCapability("CHECKPOINT_RESTORE"), "CHECKPOINT_RESTORE");
  EXPECT_EQ(NormalizeCapability("net_raw"), "");
  EXPECT_EQ(NormalizeCapability("CAP_"), "");
}

}  // namespace
}  // namespace stockade::compiler
