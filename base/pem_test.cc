#include "base/pem.h"

#include <unistd.h>

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade {
namespace {

using ::testing::HasSubstr;

TEST(PemTest, ReadsAndNamesTheRoleInErrors) {
  char tmpl[] = "/tmp/stockade-pem.XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(tmpl) << "-----BEGIN CERTIFICATE-----\nx\n";
  auto ok = ReadPemFile(tmpl, "CA");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(*ok, HasSubstr("BEGIN CERTIFICATE"));

  std::ofstream(tmpl) << "not pem";
  EXPECT_THAT(ReadPemFile(tmpl, "CA").status().message(),
              HasSubstr("the CA file"));
  unlink(tmpl);
  EXPECT_THAT(ReadPemFile(tmpl, "client key").status().message(),
              HasSubstr("cannot read the client key file"));
  EXPECT_THAT(ReadPemFile("", "server key").status().message(),
              HasSubstr("mTLS needs the server key file"));
}

}  // namespace
}  // namespace stockade
