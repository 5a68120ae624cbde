// AppArmor on the node with the real apparmor_parser and libapparmor. On a
// kernel without AppArmor (this project's machines) loading must fail with
// a clear error; on one with AppArmor the profile is loaded and unloaded.
#include "node/apparmor.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::node {
namespace {

using ::testing::HasSubstr;

std::string SourceDir() {
  const char* dir = std::getenv("STOCKADE_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

std::string GoldenProfile() {
  const std::string path =
      SourceDir() + "/tests/golden/research-agent.apparmor";
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty())
      << "cannot read " << path << " (set STOCKADE_SOURCE_DIR)";
  return ss.str();
}

AppArmor Make() {
  AppArmor::Options options;
  options.work_dir = ::testing::TempDir();
  return AppArmor(options);
}

TEST(AppArmorTest, CompilesAGeneratedProfile) {
  auto binary = Make().Compile(GoldenProfile());
  ASSERT_TRUE(binary.ok()) << binary.status();
  EXPECT_GT(binary->size(), 1000u);
}

TEST(AppArmorTest, RejectsABrokenProfileWithTheParsersMessage) {
  auto binary = Make().Compile(
      "profile stockade.broken {\n  /etc/passwd rw\n  not a rule at all,\n}\n");
  ASSERT_FALSE(binary.ok());
  EXPECT_EQ(binary.status().code(), absl::StatusCode::kInvalidArgument)
      << binary.status();
  EXPECT_THAT(binary.status().message(), HasSubstr("rejected the profile"));
  EXPECT_THAT(binary.status().message(), HasSubstr("exit "));
}

TEST(AppArmorTest, MissingParserIsUnavailable) {
  AppArmor::Options options;
  options.parser = "/nonexistent/apparmor_parser";
  options.work_dir = ::testing::TempDir();
  auto binary = AppArmor(options).Compile(GoldenProfile());
  EXPECT_EQ(binary.status().code(), absl::StatusCode::kUnavailable)
      << binary.status();
  EXPECT_THAT(binary.status().message(), HasSubstr("cannot run"));
}

TEST(AppArmorTest, ParserThatHangsIsKilled) {
  AppArmor::Options options;
  options.work_dir = ::testing::TempDir();
  const std::string script = ::testing::TempDir() + "/hanging_parser";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\nexec sleep 30\n";
  }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  options.parser = script;
  options.parser_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  auto binary = AppArmor(options).Compile(GoldenProfile());
  EXPECT_EQ(binary.status().code(), absl::StatusCode::kDeadlineExceeded)
      << binary.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(AppArmorTest, LoadingFollowsTheKernel) {
  AppArmor apparmor = Make();
  auto binary = apparmor.Compile(GoldenProfile());
  ASSERT_TRUE(binary.ok()) << binary.status();
  const std::string name = "stockade.agents.research-agent.eca96e2818d3";
  if (!AppArmorKernelEnabled()) {
    // This project's machines: no AppArmor in the kernel. Every kernel
    // operation fails, saying why, and nothing crashes.
    absl::Status load = apparmor.Load(*binary);
    EXPECT_EQ(load.code(), absl::StatusCode::kFailedPrecondition) << load;
    EXPECT_THAT(load.message(),
                HasSubstr("cannot open the kernel's policy interface"));
    EXPECT_THAT(load.message(), HasSubstr("the kernel has no AppArmor"));
    EXPECT_EQ(apparmor.Unload(name).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(apparmor.Loaded().status().code(),
              absl::StatusCode::kFailedPrecondition);
    // Garbage is refused the same way, before the kernel sees it.
    EXPECT_FALSE(apparmor.Load("not a compiled policy").ok());
    return;
  }
  // A kernel with AppArmor: load, find, replace, unload.
  ASSERT_TRUE(apparmor.Load(*binary).ok());
  auto loaded = apparmor.Loaded();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT(*loaded, ::testing::Contains(name));
  ASSERT_TRUE(apparmor.Load(*binary).ok());  // Replace.
  ASSERT_TRUE(apparmor.Unload(name).ok());
  loaded = apparmor.Loaded();
  ASSERT_TRUE(loaded.ok());
  EXPECT_THAT(*loaded, ::testing::Not(::testing::Contains(name)));
  EXPECT_TRUE(apparmor.Unload(name).ok());  // Absent: fine.
  EXPECT_FALSE(apparmor.Load("not a compiled policy").ok());
}

}  // namespace
}  // namespace stockade::node
