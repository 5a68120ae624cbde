// stockade-node-install, run out of the node image, against a real
// containerd started by the fixture: the runtime handler it adds is one
// containerd reads (and keeps every other setting with), a container run
// through the installed shim is confined, and uninstall leaves containerd's
// configuration exactly as it was.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/compile.h"
#include "store/store.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/rootfs.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPolicy[] = R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: installed, namespace: NS}
spec:
  exec:
    allow: [/bin/busybox, /bin/probe]
)";

// Debian 12's /etc/containerd/config.toml (containerd 1.6.20), as shipped.
constexpr char kDebianConfig[] = R"(version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
)";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class NodeInstallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(geteuid(), 0) << "the installer tests need root";
    char tmpl[] = "/tmp/stockade-install-XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    auto rootfs =
        UnpackOciArchive(absl::StrCat(STOCKADE_IMAGES_DIR, "/stockade-node-",
                                      STOCKADE_VERSION, ".tar"),
                         *dir_ + "/image", STOCKADE_VERSION);
    ASSERT_TRUE(rootfs.ok()) << rootfs.status();
    image_ = new std::string(*rootfs);
  }
  static void TearDownTestSuite() {
    if (dir_) fs::remove_all(*dir_);
  }

  // A host root of its own for each test.
  void SetUp() override {
    host_ = absl::StrCat(
        *dir_, "/host-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(host_ + "/usr/local/bin");
  }

  // The image's installer with every path under host_ (as if host_ were /;
  // --host-root is / so the paths written into the configuration files are
  // the ones this machine resolves).
  CommandResult Installer(const std::string& command,
                          const std::string& containerd_config,
                          std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        *image_ + "/usr/bin/stockade-node-install",
        command,
        "--payload=" + *image_ + "/opt/stockade/payload",
        "--prefix=" + host_ + "/opt/stockade",
        "--link-dir=" + host_ + "/usr/local/bin",
        "--containerd-config=" + containerd_config,
        "--shim-config=" + host_ + "/etc/stockade/shim.yaml",
        "--store=" + host_ + "/var/lib/stockade"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, {.timeout = absl::Seconds(30)});
  }

  // What containerd makes of a configuration file (imports merged).
  static CommandResult Dump(const std::string& config) {
    return RunCommand({"containerd", "--config", config, "config", "dump"},
                      {.timeout = absl::Seconds(30)});
  }

  static inline std::string* dir_ = nullptr;
  static inline std::string* image_ = nullptr;
  std::string host_;
};

