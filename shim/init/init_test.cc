// Runs the real, statically linked stockade-init binary in forked children:
// Landlock is enforced on what it execs, argv and env pass through, failures
// give the shell's exit codes, and it survives the Strict seccomp baseline
// that runc loads before exec'ing it.
#include <fcntl.h>
#include <linux/filter.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/testing/compile_yaml.h"
#include "shim/init/landlock_apply.h"
#include "shim/init/seccomp_loader.h"

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const char kInit[] = STOCKADE_BIN_DIR "/stockade-init";

struct Outcome {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Drains both pipes until EOF on each.
void Drain(int out_fd, int err_fd, std::string* out, std::string* err) {
  struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* sinks[2] = {out, err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
}

// Forks and execs `argv` with `env`. If `seccomp_json` is set, the child
// first sets no_new_privs and loads that filter, as runc does before it
// execs the container's entrypoint.
Outcome RunProgram(const std::vector<std::string>& argv,
                   const std::vector<std::string>& env,
                   const std::string& seccomp_json = "") {
  int out[2], err[2];
  EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(err, O_CLOEXEC), 0);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (!seccomp_json.empty()) {
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(90);
      if (!LoadOciSeccomp(seccomp_json).ok()) _exit(91);
    }
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(92);
  }
  close(out[1]);
  close(err[1]);
  Outcome o;
  Drain(out[0], err[0], &o.out, &o.err);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status)) {
    o.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    o.signal = WTERMSIG(status);
  }
  return o;
}

using ::stockade::compiler::testing::CompileYaml;

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + ".XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

class InitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "these tests need root";
    ASSERT_GE(LandlockAbi(), 6) << "these tests need Landlock ABI 6";
    ASSERT_TRUE(Exists(kInit)) << kInit << " is not built";
    writable_ = MakeTempDir("stockade-init-w");
    outside_ = MakeTempDir("stockade-init-o");
    files_ = MakeTempDir("stockade-init-f");
    policy_ = CompileYaml(Policy("Enforce", "RuntimeDefault", "Errno"));
    ruleset_ = files_ + "/landlock.binpb";
    WriteFile(ruleset_, policy_.landlock().SerializeAsString());
  }
  void TearDown() override {
    for (const auto& d : {writable_, outside_, files_}) {
      std::string cmd = "rm -rf '" + d + "'";
      EXPECT_EQ(system(cmd.c_str()), 0);
    }
  }

  std::string Policy(const std::string& mode, const std::string& baseline,
                     const std::string& action) const {
    return absl::StrReplaceAll(R"(
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: init-test, namespace: tests}
spec:
  mode: MODE
  filesystem:
    readOnlyRoot: true
    writable: [{path: WRITABLE, sizeLimit: 1Mi}]
  exec:
    allow: [/usr/bin/touch, /usr/bin/env, /usr/bin/printf, /usr/bin/true]
  syscalls: {baseline: BASELINE, defaultAction: ACTION}
)",
                               {{"MODE", mode},
                                {"WRITABLE", writable_},
                                {"BASELINE", baseline},
                                {"ACTION", action}});
  }

  std::vector<std::string> Init(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {kInit, "--ruleset", ruleset_, "--"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  const std::vector<std::string> env_ = {"PATH=/usr/bin:/bin"};
  std::string writable_, outside_, files_, ruleset_;
  v1::CompiledPolicy policy_;
};

TEST_F(InitTest, BinaryIsStatic) {
  absl::StatusOr<std::string> interp = ElfInterpreter(kInit);
  ASSERT_TRUE(interp.ok()) << interp.status();
  EXPECT_EQ(*interp, "") << "stockade-init must be statically linked";
  Outcome o = RunProgram({"/usr/bin/file", "-b", kInit}, env_);
  EXPECT_THAT(o.out, HasSubstr("statically linked"));
  struct stat st;
  ASSERT_EQ(stat(kInit, &st), 0);
  EXPECT_LT(st.st_size, 8 << 20) << "stockade-init should stay small";
}

TEST_F(InitTest, WriteOutsideWritableIsDenied) {
  const std::string target = outside_ + "/x";
  Outcome o = RunProgram(Init({"/usr/bin/touch", target}), env_);
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("Permission denied"));
  EXPECT_FALSE(Exists(target));
}

