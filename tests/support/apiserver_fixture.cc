#include "tests/support/apiserver_fixture.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/containerd_fixture.h"

#ifndef STOCKADE_SOURCE_ROOT
#error "STOCKADE_SOURCE_ROOT must be defined by the build"
#endif

extern char** environ;

namespace stockade::testing {
namespace {

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t ReadPid(const std::string& path) {
  int pid = -1;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(path)),
                        &pid)) {
    return -1;
  }
  return pid;
}

// The caller's environment without KUBECONFIG (every kubectl here is told
// which kubeconfig to use).
std::vector<std::string> KubectlEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (strncmp(*e, "KUBECONFIG=", 11) != 0) env.push_back(*e);
  }
  return env;
}

}  // namespace

std::string SourceDir() {
  if (const char* env = getenv("STOCKADE_SOURCE_DIR"); env && *env) return env;
  return STOCKADE_SOURCE_ROOT;
}

absl::StatusOr<std::string> KubeToolsBinDir() {
  const std::string script = SourceDir() + "/hack/kube-tools";
  CommandResult r =
      RunCommand({script, "--print-bindir"}, {.timeout = absl::Seconds(30)});
  std::string dir(absl::StripAsciiWhitespace(r.out));
  if (!r.ok() || dir.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "etcd, kube-apiserver and kubectl are not built for the pins in "
        "hack/tools/go.mod: run hack/kube-tools first (hack/test does). ",
        script, " --print-bindir said: ", absl::StripAsciiWhitespace(r.err)));
  }
  return dir;
}

ApiserverFixture::ApiserverFixture(ApiserverOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ApiserverFixture>> ApiserverFixture::Start(
    ApiserverOptions options) {
  std::unique_ptr<ApiserverFixture> f(new ApiserverFixture(options));
  if (absl::Status s = f->Init(); !s.ok()) return s;
  return f;
}

absl::Status ApiserverFixture::Init() {
  source_dir_ = SourceDir();
  absl::StatusOr<std::string> bin_dir = KubeToolsBinDir();
  if (!bin_dir.ok()) return bin_dir.status();
  bin_dir_ = *bin_dir;
  kubectl_ = bin_dir_ + "/kubectl";

  std::string tmpl =
      absl::StrCat(options_.temp_parent, "/stockade-kube-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", tmpl, ": ", strerror(errno)));
  }
  dir_ = tmpl;

  const absl::Time begin = absl::Now();
  std::vector<std::string> up_args = {
      source_dir_ + "/hack/apiserver", "up", "--dir", dir_, "--owner-pid",
      absl::StrCat(getpid())};
  if (!options_.controllers.empty()) {
    up_args.push_back("--controllers");
    up_args.push_back(absl::StrJoin(options_.controllers, ","));
  }
  CommandResult up = RunCommand(up_args, {.timeout = options_.start_timeout});
  start_duration_ = absl::Now() - begin;
  running_ = true;  // whatever `up` managed to start, Stop() stops
  if (!up.ok()) {
    absl::Status stopped = Stop();
    return absl::InternalError(absl::StrCat(
        "hack/apiserver up --dir ", dir_, " failed: ", up.ToString(),
        stopped.ok() ? "" : absl::StrCat("\nand then: ", stopped.message())));
  }

  std::map<std::string, std::string> info;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(dir_ + "/info"),
                                               '\n', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    info[kv.first] = kv.second;
  }
  server_ = info["SERVER"];
  etcd_url_ = info["ETCD"];
  ca_file_ = info["CA"];
  admin_cert_file_ = info["ADMIN_CERT"];
  admin_key_file_ = info["ADMIN_KEY"];
  kubeconfig_ = info["KUBECONFIG"];
  operator_kubeconfig_ = info["OPERATOR_KUBECONFIG"];
  operator_token_ = std::string(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(info["OPERATOR_TOKEN_FILE"])));
  etcd_pid_ = ReadPid(dir_ + "/etcd.pid");
  apiserver_pid_ = ReadPid(dir_ + "/kube-apiserver.pid");
  for (const std::string* v :
       {&server_, &etcd_url_, &ca_file_, &admin_cert_file_, &admin_key_file_,
        &kubeconfig_, &operator_kubeconfig_, &operator_token_}) {
    if (v->empty()) {
      return absl::InternalError(
          absl::StrCat("hack/apiserver up left an incomplete ", dir_,
                       "/info:\n", ReadFileOrEmpty(dir_ + "/info")));
    }
  }
  if (etcd_pid_ <= 0 || apiserver_pid_ <= 0) {
    return absl::InternalError(
        absl::StrCat("hack/apiserver up wrote no pids in ", dir_));
  }
  return absl::OkStatus();
}