TEST_F(NodeInstallTest,
       InstalledRuntimeConfinesAContainerAndUninstallRestores) {
  ContainerdOptions options;
  options.bin_dir = host_ + "/usr/local/bin";  // first on containerd's PATH
  options.enable_cri = true;                   // its config has a CRI section
  auto fixture = ContainerdFixture::Start(options);
  ASSERT_TRUE(fixture.ok()) << fixture.status();
  ContainerdFixture& containerd = **fixture;
  const std::string config = containerd.config_path();
  const std::string before = ReadFile(config);

  // "stockade" is registered by the fixture already: install another handler.
  CommandResult install =
      Installer("install", config, {"--runtime-handler=agents"});
  ASSERT_TRUE(install.ok()) << install.ToString();
  EXPECT_THAT(install.out, HasSubstr("install done"));
  for (const char* bin :
       {"containerd-shim-stockade-v1", "stockade-init", "stockade-nft"}) {
    EXPECT_TRUE(fs::exists(absl::StrCat(host_, "/opt/stockade/bin/", bin)))
        << bin;
  }
  EXPECT_TRUE(
      fs::is_symlink(host_ + "/usr/local/bin/containerd-shim-stockade-v1"));

  // containerd reads the entry, and keeps the fixture's own settings.
  CommandResult dump = Dump(config);
  ASSERT_TRUE(dump.ok()) << dump.ToString();
  EXPECT_THAT(dump.out, HasSubstr("containerd.runtimes.agents]"));
  EXPECT_THAT(dump.out,
              HasSubstr(absl::StrCat("runtime_path = \"", host_,
                                     "/opt/stockade/bin/"
                                     "containerd-shim-stockade-v1\"")));
  EXPECT_THAT(dump.out, HasSubstr("pod_annotations = [\"stockade.dev/*\"]"));
  EXPECT_THAT(dump.out, HasSubstr(absl::StrCat("ConfigPath = \"", host_,
                                               "/etc/stockade/shim.yaml\"")));
  EXPECT_THAT(dump.out, HasSubstr("containerd.runtimes.stockade]"));
  EXPECT_THAT(dump.out, HasSubstr(containerd.root()));

  // Installing again changes nothing.
  const std::string installed = ReadFile(config);
  CommandResult again =
      Installer("install", config, {"--runtime-handler=agents"});
  ASSERT_TRUE(again.ok()) << again.ToString();
  EXPECT_THAT(again.out, Not(HasSubstr("wrote")));
  EXPECT_EQ(ReadFile(config), installed);

  // containerd restarts on the edited configuration; a container run through
  // the installed shim (found on PATH via the link, stockade-init beside it,
  // the store named by the shim configuration the installer wrote) is
  // confined by its policy.
  ASSERT_TRUE(containerd.Restart().ok()) << containerd.LogTail();
  {
    auto store = store::Store::Open(host_ + "/var/lib/stockade");
    ASSERT_TRUE(store.ok()) << store.status();
    std::string text = kPolicy;
    text.replace(text.find("NS"), 2, containerd.ns());
    auto decoded = compiler::DecodeManifests(text, "policy.yaml");
    ASSERT_TRUE(decoded.problems.empty());
    auto compiled = compiler::CompileAgentPolicy(
        std::get<v1::AgentPolicy>(decoded.documents.at(0).object), {}, {});
    ASSERT_TRUE(compiled.compiled);
    ASSERT_TRUE(store->Install(*compiled.compiled).ok());
  }
  auto rootfs = containerd.NewRootfs("installed");
  ASSERT_TRUE(rootfs.ok()) << rootfs.status();
  fs::copy_file(absl::StrCat(STOCKADE_BIN_DIR, "/stockade-probe"),
                *rootfs + "/bin/probe");
  RunSpec spec;
  spec.id = "installed";
  spec.runtime = kStockadeRuntime;
  spec.rootfs = *rootfs;
  spec.annotations = {{"stockade.dev/policy", "installed"}};
  spec.extra_args = {"--runtime-config-path",
                     host_ + "/etc/stockade/shim.yaml"};
  spec.cmd = {"/bin/probe", "write:/etc/passwd", "unshare",
              "exec:/bin/busybox"};
  CommandResult run = containerd.Run(spec, absl::Seconds(60));
  ASSERT_TRUE(run.ok()) << run.ToString() << containerd.LogTail();
  EXPECT_THAT(run.out, HasSubstr("write:/etc/passwd: EROFS"));
  EXPECT_THAT(run.out, HasSubstr("unshare: EPERM"));
  EXPECT_THAT(run.out, HasSubstr("exec:/bin/busybox: OK"));

  // Without a policy the installed runtime refuses to start the container.
  spec.id = "no-policy";
  spec.annotations.clear();
  spec.cmd = {"/bin/busybox", "true"};
  CommandResult refused = containerd.Run(spec, absl::Seconds(60));
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.out + refused.err, HasSubstr("names no policy"));

  // Uninstall: the configuration byte for byte, the files gone, the store
  // kept.
  CommandResult uninstall =
      Installer("uninstall", config, {"--runtime-handler=agents"});
  ASSERT_TRUE(uninstall.ok()) << uninstall.ToString();
  EXPECT_EQ(ReadFile(config), before);
  EXPECT_FALSE(fs::exists(host_ + "/opt/stockade"));
  EXPECT_FALSE(
      fs::exists(host_ + "/usr/local/bin/containerd-shim-stockade-v1"));
  EXPECT_FALSE(fs::exists(host_ + "/etc/stockade"));
  EXPECT_TRUE(fs::exists(host_ + "/var/lib/stockade"));
  ASSERT_TRUE(containerd.Restart().ok()) << containerd.LogTail();
  EXPECT_THAT(Dump(config).out, Not(HasSubstr("runtimes.agents]")));
}

