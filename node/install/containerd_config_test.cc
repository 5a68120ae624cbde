#include "node/install/containerd_config.h"

#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::node::install {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

RuntimeEntry Entry() {
  RuntimeEntry e;
  e.shim_path = "/opt/stockade/bin/containerd-shim-stockade-v1";
  e.shim_config_path = "/etc/stockade/shim.yaml";
  return e;
}

// Debian 12's /etc/containerd/config.toml (containerd 1.6.20), abridged.
constexpr char kDebian[] =
    "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n"
    "    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
    "      bin_dir = \"/usr/lib/cni\"\n";

TEST(ConfigVersionTest, ReadsTheTopLevelKey) {
  EXPECT_EQ(*ConfigVersion(kDebian), 2);
  EXPECT_EQ(*ConfigVersion("version = 3 # containerd 2\n"), 3);
  EXPECT_EQ(*ConfigVersion("[plugins.cri]\n  version = 3\n"), 1);
  EXPECT_EQ(*ConfigVersion(""), 1);
  absl::StatusOr<int> bad = ConfigVersion("version = 9\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("1, 2 or 3"));
}

TEST(RuntimeTablesTest, NamesThePluginOfEachVersion) {
  EXPECT_THAT(RuntimeTables(1, Entry()),
              HasSubstr("[plugins.cri.containerd.runtimes.stockade]"));
  EXPECT_THAT(RuntimeTables(2, Entry()),
              HasSubstr("[plugins.\"io.containerd.grpc.v1.cri\".containerd."
                        "runtimes.stockade.options]\n    ConfigPath = "
                        "\"/etc/stockade/shim.yaml\"\n"));
  EXPECT_THAT(RuntimeTables(3, Entry()),
              HasSubstr("[plugins.\"io.containerd.cri.v1.runtime\""));
  std::string t = RuntimeTables(2, Entry());
  EXPECT_THAT(t, HasSubstr("pod_annotations = [\"stockade.dev/*\"]"));
  EXPECT_THAT(t, HasSubstr("runtime_path = \"/opt/stockade/bin/"
                           "containerd-shim-stockade-v1\""));
}

TEST(RuntimeBlockTest, AddThenRemoveGivesTheFileBackByteForByte) {
  for (std::string before :
       {std::string(kDebian), std::string("version = 2"), std::string(""),
        std::string("version = 2\n\n\n")}) {
    absl::StatusOr<std::string> added = AddRuntimeBlock(before, Entry());
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_TRUE(absl::StartsWith(*added, before));
    EXPECT_THAT(*added, HasSubstr(kBlockBegin));
    EXPECT_EQ(RemoveRuntimeBlock(*added), before);
    // A second install replaces the block: the same file.
    absl::StatusOr<std::string> again = AddRuntimeBlock(*added, Entry());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *added);
  }
}

TEST(RuntimeBlockTest, ANewShimPathReplacesTheOldBlock) {
  std::string first = *AddRuntimeBlock(kDebian, Entry());
  RuntimeEntry moved = Entry();
  moved.shim_path = "/usr/local/stockade/containerd-shim-stockade-v1";
  std::string second = *AddRuntimeBlock(first, moved);
  EXPECT_THAT(second, HasSubstr("/usr/local/stockade/"));
  EXPECT_THAT(second, ::testing::Not(HasSubstr("/opt/stockade/bin/")));
  EXPECT_EQ(RemoveRuntimeBlock(second), kDebian);
}

TEST(RuntimeBlockTest, RefusesARuntimeSomeoneElseDefined) {
  std::string theirs = std::string(kDebian) +
                       "[plugins.\"io.containerd.grpc.v1.cri\".containerd."
                       "runtimes.stockade]\n  runtime_type = \"x\"\n";
  absl::StatusOr<std::string> r = AddRuntimeBlock(theirs, Entry());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("--runtime-handler"));
}

TEST(RuntimeBlockTest, TheBlockFollowsTheFilesVersion) {
  std::string v1 = *AddRuntimeBlock("[plugins.cri]\n", Entry());
  EXPECT_THAT(v1, HasSubstr("[plugins.cri.containerd.runtimes.stockade]"));
  std::string v3 = *AddRuntimeBlock("version = 3\n", Entry());
  EXPECT_THAT(v3, HasSubstr("io.containerd.cri.v1.runtime"));
}

TEST(RuntimeBlockTest, KeepsTheDefaultRuncRuntimeAlive) {
  // A runtimes table in the file replaces containerd's default map.
  EXPECT_THAT(*AddRuntimeBlock(kDebian, Entry()),
              HasSubstr("containerd.runtimes.runc]\n  runtime_type = "
                        "\"io.containerd.runc.v2\""));
  std::string with_runc =
      std::string(kDebian) +
      "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n";
  EXPECT_THAT(*AddRuntimeBlock(with_runc, Entry()),
              ::testing::Not(HasSubstr("default runc runtime")));
  EXPECT_THAT(DropInFile("version = 3\n", Entry()),
              HasSubstr("io.containerd.cri.v1.runtime\".containerd.runtimes."
                        "runc]"));
}

TEST(NewConfigFileTest, IsVersionTwoWithTheMarker) {
  std::string f = NewConfigFile(Entry());
  EXPECT_TRUE(absl::StartsWith(f, kCreatedMarker));
  EXPECT_EQ(*ConfigVersion(f), 2);
  EXPECT_EQ(RemoveRuntimeBlock(f),
            std::string(kCreatedMarker) + "\nversion = 2\n");
}

TEST(ImportsTest, ReadsOneLineAndMultiLineArrays) {
  EXPECT_THAT(Imports("version = 3\nimports = ['/etc/containerd/conf.d/*.toml']"
                      "\n[plugins]\n",
                      "/etc/containerd"),
              ElementsAre("/etc/containerd/conf.d/*.toml"));
  EXPECT_THAT(
      Imports("imports = [\n  \"a.toml\", # mine\n  \"/x/*.toml\",\n]\n",
              "/etc/containerd"),
      ElementsAre("/etc/containerd/a.toml", "/x/*.toml"));
  EXPECT_THAT(Imports("[plugins]\nimports = [\"/no\"]\n", "/etc"),
              ::testing::IsEmpty());
}

TEST(ImportsTest, CoverMatchesGlobs) {
  std::vector<std::string> imports = {"/etc/containerd/conf.d/*.toml"};
  EXPECT_TRUE(ImportsCover(imports, "/etc/containerd/conf.d/stockade.toml"));
  EXPECT_FALSE(ImportsCover(imports, "/etc/containerd/stockade.toml"));
  EXPECT_FALSE(ImportsCover({}, "/etc/containerd/conf.d/stockade.toml"));
}

}  // namespace
}  // namespace stockade::node::install
