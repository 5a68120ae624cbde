// Tests for the AppArmor compiler. Every rendered profile goes through the
// real apparmor_parser twice: as the brief's `apparmor_parser -Q -K -o OUT
// FILE`, and compiled for a kernel with the 3.0 ABI (every rule enforced, no
// rule dropped or downgraded) with the file DFA dumped. The kernel here has no
// AppArmor, so instead of loading the profile the tests walk that compiled
// DFA: the permissions it gives a path are the ones the kernel would apply.
#include "operator/compiler/apparmor/apparmor.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::compiler {
namespace {

namespace v1 = ::stockade::v1;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAbiFeatures[] = "/etc/apparmor.d/abi/3.0";

// ---------------------------------------------------------------------------
// Running apparmor_parser.

std::string FindParser() {
  for (const char* p : {"/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"}) {
    if (access(p, X_OK) == 0) return p;
  }
  if (const char* path = getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':')) {
      std::string p = absl::StrCat(dir, "/apparmor_parser");
      if (!dir.empty() && access(p.c_str(), X_OK) == 0) return p;
    }
  }
  return "";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

RunResult RunCommand(const std::vector<std::string>& argv,
                     const std::string& dir) {
  const std::string out_path = dir + "/stdout", err_path = dir + "/stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  RunResult result;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) ==
      0) {
    int status = 0;
    waitpid(pid, &status, 0);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  }
  posix_spawn_file_actions_destroy(&actions);
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  return result;
}

// ---------------------------------------------------------------------------
// The file DFA as `apparmor_parser -D dfa-states` prints it, and a walker.

// Permission bits of the parser's file DFA (user bits; "other" bits are the
// same shifted by 14).
constexpr uint32_t kExec = 1 << 0;
constexpr uint32_t kWrite = 1 << 1;
constexpr uint32_t kRead = 1 << 2;
constexpr uint32_t kLink = 1 << 4;
constexpr uint32_t kMmap = 1 << 6;
constexpr uint32_t kExecInherit = 1 << 9;
constexpr int kOtherShift = 14;

struct Perms {
  uint32_t allow = 0, deny = 0, audit = 0, quiet = 0;
  // Granted to the file's owner and to everyone else alike.
  bool Allows(uint32_t bits) const {
    return (allow & bits) == bits && ((allow >> kOtherShift) & bits) == bits;
  }
  bool AllowsNone(uint32_t bits) const {
    return (allow & bits) == 0 && ((allow >> kOtherShift) & bits) == 0;
  }
};

struct Dfa {
  struct State {
    std::map<unsigned char, int> next;
    std::optional<int> otherwise;
    std::set<unsigned char> excluded;
  };
  int start = -1;
  std::map<int, Perms> accept;
  std::map<int, State> states;

  Perms Match(absl::string_view path) const {
    int s = start;
    for (char ch : path) {
      const unsigned char c = static_cast<unsigned char>(ch);
      auto it = states.find(s);
      if (it == states.end()) return {};
      const State& st = it->second;
      if (auto n = st.next.find(c); n != st.next.end()) {
        s = n->second;
      } else if (st.otherwise && !st.excluded.count(c)) {
        s = *st.otherwise;
      } else {
        return {};
      }
    }
    auto a = accept.find(s);
    return a == accept.end() ? Perms{} : a->second;
  }
};

std::optional<int> StateId(absl::string_view text) {
  // "{123}..." -> 123
  if (!absl::ConsumePrefix(&text, "{")) return std::nullopt;
  size_t end = text.find('}');
  int id;
  if (end == absl::string_view::npos ||
      !absl::SimpleAtoi(text.substr(0, end), &id)) {
    return std::nullopt;
  }
  return id;
}

std::optional<Perms> ParsePerms(absl::string_view line) {
  size_t at = line.find("(0x ");
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view body = line.substr(at + 4);
  body = body.substr(0, body.find(')'));
  std::vector<absl::string_view> parts = absl::StrSplit(body, '/');
  if (parts.size() != 4) return std::nullopt;
  uint32_t v[4];
  for (int i = 0; i < 4; ++i) {
    if (!absl::SimpleHexAtoi(parts[i], &v[i])) return std::nullopt;
  }
  return Perms{v[0], v[1], v[2], v[3]};
}