TEST_F(NodeInstallTest, DebiansDefaultConfigKeepsItsCriSettings) {
  // A drop-in would replace the CRI section on containerd 1.6 and lose the
  // CNI paths and the runc runtime; the marked block keeps them.
  const std::string config = host_ + "/etc/containerd/config.toml";
  fs::create_directories(host_ + "/etc/containerd/conf.d");
  std::ofstream(config) << kDebianConfig;
  CommandResult install = Installer("install", config);
  ASSERT_TRUE(install.ok()) << install.ToString();
  CommandResult dump = Dump(config);
  ASSERT_TRUE(dump.ok()) << dump.ToString();
  EXPECT_THAT(dump.out, HasSubstr("bin_dir = \"/usr/lib/cni\""));
  EXPECT_THAT(dump.out, HasSubstr("containerd.runtimes.runc]"));
  EXPECT_THAT(dump.out, HasSubstr("containerd.runtimes.stockade]"));
  EXPECT_FALSE(fs::exists(host_ + "/etc/containerd/conf.d/stockade.toml"));
  ASSERT_TRUE(Installer("uninstall", config).ok());
  EXPECT_EQ(ReadFile(config), kDebianConfig);
}

TEST_F(NodeInstallTest, NoConfigIsCreatedAndDeletedAgain) {
  const std::string config = host_ + "/etc/containerd/config.toml";
  ASSERT_TRUE(Installer("install", config).ok());
  CommandResult dump = Dump(config);
  ASSERT_TRUE(dump.ok()) << dump.ToString();
  EXPECT_THAT(dump.out, HasSubstr("containerd.runtimes.stockade]"));
  ASSERT_TRUE(Installer("uninstall", config, {"--purge-store"}).ok());
  EXPECT_FALSE(fs::exists(config));
  EXPECT_FALSE(fs::exists(host_ + "/var/lib/stockade"));
}

TEST_F(NodeInstallTest, ContainerdTwoGetsADropInWhenItImportsOne) {
  // Version 3 merges imported sections key by key (containerd 2.x); the main
  // file is left untouched. containerd 1.6 cannot read version 3, so this
  // checks the files only.
  const std::string config = host_ + "/etc/containerd/config.toml";
  fs::create_directories(host_ + "/etc/containerd");
  const std::string main_file = "version = 3\nimports = [\"conf.d/*.toml\"]\n";
  std::ofstream(config) << main_file;
  ASSERT_TRUE(Installer("install", config).ok());
  EXPECT_EQ(ReadFile(config), main_file);
  const std::string dropin =
      ReadFile(host_ + "/etc/containerd/conf.d/stockade.toml");
  EXPECT_THAT(dropin,
              HasSubstr("[plugins.\"io.containerd.cri.v1.runtime\".containerd."
                        "runtimes.stockade]"));
  ASSERT_TRUE(Installer("uninstall", config).ok());
  EXPECT_FALSE(fs::exists(host_ + "/etc/containerd/conf.d/stockade.toml"));
  EXPECT_EQ(ReadFile(config), main_file);
}

TEST_F(NodeInstallTest, BadInputIsRefusedBeforeAnythingChanges) {
  const std::string config = host_ + "/etc/containerd/config.toml";
  fs::create_directories(host_ + "/etc/containerd");
  const std::string theirs = std::string(kDebianConfig) +
                             "[plugins.\"io.containerd.grpc.v1.cri\"."
                             "containerd.runtimes.stockade]\n"
                             "  runtime_type = \"io.containerd.kata.v2\"\n";
  std::ofstream(config) << theirs;
  CommandResult r = Installer("install", config);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("already defines a runtime \"stockade\""));
  EXPECT_EQ(ReadFile(config), theirs);

  r = Installer("install", config, {"--runtime-handler=Bad_Name"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--runtime-handler"));
  r = Installer("install", "relative/config.toml");
  EXPECT_THAT(r.err, HasSubstr("--containerd-config"));
  r = Installer("bogus", config);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command \"bogus\""));
}

}  // namespace
}  // namespace stockade::testing
