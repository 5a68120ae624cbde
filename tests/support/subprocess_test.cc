#include "tests/support/subprocess.h"

#include <signal.h>
#include <unistd.h>

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;

TEST(RunCommandTest, CapturesStdoutStderrAndExitCode) {
  CommandResult r =
      RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.ok());
}

TEST(RunCommandTest, FeedsStdin) {
  std::string big(300000, 'x');  // more than a pipe buffer
  CommandResult r = RunCommand({"cat"}, {.stdin_data = big});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(r.out.size(), big.size());
}

TEST(RunCommandTest, StdinIgnoredByCommandIsNotFatal) {
  CommandResult r =
      RunCommand({"/bin/true"}, {.stdin_data = std::string(1 << 20, 'y')});
  EXPECT_TRUE(r.ok()) << r.ToString();
}

TEST(RunCommandTest, KillsOnTimeout) {
  absl::Time begin = absl::Now();
  CommandResult r =
      RunCommand({"sleep", "30"}, {.timeout = absl::Milliseconds(200)});
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_LT(absl::Now() - begin, absl::Seconds(5));
}

TEST(RunCommandTest, ReportsSignalAndMissingProgram) {
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", "kill -TERM $$"}).exit_code,
            128 + SIGTERM);
  CommandResult missing = RunCommand({"/nonexistent/prog"});
  EXPECT_EQ(missing.exit_code, -1);
  EXPECT_THAT(missing.err, HasSubstr("not found"));
}

TEST(RunCommandTest, ReplacesEnvironment) {
  CommandResult r =
      RunCommand({"/usr/bin/env"}, {.env = std::vector<std::string>{"ONLY=1"}});
  ASSERT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(r.out, "ONLY=1\n");
}

TEST(RunCommandTest, RunsOnAPty) {
  CommandResult r = RunCommand(
      {"/bin/sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty; exit 6"},
      {.timeout = absl::Seconds(10), .pty = true});
  EXPECT_EQ(r.exit_code, 6) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("on-a-tty"));
  // Typed input reaches the command (one line; no reliance on ^D, whose
  // hangup timing raced under ASan).
  CommandResult read = RunCommand(
      {"/bin/sh", "-c", "read line; echo got-$line"},
      {.timeout = absl::Seconds(10), .stdin_data = "typed\n", .pty = true});
  EXPECT_TRUE(read.ok()) << read.ToString();
  EXPECT_THAT(read.out, HasSubstr("got-typed"));
}

TEST(SpawnDaemonTest, LogsAndIsReaped) {
  char tmpl[] = "/tmp/stockade-spawn-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string log = std::string(tmpl) + "/log";
  absl::StatusOr<pid_t> pid = SpawnDaemon(
      {"/bin/sh", "-c", "echo started; exec sleep 30"}, {"PATH=/bin"}, log);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_FALSE(WaitForExit(*pid, absl::Milliseconds(100)).has_value());
  kill(*pid, SIGTERM);
  std::optional<int> code = WaitForExit(*pid, absl::Seconds(5));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 128 + SIGTERM);
  CommandResult cat = RunCommand({"cat", log});
  EXPECT_EQ(cat.out, "started\n");
  unlink(log.c_str());
  rmdir(tmpl);
}

}  // namespace
}  // namespace stockade::testing
