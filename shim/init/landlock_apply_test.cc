#include "shim/init/landlock_apply.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/landlock/landlock.h"

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Results a confined child reports: check name -> errno (0: success).
using Results = std::map<std::string, std::string>;

struct ChildOutcome {
  std::string status;  // "OK" or the ApplyLandlock error
  bool enforced = false;
  Results results;
};

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += n;
  }
}

// Forks; the child applies `ruleset`, runs `body` (which fills results) and
// reports back over a pipe. The parent never confines itself.
ChildOutcome RunConfined(const v1::LandlockRuleset& ruleset,
                         const LandlockOptions& options,
                         const std::function<void(Results*)>& body) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    LandlockReport report;
    absl::Status st = ApplyLandlock(ruleset, options, &report);
    std::string out =
        absl::StrCat("status=", st.ok() ? "OK" : std::string(st.message()),
                     "\n", "enforced=", report.enforced ? "1" : "0", "\n");
    if (st.ok()) {
      Results results;
      body(&results);
      for (const auto& [k, v] : results) absl::StrAppend(&out, k, "=", v, "\n");
    }
    WriteAll(fds[1], out);
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) text.append(buf, n);
  close(fds[0]);
  int wstatus = 0;
  EXPECT_EQ(waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  ChildOutcome outcome;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first == "status") {
      outcome.status = kv.second;
    } else if (kv.first == "enforced") {
      outcome.enforced = kv.second == "1";
    } else {
      outcome.results[kv.first] = kv.second;
    }
  }
  return outcome;
}

std::string Err(int rc) { return rc < 0 ? strerrorname_np(errno) : "OK"; }

std::string TryOpen(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  std::string r = Err(fd);
  if (fd >= 0) close(fd);
  return r;
}

// Runs `path` in a grandchild: "OK" when it exits 0, else the execve errno.
std::string TryExec(const std::string& path) {
  pid_t pid = fork();
  if (pid == 0) {
    char* const argv[] = {const_cast<char*>(path.c_str()), nullptr};
    char* const envp[] = {nullptr};
    execve(path.c_str(), argv, envp);
    _exit(errno);  // exit code = errno
  }
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (!WIFEXITED(wstatus)) return "SIGNALED";
  const int code = WEXITSTATUS(wstatus);
  return code == 0 ? "OK" : strerrorname_np(code);
}

std::string TryConnect(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string r =
      Err(connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  close(s);
  return r;
}

// A TCP listener on 127.0.0.1, ephemeral port.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

void WriteFile(const std::string& path, const std::string& content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  ASSERT_GE(fd, 0) << path;
  WriteAll(fd, content);
  close(fd);
}

void CopyFile(const std::string& from, const std::string& to) {
  int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(in, 0);
  std::string data;
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0) data.append(buf, n);
  close(in);
  WriteFile(to, data);
}

class LandlockApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(LandlockAbi(), 6)
        << "these tests need a kernel with Landlock ABI >= 6 (got "
        << LandlockAbi() << ")";
    char tmpl[] = "/tmp/stockade-landlock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    for (const char* d : {"/w", "/secret", "/open", "/bin"}) {
      ASSERT_EQ(mkdir((root_ + d).c_str(), 0755), 0);
    }
    WriteFile(root_ + "/secret/file", "secret");
    WriteFile(root_ + "/open/file", "open");
  }
  void TearDown() override {
    if (!root_.empty()) {
      std::string cmd = "rm -rf '" + root_ + "'";
      ASSERT_EQ(system(cmd.c_str()), 0);
    }
  }

  // The compiled ruleset of a policy confining the agent to root_:
  // writable root_/w, root_/secret denied; `edit` adds to it.
  v1::LandlockRuleset Compile(
      const std::function<void(compiler::EffectivePolicy*)>& edit = nullptr) {
    compiler::EffectivePolicy p;
    p.set_mode(v1::MODE_ENFORCE);
    p.mutable_filesystem()->set_read_only_root(true);
    v1::WritablePath* w = p.mutable_filesystem()->add_writable();
    w->set_path(root_ + "/w");
    w->set_size_limit("64Mi");
    p.mutable_filesystem()->add_deny(root_ + "/secret");
    p.set_procfs(v1::PROCFS_EXPOSURE_MINIMAL);
    p.set_sysfs(v1::SYSFS_EXPOSURE_NONE);
    p.mutable_network()->set_dns(false);
    p.mutable_network()->set_raw_sockets(false);
    p.mutable_processes()->set_max(128);
    if (edit) edit(&p);
    std::vector<std::string> notes;
    return compiler::CompileLandlock(p, &notes);
  }

  std::string root_;
};