// Parses every DFA in a dump; the first is the file DFA.
std::vector<Dfa> ParseDfaDump(const std::string& dump) {
  std::vector<Dfa> dfas;
  enum { kNone, kAccept, kTrans } section = kNone;
  int current = -1;
  for (absl::string_view line : absl::StrSplit(dump, '\n')) {
    if (line.empty()) {
      section = section == kAccept ? kTrans : kNone;
      continue;
    }
    if (section == kNone) {
      if (!absl::StartsWith(line, "{")) continue;
      dfas.emplace_back();
      section = kAccept;
    }
    Dfa& dfa = dfas.back();
    if (section == kAccept) {
      std::optional<int> id = StateId(line);
      if (!id) continue;
      if (absl::StrContains(line, "<==")) dfa.start = *id;
      if (std::optional<Perms> p = ParsePerms(line)) dfa.accept[*id] = *p;
      continue;
    }
    if (absl::StartsWith(line, "{")) {
      current = StateId(line).value_or(-1);
      dfa.states[current];
      continue;
    }
    if (!absl::ConsumePrefix(&line, "    ")) continue;
    Dfa::State& st = dfa.states[current];
    if (absl::StartsWith(line, "[")) {
      size_t arrow = line.rfind("] -> {");
      if (arrow == absl::string_view::npos) continue;
      st.otherwise = StateId(line.substr(arrow + 5));
      absl::string_view set = line.substr(1, arrow - 1);
      if (absl::ConsumePrefix(&set, "^")) {
        for (size_t i = 0; i < set.size(); ++i) {
          if (set[i] == '\\' && i + 1 < set.size() && set[i + 1] == 'x') {
            size_t j = i + 2;
            while (j < set.size() && j < i + 4 &&
                   absl::ascii_isxdigit(set[j])) {
              ++j;
            }
            uint32_t c = 0;
            absl::SimpleHexAtoi(set.substr(i + 2, j - i - 2), &c);
            st.excluded.insert(static_cast<unsigned char>(c));
            i = j - 1;
          } else {
            st.excluded.insert(static_cast<unsigned char>(set[i]));
          }
        }
      }
      continue;
    }
    size_t arrow = line.find(" -> {");
    if (arrow == absl::string_view::npos) continue;
    absl::string_view head = line.substr(0, arrow);
    absl::string_view hex = head.substr(head.rfind(' ') + 1);
    uint32_t c;
    if (!absl::ConsumePrefix(&hex, "0x") || !absl::SimpleHexAtoi(hex, &c)) {
      continue;
    }
    if (std::optional<int> to = StateId(line.substr(arrow + 4))) {
      st.next[static_cast<unsigned char>(c)] = *to;
    }
  }
  return dfas;
}

// ---------------------------------------------------------------------------
// Fixture.

struct Compiled {
  std::string text;
  Dfa files;
};

class AppArmorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    parser_ = new std::string(FindParser());
    char tmpl[] = "/tmp/stockade-apparmor-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete parser_;
  }

  void SetUp() override {
    ASSERT_FALSE(parser_->empty())
        << "apparmor_parser not found (Debian package apparmor); these tests "
           "need the real parser";
    for (const char* f : {"/etc/apparmor.d/tunables/global",
                          "/etc/apparmor.d/abstractions/base", kAbiFeatures}) {
      ASSERT_EQ(access(f, R_OK), 0)
          << f << " missing: install the Debian package apparmor";
    }
  }

  // Runs the brief's command on `text`; returns the parser's result.
  static RunResult ParseOnly(const std::string& text) {
    const std::string file = *dir_ + "/profile";
    std::ofstream(file, std::ios::binary) << text;
    return RunCommand({*parser_, "-Q", "-K", "-o", *dir_ + "/out.bin", file},
                      *dir_);
  }

  // Parses `text` both ways, failing the test on any error or warning, and
  // returns the compiled file DFA.
  static Compiled Compile(const std::string& text) {
    Compiled c{text, {}};
    RunResult plain = ParseOnly(text);
    EXPECT_EQ(plain.exit_code, 0) << plain.err << "\n--- profile:\n" << text;
    const std::string file = *dir_ + "/profile";
    RunResult full = RunCommand(
        {*parser_, "-Q", "-K", "-M", kAbiFeatures, "--warn=rule-not-enforced",
         "--warn=rule-downgraded", "--Werror", "-D", "dfa-states", "-o",
         *dir_ + "/out-abi3.bin", file},
        *dir_);
    EXPECT_EQ(full.exit_code, 0)
        << full.err.substr(0, 4000) << "\n--- profile:\n"
        << text;
    EXPECT_THAT(full.err, Not(HasSubstr("Warning"))) << text;
    std::vector<Dfa> dfas = ParseDfaDump(full.err);
    EXPECT_GE(dfas.size(), 1u) << "no DFA in the parser's dump";
    if (!dfas.empty()) c.files = dfas[0];
    EXPECT_GE(c.files.start, 0);
    return c;
  }

  static std::string* parser_;
  static std::string* dir_;
};

std::string* AppArmorTest::parser_ = nullptr;
std::string* AppArmorTest::dir_ = nullptr;

constexpr char kName[] = "stockade.team-a.research.0123456789ab";

// A typical effective policy: every field set, as merge.h leaves it.
EffectivePolicy TypicalPolicy() {
  EffectivePolicy p;
  p.set_mode(v1::MODE_ENFORCE);
  auto* fs = p.mutable_filesystem();
  fs->set_read_only_root(true);
  auto* w = fs->add_writable();
  w->set_path("/tmp/agent");
  w->set_size_limit("64Mi");
  fs->add_deny("/etc/shadow");
  fs->add_deny("/var/run/secrets");
  p.mutable_exec()->add_allow("/usr/bin/python3");
  p.set_procfs(v1::PROCFS_EXPOSURE_MINIMAL);
  p.set_sysfs(v1::SYSFS_EXPOSURE_NONE);
  auto* net = p.mutable_network();
  net->set_dns(true);
  net->set_raw_sockets(false);
  auto* egress = net->add_egress();
  egress->add_cidrs("10.0.0.0/8");
  auto* port = egress->add_ports();
  port->set_port(443);
  port->set_protocol(v1::PROTOCOL_TCP);
  p.mutable_syscalls()->set_baseline(v1::SYSCALL_BASELINE_RUNTIME_DEFAULT);
  p.mutable_syscalls()->set_default_action(v1::SYSCALL_ACTION_ERRNO);
  p.mutable_processes()->set_max(64);
  return p;
}

