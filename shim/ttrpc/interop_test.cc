// Interoperability with containerd's Go ttrpc: builds shim/ttrpc/interop
// (Go, from Debian's sources, offline) into a temp dir, then has the Go
// client call our server through containerd's generated Task client, and our
// client call the Go server's Events.Forward and probe methods.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "shim/ttrpc/client.h"
#include "shim/ttrpc/server.h"

namespace stockade::ttrpc {
namespace {

namespace task = ::containerd::task::v2;
using ::testing::HasSubstr;

constexpr char kTask[] = "containerd.task.v2.Task";
constexpr char kEvents[] = "containerd.services.events.ttrpc.v1.Events";
constexpr char kProbe[] = "stockade.interop.v1.Probe";
constexpr char kNsKey[] = "containerd-namespace-ttrpc";

std::string FindGo() {
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':')) {
      const std::string go = absl::StrCat(dir, "/go");
      if (!dir.empty() && access(go.c_str(), X_OK) == 0) return go;
    }
  }
  for (const char* go : {"/usr/local/go/bin/go", "/usr/lib/go/bin/go"}) {
    if (access(go, X_OK) == 0) return go;
  }
  return "";
}

// Runs a shell command; returns its exit status and combined output.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

int Listen(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 64) != 0) {
    ADD_FAILURE() << "listen " << path << ": " << std::strerror(errno);
  }
  return fd;
}

class InteropTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/ttrpc-interop-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    const std::string go = FindGo();
    ASSERT_FALSE(go.empty())
        << "the Go toolchain is needed to build the interop peer (not found "
           "on PATH nor in /usr/local/go/bin)";
    // GOPATH mode over Debian's Go sources (golang-github-containerd-*-dev,
    // golang-github-gogo-protobuf-dev, ...): no network, no go.mod.
    const std::string command = absl::StrCat(
        "cd ", STOCKADE_TTRPC_INTEROP_DIR,
        " && env GO111MODULE=off GOFLAGS= GOTOOLCHAIN=local GOPROXY=off",
        " GOPATH=", STOCKADE_GOPATH, " GOCACHE=", STOCKADE_GO_CACHE, " ", go,
        " build -o ", *dir_, "/interop .");
    auto [status, output] = RunCommand(command);
    ASSERT_EQ(status, 0) << "building the Go interop peer failed:\n"
                         << command << "\n"
                         << output;
    binary_ = new std::string(*dir_ + "/interop");
  }

  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    delete binary_;
    dir_ = nullptr;
    binary_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(binary_, nullptr) << "Go interop peer not built";
  }

  static std::string* dir_;
  static std::string* binary_;
};

std::string* InteropTest::dir_ = nullptr;
std::string* InteropTest::binary_ = nullptr;

template <typename Req, typename Resp>
void RegisterTask(
    Server* server, const std::string& method,
    std::function<absl::StatusOr<Resp>(const CallContext&, const Req&)> fn) {
  server->Register(
      kTask, method,
      [fn](const CallContext& context,
           const std::string& payload) -> absl::StatusOr<std::string> {
        Req request;
        if (!request.ParseFromString(payload)) {
          return absl::InvalidArgumentError("bad request");
        }
        absl::StatusOr<Resp> response = fn(context, request);
        if (!response.ok()) return response.status();
        return response->SerializeAsString();
      });
}

TEST_F(InteropTest, GoClientCallsOurServer) {
  const std::string path = *dir_ + "/cxx.sock";
  const int listen_fd = Listen(path);
  absl::Notification started;
  Server server;
  RegisterTask<task::StateRequest, task::StateResponse>(
      &server, "State",
      [](const CallContext& c,
         const task::StateRequest& r) -> absl::StatusOr<task::StateResponse> {
        task::StateResponse s;
        s.set_id(r.id());
        s.set_exec_id(r.exec_id());
        s.set_bundle("/run/bundle");
        s.set_pid(42);
        s.set_status(::containerd::v1::types::RUNNING);
        s.set_stdout(c.namespace_);
        s.mutable_exited_at()->set_seconds(1700000000);
        return s;
      });
  RegisterTask<task::KillRequest, google::protobuf::Empty>(
      &server, "Kill",
      [](const CallContext&, const task::KillRequest& r)
          -> absl::StatusOr<google::protobuf::Empty> {
        return absl::NotFoundError(
            absl::StrCat("process ", r.id(), " not found"));
      });
  RegisterTask<task::WaitRequest, task::WaitResponse>(
      &server, "Wait",
      [&started](const CallContext&, const task::WaitRequest&)
          -> absl::StatusOr<task::WaitResponse> {
        started.WaitForNotificationWithTimeout(absl::Seconds(30));
        task::WaitResponse w;
        w.set_exit_status(7);
        return w;
      });
  RegisterTask<task::StartRequest, task::StartResponse>(
      &server, "Start",
      [&started](const CallContext&, const task::StartRequest&)
          -> absl::StatusOr<task::StartResponse> {
        if (!started.HasBeenNotified()) started.Notify();
        task::StartResponse s;
        s.set_pid(42);
        return s;
      });
  absl::Status served;
  std::thread serve([&] { served = server.Serve(listen_fd); });

  auto [status, output] = RunCommand(absl::StrCat(*binary_, " client ", path));
  EXPECT_EQ(status, 0) << output;
  for (const char* check :
       {"state", "not-found", "unimplemented", "wait-concurrent"}) {
    EXPECT_THAT(output, HasSubstr(absl::StrCat("PASS ", check, "\n")))
        << output;
  }
  server.Shutdown();
  serve.join();
  EXPECT_TRUE(served.ok()) << served;
  close(listen_fd);
}

