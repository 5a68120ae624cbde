#include "operator/compiler/quantity.h"

#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

TEST(QuantityTest, ParsesSuffixes) {
  EXPECT_EQ(ParseQuantity("64Mi").value(), 64 << 20);
  EXPECT_EQ(ParseQuantity("1Gi").value(), int64_t{1} << 30);
  EXPECT_EQ(ParseQuantity("1k").value(), 1000);
  EXPECT_EQ(ParseQuantity("2M").value(), 2000000);
  EXPECT_EQ(ParseQuantity("1e3").value(), 1000);
  EXPECT_EQ(ParseQuantity("1.5Ki").value(), 1536);
  EXPECT_EQ(ParseQuantity("4096").value(), 4096);
}

TEST(QuantityTest, RejectsBadValues) {
  for (const char* bad : {"", "-1", "64mi", "64MB", "1.5", "Mi", "1.Mi", "0.1",
                          "99999999999Ei", "1e99", "1 Mi", "500m"}) {
    EXPECT_FALSE(ParseQuantity(bad).ok()) << bad;
  }
  EXPECT_NE(ParseQuantity("64MB").status().message().find("64Mi"),
            std::string::npos);
}

TEST(QuantityTest, FormatsWithLargestBinarySuffix) {
  EXPECT_EQ(FormatQuantity(64 << 20), "64Mi");
  EXPECT_EQ(FormatQuantity(1536), "1536");
  EXPECT_EQ(FormatQuantity(2048), "2Ki");
  EXPECT_EQ(FormatQuantity(0), "0");
}

}  // namespace
}  // namespace stockade::compiler