// The smallest policy: nothing allowed beyond reading the image.
EffectivePolicy EmptyPolicy() {
  EffectivePolicy p;
  p.set_mode(v1::MODE_ENFORCE);
  p.mutable_filesystem()->set_read_only_root(true);
  p.set_procfs(v1::PROCFS_EXPOSURE_NONE);
  p.set_sysfs(v1::SYSFS_EXPOSURE_NONE);
  p.mutable_network()->set_dns(false);
  p.mutable_network()->set_raw_sockets(false);
  p.mutable_syscalls()->set_baseline(v1::SYSCALL_BASELINE_STRICT);
  p.mutable_syscalls()->set_default_action(v1::SYSCALL_ACTION_KILL_PROCESS);
  p.mutable_processes()->set_max(1);
  return p;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n');
}

bool HasLine(const std::string& text, absl::string_view line) {
  for (const std::string& l : Lines(text)) {
    if (l == line) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Every variant compiles.

TEST_F(AppArmorTest, EveryCombinationOfModeRootProcfsSysfsCompiles) {
  for (auto mode : {v1::MODE_ENFORCE, v1::MODE_COMPLAIN}) {
    for (bool ro : {true, false}) {
      for (auto procfs : {v1::PROCFS_EXPOSURE_NONE, v1::PROCFS_EXPOSURE_MINIMAL,
                          v1::PROCFS_EXPOSURE_FULL}) {
        for (auto sysfs :
             {v1::SYSFS_EXPOSURE_NONE, v1::SYSFS_EXPOSURE_READ_ONLY}) {
          EffectivePolicy p = TypicalPolicy();
          p.set_mode(mode);
          p.mutable_filesystem()->set_read_only_root(ro);
          p.set_procfs(procfs);
          p.set_sysfs(sysfs);
          SCOPED_TRACE(p.ShortDebugString());
          Compile(RenderAppArmorProfile(p, kName));
        }
      }
    }
  }
}

TEST_F(AppArmorTest, EmptyListsCompile) {
  Compiled c = Compile(RenderAppArmorProfile(EmptyPolicy(), kName));
  EXPECT_THAT(c.text, Not(HasSubstr(" ix,")));
  EXPECT_THAT(c.text, Not(HasSubstr("capability ")));
  EXPECT_THAT(c.text, Not(HasSubstr("network inet")));
  // Nothing can be executed, nothing written.
  for (const char* path : {"/usr/bin/python3", "/bin/sh", "/usr/bin/pip3"}) {
    EXPECT_TRUE(c.files.Match(path).AllowsNone(kExec)) << path;
  }
  EXPECT_TRUE(c.files.Match("/etc/passwd").Allows(kRead));
  EXPECT_TRUE(c.files.Match("/tmp/x").AllowsNone(kWrite));
}

TEST_F(AppArmorTest, NetworkVariantsCompile) {
  struct Case {
    const char* name;
    std::function<void(v1::NetworkRules*)> edit;
    std::vector<const char*> want, not_want;
  };
  const std::vector<Case> cases = {
      {"nothing",
       [](v1::NetworkRules*) {},
       {"network unix,"},
       {"network inet", "network netlink", "network packet"}},
      {"dns only",
       [](v1::NetworkRules* n) { n->set_dns(true); },
       {"network inet stream,", "network inet6 dgram,", "network netlink raw,"},
       {"network inet raw", "network packet"}},
      {"tcp only",
       [](v1::NetworkRules* n) {
         auto* e = n->add_egress();
         e->add_cidrs("2001:db8::/32");
         auto* p = e->add_ports();
         p->set_port(8000);
         p->set_end_port(8080);
         p->set_protocol(v1::PROTOCOL_TCP);
       },
       {"network inet stream,", "network inet6 stream,"},
       {"dgram", "network inet raw"}},
      {"udp only",
       [](v1::NetworkRules* n) {
         auto* e = n->add_egress();
         e->add_cidrs("192.0.2.0/24");
         auto* p = e->add_ports();
         p->set_port(123);
         p->set_protocol(v1::PROTOCOL_UDP);
       },
       {"network inet dgram,", "network inet6 dgram,"},
       {"stream", "network inet raw"}},
      {"every port",
       [](v1::NetworkRules* n) { n->add_egress()->add_cidrs("0.0.0.0/0"); },
       {"network inet stream,", "network inet dgram,"},
       {"network inet raw"}},
      {"raw sockets",
       [](v1::NetworkRules* n) { n->set_raw_sockets(true); },
       {"network inet raw,", "network inet6 raw,", "network packet raw,",
        "network packet dgram,"},
       {"network inet stream"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EffectivePolicy p = EmptyPolicy();
    c.edit(p.mutable_network());
    const std::string text = RenderAppArmorProfile(p, kName);
    Compile(text);
    for (const char* w : c.want) EXPECT_THAT(text, HasSubstr(w));
    for (const char* w : c.not_want) EXPECT_THAT(text, Not(HasSubstr(w)));
  }
}

TEST_F(AppArmorTest, CapabilitiesAreExactlyTheAddedOnes) {
  EffectivePolicy p = EmptyPolicy();
  Compiled none = Compile(RenderAppArmorProfile(p, kName));
  EXPECT_THAT(none.text, Not(HasSubstr("capability")));

  p.mutable_capabilities()->add_add("NET_BIND_SERVICE");
  const std::string one = RenderAppArmorProfile(p, kName);
  Compile(one);
  EXPECT_TRUE(HasLine(one, "  capability net_bind_service,"));
  EXPECT_FALSE(HasLine(one, "  capability,"));

  // Every capability the 3.0 ABI knows (what "known capability names"
  // contains on Debian 12) compiles.
  p.mutable_capabilities()->clear_add();
  for (const char* cap :
       {"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE",     "BLOCK_SUSPEND",
        "BPF",           "CHOWN",      "DAC_OVERRIDE",    "DAC_READ_SEARCH",
        "FOWNER",        "FSETID",     "IPC_LOCK",        "IPC_OWNER",
        "KILL",          "LEASE",      "LINUX_IMMUTABLE", "MAC_ADMIN",
        "MAC_OVERRIDE",  "MKNOD",      "NET_ADMIN",       "NET_BIND_SERVICE",
        "NET_BROADCAST", "NET_RAW",    "PERFMON",         "SETFCAP",
        "SETGID",        "SETPCAP",    "SETUID",          "SYSLOG",
        "SYS_ADMIN",     "SYS_BOOT",   "SYS_CHROOT",      "SYS_MODULE",
        "SYS_NICE",      "SYS_PACCT",  "SYS_PTRACE",      "SYS_RAWIO",
        "SYS_RESOURCE",  "SYS_TIME",   "SYS_TTY_CONFIG",  "WAKE_ALARM"}) {
    p.mutable_capabilities()->add_add(cap);
  }
  const std::string all = RenderAppArmorProfile(p, kName);
  Compile(all);
  EXPECT_TRUE(HasLine(all, "  capability sys_admin,"));
  EXPECT_TRUE(HasLine(all, "  capability wake_alarm,"));
}

// ---------------------------------------------------------------------------
// Text of the profile.

TEST_F(AppArmorTest, HeaderNameAndModeFlags) {
  EffectivePolicy p = TypicalPolicy();
  const std::string enforce = RenderAppArmorProfile(p, kName);
  EXPECT_TRUE(absl::StartsWith(enforce,
                               "# AppArmor profile stockade.team-a.research."
                               "0123456789ab (Enforce mode), generated by "
                               "Stockade\n"));
  EXPECT_THAT(enforce, HasSubstr("\nabi <abi/3.0>,\n"));
  EXPECT_THAT(enforce, HasSubstr("\n#include <tunables/global>\n"));
  EXPECT_TRUE(HasLine(enforce, absl::StrCat("profile ", kName,
                                            " flags=(attach_disconnected,"
                                            "mediate_deleted) {")));
  EXPECT_TRUE(HasLine(enforce, "  #include <abstractions/base>"));
  EXPECT_TRUE(absl::EndsWith(enforce, "}\n"));

  p.set_mode(v1::MODE_COMPLAIN);
  const std::string complain = RenderAppArmorProfile(p, kName);
  EXPECT_TRUE(HasLine(complain, absl::StrCat("profile ", kName,
                                             " flags=(attach_disconnected,"
                                             "mediate_deleted,complain) {")));
  EXPECT_THAT(complain, HasSubstr("Complain mode"));
}

TEST_F(AppArmorTest, RulesInTheText) {
  EffectivePolicy p = TypicalPolicy();
  p.mutable_exec()->add_allow("/opt/tools/");
  p.mutable_filesystem()->add_read_only("/etc");
  p.mutable_capabilities()->add_add("NET_BIND_SERVICE");
  const std::string t = RenderAppArmorProfile(p, kName);
  for (const char* line : {
           "  /usr/bin/python3 ix,",
           "  /opt/tools/** ix,",
           "  /tmp/agent/ rw,",
           "  /tmp/agent/** rwlk,",
           "  audit deny /etc/ wl,",
           "  audit deny /etc/** wl,",
           "  audit deny /etc/shadow rwlkmx,",
           "  audit deny /etc/shadow/** rwlkmx,",
           "  capability net_bind_service,",
           "  audit deny mount,",
           "  audit deny umount,",
           "  audit deny pivot_root,",
           "  ptrace (trace,tracedby,read,readby) "
           "peer=stockade.team-a.research.0123456789ab,",
           "  signal (send,receive) "
           "peer=stockade.team-a.research.0123456789ab,",
           "  audit deny /sys/firmware/efi/efivars/** rwlkmx,",
       }) {
    EXPECT_TRUE(HasLine(t, line)) << line << "\n" << t;
  }
  // No rule takes x away broadly (deny beats allow: it would cancel the ix
  // rules) and no rule grants x beyond the allowlist.
  for (const std::string& l : Lines(t)) {
    if (absl::StartsWith(l, "  #")) continue;
    EXPECT_FALSE(absl::StartsWith(l, "  audit deny /** ")) << l;
    EXPECT_FALSE(absl::StartsWith(l, "  deny ")) << "unaudited deny: " << l;
    if (absl::EndsWith(l, " ix,")) {
      EXPECT_TRUE(l == "  /usr/bin/python3 ix," || l == "  /opt/tools/** ix,")
          << l;
    }
  }
  EXPECT_THAT(t, Not(HasSubstr("capability,")));
  Compile(t);
}

TEST_F(AppArmorTest, Deterministic) {
  EffectivePolicy p = TypicalPolicy();
  EXPECT_EQ(RenderAppArmorProfile(p, kName), RenderAppArmorProfile(p, kName));
  EffectivePolicy q = TypicalPolicy();
  q.mutable_exec()->add_allow("/usr/bin/zsh");
  EXPECT_NE(RenderAppArmorProfile(p, kName), RenderAppArmorProfile(q, kName));
}

// ---------------------------------------------------------------------------
// What the compiled profile permits (walked on the parser's file DFA).

TEST_F(AppArmorTest, ExecAllowlistHolds) {
  EffectivePolicy p = TypicalPolicy();
  p.mutable_exec()->add_allow("/opt/tools/");
  Compiled c = Compile(RenderAppArmorProfile(p, kName));
  Perms python = c.files.Match("/usr/bin/python3");
  EXPECT_TRUE(python.Allows(kExec | kExecInherit | kRead))
      << std::hex << python.allow;
  EXPECT_TRUE(c.files.Match("/opt/tools/bin/rg").Allows(kExec | kExecInherit));
  for (const char* path :
       {"/usr/bin/pip3", "/usr/bin/apt-get", "/bin/sh", "/usr/bin/python3.11",
        "/usr/bin/python", "/opt/toolsX/x", "/opt/tools", "/tmp/agent/payload",
        "/root/.Private/x", "/home/alice/.Private/x",
        "/home/.ecryptfs/alice/.Private/x"}) {
    Perms perms = c.files.Match(path);
    EXPECT_TRUE(perms.AllowsNone(kExec)) << path << std::hex << perms.allow;
  }
  // Reading (and mapping libraries) stays possible everywhere else.
  EXPECT_TRUE(c.files.Match("/usr/bin/pip3").Allows(kRead));
  EXPECT_TRUE(c.files.Match("/usr/lib/x86_64-linux-gnu/libc.so.6")
                  .Allows(kRead | kMmap));
}

TEST_F(AppArmorTest, FilesystemRulesHold) {
  EffectivePolicy p = TypicalPolicy();
  auto* fs = p.mutable_filesystem();
  fs->add_read_only("/tmp/agent/config");
  Compiled c = Compile(RenderAppArmorProfile(p, kName));
  // Writable path: the directory and everything beneath it.
  EXPECT_TRUE(c.files.Match("/tmp/agent/").Allows(kWrite | kRead));
  EXPECT_TRUE(c.files.Match("/tmp/agent/a/b.txt").Allows(kWrite | kLink));
  // ... but code written there is not mapped executable.
  EXPECT_TRUE(c.files.Match("/tmp/agent/evil.so").AllowsNone(kMmap));
  // Read-only root: no writes elsewhere.
  for (const char* path :
       {"/etc/passwd", "/tmp/agentX/a", "/tmp/x", "/usr/bin/python3"}) {
    EXPECT_TRUE(c.files.Match(path).AllowsNone(kWrite)) << path;
    EXPECT_TRUE(c.files.Match(path).Allows(kRead)) << path;
  }
  // A read-only path beneath a writable one.
  EXPECT_TRUE(c.files.Match("/tmp/agent/config/app.yaml").AllowsNone(kWrite));
  EXPECT_TRUE(c.files.Match("/tmp/agent/config/app.yaml").Allows(kRead));
  EXPECT_TRUE(c.files.Match("/tmp/agent/config").AllowsNone(kWrite));
  // Denied paths, as a file and as a directory. The denial is not quiet, so
  // the kernel logs it (an audited deny compiles to "nothing allowed").
  for (const char* path : {"/etc/shadow", "/var/run/secrets/",
                           "/var/run/secrets/kubernetes.io/token"}) {
    Perms perms = c.files.Match(path);
    EXPECT_TRUE(perms.AllowsNone(kRead | kWrite | kExec | kMmap | kLink))
        << path;
    EXPECT_EQ(perms.quiet, 0u) << path << ": denial would not be logged";
  }
  EXPECT_TRUE(c.files.Match("/etc/shadowX").Allows(kRead));
  // Terminals stay usable.
  EXPECT_TRUE(c.files.Match("/dev/pts/0").Allows(kRead | kWrite));
}

TEST_F(AppArmorTest, WritableRootWithReadOnlyPaths) {
  EffectivePolicy p = TypicalPolicy();
  p.mutable_filesystem()->set_read_only_root(false);
  p.mutable_filesystem()->add_read_only("/usr");
  Compiled c = Compile(RenderAppArmorProfile(p, kName));
  EXPECT_TRUE(c.files.Match("/etc/hosts").Allows(kWrite));
  EXPECT_TRUE(c.files.Match("/usr/bin/python3").AllowsNone(kWrite));
  EXPECT_TRUE(c.files.Match("/usr/bin/python3").Allows(kExec));
  EXPECT_TRUE(c.files.Match("/etc/shadow").AllowsNone(kRead | kWrite));
  // Still not executable, even though writable.
  EXPECT_TRUE(c.files.Match("/etc/hosts").AllowsNone(kExec));
}

TEST_F(AppArmorTest, ReadOnlyWinsOverWritableBeneathIt) {
  EffectivePolicy p = TypicalPolicy();
  p.mutable_filesystem()->add_read_only("/srv");
  p.mutable_filesystem()->add_writable()->set_path("/srv/scratch");
  Compiled c = Compile(RenderAppArmorProfile(p, kName));
  // Deny beats allow in AppArmor: the more specific writable path loses.
  EXPECT_TRUE(c.files.Match("/srv/scratch/f").AllowsNone(kWrite));
  EXPECT_TRUE(c.files.Match("/srv/scratch/f").Allows(kRead));
}

TEST_F(AppArmorTest, ExecBeneathWritableKeepsMapping) {
  EffectivePolicy p = TypicalPolicy();
  p.mutable_exec()->add_allow("/tmp/agent/venv/bin/");
  Compiled c = Compile(RenderAppArmorProfile(p, kName));
  EXPECT_TRUE(c.files.Match("/tmp/agent/venv/bin/tool").Allows(kExec));
  EXPECT_TRUE(c.files.Match("/tmp/agent/venv/lib/x.so").Allows(kMmap));
}

TEST_F(AppArmorTest, ProcfsExposure) {
  EffectivePolicy p = TypicalPolicy();
  p.set_procfs(v1::PROCFS_EXPOSURE_NONE);
  Compiled none = Compile(RenderAppArmorProfile(p, kName));
  for (const char* path : {"/proc/", "/proc/1/status", "/proc/meminfo",
                           "/proc/sys/kernel/version", "/proc/1/"}) {
    EXPECT_TRUE(none.files.Match(path).AllowsNone(kRead | kWrite)) << path;
  }

  p.set_procfs(v1::PROCFS_EXPOSURE_MINIMAL);
  Compiled minimal = Compile(RenderAppArmorProfile(p, kName));
  for (const char* path : {"/proc/1/status", "/proc/42/maps", "/proc/meminfo",
                           "/proc/cpuinfo", "/proc/sys/kernel/ostype"}) {
    EXPECT_TRUE(minimal.files.Match(path).Allows(kRead)) << path;
  }
  for (const char* path :
       {"/proc/kallsyms", "/proc/kcore", "/proc/modules", "/proc/interrupts",
        "/proc/sched_debug", "/proc/timer_list", "/proc/keys",
        "/proc/sysrq-trigger", "/proc/acpi/x", "/proc/irq/1/smp_affinity",
        "/proc/bus/pci/devices"}) {
    EXPECT_TRUE(minimal.files.Match(path).AllowsNone(kRead | kWrite)) << path;
  }
  EXPECT_TRUE(
      minimal.files.Match("/proc/sys/kernel/ostype").AllowsNone(kWrite));
  EXPECT_TRUE(
      minimal.files.Match("/proc/sys/vm/drop_caches").AllowsNone(kWrite));
  EXPECT_TRUE(minimal.files.Match("/proc/7/task/9/comm").Allows(kWrite));

  p.set_procfs(v1::PROCFS_EXPOSURE_FULL);
  Compiled full = Compile(RenderAppArmorProfile(p, kName));
  EXPECT_TRUE(full.files.Match("/proc/kallsyms").Allows(kRead));
  EXPECT_TRUE(full.files.Match("/proc/1/oom_score_adj").Allows(kWrite));
  for (const char* path : {"/proc/kcore", "/proc/sysrq-trigger"}) {
    EXPECT_TRUE(full.files.Match(path).AllowsNone(kRead | kWrite)) << path;
  }
  for (const char* path :
       {"/proc/sys/kernel/shmmax", "/proc/sys/vm/drop_caches",
        "/proc/irq/1/smp_affinity", "/proc/sysrq-trigger"}) {
    EXPECT_TRUE(full.files.Match(path).AllowsNone(kWrite)) << path;
  }

  // With a writable root the /proc write denies still hold.
  p.mutable_filesystem()->set_read_only_root(false);
  Compiled rw = Compile(RenderAppArmorProfile(p, kName));
  EXPECT_TRUE(
      rw.files.Match("/proc/sys/kernel/core_pattern").AllowsNone(kWrite));
  EXPECT_TRUE(rw.files.Match("/proc/kcore").AllowsNone(kRead));
}

TEST_F(AppArmorTest, SysfsExposure) {
  EffectivePolicy p = TypicalPolicy();
  p.set_sysfs(v1::SYSFS_EXPOSURE_NONE);
  Compiled none = Compile(RenderAppArmorProfile(p, kName));
  for (const char* path : {"/sys/", "/sys/class/net/eth0/address",
                           "/sys/devices/system/cpu/online"}) {
    EXPECT_TRUE(none.files.Match(path).AllowsNone(kRead | kWrite)) << path;
  }

  p.set_sysfs(v1::SYSFS_EXPOSURE_READ_ONLY);
  p.mutable_filesystem()->set_read_only_root(false);  // Denies must still hold.
  Compiled ro = Compile(RenderAppArmorProfile(p, kName));
  EXPECT_TRUE(ro.files.Match("/sys/class/net/eth0/address").Allows(kRead));
  EXPECT_TRUE(ro.files.Match("/sys/class/net/eth0/address").AllowsNone(kWrite));
  EXPECT_TRUE(ro.files.Match("/sys/fs/cgroup/cgroup.procs").AllowsNone(kWrite));
  for (const char* path : {"/sys/firmware/acpi/tables/DSDT",
                           "/sys/kernel/security/apparmor/profiles",
                           "/sys/firmware/efi/efivars/Boot0000-8be4df61"}) {
    EXPECT_TRUE(ro.files.Match(path).AllowsNone(kRead | kWrite)) << path;
  }
}

// ---------------------------------------------------------------------------
// Paths cannot inject profile syntax.

TEST_F(AppArmorTest, SpecialCharactersAreLiteral) {
  const std::vector<std::string> odd = {
      "/data/with space",  "/data/tab\there",   "/data/comma,x",
      "/data/{a,b}",       "/data/star*",       "/data/q?",
      "/data/[abc]",       "/data/^caret",      "/data/quote\"x",
      "/data/back\\slash", "/data/hash#x",      "/data/bang!x",
      "/data/@{HOME}",     "/data/caf\xc3\xa9", "/data/new\nline",
      "/data/arrow->x",    "/data/paren(x)",    "/data/eq=x+y",
      "/data/trail\\",     "/data/cr\rx",       "/data/del\x7f",
  };
  EffectivePolicy p = EmptyPolicy();
  for (const std::string& path : odd) {
    p.mutable_filesystem()->add_writable()->set_path(path + "/w");
    p.mutable_filesystem()->add_deny(path + "/d");
    p.mutable_filesystem()->add_read_only(path + "/w/ro");
    p.mutable_exec()->add_allow(path + "/bin");
    p.mutable_exec()->add_allow(path + "/tools/");
  }
  Compiled c = Compile(RenderAppArmorProfile(p, kName));
  for (const std::string& path : odd) {
    SCOPED_TRACE(path);
    EXPECT_TRUE(c.files.Match(path + "/w/file").Allows(kWrite | kRead));
    EXPECT_TRUE(c.files.Match(path + "/w/ro/file").AllowsNone(kWrite));
    EXPECT_TRUE(c.files.Match(path + "/d").AllowsNone(kRead));
    EXPECT_TRUE(c.files.Match(path + "/d/x").AllowsNone(kRead));
    EXPECT_TRUE(c.files.Match(path + "/bin").Allows(kExec | kExecInherit));
    EXPECT_TRUE(c.files.Match(path + "/tools/x/y").Allows(kExec));
  }
  // Glob characters did not act as globs.
  for (const char* path :
       {"/data/a/w/file", "/data/starry/w/file", "/data/qx/w/file",
        "/data/a/w/file", "/data/b/w/file", "/data/xcaret/w/file",
        "/data/root/w/file", "/data/comma/w/file"}) {
    EXPECT_TRUE(c.files.Match(path).AllowsNone(kWrite)) << path;
  }
  EXPECT_TRUE(c.files.Match("/data/star*/bin").Allows(kExec));
  EXPECT_TRUE(c.files.Match("/data/starX/bin").AllowsNone(kExec));
  EXPECT_TRUE(c.files.Match("/data/{a,b}/bin").Allows(kExec));
  EXPECT_TRUE(c.files.Match("/data/a/bin").AllowsNone(kExec));
  EXPECT_TRUE(c.files.Match("/data/star/bin").AllowsNone(kExec));
  // Nothing else became writable or executable.
  for (const char* path : {"/etc/passwd", "/bin/sh", "/data/x", "/data/"}) {
    EXPECT_TRUE(c.files.Match(path).AllowsNone(kWrite | kExec)) << path;
  }
}

TEST_F(AppArmorTest, PathsCannotBreakOutOfTheirRule) {
  // Each tries to end its rule and add one granting everything.
  const std::vector<std::string> attacks = {
      "/x ix,\n  /** rwlkix,\n  /y", "/x\" ix,\n  \"/** rwlkix,\n  /y",
      "/x, /** rwlkix, /y",          "/x} profile evil { /** rwlkix, }",
      "/x\\\n  /** rwlkix,\n",       "/x\\\" /** rwlkix, \"/y",
      "/x #\n  /** rwlkix,\n  /y",
  };
  for (const std::string& attack : attacks) {
    SCOPED_TRACE(attack);
    EffectivePolicy p = EmptyPolicy();
    p.mutable_exec()->add_allow(attack);
    p.mutable_exec()->add_allow(attack + "/");
    p.mutable_filesystem()->add_writable()->set_path(attack);
    p.mutable_filesystem()->add_read_only(attack + "ro");
    p.mutable_filesystem()->add_deny(attack + "d");
    const std::string text = RenderAppArmorProfile(p, kName);
    Compiled c = Compile(text);
    // The injected rule is not a rule of the profile...
    for (const std::string& line : Lines(text)) {
      EXPECT_FALSE(absl::StartsWith(line, "  /** rwlkix")) << text;
      EXPECT_FALSE(absl::StartsWith(line, "  \"/** rwlkix")) << text;
      if (absl::StrContains(line, "profile evil")) {
        EXPECT_THAT(line, HasSubstr("\"/x\\} profile evil \\{ /\\*\\* "
                                    "rwlkix\\, \\}"))
            << text;
      }
    }
    // ... and grants nothing: only the literal path is affected.
    for (const char* path :
         {"/etc/passwd", "/bin/sh", "/usr/bin/python3", "/x", "/y", "/tmp/a"}) {
      EXPECT_TRUE(c.files.Match(path).AllowsNone(kWrite | kExec)) << path;
    }
    EXPECT_TRUE(c.files.Match(attack).Allows(kExec));
    EXPECT_TRUE(c.files.Match(attack + "/f").Allows(kWrite));
    EXPECT_TRUE(c.files.Match(attack + "d").AllowsNone(kRead));
  }
}

TEST_F(AppArmorTest, NulBytePathsNameNoFileAndAreLeftOut) {
  EffectivePolicy p = EmptyPolicy();
  const std::string nul("/a\0/etc/shadow", 14);
  p.mutable_exec()->add_allow(nul);
  p.mutable_filesystem()->add_writable()->set_path(nul);
  p.mutable_filesystem()->add_deny(nul);
  p.mutable_filesystem()->add_read_only(nul);
  const std::string text = RenderAppArmorProfile(p, kName);
  EXPECT_EQ(text.find('\0'), std::string::npos);
  EXPECT_THAT(text, Not(HasSubstr("\\000")));
  Compiled c = Compile(text);
  EXPECT_TRUE(c.files.Match("/a").AllowsNone(kWrite | kExec));
}

TEST_F(AppArmorTest, OddProfileNameStillParses) {
  // Outside the contract (^[a-zA-Z0-9_./-]+$), escaped and quoted anyway.
  const std::string text =
      RenderAppArmorProfile(TypicalPolicy(), "odd name, {x}\n/** rwix");
  Compile(text);
  EXPECT_THAT(text,
              HasSubstr("profile \"odd name\\, \\{x\\}\\012/\\*\\* rwix\""));
}

// ---------------------------------------------------------------------------
// How long the parser takes (reported; the bound is only a sanity check).

TEST_F(AppArmorTest, ParserTiming) {
  const std::string typical = RenderAppArmorProfile(TypicalPolicy(), kName);
  EffectivePolicy big = TypicalPolicy();
  for (int i = 0; i < 64; ++i) {
    big.mutable_filesystem()->add_deny(absl::StrCat("/srv/secret", i));
    big.mutable_exec()->add_allow(absl::StrCat("/opt/bin/tool", i));
  }
  big.set_procfs(v1::PROCFS_EXPOSURE_FULL);
  big.set_sysfs(v1::SYSFS_EXPOSURE_READ_ONLY);
  const std::string large = RenderAppArmorProfile(big, kName);
  struct Case {
    const char* label;
    const std::string& text;
  };
  for (const Case& c : {Case{"typical", typical}, Case{"large", large}}) {
    constexpr int kRuns = 10;
    std::vector<double> wall_ms;
    rusage before{}, after{};
    getrusage(RUSAGE_CHILDREN, &before);
    for (int i = 0; i < kRuns; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      RunResult r = ParseOnly(c.text);
      auto t1 = std::chrono::steady_clock::now();
      ASSERT_EQ(r.exit_code, 0) << r.err;
      wall_ms.push_back(
          std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    getrusage(RUSAGE_CHILDREN, &after);
    auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
    const double cpu_ms = (ms(after.ru_utime) + ms(after.ru_stime) -
                           ms(before.ru_utime) - ms(before.ru_stime)) /
                          kRuns;
    std::sort(wall_ms.begin(), wall_ms.end());
    std::printf(
        "apparmor_parser -Q -K, %s profile (%zu bytes): wall median %.1f ms "
        "(min %.1f, max %.1f), CPU %.1f ms per run, %d runs\n",
        c.label, c.text.size(), wall_ms[kRuns / 2], wall_ms.front(),
        wall_ms.back(), cpu_ms, kRuns);
    RecordProperty(absl::StrCat("parse_wall_ms_median_", c.label),
                   absl::StrCat(wall_ms[kRuns / 2]));
    RecordProperty(absl::StrCat("parse_cpu_ms_", c.label),
                   absl::StrCat(cpu_ms));
    EXPECT_LT(wall_ms[kRuns / 2], 5000.0);
  }
}

}  // namespace
}  // namespace stockade::compiler
