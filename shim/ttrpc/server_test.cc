// Server and client over real unix sockets in a private temp dir:
// concurrency on one connection, many connections, error statuses, protocol
// violations (oversized frames, even stream ids, garbage), peer credentials,
// timeouts and shutdown with calls in flight.
#include "shim/ttrpc/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/ttrpc/client.h"
#include "shim/ttrpc/frame.h"

namespace stockade::ttrpc {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "test.v1.Echo";

int Listen(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 128) != 0) {
    ADD_FAILURE() << "listen " << path << ": " << std::strerror(errno);
  }
  return fd;
}

int ConnectRaw(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect: " << std::strerror(errno);
  }
  return fd;
}

std::string RequestFrame(uint32_t id, const std::string& service,
                         const std::string& method,
                         const std::string& payload) {
  wire::Request r;
  r.set_service(service);
  r.set_method(method);
  r.set_payload(payload);
  return *EncodeFrame(id, kFrameRequest, r.SerializeAsString());
}

// A connection that speaks raw frames, to test what a client library would
// never send.
class RawConn {
 public:
  explicit RawConn(const std::string& path) : fd_(ConnectRaw(path)) {}
  ~RawConn() { close(fd_); }

  bool Send(absl::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // The next frame, or nullopt on timeout or EOF (then closed() is true).
  std::optional<FrameDecoder::Event> Read(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      if (auto e = decoder_.Next()) return e;
      const int ms =
          static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, ms) <= 0) continue;
      char buf[65536];
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      decoder_.Feed(buf, static_cast<size_t>(n));
    }
  }

  // The status and payload of the next response on `id`.
  std::pair<absl::Status, std::string> ReadResponse(uint32_t id) {
    auto e = Read(absl::Seconds(10));
    if (!e.has_value()) return {absl::UnknownError("no response"), ""};
    EXPECT_EQ(e->header.type, kFrameResponse);
    EXPECT_EQ(e->header.stream_id, id);
    wire::Response r;
    EXPECT_TRUE(r.ParseFromString(e->data));
    return {StatusFromResponse(r), r.payload()};
  }

  bool closed() const { return closed_; }
  int fd() const { return fd_; }

 private:
  int fd_;
  FrameDecoder decoder_;
  bool closed_ = false;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ttrpc-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/s.sock";
    listen_fd_ = Listen(path_);
  }

  void TearDown() override {
    StopServer();
    close(listen_fd_);
    std::filesystem::remove_all(dir_);
  }

  void StartServer(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(options);
    server_->Register(kService, "Echo",
                      [](const CallContext&, const std::string& payload)
                          -> absl::StatusOr<std::string> { return payload; });
    server_->Register(kService, "Context",
                      [](const CallContext& c,
                         const std::string&) -> absl::StatusOr<std::string> {
                        std::string out =
                            absl::StrCat(c.service, "|", c.method, "|",
                                         c.namespace_, "|", c.timeout_nano);
                        for (const auto& [k, v] : c.metadata) {
                          absl::StrAppend(&out, "|", k, "=", v);
                        }
                        return out;
                      });
    server_->Register(
        kService, "Fail",
        [](const CallContext&,
           const std::string& payload) -> absl::StatusOr<std::string> {
          const int code = std::atoi(payload.c_str());
          return absl::Status(static_cast<absl::StatusCode>(code),
                              absl::StrCat("failure ", code));
        });
    server_->Register(
        kService, "Block",
        [this](const CallContext&,
               const std::string& payload) -> absl::StatusOr<std::string> {
          ++blocked_;
          release_.WaitForNotification();
          return "released " + payload;
        });
    server_->Register(
        kService, "Sleep",
        [](const CallContext&,
           const std::string& payload) -> absl::StatusOr<std::string> {
          absl::SleepFor(absl::Milliseconds(std::atoi(payload.c_str())));
          return "slept";
        });
    serve_thread_ =
        std::thread([this] { serve_status_ = server_->Serve(listen_fd_); });
  }

  void StopServer() {
    if (!server_) return;
    if (!release_.HasBeenNotified()) release_.Notify();
    server_->Shutdown();
    serve_thread_.join();
    EXPECT_TRUE(serve_status_.ok()) << serve_status_;
    server_.reset();
  }

  std::unique_ptr<Client> NewClient() {
    absl::StatusOr<std::unique_ptr<Client>> c =
        Client::Connect("unix://" + path_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  void WaitBlocked(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (blocked_.load() < n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ASSERT_EQ(blocked_.load(), n);
  }

  std::string dir_;
  std::string path_;
  int listen_fd_ = -1;
  std::unique_ptr<Server> server_;
  std::thread serve_thread_;
  absl::Status serve_status_;
  absl::Notification release_;
  std::atomic<int> blocked_{0};
};

TEST_F(ServerTest, EchoRoundTrip) {
  StartServer();
  auto client = NewClient();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<std::string> r =
      client->Call(kService, "Echo", "hello", {}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "hello");
  // Empty and binary payloads too.
  EXPECT_EQ(*client->Call(kService, "Echo", "", {}, absl::Seconds(5)), "");
  const std::string binary("\0\xff\x01", 3);
  EXPECT_EQ(*client->Call(kService, "Echo", binary, {}, absl::Seconds(5)),
            binary);
}

TEST_F(ServerTest, LargePayloadBelowTheLimit) {
  StartServer();
  auto client = NewClient();
  const std::string big(3 << 20, 'b');
  absl::StatusOr<std::string> r =
      client->Call(kService, "Echo", big, {}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, big);
  // Over the limit: refused before sending, and the client keeps working.
  r = client->Call(kService, "Echo", std::string(kMaxFrameData, 'b'), {},
                   absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(client->Call(kService, "Echo", "x", {}, absl::Seconds(5)).ok());
}

TEST_F(ServerTest, ContextCarriesNamespaceMetadataAndTimeout) {
  StartServer();
  auto client = NewClient();
  absl::StatusOr<std::string> r =
      client->Call(kService, "Context", "",
                   {{"containerd-namespace-ttrpc", "k8s.io"}, {"x-other", "1"}},
                   absl::Seconds(2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r,
            "test.v1.Echo|Context|k8s.io|2000000000|"
            "containerd-namespace-ttrpc=k8s.io|x-other=1");
}

TEST_F(ServerTest, SlowCallDoesNotBlockFastCallsOnTheSameConnection) {
  StartServer();
  auto client = NewClient();
  absl::StatusOr<std::string> slow;
  std::thread t([&] {
    slow = client->Call(kService, "Block", "w", {}, absl::Seconds(30));
  });
  WaitBlocked(1);
  std::vector<std::thread> fast;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    fast.emplace_back([&, i] {
      for (int j = 0; j < 25; ++j) {
        const std::string p = absl::StrCat(i, "-", j);
        auto r = client->Call(kService, "Echo", p, {}, absl::Seconds(5));
        if (r.ok() && *r == p) ++ok;
      }
    });
  }
  for (auto& f : fast) f.join();
  EXPECT_EQ(ok.load(), 200);
  release_.Notify();
  t.join();
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(*slow, "released w");
}

TEST_F(ServerTest, RepliesComeOutOfOrderOnTheirStreamIds) {
  StartServer();
  RawConn raw(path_);
  ASSERT_TRUE(raw.Send(RequestFrame(1, kService, "Block", "first")));
  WaitBlocked(1);
  ASSERT_TRUE(raw.Send(RequestFrame(3, kService, "Echo", "second")));
  auto [s3, p3] = raw.ReadResponse(3);
  EXPECT_TRUE(s3.ok());
  EXPECT_EQ(p3, "second");
  release_.Notify();
  auto [s1, p1] = raw.ReadResponse(1);
  EXPECT_TRUE(s1.ok());
  EXPECT_EQ(p1, "released first");
}

TEST_F(ServerTest, ManyBlockedCallsNeverStarveNewOnes) {
  // Like many concurrent Waits: each holds a thread; the pool must grow.
  StartServer();
  auto client = NewClient();
  constexpr int kBlocked = 64;
  std::vector<std::thread> waiters;
  std::atomic<int> released{0};
  for (int i = 0; i < kBlocked; ++i) {
    waiters.emplace_back([&] {
      auto r = client->Call(kService, "Block", "", {}, absl::Seconds(30));
      if (r.ok()) ++released;
    });
  }
  WaitBlocked(kBlocked);
  EXPECT_EQ(*client->Call(kService, "Echo", "still", {}, absl::Seconds(5)),
            "still");
  release_.Notify();
  for (auto& w : waiters) w.join();
  EXPECT_EQ(released.load(), kBlocked);
}

TEST_F(ServerTest, ManyConnections) {
  StartServer();
  constexpr int kClients = 16;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto client = NewClient();
      if (!client) return;
      for (int j = 0; j < 20; ++j) {
        const std::string p = absl::StrCat("c", i, "-", j);
        auto r = client->Call(kService, "Echo", p, {}, absl::Seconds(5));
        if (r.ok() && *r == p) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients * 20);
  // Closed client connections are released by the server.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (server_->ConnectionCount() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(server_->ConnectionCount(), 0);
}

TEST_F(ServerTest, UnknownServiceOrMethodIsUnimplemented) {
  StartServer();
  auto client = NewClient();
  auto r = client->Call("no.such.Service", "Echo", "", {}, absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("no.such.Service"));
  r = client->Call(kService, "Nope", "", {}, absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("Nope"));
  // The code on the wire is 12.
  RawConn raw(path_);
  ASSERT_TRUE(raw.Send(RequestFrame(1, kService, "Nope", "")));
  auto e = raw.Read(absl::Seconds(5));
  ASSERT_TRUE(e.has_value());
  wire::Response resp;
  ASSERT_TRUE(resp.ParseFromString(e->data));
  EXPECT_EQ(resp.status().code(), 12);
}

TEST_F(ServerTest, HandlerErrorCodesAndMessagesPropagate) {
  StartServer();
  auto client = NewClient();
  for (int code = 1; code <= 16; ++code) {
    auto r = client->Call(kService, "Fail", absl::StrCat(code), {},
                          absl::Seconds(5));
    EXPECT_EQ(static_cast<int>(r.status().code()), code);
    EXPECT_EQ(r.status().message(), absl::StrCat("failure ", code));
  }
}

TEST_F(ServerTest, OversizedRequestIsResourceExhaustedAndConnectionLives) {
  StartServer();
  RawConn raw(path_);
  char header[kFrameHeaderSize];
  EncodeFrameHeader({kMaxFrameData + 100, 1, kFrameRequest, 0}, header);
  ASSERT_TRUE(raw.Send(absl::string_view(header, sizeof(header))));
  std::thread sender([&] { raw.Send(std::string(kMaxFrameData + 100, 'x')); });
  auto [status, payload] = raw.ReadResponse(1);
  sender.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("exceeds maximum message size"));
  ASSERT_TRUE(raw.Send(RequestFrame(3, kService, "Echo", "after")));
  auto [s2, p2] = raw.ReadResponse(3);
  EXPECT_TRUE(s2.ok());
  EXPECT_EQ(p2, "after");
}

TEST_F(ServerTest, EvenStreamIdIsInvalidArgument) {
  StartServer();
  RawConn raw(path_);
  ASSERT_TRUE(raw.Send(RequestFrame(2, kService, "Echo", "x")));
  auto [status, payload] = raw.ReadResponse(2);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(raw.Send(RequestFrame(0, kService, "Echo", "x")));
  EXPECT_EQ(raw.ReadResponse(0).first.code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(raw.Send(RequestFrame(5, kService, "Echo", "ok")));
  EXPECT_EQ(raw.ReadResponse(5).second, "ok");
}

TEST_F(ServerTest, MalformedRequestIsInvalidArgumentAndOtherTypesIgnored) {
  StartServer();
  RawConn raw(path_);
  ASSERT_TRUE(raw.Send(*EncodeFrame(7, kFrameRequest, "\xff\xff\xff")));
  EXPECT_EQ(raw.ReadResponse(7).first.code(),
            absl::StatusCode::kInvalidArgument);
  // Responses, data frames and unknown types from a client: no answer.
  ASSERT_TRUE(raw.Send(*EncodeFrame(9, kFrameResponse, "zz")));
  ASSERT_TRUE(raw.Send(*EncodeFrame(11, kFrameData, "zz")));
  ASSERT_TRUE(raw.Send(*EncodeFrame(13, 0x7e, "zz")));
  ASSERT_TRUE(raw.Send(RequestFrame(15, kService, "Echo", "alive")));
  auto [s, p] = raw.ReadResponse(15);
  EXPECT_EQ(p, "alive");
}

TEST_F(ServerTest, GarbageDoesNotCrashTheServer) {
  StartServer();
  std::mt19937 rng(7);
  for (int c = 0; c < 20; ++c) {
    RawConn raw(path_);
    std::string bytes(1 + rng() % 5000, '\0');
    for (char& ch : bytes) ch = static_cast<char>(rng());
    raw.Send(bytes);
    // Drain whatever comes back for a moment, then drop the connection.
    raw.Read(absl::Milliseconds(20));
  }
  auto client = NewClient();
  EXPECT_EQ(*client->Call(kService, "Echo", "fine", {}, absl::Seconds(5)),
            "fine");
}

TEST_F(ServerTest, ClientTimeoutLeavesTheConnectionUsable) {
  StartServer();
  auto client = NewClient();
  const absl::Time start = absl::Now();
  auto r = client->Call(kService, "Block", "", {}, absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  release_.Notify();  // its late reply is dropped by the client
  EXPECT_EQ(*client->Call(kService, "Echo", "next", {}, absl::Seconds(5)),
            "next");
}

TEST_F(ServerTest, ShutdownWithCallsInFlight) {
  StartServer({.drain_timeout = absl::Milliseconds(700)});
  auto client = NewClient();
  absl::StatusOr<std::string> blocked, sleeping;
  std::thread t1([&] {
    blocked = client->Call(kService, "Block", "", {}, absl::Seconds(30));
  });
  WaitBlocked(1);
  std::thread t2([&] {
    sleeping = client->Call(kService, "Sleep", "200", {}, absl::Seconds(30));
  });
  absl::SleepFor(absl::Milliseconds(50));
  // An idle connection (accepted: it made a call) is closed at once.
  auto idle = NewClient();
  ASSERT_TRUE(idle->Call(kService, "Echo", "", {}, absl::Seconds(5)).ok());
  const absl::Time start = absl::Now();
  server_->Shutdown();
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(600));
  EXPECT_LT(took, absl::Seconds(3));
  serve_thread_.join();
  EXPECT_TRUE(serve_status_.ok());
  t1.join();
  t2.join();
  // The call that finished within the drain time got its reply; the one
  // still blocked lost its connection.
  ASSERT_TRUE(sleeping.ok()) << sleeping.status();
  EXPECT_EQ(*sleeping, "slept");
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(
      idle->Call(kService, "Echo", "", {}, absl::Seconds(1)).status().code(),
      absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_->ConnectionCount(), 0);
  // The handler still runs; the destructor waits for it once released.
  release_.Notify();
  server_.reset();
}

TEST_F(ServerTest, ShutdownIsPromptWithoutCallsAndStopsAccepting) {
  StartServer();
  auto client = NewClient();
  ASSERT_TRUE(client->Call(kService, "Echo", "", {}, absl::Seconds(5)).ok());
  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  serve_thread_.join();
  EXPECT_EQ(
      client->Call(kService, "Echo", "", {}, absl::Seconds(1)).status().code(),
      absl::StatusCode::kUnavailable);
  // Nobody accepts any more: a new connection gets no answer.
  RawConn raw(path_);
  raw.Send(RequestFrame(1, kService, "Echo", "x"));
  EXPECT_FALSE(raw.Read(absl::Milliseconds(200)).has_value());
  server_->Shutdown();  // idempotent
  server_.reset();
}

TEST_F(ServerTest, DestructorGivesUpOnAHandlerThatDoesNotReturn) {
  // Whatever the handler uses must outlive it (here: shared state).
  auto gate = std::make_shared<absl::Notification>();
  auto entered = std::make_shared<std::atomic<bool>>(false);
  auto finished = std::make_shared<std::atomic<bool>>(false);
  auto server = std::make_unique<Server>(
      ServerOptions{.drain_timeout = absl::Milliseconds(200)});
  server->Register(kService, "Stuck",
                   [gate, entered, finished](
                       const CallContext&,
                       const std::string&) -> absl::StatusOr<std::string> {
                     entered->store(true);
                     gate->WaitForNotification();
                     finished->store(true);
                     return "late";
                   });
  absl::Status served;
  std::thread serve([&] { served = server->Serve(listen_fd_); });
  auto client = NewClient();
  absl::StatusOr<std::string> r;
  std::thread caller(
      [&] { r = client->Call(kService, "Stuck", "", {}, absl::Seconds(30)); });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!entered->load() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(entered->load());
  const absl::Time start = absl::Now();
  server->Shutdown();
  serve.join();
  server.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  caller.join();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  // The abandoned handler finishes later without touching freed memory.
  gate->Notify();
  while (!finished->load() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_TRUE(finished->load());
  absl::SleepFor(absl::Milliseconds(50));  // let its thread unwind
}

TEST_F(ServerTest, ShutdownFromAHandlerStillSendsItsReply) {
  server_ = std::make_unique<Server>();
  server_->Register(kService, "Shutdown",
                    [this](const CallContext&,
                           const std::string&) -> absl::StatusOr<std::string> {
                      server_->Shutdown();
                      return "bye";
                    });
  serve_thread_ =
      std::thread([this] { serve_status_ = server_->Serve(listen_fd_); });
  auto client = NewClient();
  auto r = client->Call(kService, "Shutdown", "", {}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "bye");
  serve_thread_.join();
  EXPECT_TRUE(serve_status_.ok());
  server_.reset();
}

TEST_F(ServerTest, RejectsPeersWithAnotherUid) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root (to connect as uid 65534)";
  StartServer();
  // The socket must be reachable for the other uid.
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  ASSERT_EQ(chmod(path_.c_str(), 0777), 0);
  int result_pipe[2];
  ASSERT_EQ(pipe(result_pipe), 0);
  const std::string frame = RequestFrame(1, kService, "Echo", "x");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: only async-signal-safe calls.
    if (setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(10);
    }
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size());
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      _exit(11);
    }
    (void)!send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    char buf[64];
    // The server closes the connection without answering: read returns 0
    // (or ECONNRESET).
    const ssize_t n = read(fd, buf, sizeof(buf));
    const char verdict = n <= 0 ? 'r' : 'a';
    (void)!write(result_pipe[1], &verdict, 1);
    _exit(0);
  }
  close(result_pipe[1]);
  char verdict = 0;
  ASSERT_EQ(read(result_pipe[0], &verdict, 1), 1);
  close(result_pipe[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(verdict, 'r') << "a connection from uid 65534 was served";
  // Our own uid still gets through.
  auto client = NewClient();
  EXPECT_TRUE(client->Call(kService, "Echo", "", {}, absl::Seconds(5)).ok());
}

TEST(ClientTest, ConnectErrors) {
  EXPECT_EQ(Client::Connect("unix:///nonexistent/dir/s.sock").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Client::Connect("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Connect(std::string(200, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stockade::ttrpc
