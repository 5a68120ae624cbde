#include "shim/process/container.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/runc/reaper.h"
#include "shim/runc/runc.h"
#include "shim/runc/testing/test_bundle.h"

namespace stockade::shim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kNamespace[] = "stockade-test";
constexpr absl::Duration kTimeout = absl::Seconds(20);

// Records lifecycle events as "start init", "exit e1 5", "oom".
class Recorder : public LifecycleObserver {
 public:
  void OnStart(const std::string& exec_id, int pid) override {
    EXPECT_GT(pid, 0);
    Add(absl::StrCat("start ", Name(exec_id)));
  }
  void OnExit(const std::string& exec_id, const ExitInfo& exit) override {
    EXPECT_NE(exit.exited_at, absl::Time());
    Add(absl::StrCat("exit ", Name(exec_id), " ", exit.exit_status));
  }
  void OnOom() override { Add("oom"); }

  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

  // Waits until `count` events arrived.
  std::vector<std::string> WaitForEvents(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(kTimeout),
                 [&] { return events_.size() >= count; });
    return events_;
  }

 private:
  static std::string Name(const std::string& exec_id) {
    return exec_id.empty() ? "init" : exec_id;
  }
  void Add(std::string event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

class ContainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(StartReaper().ok());
    ASSERT_EQ(geteuid(), 0u) << "container tests need root";
    ASSERT_TRUE(FindOnPath("runc").ok()) << "runc is not installed";
    dir_ = new testing::TempDir();
    ASSERT_FALSE(dir_->path().empty());
    absl::Status rootfs = testing::MakeBusyboxRootfs(RootfsDir());
    ASSERT_TRUE(rootfs.ok()) << rootfs;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string RootfsDir() {
    return absl::StrCat(dir_->path(), "/rootfs");
  }

  void SetUp() override {
    runtime_.runc_root = absl::StrCat(dir_->path(), "/runc-root");
  }

  void TearDown() override {
    // Whatever a failed test left behind.
    Runc runc(RuncConfig{"runc",
                         absl::StrCat(runtime_.runc_root, "/", kNamespace),
                         "/dev/null", false});
    for (const std::string& id : ids_) {
      runc.Delete(id, /*force=*/true).IgnoreError();
    }
    containers_.clear();
    for (int fd : fds_) close(fd);
  }

  // A bundle whose root is the shared busybox rootfs.
  std::string NewBundle(const std::string& id, testing::BundleOptions options) {
    ids_.push_back(id);
    const std::string bundle = absl::StrCat(dir_->path(), "/", id);
    if (options.root_path == "rootfs") options.root_path = RootfsDir();
    absl::Status status = testing::WriteBundle(bundle, options);
    EXPECT_TRUE(status.ok()) << status;
    return bundle;
  }

  // A FIFO in the test dir, opened for reading as containerd's client does.
  std::string NewFifo(const std::string& name, int* reader = nullptr) {
    const std::string path = absl::StrCat(dir_->path(), "/", name);
    EXPECT_EQ(mkfifo(path.c_str(), 0600), 0) << path;
    if (reader != nullptr) {
      *reader = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      EXPECT_GE(*reader, 0);
      fds_.push_back(*reader);
    }
    return path;
  }

  Container* Create(const std::string& id, const std::string& bundle,
                    const Stdio& stdio, std::vector<RootfsMount> rootfs = {}) {
    CreateRequest request;
    request.id = id;
    request.bundle = bundle;
    request.namespace_ = kNamespace;
    request.stdio = stdio;
    request.rootfs = std::move(rootfs);
    absl::StatusOr<std::unique_ptr<Container>> container =
        Container::Create(runtime_, request, &recorder_);
    EXPECT_TRUE(container.ok()) << container.status();
    if (!container.ok()) return nullptr;
    containers_.push_back(std::move(*container));
    return containers_.back().get();
  }

  static testing::TempDir* dir_;
  RuntimeConfig runtime_;
  Recorder recorder_;
  std::vector<std::string> ids_;
  std::vector<std::unique_ptr<Container>> containers_;
  std::vector<int> fds_;
};