// The Go server, running until the test ends.
class GoServer {
 public:
  GoServer(const std::string& binary, const std::string& path) {
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      execl(binary.c_str(), binary.c_str(), "server", path.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    // Wait for "ready".
    std::string seen;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline &&
           seen.find("ready\n") == std::string::npos) {
      pollfd p{out[0], POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      const ssize_t n = read(out[0], buf, sizeof(buf));
      if (n <= 0) break;
      seen.append(buf, static_cast<size_t>(n));
    }
    close(out[0]);
    ready_ = seen.find("ready\n") != std::string::npos;
  }

  ~GoServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
  }

  bool ready() const { return ready_; }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

std::string BytesValue(const std::string& v) {
  google::protobuf::BytesValue b;
  b.set_value(v);
  return b.SerializeAsString();
}

TEST_F(InteropTest, OurClientCallsGoServer) {
  const std::string path = *dir_ + "/go.sock";
  GoServer go(*binary_, path);
  ASSERT_TRUE(go.ready()) << "Go server did not start";
  absl::StatusOr<std::unique_ptr<Client>> connected =
      Client::Connect("unix://" + path);
  ASSERT_TRUE(connected.ok()) << connected.status();
  Client& client = **connected;

  // Events.Forward with a real TaskExit, as the shim publishes it.
  ::containerd::events::TaskExit exit;
  exit.set_container_id("c1");
  exit.set_id("c1");
  exit.set_pid(99);
  exit.set_exit_status(137);
  exit.mutable_exited_at()->set_seconds(1700000002);
  ::containerd::services::events::ttrpc::v1::ForwardRequest forward;
  auto* envelope = forward.mutable_envelope();
  envelope->mutable_timestamp()->set_seconds(1700000001);
  envelope->set_namespace_("default");
  envelope->set_topic("/tasks/exit");
  envelope->mutable_event()->set_type_url("containerd.events.TaskExit");
  envelope->mutable_event()->set_value(exit.SerializeAsString());
  absl::StatusOr<std::string> r =
      client.Call(kEvents, "Forward", forward.SerializeAsString(),
                  {{kNsKey, "default"}}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  r = client.Call(kProbe, "LastEvent", "", {}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  google::protobuf::StringValue last;
  ASSERT_TRUE(last.ParseFromString(*r));
  EXPECT_EQ(last.value(),
            "md=default ns=default topic=/tasks/exit "
            "type=containerd.events.TaskExit ts=1700000001 container=c1 id=c1 "
            "pid=99 exit=137 exited=1700000002");

  // Concurrent calls from several threads on one connection.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 20; ++j) {
        const std::string v = absl::StrCat("v", i, "-", j);
        auto e =
            client.Call(kProbe, "Echo", BytesValue(v), {}, absl::Seconds(10));
        google::protobuf::BytesValue b;
        if (e.ok() && b.ParseFromString(*e) && b.value() == v) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 160);

  // A slow call does not hold up a fast one.
  google::protobuf::Int64Value sleep_ms;
  sleep_ms.set_value(700);
  absl::StatusOr<std::string> slow;
  absl::Time slow_done;
  std::thread slow_thread([&] {
    slow = client.Call(kProbe, "Sleep", sleep_ms.SerializeAsString(), {},
                       absl::Seconds(10));
    slow_done = absl::Now();
  });
  absl::SleepFor(absl::Milliseconds(100));
  auto fast =
      client.Call(kProbe, "Echo", BytesValue("fast"), {}, absl::Seconds(10));
  const absl::Time fast_done = absl::Now();
  slow_thread.join();
  EXPECT_TRUE(fast.ok());
  EXPECT_TRUE(slow.ok());
  EXPECT_LT(fast_done, slow_done);

  // Large payload.
  const std::string big(3 << 20, 'L');
  auto e = client.Call(kProbe, "Echo", BytesValue(big), {}, absl::Seconds(10));
  ASSERT_TRUE(e.ok()) << e.status();
  google::protobuf::BytesValue b;
  ASSERT_TRUE(b.ParseFromString(*e));
  EXPECT_EQ(b.value(), big);

  // Status codes and messages from Go.
  google::protobuf::StringValue fail;
  fail.set_value("9:container c1 is not running");
  r = client.Call(kProbe, "Fail", fail.SerializeAsString(), {},
                  absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "container c1 is not running");
  r = client.Call(kProbe, "Nope", "", {}, absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  r = client.Call("no.Such", "Nope", "", {}, absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);

  // Our timeout; the connection stays usable.
  sleep_ms.set_value(2000);
  r = client.Call(kProbe, "Sleep", sleep_ms.SerializeAsString(), {},
                  absl::Milliseconds(200));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  e = client.Call(kProbe, "Echo", BytesValue("after"), {}, absl::Seconds(10));
  EXPECT_TRUE(e.ok()) << e.status();
}

}  // namespace
}  // namespace stockade::ttrpc
