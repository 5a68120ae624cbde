#include "shim/runc/testing/test_bundle.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "shim/runc/reaper.h"

namespace stockade::shim::testing {
namespace {

using json = nlohmann::json;

constexpr char kBusybox[] = "/bin/busybox";
constexpr char kPath[] = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";

const char* const kApplets[] = {
    "sh",   "echo", "sleep", "cat",  "true", "false",  "ls",    "dd",
    "head", "tail", "env",   "id",   "kill", "printf", "stty",  "tty",
    "wc",   "ps",   "mkdir", "test", "tr",   "yes",    "touch", "rm"};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Unescapes the octal escapes mountinfo uses for spaces and the like.
std::string UnescapeMountinfo(absl::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 3 < in.size()) {
      out.push_back(static_cast<char>(
          (in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 + (in[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<int> RunAndWait(const std::vector<std::string>& argv,
                               std::string* out) {
  int p[2] = {-1, -1};
  SpawnOptions spawn;
  spawn.argv = argv;
  if (out != nullptr) {
    if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    spawn.fds.emplace_back(1, p[1]);
  }
  const uint64_t since = Reaper::Get().Sequence();
  absl::StatusOr<pid_t> pid = Spawn(spawn);
  if (out != nullptr) {
    close(p[1]);
    if (pid.ok()) {
      char buf[4096];
      ssize_t n;
      while ((n = read(p[0], buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        out->append(buf, static_cast<size_t>(n));
      }
    }
    close(p[0]);
  }
  if (!pid.ok()) return pid.status();
  return Reaper::Get().Wait(*pid, since);
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/stockade-test-XXXXXX";
  if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  // Detach anything still mounted beneath, deepest first.
  absl::StatusOr<std::string> info = ReadFile("/proc/self/mountinfo");
  if (info.ok()) {
    std::vector<std::string> mounts;
    for (absl::string_view line : absl::StrSplit(*info, '\n')) {
      std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
      if (fields.size() < 5) continue;
      std::string point = UnescapeMountinfo(fields[4]);
      if (point.rfind(path_ + "/", 0) == 0) mounts.push_back(point);
    }
    std::sort(mounts.begin(), mounts.end(),
              [](const std::string& a, const std::string& b) {
                return a.size() > b.size();
              });
    for (const std::string& m : mounts) umount2(m.c_str(), MNT_DETACH);
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

absl::Status MakeBusyboxRootfs(const std::string& dir) {
  struct stat st;
  if (stat(kBusybox, &st) != 0) {
    return absl::FailedPreconditionError(
        "/bin/busybox is missing: install Debian's busybox-static");
  }
  for (const char* sub :
       {"", "/bin", "/proc", "/sys", "/dev", "/tmp", "/etc", "/root"}) {
    std::string path = absl::StrCat(dir, sub);
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("mkdir ", path, ": ", strerror(errno)));
    }
  }
  std::error_code ec;
  std::filesystem::copy_file(kBusybox, absl::StrCat(dir, "/bin/busybox"),
                             std::filesystem::copy_options::overwrite_existing,
                             ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("copy busybox: ", ec.message()));
  }
  chmod(absl::StrCat(dir, "/bin/busybox").c_str(), 0755);
  for (const char* applet : kApplets) {
    std::string link = absl::StrCat(dir, "/bin/", applet);
    if (symlink("busybox", link.c_str()) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("symlink ", link, ": ", strerror(errno)));
    }
  }
  std::ofstream(absl::StrCat(dir, "/etc/passwd"))
      << "root:x:0:0:root:/root:/bin/sh\n";
  std::ofstream(absl::StrCat(dir, "/etc/group")) << "root:x:0:\n";
  return absl::OkStatus();
}

absl::Status WriteBundle(const std::string& bundle,
                         const BundleOptions& options) {
  if (mkdir(bundle.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("mkdir ", bundle, ": ", strerror(errno)));
  }
  const std::string config_path = absl::StrCat(bundle, "/config.json");
  unlink(config_path.c_str());
  absl::StatusOr<std::string> runc = FindOnPath("runc");
  if (!runc.ok()) {
    return absl::FailedPreconditionError("runc is not installed");
  }
  absl::StatusOr<int> status = RunAndWait({*runc, "spec", "--bundle", bundle});
  if (!status.ok()) return status.status();
  if (*status != 0) {
    return absl::InternalError(absl::StrCat("runc spec exited ", *status));
  }
  absl::StatusOr<std::string> text = ReadFile(config_path);
  if (!text.ok()) return text.status();
  json spec = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) return absl::InternalError("runc spec: not JSON");
  spec["process"]["terminal"] = options.terminal;
  spec["process"]["args"] = options.args;
  spec["process"]["env"] = {kPath, "TERM=xterm"};
  spec["root"]["path"] = options.root_path;
  spec["root"]["readonly"] = options.readonly_root;
  spec["hostname"] = "stockade-test";
  if (!options.pid_namespace) {
    json namespaces = json::array();
    for (const json& ns : spec["linux"]["namespaces"]) {
      if (ns.value("type", "") != "pid") namespaces.push_back(ns);
    }
    spec["linux"]["namespaces"] = namespaces;
  }
  if (options.memory_limit > 0) {
    spec["linux"]["resources"]["memory"] = {{"limit", options.memory_limit},
                                            {"swap", options.memory_limit}};
  }
  std::ofstream out(config_path, std::ios::trunc);
  out << spec.dump(2);
  if (!out) return absl::InternalError(absl::StrCat("write ", config_path));
  return absl::OkStatus();
}

std::string ProcessJson(const std::vector<std::string>& args, bool terminal) {
  json process = {
      {"terminal", terminal}, {"user", {{"uid", 0}, {"gid", 0}}},
      {"args", args},         {"env", {kPath, "TERM=xterm"}},
      {"cwd", "/"},           {"noNewPrivileges", true},
  };
  return process.dump();
}

std::string UniqueId(absl::string_view prefix) {
  static std::atomic<int> counter{0};
  return absl::StrCat(prefix, "-", getpid(), "-", counter++);
}

std::string ReadFifoUntilEof(int fd, absl::Duration timeout) {
  std::string out;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, 50);
    if (n <= 0) continue;
    char buf[4096];
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r > 0) {
      out.append(buf, static_cast<size_t>(r));
      continue;
    }
    if (r == 0 && (p.revents & POLLHUP)) break;
  }
  return out;
}

bool IsMountPoint(const std::string& path) {
  absl::StatusOr<std::string> info = ReadFile("/proc/self/mountinfo");
  if (!info.ok()) return false;
  for (absl::string_view line : absl::StrSplit(*info, '\n')) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() >= 5 && UnescapeMountinfo(fields[4]) == path) {
      return true;
    }
  }
  return false;
}

}  // namespace stockade::shim::testing
