#include "shim/runc/runc.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/runc/reaper.h"
#include "shim/runc/testing/test_bundle.h"

namespace stockade::shim {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

class RuncTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(Reaper::Get().Start().ok());
    ASSERT_EQ(geteuid(), 0u) << "runc tests need root";
    ASSERT_TRUE(FindOnPath("runc").ok()) << "runc is not installed";
    dir_ = new testing::TempDir();
    ASSERT_FALSE(dir_->path().empty());
    absl::Status rootfs =
        testing::MakeBusyboxRootfs(absl::StrCat(dir_->path(), "/rootfs"));
    ASSERT_TRUE(rootfs.ok()) << rootfs;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void TearDown() override {
    for (const std::string& id : ids_) {
      runc_->Delete(id, /*force=*/true).IgnoreError();
    }
  }

  // A bundle for `id` and a driver whose log is in it.
  std::string NewBundle(const std::string& id, std::vector<std::string> args) {
    ids_.push_back(id);
    const std::string bundle = absl::StrCat(dir_->path(), "/", id);
    testing::BundleOptions options;
    options.args = std::move(args);
    options.root_path = absl::StrCat(dir_->path(), "/rootfs");
    absl::Status status = testing::WriteBundle(bundle, options);
    EXPECT_TRUE(status.ok()) << status;
    runc_ = std::make_unique<Runc>(
        RuncConfig{"runc", absl::StrCat(dir_->path(), "/runc-root"),
                   absl::StrCat(bundle, "/log.json"), false});
    return bundle;
  }

  static testing::TempDir* dir_;
  std::vector<std::string> ids_;
  std::unique_ptr<Runc> runc_;
};

testing::TempDir* RuncTest::dir_ = nullptr;

TEST_F(RuncTest, LastRuncErrorReadsOnlyWhatFollowsTheOffset) {
  const std::string log = absl::StrCat(dir_->path(), "/sample-log.json");
  std::string first =
      "{\"level\":\"error\",\"msg\":\"old failure\",\"time\":\"t\"}\n";
  std::ofstream(log) << first
                     << "{\"level\":\"warning\",\"msg\":\"a warning\"}\n"
                     << "not json at all\n"
                     << "{\"level\":\"error\",\"msg\":\"first new\"}\n"
                     << "{\"level\":\"error\",\"msg\":\"the last error\"}\n"
                     << "{\"level\":\"info\",\"msg\":\"after\"}\n";
  EXPECT_EQ(LastRuncError(log, static_cast<long>(first.size())),
            "the last error");
  EXPECT_EQ(LastRuncError(log, 1 << 20), "the last error");  // truncated log
  EXPECT_EQ(LastRuncError(absl::StrCat(log, ".missing"), 0), "");
}

TEST_F(RuncTest, LifecycleOfAContainer) {
  const std::string id = testing::UniqueId("runc-life");
  const std::string bundle = NewBundle(id, {"sleep", "1000"});
  RuncCreateOptions create;
  create.bundle = bundle;
  create.pid_file = absl::StrCat(bundle, "/init.pid");
  const uint64_t since = Reaper::Get().Sequence();
  ASSERT_TRUE(runc_->Create(id, create).ok());
  absl::StatusOr<int> pid = Runc::ReadPidFile(create.pid_file);
  ASSERT_TRUE(pid.ok()) << pid.status();

  absl::StatusOr<RuncState> state = runc_->State(id);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->status, "created");
  EXPECT_EQ(state->pid, *pid);
  EXPECT_EQ(state->bundle, bundle);

  ASSERT_TRUE(runc_->Start(id).ok());
  EXPECT_EQ(runc_->State(id)->status, "running");
  absl::StatusOr<std::vector<int>> pids = runc_->Ps(id);
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, Contains(*pid));

  ASSERT_TRUE(runc_->Pause(id).ok());
  EXPECT_EQ(runc_->State(id)->status, "paused");
  ASSERT_TRUE(runc_->Resume(id).ok());
  EXPECT_EQ(runc_->State(id)->status, "running");

  absl::Status update =
      runc_->Update(id, R"({"pids":{"limit":50},"memory":{"limit":67108864}})");
  EXPECT_TRUE(update.ok()) << update;
  absl::StatusOr<std::string> stats = runc_->Stats(id);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_THAT(*stats, HasSubstr("\"memory\""));
  EXPECT_THAT(*stats, HasSubstr("\"pids\""));

  ASSERT_TRUE(runc_->Kill(id, SIGKILL, false).ok());
  // The init is our child (subreaper): its exit comes through the reaper.
  EXPECT_EQ(Reaper::Get().Wait(*pid, since), 128 + SIGKILL);
  EXPECT_EQ(runc_->State(id)->status, "stopped");
  EXPECT_EQ(runc_->Kill(id, SIGKILL, false).code(),
            absl::StatusCode::kNotFound);

  ASSERT_TRUE(runc_->Delete(id, false).ok());
  EXPECT_EQ(runc_->State(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(runc_->Delete(id, false).code(), absl::StatusCode::kNotFound);
}

TEST_F(RuncTest, CreateFailureCarriesRuncsLoggedError) {
  const std::string id = testing::UniqueId("runc-bad");
  const std::string bundle = NewBundle(id, {"/no/such/program"});
  RuncCreateOptions create;
  create.bundle = bundle;
  create.pid_file = absl::StrCat(bundle, "/init.pid");
  absl::Status status = runc_->Create(id, create);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("runc create failed: "));
  EXPECT_THAT(status.message(), HasSubstr("/no/such/program"));
  // The text is runc's own, from log.json.
  EXPECT_THAT(LastRuncError(absl::StrCat(bundle, "/log.json"), 0),
              HasSubstr("/no/such/program"));
}

TEST_F(RuncTest, ExecDetachedWritesThePid) {
  const std::string id = testing::UniqueId("runc-exec");
  const std::string bundle = NewBundle(id, {"sleep", "1000"});
  RuncCreateOptions create;
  create.bundle = bundle;
  create.pid_file = absl::StrCat(bundle, "/init.pid");
  ASSERT_TRUE(runc_->Create(id, create).ok());
  ASSERT_TRUE(runc_->Start(id).ok());
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  RuncExecOptions exec;
  exec.pid_file = absl::StrCat(bundle, "/e1.pid");
  exec.io.stdout_fd = out[1];
  const uint64_t since = Reaper::Get().Sequence();
  absl::Status status = runc_->Exec(
      id, testing::ProcessJson({"sh", "-c", "echo from-exec; exit 6"}), bundle,
      exec);
  close(out[1]);
  ASSERT_TRUE(status.ok()) << status;
  absl::StatusOr<int> pid = Runc::ReadPidFile(exec.pid_file);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(Reaper::Get().Wait(*pid, since), 6);
  char buf[64] = {};
  EXPECT_GT(read(out[0], buf, sizeof(buf) - 1), 0);
  close(out[0]);
  EXPECT_STREQ(buf, "from-exec\n");
  // The temporary process file is gone.
  EXPECT_EQ(testing::RunAndWait(
                {"sh", "-c",
                 absl::StrCat("ls -A ", bundle, " | grep -q runc-process")})
                .value_or(-1),
            1);
}

}  // namespace
}  // namespace stockade::shim
