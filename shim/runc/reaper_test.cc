#include "shim/runc/reaper.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::shim {
namespace {

using ::testing::HasSubstr;

class ReaperTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(Reaper::Get().Start().ok()); }

  // Spawns argv and returns {pid, sequence taken before}.
  static std::pair<pid_t, uint64_t> Run(std::vector<std::string> argv,
                                        SpawnOptions options = {}) {
    options.argv = std::move(argv);
    const uint64_t since = Reaper::Get().Sequence();
    absl::StatusOr<pid_t> pid = Spawn(options);
    EXPECT_TRUE(pid.ok()) << pid.status();
    return {pid.value_or(-1), since};
  }

  static std::string ReadAll(int fd) {
    std::string out;
    char buf[1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
};

TEST_F(ReaperTest, ExitStatusOfAChild) {
  auto [pid, since] = Run({"sh", "-c", "exit 7"});
  EXPECT_EQ(Reaper::Get().Wait(pid, since), 7);
}

TEST_F(ReaperTest, KilledChildGets128PlusSignal) {
  auto [pid, since] = Run({"sh", "-c", "kill -9 $$"});
  EXPECT_EQ(Reaper::Get().Wait(pid, since), 128 + 9);
}

TEST_F(ReaperTest, ExitBeforeWatchIsBufferedAndDelivered) {
  auto [pid, since] = Run({"true"});
  // Let the reaper reap it before anybody watches.
  absl::SleepFor(absl::Milliseconds(300));
  int delivered = -1;
  Reaper::Get().Watch(pid, since,
                      [&](int, int status, absl::Time) { delivered = status; });
  EXPECT_EQ(delivered, 0);  // At once, on this thread.
}

TEST_F(ReaperTest, ExitOfAnEarlierProcessWithTheSamePidIsIgnored) {
  auto [pid, since] = Run({"sh", "-c", "exit 4"});
  absl::SleepFor(absl::Milliseconds(300));
  // A watcher whose process started after that exit must not get it. (The
  // watcher stays registered: it must not refer to this stack frame.)
  auto delivered = std::make_shared<std::atomic<bool>>(false);
  Reaper::Get().Watch(pid, Reaper::Get().Sequence(),
                      [delivered](int, int, absl::Time) { *delivered = true; });
  EXPECT_FALSE(*delivered);
  (void)since;
}

TEST_F(ReaperTest, OrphansAreReapedAsSubreaper) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  SpawnOptions options;
  options.fds = {{1, p[1]}};
  auto [pid, since] =
      Run({"sh", "-c", "sleep 0.2 >/dev/null & echo $!"}, options);
  close(p[1]);
  std::string out = ReadAll(p[0]);
  close(p[0]);
  EXPECT_EQ(Reaper::Get().Wait(pid, since), 0);
  int orphan = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &orphan))
      << out;
  // The orphan was reparented to us (subreaper) and is reaped: no zombie.
  const std::string proc = absl::StrCat("/proc/", orphan);
  struct stat st;
  for (int i = 0; i < 100 && stat(proc.c_str(), &st) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(stat(proc.c_str(), &st), 0) << "orphan " << orphan << " not reaped";
}

TEST_F(ReaperTest, SpawnPlacesDescriptors) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  SpawnOptions options;
  // Child fd 3 gets the pipe; 1 and 2 too. Nothing else is inherited.
  options.fds = {{3, p[1]}, {1, p[1]}, {2, p[1]}};
  auto [pid, since] =
      Run({"sh", "-c",
           "echo three >&3; echo one; echo two >&2; ls /proc/self/fd | wc -l"},
          options);
  close(p[1]);
  std::string out = ReadAll(p[0]);
  close(p[0]);
  EXPECT_EQ(Reaper::Get().Wait(pid, since), 0);
  // ls sees 0, 1, 2, 3 and its own directory descriptor.
  EXPECT_EQ(out, "three\none\ntwo\n5\n");
}

TEST_F(ReaperTest, SpawnReplacesTheEnvironment) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  SpawnOptions options;
  options.fds = {{1, p[1]}};
  options.env = std::vector<std::string>{"ONLY=this"};
  auto [pid, since] =
      Run({"/bin/sh", "-c", "echo \"$ONLY ${HOME-nohome}\""}, options);
  close(p[1]);
  std::string out = ReadAll(p[0]);
  close(p[0]);
  EXPECT_EQ(Reaper::Get().Wait(pid, since), 0);
  EXPECT_EQ(out, "this nohome\n");
}

TEST_F(ReaperTest, ExecFailureIsAnError) {
  SpawnOptions options;
  options.argv = {"/nonexistent/program"};
  absl::StatusOr<pid_t> pid = Spawn(options);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("cannot execute"));
  EXPECT_FALSE(FindOnPath("no-such-program-anywhere").ok());
}

TEST_F(ReaperTest, ManyConcurrentChildrenEachGetTheirOwnExit) {
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([i, &wrong] {
      auto [pid, since] = Run({"sh", "-c", absl::StrCat("exit ", i)});
      if (Reaper::Get().Wait(pid, since) != i) ++wrong;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong, 0);
}

TEST(ExitStatusTest, FromWaitStatus) {
  EXPECT_EQ(ExitStatusFromWaitStatus(3 << 8), 3);
  EXPECT_EQ(ExitStatusFromWaitStatus(15), 128 + 15);
}

}  // namespace
}  // namespace stockade::shim
