// Golden files: the compiled example policies, every format, byte for byte.
// A change to any emitter shows up here as a reviewable diff. To accept one:
//   STOCKADE_UPDATE_GOLDEN=1 build/tests/golden_test   (or hack/update-golden)
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli.h"
#include "gtest/gtest.h"

namespace stockade {
namespace {

struct Case {
  std::string policy;  // examples/policies/<policy>.yaml
  std::string format;  // a --format, or "explain"
};

std::string SourceDir() {
  const char* root = std::getenv("STOCKADE_SOURCE_DIR");
  return root ? root : ".";
}

std::string Extension(const std::string& format) {
  if (format == "apparmor") return "apparmor";
  if (format == "nft") return "nft";
  if (format == "explain") return "txt";
  if (format == "json") return "json";
  return format + ".json";
}

class GoldenTest : public testing::TestWithParam<Case> {};

TEST_P(GoldenTest, MatchesGoldenFile) {
  const Case& c = GetParam();
  const std::string src = SourceDir();
  const std::string policy = "examples/policies/" + c.policy + ".yaml";
  std::vector<std::string> args;
  if (c.format == "explain") {
    args = {"explain", policy};
  } else {
    args = {"compile", "--format", c.format, policy};
  }
  // Run from the source root so that file names in the output are relative.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(src);
  std::ostringstream out, err;
  const int code = cli::Run(args, out, err);
  std::filesystem::current_path(cwd);
  ASSERT_EQ(code, 0) << err.str();

  const std::string golden =
      src + "/tests/golden/" + c.policy + "." + Extension(c.format);
  if (std::getenv("STOCKADE_UPDATE_GOLDEN")) {
    std::ofstream(golden, std::ios::binary) << out.str();
    return;
  }
  std::ifstream in(golden, std::ios::binary);
  ASSERT_TRUE(in) << golden << " missing: run hack/update-golden";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(out.str(), want.str())
      << golden << " differs: review the change, then run hack/update-golden";
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (const char* policy : {"research-agent", "strict-agent"}) {
    for (const char* format :
         {"json", "apparmor", "seccomp", "landlock", "oci", "nft", "explain"}) {
      out.push_back({policy, format});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Examples, GoldenTest, testing::ValuesIn(Cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           std::string name =
                               info.param.policy + "_" + info.param.format;
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch)))
                               ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace stockade