TEST_F(InitTest, WriteInsideWritableWorks) {
  const std::string target = writable_ + "/ok";
  Outcome o = RunProgram(Init({"/usr/bin/touch", target}), env_);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(Exists(target));
}

TEST_F(InitTest, ExecOutsideAllowListIsDenied) {
  Outcome o = RunProgram(Init({"/bin/ls", "/"}), env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err,
              HasSubstr("stockade-init: exec /bin/ls: Permission denied"));
  // A bare name found on PATH but denied: EACCES, not "not found".
  o = RunProgram(Init({"ls"}), env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("stockade-init: exec ls: Permission denied"));
}

TEST_F(InitTest, ArgvAndEnvPassThroughUnchanged) {
  Outcome o = RunProgram(
      Init({"printf", "[%s]", "a b", "", "c*", "--ruleset", "--"}), env_);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "[a b][][c*][--ruleset][--]");
  const std::vector<std::string> env = {"PATH=/usr/bin", "FOO=bar baz",
                                        "EMPTY=", "Z=1=2"};
  o = RunProgram(Init({"env"}), env);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "PATH=/usr/bin\nFOO=bar baz\nEMPTY=\nZ=1=2\n");
  EXPECT_EQ(o.err, "");
}

TEST_F(InitTest, NotFoundIs127) {
  Outcome o = RunProgram(Init({"/no/such/program"}), env_);
  EXPECT_EQ(o.exit_code, 127);
  EXPECT_THAT(o.err, HasSubstr("stockade-init: exec /no/such/program: No such "
                               "file or directory"));
  o = RunProgram(Init({"no-such-program-anywhere"}), env_);
  EXPECT_EQ(o.exit_code, 127);
}

TEST_F(InitTest, BadRulesetFails126) {
  WriteFile(ruleset_, "\xff\xff\xff garbage");
  Outcome o = RunProgram(Init({"/usr/bin/true"}), env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("stockade-init: ruleset " + ruleset_ +
                               " is not a serialized "
                               "stockade.v1.LandlockRuleset"));

  o = RunProgram(
      {kInit, "--ruleset", files_ + "/missing", "--", "/usr/bin/true"}, env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("stockade-init: cannot read ruleset " + files_ +
                               "/missing: No such file or directory"));
}

TEST_F(InitTest, UsageErrorsFail126) {
  Outcome o = RunProgram({kInit, "--ruleset", ruleset_}, env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("no program to run"));
  o = RunProgram({kInit, "--", "/usr/bin/true"}, env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("no --ruleset given"));
  o = RunProgram({kInit, "--bogus"}, env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("unknown argument \"--bogus\""));
}

TEST_F(InitTest, RulesetAboveKernelAbiFailsClosed) {
  v1::LandlockRuleset ruleset = policy_.landlock();
  ruleset.set_min_abi(LandlockAbi() + 1);
  WriteFile(ruleset_, ruleset.SerializeAsString());
  const std::string target = writable_ + "/never";
  Outcome o = RunProgram(Init({"/usr/bin/touch", target}), env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr(absl::StrCat("the policy needs Landlock ABI ",
                                            LandlockAbi() + 1)));
  EXPECT_THAT(o.err, HasSubstr("refusing to start the program unconfined"));
  EXPECT_FALSE(Exists(target));
}

TEST_F(InitTest, ComplainModeWrapsWithoutConfining) {
  v1::CompiledPolicy complain =
      CompileYaml(Policy("Complain", "Strict", "Errno"));
  WriteFile(ruleset_, complain.landlock().SerializeAsString());
  const std::string target = outside_ + "/complain";
  Outcome o = RunProgram(Init({"/usr/bin/touch", target}), env_);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(Exists(target));
}

