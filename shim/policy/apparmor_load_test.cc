// EnsureAppArmorProfile with the real apparmor_parser. This kernel has no
// AppArmor, so the parser runs with -Q (compile, skip the kernel load): the
// path from the shim to the parser and back, and the decision "loaded
// already", are what is tested.
#include "shim/policy/apparmor_load.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/testing/compile_yaml.h"

namespace stockade::shim {
namespace {

using ::stockade::compiler::testing::CompileYaml;
using ::testing::HasSubstr;

class AppArmorLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(system("command -v apparmor_parser >/dev/null"), 0)
        << "apparmor_parser is missing (hack/install-deps installs apparmor)";
    char tmpl[] = "/tmp/stockade-aa.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    loader_.profiles_file = dir_ + "/profiles";
    loader_.command = {"apparmor_parser", "-Q", "-K"};
    std::ofstream(loader_.profiles_file) << "other (enforce)\n";
    policy_ = CompileYaml(R"(
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: aa, namespace: tests}
spec:
  exec: {allow: [/usr/bin/python3]}
)");
  }
  void TearDown() override {
    EXPECT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
  }
  std::string dir_;
  AppArmorLoader loader_;
  stockade::v1::CompiledPolicy policy_;
};

TEST_F(AppArmorLoadTest, CompilesAndLoadsAProfileNotLoadedYet) {
  EXPECT_FALSE(AppArmorProfileLoaded(loader_, policy_.apparmor().name()));
  EXPECT_TRUE(EnsureAppArmorProfile(loader_, policy_.apparmor().name(),
                                    policy_.apparmor().text())
                  .ok());
}

TEST_F(AppArmorLoadTest, ALoadedProfileIsLeftAlone) {
  std::ofstream(loader_.profiles_file, std::ios::app)
      << policy_.apparmor().name() << " (enforce)\n";
  EXPECT_TRUE(AppArmorProfileLoaded(loader_, policy_.apparmor().name()));
  // The parser would fail on this text: it is never run.
  EXPECT_TRUE(
      EnsureAppArmorProfile(loader_, policy_.apparmor().name(), "garbage")
          .ok());
}

TEST_F(AppArmorLoadTest, ParserErrorsAreReported) {
  absl::Status st = EnsureAppArmorProfile(loader_, "stockade.broken",
                                          "profile stockade.broken { bogus");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("stockade.broken"));
  EXPECT_THAT(st.message(), HasSubstr("apparmor_parser -Q -K"));
  EXPECT_THAT(st.message(), HasSubstr("exit status 1"));

  loader_.command = {"/nonexistent/apparmor_parser"};
  st = EnsureAppArmorProfile(loader_, "stockade.x", "profile x {}");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("exit status 127"));
}

}  // namespace
}  // namespace stockade::shim