absl::Status ApiserverFixture::Stop() {
  if (!running_) return absl::OkStatus();
  running_ = false;
  std::vector<std::string> problems;
  CommandResult down =
      RunCommand({source_dir_ + "/hack/apiserver", "down", "--dir", dir_},
                 {.timeout = absl::Seconds(60)});
  if (!down.ok()) {
    problems.push_back(absl::StrCat("hack/apiserver down: ", down.ToString()));
  }
  // Safety net: a process naming the dir that `down` missed is a bug.
  for (const std::string& p : ProcessesOf(dir_, "")) {
    int pid = 0;
    if (absl::SimpleAtoi(p.substr(0, p.find(' ')), &pid) && pid > 1) {
      problems.push_back(absl::StrCat("killed leftover process ", p));
      kill(pid, SIGKILL);
    }
  }
  if (apiserver_is_child_) {  // reap the one RestartApiserver started
    WaitForExit(apiserver_pid_, absl::Seconds(5));
    apiserver_is_child_ = false;
  }
  if (access(dir_.c_str(), F_OK) == 0) {
    problems.push_back(absl::StrCat(dir_, " is still there"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(
      "apiserver fixture (", dir_, "): ", absl::StrJoin(problems, "; ")));
}

namespace {

// Whether pid is a live process (not a zombie).
bool ProcessAlive(pid_t pid) {
  const std::string stat =
      ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z';
}

}  // namespace

absl::Status ApiserverFixture::RestartApiserver(
    const std::vector<std::string>& extra_flags, absl::Duration grace) {
  if (!running_) return absl::FailedPreconditionError("the fixture is stopped");
  const pid_t old_pid = apiserver_pid_;
  std::vector<std::string> argv = absl::StrSplit(
      ReadFileOrEmpty(absl::StrCat("/proc/", old_pid, "/cmdline")), '\0',
      absl::SkipEmpty());
  if (argv.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("kube-apiserver (pid ", old_pid, ") is not running"));
  }
  kill(old_pid, SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  while (ProcessAlive(old_pid) && absl::Now() < deadline) usleep(20000);
  if (ProcessAlive(old_pid)) kill(old_pid, SIGKILL);
  const absl::Time gone_by = absl::Now() + absl::Seconds(10);
  while (ProcessAlive(old_pid) && absl::Now() < gone_by) usleep(20000);
  if (apiserver_is_child_) WaitForExit(old_pid, absl::Seconds(10));
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    env.push_back(*e);
  }
  absl::StatusOr<pid_t> pid =
      SpawnDaemon(argv, env, dir_ + "/kube-apiserver.log");
  if (!pid.ok()) return pid.status();
  apiserver_pid_ = *pid;
  apiserver_is_child_ = true;
  {
    // hack/apiserver down stops the process named here.
    std::ofstream out(dir_ + "/kube-apiserver.pid", std::ios::trunc);
    out << *pid << "\n";
  }
  const absl::Time ready_by = absl::Now() + absl::Seconds(120);
  while (absl::Now() < ready_by) {
    if (WaitForExit(*pid, absl::ZeroDuration()).has_value()) {
      apiserver_is_child_ = false;
      return absl::InternalError(absl::StrCat(
          "kube-apiserver exited at restart:\n", LogTail("kube-apiserver")));
    }
    CommandResult r = Kubectl(
        {"--request-timeout=2s", "get", "--raw", "/readyz"}, absl::Seconds(10));
    if (r.ok()) return absl::OkStatus();
    usleep(100000);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("kube-apiserver not ready within 120 s of its restart:\n",
                   LogTail("kube-apiserver")));
}

ApiserverFixture::~ApiserverFixture() {
  if (!running_) return;
  if (::testing::Test::HasFailure()) {
    fprintf(stderr, "--- kube-apiserver log (last lines)\n%s\n",
            LogTail("kube-apiserver").c_str());
  }
  if (absl::Status s = Stop(); !s.ok()) {
    ADD_FAILURE() << s.message();
  }
}

CommandResult ApiserverFixture::KubectlWith(
    absl::string_view kubeconfig, const std::vector<std::string>& args,
    std::optional<absl::Duration> timeout,
    const std::string& stdin_data) const {
  std::vector<std::string> argv = {
      kubectl_, absl::StrCat("--kubeconfig=", kubeconfig),
      // Discovery and HTTP caches in the fixture's dir, not in $HOME.
      absl::StrCat("--cache-dir=", dir_, "/kubectl-cache")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv,
                    {.timeout = timeout.value_or(options_.kubectl_timeout),
                     .stdin_data = stdin_data,
                     .env = KubectlEnvironment()});
}

CommandResult ApiserverFixture::Kubectl(const std::vector<std::string>& args,
                                        std::optional<absl::Duration> timeout,
                                        const std::string& stdin_data) const {
  return KubectlWith(kubeconfig_, args, timeout, stdin_data);
}

CommandResult ApiserverFixture::KubectlAsOperator(
    const std::vector<std::string>& args, std::optional<absl::Duration> timeout,
    const std::string& stdin_data) const {
  return KubectlWith(operator_kubeconfig_, args, timeout, stdin_data);
}

std::string ApiserverFixture::LogTail(absl::string_view component,
                                      int max_lines) const {
  std::vector<absl::string_view> lines;
  const std::string text =
      ReadFileOrEmpty(absl::StrCat(dir_, "/", component, ".log"));
  lines = absl::StrSplit(text, '\n');
  size_t from = lines.size() > static_cast<size_t>(max_lines)
                    ? lines.size() - static_cast<size_t>(max_lines)
                    : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(from),
                       lines.end(), "\n");
}

}  // namespace stockade::testing