// runc loads the container's seccomp filter (no_new_privs) before it execs
// stockade-init: init must use only what the baselines allow. With
// KillProcess any other call would kill it with SIGSYS.
TEST_F(InitTest, RunsUnderStrictAndRuntimeDefaultSeccomp) {
  for (const std::string baseline : {"Strict", "RuntimeDefault"}) {
    SCOPED_TRACE(baseline);
    v1::CompiledPolicy p =
        CompileYaml(Policy("Enforce", baseline, "KillProcess"));
    WriteFile(ruleset_, p.landlock().SerializeAsString());
    const std::string target = writable_ + "/seccomp-" + baseline;
    Outcome o =
        RunProgram(Init({"/usr/bin/touch", target}), env_, p.seccomp_json());
    EXPECT_EQ(o.signal, 0) << "killed by signal " << o.signal;
    EXPECT_EQ(o.exit_code, 0) << o.err;
    EXPECT_TRUE(Exists(target));
    // The error paths (messages, exit codes) stay inside the filter too.
    o = RunProgram(Init({"/no/such"}), env_, p.seccomp_json());
    EXPECT_EQ(o.signal, 0);
    EXPECT_EQ(o.exit_code, 127);
    o = RunProgram(Init({"/bin/ls"}), env_, p.seccomp_json());
    EXPECT_EQ(o.signal, 0);
    EXPECT_EQ(o.exit_code, 126);
    WriteFile(ruleset_, "garbage");
    o = RunProgram(Init({"/usr/bin/true"}), env_, p.seccomp_json());
    EXPECT_EQ(o.signal, 0);
    EXPECT_EQ(o.exit_code, 126);
  }
}

// The shim hands stockade-init the filter as a ready BPF program
// (--seccomp); init loads it after Landlock and before the program's first
// instruction. The probe's unshare is refused with EPERM under it and
// allowed without it.
TEST_F(InitTest, LoadsTheSeccompProgram) {
  const std::string probe = std::string(STOCKADE_BIN_DIR) + "/stockade-probe";
  ASSERT_TRUE(Exists(probe)) << probe << " is not built";
  v1::CompiledPolicy p = CompileYaml(absl::StrReplaceAll(
      Policy("Enforce", "Strict", "Errno"),
      {{"[/usr/bin/touch", "[" + probe + ", /usr/bin/touch"}}));
  WriteFile(ruleset_, p.landlock().SerializeAsString());
  absl::StatusOr<OciSeccompFilter> filter =
      OciSeccompFilter::Build(p.seccomp_json());
  ASSERT_TRUE(filter.ok()) << filter.status();
  const std::string bpf = files_ + "/seccomp.bpf";
  WriteFile(bpf, *filter->ExportBpf());

  std::vector<std::string> argv = {kInit, "--ruleset", ruleset_, "--seccomp",
                                   bpf,   "--",        probe,    "unshare"};
  Outcome o = RunProgram(argv, env_);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("unshare: EPERM"));
  o = RunProgram(Init({probe, "unshare"}), env_);
  EXPECT_THAT(o.out, HasSubstr("unshare: OK"));

  // What the filter allows still runs.
  const std::string target = writable_ + "/under-filter";
  argv = {kInit, "--ruleset", ruleset_,         "--seccomp",
          bpf,   "--",        "/usr/bin/touch", target};
  o = RunProgram(argv, env_);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(Exists(target));
}

TEST_F(InitTest, AMalformedSeccompProgramStopsTheStart) {
  const std::string target = writable_ + "/never";
  for (const std::string& bytes : {std::string(), std::string(7, 'x')}) {
    const std::string bpf = files_ + "/bad.bpf";
    WriteFile(bpf, bytes);
    Outcome o = RunProgram({kInit, "--ruleset", ruleset_, "--seccomp", bpf,
                            "--", "/usr/bin/touch", target},
                           env_);
    EXPECT_EQ(o.exit_code, 126);
    EXPECT_THAT(o.err, HasSubstr("is not a BPF program"));
  }
  Outcome o =
      RunProgram({kInit, "--ruleset", ruleset_, "--seccomp",
                  files_ + "/missing.bpf", "--", "/usr/bin/touch", target},
                 env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("cannot read seccomp filter"));
  // A program the kernel refuses (a jump past its end).
  const sock_filter bad[] = {BPF_JUMP(BPF_JMP | BPF_JA, 5, 0, 0)};
  WriteFile(files_ + "/jump.bpf",
            std::string(reinterpret_cast<const char*>(bad), sizeof(bad)));
  o = RunProgram({kInit, "--ruleset", ruleset_, "--seccomp",
                  files_ + "/jump.bpf", "--", "/usr/bin/touch", target},
                 env_);
  EXPECT_EQ(o.exit_code, 126);
  EXPECT_THAT(o.err, HasSubstr("cannot load the seccomp filter"));
  EXPECT_FALSE(Exists(target));
}

}  // namespace
}  // namespace stockade::shim
