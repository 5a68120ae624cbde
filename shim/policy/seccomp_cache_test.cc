// SeccompBpf: the program is libseccomp's for the profile, cached by
// content, rebuilt when the cache entry is missing or malformed, and a
// cache that cannot be written never fails a container.
#include "shim/policy/seccomp_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/testing/compile_yaml.h"
#include "shim/init/seccomp_loader.h"

namespace stockade::shim {
namespace {

using ::stockade::compiler::testing::CompileYaml;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

class SeccompCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stockade-seccomp-cache.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cache_ = root_ + "/run/seccomp";
    json_ = CompileYaml(R"(
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: cache-test, namespace: tests}
spec:
  syscalls: {baseline: Strict}
)")
                .seccomp_json();
    auto filter = OciSeccompFilter::Build(json_);
    ASSERT_TRUE(filter.ok()) << filter.status();
    want_ = *filter->ExportBpf();
  }
  void TearDown() override {
    EXPECT_EQ(system(("rm -rf '" + root_ + "'").c_str()), 0);
  }
  std::string root_, cache_, json_, want_;
};

TEST_F(SeccompCacheTest, BuildsOnceThenReadsTheCache) {
  absl::StatusOr<std::string> bpf = SeccompBpf(json_, cache_);
  ASSERT_TRUE(bpf.ok()) << bpf.status();
  EXPECT_EQ(*bpf, want_);
  const std::string path = SeccompCachePath(json_, cache_);
  EXPECT_EQ(ReadFile(path), want_);
  struct stat st;
  ASSERT_EQ(stat(cache_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The entry is what is returned: replace it by another valid program.
  const std::string other(want_.substr(0, 8 * 4));
  WriteFile(path, other);
  bpf = SeccompBpf(json_, cache_);
  ASSERT_TRUE(bpf.ok());
  EXPECT_EQ(*bpf, other);
}

TEST_F(SeccompCacheTest, AMalformedEntryIsRebuilt) {
  ASSERT_TRUE(SeccompBpf(json_, cache_).ok());
  const std::string path = SeccompCachePath(json_, cache_);
  for (const std::string& junk : {std::string(), std::string(13, 'x')}) {
    WriteFile(path, junk);
    absl::StatusOr<std::string> bpf = SeccompBpf(json_, cache_);
    ASSERT_TRUE(bpf.ok()) << bpf.status();
    EXPECT_EQ(*bpf, want_);
    EXPECT_EQ(ReadFile(path), want_);
  }
}

TEST_F(SeccompCacheTest, DistinctProfilesDistinctEntries) {
  const std::string other = CompileYaml(R"(
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: cache-test, namespace: tests}
spec:
  syscalls: {baseline: RuntimeDefault}
)")
                                .seccomp_json();
  EXPECT_NE(SeccompCachePath(json_, cache_), SeccompCachePath(other, cache_));
  absl::StatusOr<std::string> a = SeccompBpf(json_, cache_);
  absl::StatusOr<std::string> b = SeccompBpf(other, cache_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST_F(SeccompCacheTest, NoCacheOrAnUnwritableOneStillGivesTheProgram) {
  absl::StatusOr<std::string> bpf = SeccompBpf(json_, "");
  ASSERT_TRUE(bpf.ok()) << bpf.status();
  EXPECT_EQ(*bpf, want_);
  // A file where the directory should be.
  WriteFile(root_ + "/file", "x");
  bpf = SeccompBpf(json_, root_ + "/file/seccomp");
  ASSERT_TRUE(bpf.ok()) << bpf.status();
  EXPECT_EQ(*bpf, want_);
}

TEST_F(SeccompCacheTest, BadProfilesAreErrors) {
  EXPECT_FALSE(SeccompBpf("{", cache_).ok());
  absl::StatusOr<std::string> bpf = SeccompBpf(
      R"({"defaultAction": "SCMP_ACT_NOPE", "syscalls": []})", cache_);
  ASSERT_FALSE(bpf.ok());
  EXPECT_THAT(bpf.status().message(), HasSubstr("SCMP_ACT_NOPE"));
}

}  // namespace
}  // namespace stockade::shim