testing::TempDir* ContainerTest::dir_ = nullptr;

TEST_F(ContainerTest, EchoThroughFifoThenExitAfterStart) {
  const std::string id = testing::UniqueId("echo");
  testing::BundleOptions options;
  options.args = {"echo", "hello"};
  const std::string bundle = NewBundle(id, options);
  int out_reader, err_reader;
  Stdio stdio;
  stdio.stdout_path = NewFifo(id + ".out", &out_reader);
  stdio.stderr_path = NewFifo(id + ".err", &err_reader);
  Container* c = Create(id, bundle, stdio);
  ASSERT_NE(c, nullptr);
  EXPECT_GT(c->InitPid(), 0);
  EXPECT_EQ(c->State("")->status, ProcessStatus::kCreated);

  absl::StatusOr<int> pid = c->Start("");
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, c->InitPid());
  absl::StatusOr<ExitInfo> exit = c->Wait("");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_status, 0u);
  EXPECT_EQ(exit->pid, *pid);
  EXPECT_EQ(testing::ReadFifoUntilEof(out_reader, kTimeout), "hello\n");
  EXPECT_EQ(testing::ReadFifoUntilEof(err_reader, kTimeout), "");
  EXPECT_THAT(recorder_.events(), ElementsAre("start init", "exit init 0"));

  absl::StatusOr<ProcessState> state = c->State("");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->status, ProcessStatus::kStopped);
  EXPECT_EQ(state->stdio.stdout_path, stdio.stdout_path);

  absl::StatusOr<ExitInfo> deleted = c->Delete("");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status, 0u);
  EXPECT_EQ(c->State("").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->Delete("").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ContainerTest, ExitCodePropagates) {
  const std::string id = testing::UniqueId("exit3");
  testing::BundleOptions options;
  options.args = {"sh", "-c", "exit 3"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Wait("")->exit_status, 3u);
  EXPECT_THAT(recorder_.events(), ElementsAre("start init", "exit init 3"));
  EXPECT_EQ(c->State("")->exit_status, 3u);
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, KillWithSigtermGives143) {
  const std::string id = testing::UniqueId("term");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  // Outside a pid namespace sleep is no init and dies of SIGTERM; this also
  // makes the shim kill the rest of the container when init exits.
  options.pid_namespace = false;
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->State("")->status, ProcessStatus::kRunning);
  absl::StatusOr<std::vector<int>> pids = c->Pids();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ::testing::Contains(c->InitPid()));
  ASSERT_TRUE(c->Kill("", SIGTERM, false).ok());
  EXPECT_EQ(c->Wait("")->exit_status, 128u + SIGTERM);
  EXPECT_THAT(recorder_.events(), ElementsAre("start init", "exit init 143"));
  // Killing what has exited: NotFound, as containerd expects.
  EXPECT_EQ(c->Kill("", SIGKILL, false).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, ExecOutputAndExitBeforeInitExit) {
  const std::string id = testing::UniqueId("exec");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());

  int reader;
  Stdio exec_stdio;
  exec_stdio.stdout_path = NewFifo(id + ".e1.out", &reader);
  ASSERT_TRUE(c->AddExec("e1",
                         testing::ProcessJson(
                             {"sh", "-c", "echo exec-out; echo $$; exit 5"}),
                         exec_stdio)
                  .ok());
  EXPECT_EQ(c->AddExec("e1", testing::ProcessJson({"true"}), Stdio{}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(c->State("e1")->status, ProcessStatus::kCreated);
  absl::StatusOr<int> pid = c->Start("e1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(c->Wait("e1")->exit_status, 5u);
  std::string out = testing::ReadFifoUntilEof(reader, kTimeout);
  EXPECT_THAT(out, StartsWith("exec-out\n"));
  EXPECT_EQ(c->State("e1")->status, ProcessStatus::kStopped);
  absl::StatusOr<ExitInfo> deleted = c->Delete("e1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status, 5u);
  EXPECT_EQ(deleted->pid, *pid);
  EXPECT_EQ(c->State("e1").status().code(), absl::StatusCode::kNotFound);

  // A second exec still runs when init dies: its exit is reported first.
  ASSERT_TRUE(
      c->AddExec("e2", testing::ProcessJson({"sleep", "1000"}), Stdio{}).ok());
  ASSERT_TRUE(c->Start("e2").ok());
  EXPECT_EQ(c->Delete("e2").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_EQ(c->Wait("")->exit_status, 128u + SIGKILL);
  EXPECT_EQ(c->Wait("e2")->exit_status, 128u + SIGKILL);
  EXPECT_THAT(recorder_.WaitForEvents(6),
              ElementsAre("start init", "start e1", "exit e1 5", "start e2",
                          "exit e2 137", "exit init 137"));
  // No exec once init has exited.
  EXPECT_EQ(c->AddExec("e3", testing::ProcessJson({"true"}), Stdio{}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(c->Delete("e2").ok());
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, ExecKilledWithKill2) {
  const std::string id = testing::UniqueId("execkill");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  ASSERT_TRUE(
      c->AddExec("k1", testing::ProcessJson({"sleep", "1000"}), Stdio{}).ok());
  EXPECT_EQ(c->Kill("k1", SIGKILL, false).code(),
            absl::StatusCode::kFailedPrecondition);  // not started
  ASSERT_TRUE(c->Start("k1").ok());
  EXPECT_EQ(c->Start("k1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c->Kill("k1", SIGKILL, false).ok());
  EXPECT_EQ(c->Wait("k1")->exit_status, 137u);
  EXPECT_EQ(c->Kill("k1", SIGKILL, false).code(), absl::StatusCode::kNotFound);
  // Added but never started: deletable, and Wait does not hang.
  ASSERT_TRUE(c->AddExec("k2", testing::ProcessJson({"true"}), Stdio{}).ok());
  EXPECT_TRUE(c->Delete("k2").ok());
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_EQ(c->Wait("")->exit_status, 137u);
  EXPECT_THAT(recorder_.events(), ElementsAre("start init", "start k1",
                                              "exit k1 137", "exit init 137"));
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, ImmediateExitStillReportsStartThenExit) {
  for (int i = 0; i < 5; ++i) {
    Recorder recorder;
    const std::string id = testing::UniqueId("quick");
    testing::BundleOptions options;
    options.args = {"true"};
    CreateRequest request;
    request.id = id;
    request.bundle = NewBundle(id, options);
    request.namespace_ = kNamespace;
    absl::StatusOr<std::unique_ptr<Container>> c =
        Container::Create(runtime_, request, &recorder);
    ASSERT_TRUE(c.ok()) << c.status();
    // Wait blocks before Start, as `ctr run` does.
    absl::StatusOr<ExitInfo> waited;
    std::thread waiter([&] { waited = (*c)->Wait(""); });
    ASSERT_TRUE((*c)->Start("").ok());
    waiter.join();
    ASSERT_TRUE(waited.ok());
    EXPECT_EQ(waited->exit_status, 0u);
    EXPECT_THAT(recorder.events(), ElementsAre("start init", "exit init 0"));
    EXPECT_TRUE((*c)->Delete("").ok());
  }
}

TEST_F(ContainerTest, ExitBeforeStartIsNotReportedAsAnExit) {
  const std::string id = testing::UniqueId("early");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  // The init dies while created (never started): Wait returns, no events.
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_EQ(c->Wait("")->exit_status, 137u);
  EXPECT_EQ(c->Start("").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(c->Delete("").ok());
  EXPECT_THAT(recorder_.events(), IsEmpty());
}

TEST_F(ContainerTest, DeleteOfACreatedContainer) {
  const std::string id = testing::UniqueId("created");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  absl::StatusOr<ExitInfo> deleted = c->Delete("");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status, 137u);
  EXPECT_EQ(c->Wait("").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(recorder_.events(), IsEmpty());
}

TEST_F(ContainerTest, StdinIsCopiedAndEofEndsIt) {
  const std::string id = testing::UniqueId("cat");
  testing::BundleOptions options;
  options.args = {"cat"};
  int reader;
  Stdio stdio;
  stdio.stdin_path = NewFifo(id + ".in");
  stdio.stdout_path = NewFifo(id + ".out", &reader);
  Container* c = Create(id, NewBundle(id, options), stdio);
  ASSERT_NE(c, nullptr);
  // The shim holds the read side now: a write open does not block.
  int writer = open(stdio.stdin_path.c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  ASSERT_TRUE(c->Start("").ok());
  ASSERT_EQ(write(writer, "ping\n", 5), 5);
  close(writer);  // EOF reaches cat, which exits.
  EXPECT_EQ(testing::ReadFifoUntilEof(reader, kTimeout), "ping\n");
  EXPECT_EQ(c->Wait("")->exit_status, 0u);
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, CloseStdinKeepsWhatWasSent) {
  const std::string id = testing::UniqueId("closeio");
  testing::BundleOptions options;
  options.args = {"cat"};
  int reader;
  Stdio stdio;
  stdio.stdin_path = NewFifo(id + ".in");
  stdio.stdout_path = NewFifo(id + ".out", &reader);
  Container* c = Create(id, NewBundle(id, options), stdio);
  ASSERT_NE(c, nullptr);
  int writer = open(stdio.stdin_path.c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  fds_.push_back(writer);  // Stays open: only CloseStdin ends stdin.
  ASSERT_TRUE(c->Start("").ok());
  ASSERT_EQ(write(writer, "one\ntwo\n", 8), 8);
  ASSERT_TRUE(c->CloseStdin("").ok());
  EXPECT_EQ(testing::ReadFifoUntilEof(reader, kTimeout), "one\ntwo\n");
  EXPECT_EQ(c->Wait("")->exit_status, 0u);
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, FileStdoutIsAppended) {
  const std::string id = testing::UniqueId("file");
  testing::BundleOptions options;
  options.args = {"sh", "-c", "echo to-file; echo to-err >&2"};
  const std::string log = absl::StrCat(dir_->path(), "/logs/", id, "/out.log");
  Stdio stdio;
  stdio.stdout_path = absl::StrCat("file://", log);
  stdio.stderr_path = absl::StrCat("file://", log);
  Container* c = Create(id, NewBundle(id, options), stdio);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Wait("")->exit_status, 0u);
  EXPECT_EQ(ReadFile(log), "to-file\nto-err\n");
  struct stat st;
  ASSERT_EQ(stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, BinaryLoggerGetsBothStreams) {
  const std::string id = testing::UniqueId("logger");
  const std::string logger = absl::StrCat(dir_->path(), "/logger.sh");
  const std::string out = absl::StrCat(dir_->path(), "/", id, ".logged");
  // fd 3: stdout, fd 4: stderr, closing fd 5 says ready.
  std::ofstream(logger) << "#!/bin/sh\n"
                           "exec 5>&-\n"
                           "echo \"$CONTAINER_ID $CONTAINER_NAMESPACE "
                           "${HOME-nohome} $1=$2\" > \"$2.env\"\n"
                           "cat <&3 > \"$2\"\n"
                           "cat <&4 >> \"$2\"\n";
  chmod(logger.c_str(), 0755);
  testing::BundleOptions options;
  options.args = {"sh", "-c", "echo out-line; echo err-line >&2"};
  Stdio stdio;
  stdio.stdout_path = absl::StrCat("binary://", logger, "?path=", out);
  stdio.stderr_path = stdio.stdout_path;
  Container* c = Create(id, NewBundle(id, options), stdio);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Wait("")->exit_status, 0u);
  std::string logged;
  for (int i = 0; i < 200 && logged != "out-line\nerr-line\n"; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    logged = ReadFile(out);
  }
  EXPECT_EQ(logged, "out-line\nerr-line\n");
  EXPECT_EQ(ReadFile(out + ".env"),
            absl::StrCat(id, " ", kNamespace, " nohome path=", out, "\n"));
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, TerminalThroughConsoleSocket) {
  const std::string id = testing::UniqueId("tty");
  testing::BundleOptions options;
  options.terminal = true;
  options.args = {"sh", "-c", "tty; stty size; echo tty-ok"};
  int reader;
  Stdio stdio;
  stdio.terminal = true;
  stdio.stdout_path = NewFifo(id + ".out", &reader);
  Container* c = Create(id, NewBundle(id, options), stdio);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->ResizePty("", 91, 37).ok());
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Wait("")->exit_status, 0u);
  std::string out = testing::ReadFifoUntilEof(reader, kTimeout);
  EXPECT_THAT(out, HasSubstr("/dev/pts/"));
  EXPECT_THAT(out, HasSubstr("37 91\r\n"));
  EXPECT_THAT(out, HasSubstr("tty-ok\r\n"));
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, TerminalExecWithStdin) {
  const std::string id = testing::UniqueId("ttyexec");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  int reader;
  Stdio stdio;
  stdio.terminal = true;
  stdio.stdin_path = NewFifo(id + ".t.in");
  stdio.stdout_path = NewFifo(id + ".t.out", &reader);
  ASSERT_TRUE(
      c->AddExec("t1",
                 testing::ProcessJson({"sh", "-c", "read x; echo got-$x"},
                                      /*terminal=*/true),
                 stdio)
          .ok());
  // An exec's stdio is opened at its Start (as runc-v2 does).
  ASSERT_TRUE(c->Start("t1").ok());
  int writer = open(stdio.stdin_path.c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  fds_.push_back(writer);
  ASSERT_EQ(write(writer, "abc\n", 4), 4);
  EXPECT_EQ(c->Wait("t1")->exit_status, 0u);
  EXPECT_THAT(testing::ReadFifoUntilEof(reader, kTimeout),
              HasSubstr("got-abc\r\n"));
  EXPECT_TRUE(c->Delete("t1").ok());
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_TRUE(c->Wait("").ok());
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, RootfsMountsAreUndoneAtDelete) {
  const std::string id = testing::UniqueId("mounts");
  testing::BundleOptions options;
  options.args = {"sh", "-c", "test -x /bin/busybox && echo mounted"};
  options.root_path = absl::StrCat(dir_->path(), "/", id, "/rootfs");
  const std::string bundle = NewBundle(id, options);
  const std::string rootfs = absl::StrCat(bundle, "/rootfs");
  RootfsMount mount;
  mount.type = "bind";
  mount.source = RootfsDir();
  mount.options = {"rbind", "ro"};
  int reader;
  Stdio stdio;
  stdio.stdout_path = NewFifo(id + ".out", &reader);
  Container* c = Create(id, bundle, stdio, {mount});
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(testing::IsMountPoint(rootfs));
  struct stat st;
  ASSERT_EQ(stat(rootfs.c_str(), &st), 0);
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Wait("")->exit_status, 0u);
  EXPECT_EQ(testing::ReadFifoUntilEof(reader, kTimeout), "mounted\n");
  ASSERT_TRUE(c->Delete("").ok());
  EXPECT_FALSE(testing::IsMountPoint(rootfs));
  // runc knows the container no more.
  Runc runc(RuncConfig{"runc",
                       absl::StrCat(runtime_.runc_root, "/", kNamespace),
                       absl::StrCat(bundle, "/log.json"), false});
  EXPECT_EQ(runc.State(id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ContainerTest, FailedCreateUnmountsAndSurfacesRuncsError) {
  const std::string id = testing::UniqueId("bad");
  testing::BundleOptions options;
  options.args = {"/no/such/entrypoint"};
  options.root_path = absl::StrCat(dir_->path(), "/", id, "/rootfs");
  const std::string bundle = NewBundle(id, options);
  RootfsMount mount;
  mount.type = "bind";
  mount.source = RootfsDir();
  mount.options = {"rbind", "ro"};
  CreateRequest request;
  request.id = id;
  request.bundle = bundle;
  request.namespace_ = kNamespace;
  request.rootfs = {mount};
  absl::StatusOr<std::unique_ptr<Container>> c =
      Container::Create(runtime_, request, &recorder_);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("OCI runtime create failed"));
  // runc's own words, read from log.json.
  EXPECT_THAT(c.status().message(), HasSubstr("/no/such/entrypoint"));
  EXPECT_FALSE(testing::IsMountPoint(absl::StrCat(bundle, "/rootfs")));
}

TEST_F(ContainerTest, UnknownProcessesAreNotFound) {
  const std::string id = testing::UniqueId("unknown");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Start("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->Kill("nope", SIGKILL, false).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(c->Wait("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->State("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->Delete("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->ResizePty("nope", 1, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->CloseStdin("nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->AddExec("../x", "{}", Stdio{}).code(),
            absl::StatusCode::kInvalidArgument);
  // A running container cannot be deleted.
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Delete("").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_TRUE(c->Wait("").ok());
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, PauseResumeUpdateStats) {
  const std::string id = testing::UniqueId("pause");
  testing::BundleOptions options;
  options.args = {"sleep", "1000"};
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  ASSERT_TRUE(c->Pause().ok());
  EXPECT_EQ(c->State("")->status, ProcessStatus::kPaused);
  ASSERT_TRUE(c->Resume().ok());
  EXPECT_EQ(c->State("")->status, ProcessStatus::kRunning);
  absl::Status update = c->Update(R"({"pids":{"limit":64}})");
  EXPECT_TRUE(update.ok()) << update;
  absl::StatusOr<std::string> stats = c->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_THAT(*stats, HasSubstr("\"pids\""));
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_TRUE(c->Wait("").ok());
  EXPECT_EQ(c->Pause().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, OomKillIsReportedBeforeTheExit) {
  const std::string id = testing::UniqueId("oom");
  testing::BundleOptions options;
  // dd allocates its 64 MiB block: far over the 16 MiB limit.
  options.args = {"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"};
  options.memory_limit = 16 << 20;
  Container* c = Create(id, NewBundle(id, options), Stdio{});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Start("").ok());
  EXPECT_EQ(c->Wait("")->exit_status, 137u);
  EXPECT_THAT(recorder_.events(),
              ElementsAre("start init", "oom", "exit init 137"));
  EXPECT_TRUE(c->Delete("").ok());
}

TEST_F(ContainerTest, ManyContainersInParallel) {
  constexpr int kCount = 6;
  std::vector<std::string> ids;
  std::vector<std::string> bundles;
  for (int i = 0; i < kCount; ++i) {
    ids.push_back(testing::UniqueId("par"));
    testing::BundleOptions options;
    options.args = {"sh", "-c", absl::StrCat("exit ", i)};
    bundles.push_back(NewBundle(ids.back(), options));
  }
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kCount);
  for (int i = 0; i < kCount; ++i) {
    threads.emplace_back([&, i] {
      Recorder recorder;
      CreateRequest request;
      request.id = ids[i];
      request.bundle = bundles[i];
      request.namespace_ = kNamespace;
      auto c = Container::Create(runtime_, request, &recorder);
      if (!c.ok()) {
        failures[i] = c.status().ToString();
        return;
      }
      if (!(*c)->Start("").ok()) failures[i] = "start";
      auto exit = (*c)->Wait("");
      if (!exit.ok() || exit->exit_status != static_cast<uint32_t>(i)) {
        failures[i] = "wrong exit";
      }
      if (!(*c)->Delete("").ok()) failures[i] = "delete";
      std::vector<std::string> want = {"start init",
                                       absl::StrCat("exit init ", i)};
      if (recorder.events() != want) {
        failures[i] = absl::StrJoin(recorder.events(), ",");
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(failures[i], "") << ids[i];
}

}  // namespace
}  // namespace stockade::shim