TEST_F(LandlockApplyTest, EnforcesFilesystemExecAndNetwork) {
  Listener allowed, other;
  v1::LandlockRuleset rs = Compile([&](compiler::EffectivePolicy* p) {
    p->mutable_exec()->add_allow("/usr/bin/true");
    v1::EgressRule* rule = p->mutable_network()->add_egress();
    rule->add_cidrs("127.0.0.1/32");
    v1::PortRule* port = rule->add_ports();
    port->set_port(allowed.port());
    port->set_protocol(v1::PROTOCOL_TCP);
  });
  const std::string root = root_;
  ChildOutcome out = RunConfined(rs, {}, [&](Results* r) {
    (*r)["write_outside"] =
        TryOpen(root + "/newfile", O_WRONLY | O_CREAT | O_TRUNC);
    (*r)["write_etc"] = TryOpen("/etc/passwd", O_WRONLY | O_APPEND);
    (*r)["write_inside"] =
        TryOpen(root + "/w/newfile", O_WRONLY | O_CREAT | O_TRUNC);
    (*r)["mkdir_inside"] = Err(mkdir((root + "/w/sub").c_str(), 0755));
    (*r)["read_denied"] = TryOpen(root + "/secret/file", O_RDONLY);
    (*r)["list_denied"] = TryOpen(root + "/secret", O_RDONLY | O_DIRECTORY);
    (*r)["read_sibling"] = TryOpen(root + "/open/file", O_RDONLY);
    (*r)["read_etc"] = TryOpen("/etc/passwd", O_RDONLY);
    (*r)["read_sys"] = TryOpen("/sys/kernel/mm", O_RDONLY | O_DIRECTORY);
    (*r)["dev_null"] = TryOpen("/dev/null", O_WRONLY | O_TRUNC);
    (*r)["exec_sh"] = TryExec("/bin/sh");
    (*r)["exec_true"] = TryExec("/usr/bin/true");
    (*r)["connect_allowed"] = TryConnect(allowed.port());
    (*r)["connect_other"] = TryConnect(other.port());
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (*r)["bind_port_0"] =
        Err(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
    close(s);
  });
  ASSERT_EQ(out.status, "OK");
  EXPECT_TRUE(out.enforced);
  Results want = {
      {"write_outside", "EACCES"}, {"write_etc", "EACCES"},
      {"write_inside", "OK"},      {"mkdir_inside", "OK"},
      {"read_denied", "EACCES"},   {"list_denied", "EACCES"},
      {"read_sibling", "OK"},      {"read_etc", "OK"},
      {"read_sys", "OK"},          {"dev_null", "OK"},
      {"exec_sh", "EACCES"},       {"exec_true", "OK"},
      {"connect_allowed", "OK"},   {"connect_other", "EACCES"},
      {"bind_port_0", "EACCES"},
  };
  EXPECT_EQ(out.results, want);
  // Unconfined, the same actions succeed (the denials come from Landlock).
  EXPECT_EQ(TryOpen(root_ + "/secret/file", O_RDONLY), "OK");
  EXPECT_EQ(TryConnect(other.port()), "OK");
}

TEST_F(LandlockApplyTest, InterpreterIsNeededForDynamicExecutables) {
  v1::LandlockRuleset rs = Compile([](compiler::EffectivePolicy* p) {
    p->mutable_exec()->add_allow("/usr/bin/true");
  });
  bool found = false;
  for (auto& rule : *rs.mutable_path_rules()) {
    if (rule.path() == "/usr/bin/true") {
      rule.set_with_interpreter(false);
      found = true;
    }
  }
  ASSERT_TRUE(found);
  ChildOutcome out = RunConfined(
      rs, {}, [](Results* r) { (*r)["exec_true"] = TryExec("/usr/bin/true"); });
  ASSERT_EQ(out.status, "OK");
  // The kernel opens ld.so for execution too; without a rule on it, denied.
  EXPECT_EQ(out.results["exec_true"], "EACCES");
}

TEST_F(LandlockApplyTest, ExecDirectoryCoversItsExecutablesAndInterpreter) {
  CopyFile("/usr/bin/true", root_ + "/bin/mytrue");
  v1::LandlockRuleset rs = Compile([&](compiler::EffectivePolicy* p) {
    p->mutable_exec()->add_allow(root_ + "/bin/");
  });
  ChildOutcome out = RunConfined(rs, {}, [&](Results* r) {
    (*r)["exec_mytrue"] = TryExec(root_ + "/bin/mytrue");
    (*r)["exec_true"] = TryExec("/usr/bin/true");
  });
  ASSERT_EQ(out.status, "OK");
  EXPECT_EQ(out.results["exec_mytrue"], "OK");
  EXPECT_EQ(out.results["exec_true"], "EACCES");
}

TEST_F(LandlockApplyTest, ScopesSignalsAndAbstractUnixSockets) {
  // An abstract unix socket outside the sandbox.
  int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string name = absl::StrCat("stockade-landlock-test-", getpid());
  memcpy(addr.sun_path + 1, name.data(), name.size());
  const socklen_t len = offsetof(sockaddr_un, sun_path) + 1 + name.size();
  ASSERT_EQ(bind(srv, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(listen(srv, 4), 0);
  const pid_t parent = getpid();
  ChildOutcome out = RunConfined(Compile(), {}, [&](Results* r) {
    (*r)["signal_parent"] = Err(kill(parent, 0));
    (*r)["signal_self"] = Err(kill(getpid(), 0));
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    (*r)["abstract_connect"] =
        Err(connect(c, reinterpret_cast<const sockaddr*>(&addr), len));
    close(c);
  });
  close(srv);
  ASSERT_EQ(out.status, "OK");
  EXPECT_EQ(out.results["signal_parent"], "EPERM");
  EXPECT_EQ(out.results["signal_self"], "OK");
  EXPECT_EQ(out.results["abstract_connect"], "EPERM");
}

TEST_F(LandlockApplyTest, FailsWhenKernelAbiTooLow) {
  v1::LandlockRuleset rs = Compile();
  rs.set_min_abi(99);
  ChildOutcome out = RunConfined(rs, {}, [](Results*) {});
  EXPECT_THAT(out.status, HasSubstr("needs Landlock ABI 99"));
  EXPECT_THAT(out.status, HasSubstr(absl::StrCat("ABI ", LandlockAbi())));
  EXPECT_FALSE(out.enforced);

  // best_effort applies what the kernel has.
  LandlockOptions best_effort;
  best_effort.best_effort = true;
  out = RunConfined(rs, best_effort, [&](Results* r) {
    (*r)["read_denied"] = TryOpen(root_ + "/secret/file", O_RDONLY);
  });
  EXPECT_EQ(out.status, "OK");
  EXPECT_TRUE(out.enforced);
  EXPECT_EQ(out.results["read_denied"], "EACCES");
}

TEST_F(LandlockApplyTest, PlanForOlderKernelRecordsEveryDroppedRight) {
  v1::LandlockRuleset rs = Compile();
  LandlockReport report;
  absl::StatusOr<LandlockPlan> plan = PlanLandlock(rs, 3, {}, &report);
  EXPECT_FALSE(plan.ok());  // min_abi 6 > 3

  LandlockOptions best_effort;
  best_effort.best_effort = true;
  report = LandlockReport();
  plan = PlanLandlock(rs, 3, best_effort, &report);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->handled_fs, (1ULL << 15) - 1);  // up to TRUNCATE
  EXPECT_EQ(plan->handled_net, 0u);
  EXPECT_EQ(plan->scoped, 0u);
  EXPECT_THAT(report.dropped,
              Contains(HasSubstr("LANDLOCK_FS_IOCTL_DEV needs ABI 5")));
  EXPECT_THAT(report.dropped, Contains(HasSubstr("TCP connect restriction")));
  EXPECT_THAT(report.dropped, Contains(HasSubstr("TCP bind restriction")));
  EXPECT_THAT(report.dropped, Contains(HasSubstr("signal scoping")));
  EXPECT_THAT(report.dropped, Contains(HasSubstr("abstract unix socket")));
  for (const PlannedPathRule& r : plan->path_rules) {
    EXPECT_EQ(r.access & ~plan->handled_fs, 0u) << r.path;
  }

  report = LandlockReport();
  plan = PlanLandlock(rs, 1, best_effort, &report);
  ASSERT_TRUE(plan.ok());
  EXPECT_THAT(report.dropped, Contains(HasSubstr("LANDLOCK_FS_REFER")));
  EXPECT_THAT(report.dropped, Contains(HasSubstr("LANDLOCK_FS_TRUNCATE")));

  // The current kernel drops nothing.
  report = LandlockReport();
  plan = PlanLandlock(rs, LandlockAbi(), {}, &report);
  ASSERT_TRUE(plan.ok());
  EXPECT_THAT(report.dropped, IsEmpty());
}

TEST_F(LandlockApplyTest, EmptyRulesetEnforcesNothing) {
  v1::LandlockRuleset empty;  // what Complain mode compiles to
  ChildOutcome out = RunConfined(empty, {}, [&](Results* r) {
    (*r)["write"] = TryOpen(root_ + "/newfile", O_WRONLY | O_CREAT);
  });
  EXPECT_EQ(out.status, "OK");
  EXPECT_FALSE(out.enforced);
  EXPECT_EQ(out.results["write"], "OK");
}

TEST_F(LandlockApplyTest, MissingPathsAreSkipped) {
  v1::LandlockRuleset rs = Compile([&](compiler::EffectivePolicy* p) {
    p->mutable_filesystem()->add_writable()->set_path(root_ + "/missing");
  });
  ChildOutcome out = RunConfined(rs, {}, [&](Results* r) {
    (*r)["write_inside"] = TryOpen(root_ + "/w/f", O_WRONLY | O_CREAT);
  });
  EXPECT_EQ(out.status, "OK");
  EXPECT_EQ(out.results["write_inside"], "OK");
  LandlockReport report;
  ASSERT_TRUE(PlanLandlock(rs, LandlockAbi(), {}, &report).ok());
  EXPECT_THAT(report.skipped_paths, Contains(root_ + "/missing"));
}

TEST_F(LandlockApplyTest, ExpandExceptGrantsSiblingsAlongTheWay) {
  // root_/{w,secret/file,open/file,bin}; add a file, a symlink and depth.
  WriteFile(root_ + "/top", "x");
  ASSERT_EQ(symlink("secret", (root_ + "/link").c_str()), 0);
  ASSERT_EQ(mkdir((root_ + "/open/deep").c_str(), 0755), 0);
  const uint64_t read = (1ULL << 2) | (1ULL << 3);  // READ_FILE | READ_DIR
  LandlockReport report;
  std::vector<PlannedPathRule> rules = ExpandExcept(
      root_, read, {root_ + "/secret", root_ + "/open/file", "/nonexistent"},
      &report);
  std::map<std::string, uint64_t> got;
  for (const auto& r : rules) got[r.path] = r.access;
  std::map<std::string, uint64_t> want = {
      {root_ + "/bin", read},       {root_ + "/open", 1ULL << 3},
      {root_ + "/open/deep", read}, {root_ + "/top", read},
      {root_ + "/w", read},
  };
  // root_ itself gets nothing (a directory is excepted beneath it); /open
  // may be listed (only a file is excepted beneath it); the symlink is not
  // followed.
  EXPECT_EQ(got, want);
  EXPECT_THAT(report.skipped_paths, Contains("/nonexistent"));

  // No exception beneath: one rule on the path itself.
  rules = ExpandExcept(root_ + "/w", read, {root_ + "/open"}, &report);
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].path, root_ + "/w");
  // The path itself excepted: nothing.
  EXPECT_THAT(ExpandExcept(root_ + "/w", read, {root_ + "/w"}, &report),
              IsEmpty());
}

TEST(ElfInterpreterTest, ReadsPtInterp) {
  absl::StatusOr<std::string> interp = ElfInterpreter("/usr/bin/true");
  ASSERT_TRUE(interp.ok()) << interp.status();
  EXPECT_THAT(*interp, HasSubstr("ld-linux"));
  char tmpl[] = "/tmp/stockade-script-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  WriteAll(fd, "#!/bin/sh\necho hi\n");
  close(fd);
  interp = ElfInterpreter(tmpl);
  unlink(tmpl);
  ASSERT_TRUE(interp.ok());
  EXPECT_EQ(*interp, "");
  EXPECT_FALSE(ElfInterpreter("/nonexistent/binary").ok());
}

}  // namespace
}  // namespace stockade::shim
