#include "cli/cli.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::cli {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string Example(const std::string& name) {
  const char* root = std::getenv("STOCKADE_SOURCE_DIR");
  return std::string(root ? root : ".") + "/examples/policies/" + name;
}

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunCli(std::vector<std::string> args) {
  std::ostringstream out, err;
  int code = Run(args, out, err);
  return {code, out.str(), err.str()};
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/stockade-cli-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(path_ + "/" + name) << text;
    return path_ + "/" + name;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(CliTest, HelpAndUsage) {
  EXPECT_EQ(RunCli({}).code, kExitUsage);
  Result r = RunCli({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
  for (const char* cmd :
       {"validate", "compile", "explain", "diff", "apply-spec", "install"}) {
    Result h = RunCli({cmd, "--help"});
    EXPECT_EQ(h.code, kExitOk) << cmd;
    EXPECT_THAT(h.out, HasSubstr(std::string("stockade ") + cmd)) << cmd;
  }
  r = RunCli({"frobnicate"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("unknown command \"frobnicate\""));
  r = RunCli({"compile", "--colour", "x", "f"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("unknown flag --colour"));
  r = RunCli({"compile", "--format", "xml", Example("research-agent.yaml")});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("allowed: json, apparmor, seccomp"));
}

TEST(CliTest, ValidateExamples) {
  Result r = RunCli({"validate", Example("research-agent.yaml"),
                     Example("strict-agent.yaml"), Example("agent.yaml"),
                     Example("cluster-guardrails.yaml")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("valid: 4 objects in 4 files"));
  EXPECT_EQ(r.err, "");
}

TEST(CliTest, ValidateReportsEveryProblemWithFileLineAndPath) {
  TempDir dir;
  const std::string file =
      dir.Write("bad.yaml", R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata:
  name: bad
spec:
  filesystem:
    writable:
      - path: tmp/agent
        sizeLimit: 64MB
  network:
    egress:
      - cidrs: [10.0.0.1/8]
        ports: [{port: 0}]
  syscalls:
    allow: [not_a_call]
  unknownField: 1
---
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata:
  name: bad2
spec:
  filesystem:
    writable: [{path: /data}]
    deny: [/data]
  syscalls:
    allow: [frobnicate]
)");
  Result r = RunCli({"validate", file});
  EXPECT_EQ(r.code, kExitInvalid);
  EXPECT_THAT(r.err,
              HasSubstr(file + ":8: spec.filesystem.writable[0].path: "
                               "\"tmp/agent\" does not match the pattern ^/"));
  EXPECT_THAT(r.err,
              HasSubstr(file + ":9: spec.filesystem.writable[0].sizeLimit"));
  EXPECT_THAT(r.err,
              HasSubstr(file + ":13: spec.network.egress[0].ports[0].port: "
                               "0 is below the minimum 1"));
  EXPECT_THAT(r.err, HasSubstr(file + ":16: spec.unknownField: unknown field"));
  EXPECT_THAT(r.err, HasSubstr(file + ":24: spec.filesystem.writable[0].path: "
                                      "\"/data\" is both writable and denied"));
  EXPECT_THAT(r.err, HasSubstr(file + ":27: spec.syscalls.allow[0]: unknown "
                                      "syscall \"frobnicate\""));
  EXPECT_THAT(r.err, testing::Not(HasSubstr("must not be empty")));
  EXPECT_EQ(r.out, "");
}

TEST(CliTest, GuardrailViolationNamesTheGuardrail) {
  TempDir dir;
  const std::string file =
      dir.Write("p.yaml", R"(apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: greedy, namespace: agents}
spec:
  exec:
    allow: [/usr/bin/python3, /usr/bin/pip3]
  capabilities:
    add: [SYS_ADMIN]
)");
  Result r =
      RunCli({"validate", "--guardrails", Example("cluster-guardrails.yaml"),
              "--namespace-labels", "stockade.dev/enforce=true", file});
  EXPECT_EQ(r.code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(file + ":6: spec.exec.allow[1]: executing "
                                      "\"/usr/bin/pip3\" is forbidden by "
                                      "ClusterAgentPolicy \"baseline\""));
  EXPECT_THAT(r.err,
              HasSubstr(file + ":8: spec.capabilities.add[0]: capability "
                               "SYS_ADMIN is forbidden"));
  // Without the namespace labels the guardrail does not select the policy.
  EXPECT_EQ(RunCli({"validate", "--guardrails",
                    Example("cluster-guardrails.yaml"), file})
                .code,
            kExitOk);
}

TEST(CliTest, CompileFormats) {
  const std::string p = Example("research-agent.yaml");
  Result json = RunCli({"compile", p});
  ASSERT_EQ(json.code, kExitOk) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"hash\""));
  EXPECT_THAT(json.out, HasSubstr("\"seccompJson\""));
  EXPECT_THAT(RunCli({"compile", "--format", "apparmor", p}).out,
              HasSubstr("profile stockade.agents.research-agent."));
  EXPECT_THAT(RunCli({"compile", "--format", "seccomp", p}).out,
              HasSubstr("\"defaultAction\""));
  EXPECT_THAT(RunCli({"compile", "--format", "nft", p}).out,
              HasSubstr("table inet stockade"));
  EXPECT_THAT(RunCli({"compile", "--format", "landlock", p}).out,
              HasSubstr("LANDLOCK_FS_EXECUTE"));
  EXPECT_THAT(RunCli({"compile", "--format", "oci", p}).out,
              HasSubstr("\"pidsLimit\": \"64\""));
  // Two policies: json is an array; other formats need --name.
  const std::string s = Example("strict-agent.yaml");
  Result two = RunCli({"compile", p, s});
  EXPECT_EQ(two.code, kExitOk);
  EXPECT_EQ(two.out.substr(0, 2), "[\n");
  Result ambiguous = RunCli({"compile", "--format", "nft", p, s});
  EXPECT_EQ(ambiguous.code, kExitUsage);
  EXPECT_THAT(ambiguous.err, HasSubstr("pick one with --name"));
  EXPECT_EQ(RunCli({"compile", "--format", "nft", "--name",
                    "agents/strict-agent", p, s})
                .code,
            kExitOk);
}

TEST(CliTest, ExplainAndDiff) {
  Result e = RunCli({"explain", Example("strict-agent.yaml")});
  ASSERT_EQ(e.code, kExitOk) << e.err;
  EXPECT_THAT(e.out, HasSubstr("A denied call kills the process."));
  TempDir dir;
  std::ifstream in(Example("research-agent.yaml"));
  std::stringstream text;
  text << in.rdbuf();
  std::string changed = text.str();
  changed.replace(changed.find("      - /usr/bin/python3.11\n"), 28,
                  "      - /usr/bin/python3.11\n      - /bin/sh\n");
  changed.replace(changed.find("max: 64"), 7, "max: 16");
  const std::string newer = dir.Write("new.yaml", changed);
  Result d = RunCli({"diff", Example("research-agent.yaml"), newer});
  EXPECT_EQ(d.code, kExitInvalid);
  EXPECT_THAT(d.out, HasSubstr("+ execute /bin/sh"));
  EXPECT_THAT(d.out, HasSubstr("- run up to 64 processes (64 -> 16)"));
  Result same = RunCli(
      {"diff", Example("research-agent.yaml"), Example("research-agent.yaml")});
  EXPECT_EQ(same.code, kExitOk);
  EXPECT_THAT(same.out, HasSubstr("No difference"));
}

TEST(CliTest, ApplySpecRewritesConfig) {
  TempDir dir;
  const std::string spec = dir.Write("config.json", R"({
  "ociVersion": "1.0.2",
  "process": {"args": ["/usr/bin/python3"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
  "root": {"path": "rootfs"},
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {"namespaces": [{"type": "pid"}]}
})");
  Result r = RunCli({"apply-spec", "--policy", Example("research-agent.yaml"),
                     "--spec", spec, "--apparmor", "off"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"readonly\": true"));
  EXPECT_THAT(r.out, HasSubstr("\"destination\": \"/tmp/agent\""));
  EXPECT_THAT(r.out, HasSubstr("\"noNewPrivileges\": true"));
  EXPECT_THAT(r.out, HasSubstr("\"seccomp\""));
  EXPECT_THAT(r.out, HasSubstr("stockade.dev/policy-hash"));
  EXPECT_THAT(r.out, testing::Not(HasSubstr("apparmorProfile")));
  Result on = RunCli({"apply-spec", "--policy", Example("research-agent.yaml"),
                      "--spec", spec, "--apparmor", "on", "--output",
                      dir.path() + "/out.json"});
  ASSERT_EQ(on.code, kExitOk) << on.err;
  std::ifstream out(dir.path() + "/out.json");
  std::stringstream written;
  written << out.rdbuf();
  EXPECT_THAT(
      written.str(),
      HasSubstr("\"apparmorProfile\": \"stockade.agents.research-agent."));
  const std::string broken = dir.Write("broken.json", "{\"process\": 3}");
  Result bad = RunCli({"apply-spec", "--policy", Example("research-agent.yaml"),
                       "--spec", broken});
  EXPECT_EQ(bad.code, kExitInvalid);
  EXPECT_THAT(bad.err, HasSubstr("process"));
}

TEST(CliTest, InstallWritesTheStore) {
  TempDir dir;
  Result r =
      RunCli({"install", "--store", dir.path(), Example("research-agent.yaml"),
              Example("strict-agent.yaml")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("installed agents/research-agent "));
  EXPECT_THAT(r.out, HasSubstr("installed agents/strict-agent "));
  EXPECT_TRUE(fs::exists(dir.path() + "/v1/index/agents/research-agent.json"));
  Result usage = RunCli({"install", Example("research-agent.yaml")});
  EXPECT_EQ(usage.code, kExitUsage);
}

TEST(CliTest, UnreadableFile) {
  Result r = RunCli({"validate", "/nonexistent/policy.yaml"});
  EXPECT_EQ(r.code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/policy.yaml: cannot read"));
}

}  // namespace
}  // namespace stockade::cli
