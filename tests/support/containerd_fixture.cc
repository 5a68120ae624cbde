#include "tests/support/containerd_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "node/install/containerd_config.h"
#include "tests/support/rootfs.h"

#ifndef STOCKADE_BIN_DIR
#error "STOCKADE_BIN_DIR must be defined by the build"
#endif

extern char** environ;

namespace stockade::testing {
namespace {

using node::install::TomlString;

namespace fs = std::filesystem;

constexpr char kContainerd[] = "/usr/bin/containerd";
constexpr char kCtr[] = "/usr/bin/ctr";
constexpr char kRuncShim[] = "/usr/bin/containerd-shim-runc-v2";
constexpr char kImageBaseName[] = "stockade.test/busybox";
constexpr char kImageTag[] = "latest";
// runc-v2 (and runc) keep container state here whatever containerd's state.
constexpr char kRuncStateRoot[] = "/run/containerd/runc";

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string QuoteList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const std::string& item : items) quoted.push_back(TomlString(item));
  return absl::StrCat("[", absl::StrJoin(quoted, ", "), "]");
}

// Unescapes the octal escapes (\040 ...) of a /proc/self/mountinfo field.
std::string UnescapeMountField(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char d = s[i + k];
        if (d < '0' || d > '7') ok = false;
        v = v * 8 + (d - '0');
      }
      if (ok) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

bool IsUnder(absl::string_view path, absl::string_view dir) {
  return path == dir || (absl::StartsWith(path, dir) &&
                         path.size() > dir.size() && path[dir.size()] == '/');
}

// Removes a tree without following symlinks or crossing into another
// filesystem (a mount left behind is reported, never emptied).
void RemoveTree(const std::string& path, dev_t dev,
                std::vector<std::string>* errors) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (st.st_dev != dev) {
    errors->push_back(absl::StrCat(path, ": another filesystem, left alone"));
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = opendir(path.c_str())) {
      std::vector<std::string> names;
      while (struct dirent* e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
          names.push_back(e->d_name);
        }
      }
      closedir(d);
      for (const std::string& n : names) {
        RemoveTree(absl::StrCat(path, "/", n), dev, errors);
      }
    }
    if (rmdir(path.c_str()) != 0) {
      errors->push_back(absl::StrCat("rmdir ", path, ": ", strerror(errno)));
    }
  } else if (unlink(path.c_str()) != 0) {
    errors->push_back(absl::StrCat("unlink ", path, ": ", strerror(errno)));
  }
}

// Removes <base>/<ns> cgroup dirs (and their empty children) of every
// hierarchy; they stay behind because runc removes only the container's.
void RemoveNamespaceCgroups(const std::string& ns) {
  std::vector<std::string> candidates = {
      absl::StrCat("/sys/fs/cgroup/", ns)};  // cgroup v2 only
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    if (e.is_directory(ec)) {
      candidates.push_back(absl::StrCat(e.path().string(), "/", ns));
    }
  }
  for (const std::string& dir : candidates) {
    if (!fs::is_directory(dir, ec)) continue;
    // Children first (runc left them only if a container was not deleted).
    for (const auto& child : fs::directory_iterator(dir, ec)) {
      if (child.is_directory(ec)) rmdir(child.path().c_str());
    }
    rmdir(dir.c_str());
  }
}

std::vector<std::string> CtrEnvironment(const std::string& snapshotter) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "CONTAINERD_")) env.push_back(*e);
  }
  env.push_back(absl::StrCat("CONTAINERD_SNAPSHOTTER=", snapshotter));
  return env;
}

std::vector<std::string> Lines(absl::string_view text) {
  return absl::StrSplit(text, '\n', absl::SkipWhitespace());
}

}  // namespace

absl::Status CheckContainerdPrerequisites() {
  std::vector<std::string> problems;
  if (geteuid() != 0) problems.push_back("not root (containerd needs root)");
  for (const char* bin : {kContainerd, kCtr, kRuncShim}) {
    if (access(bin, X_OK) != 0) {
      problems.push_back(absl::StrCat(bin, " missing (package containerd)"));
    }
  }
  if (FindExecutable("runc").empty()) {
    problems.push_back("runc missing from PATH (package runc)");
  }
  if (access(kBusyboxBinary, X_OK) != 0) {
    problems.push_back(
        absl::StrCat(kBusyboxBinary, " missing (package busybox-static)"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "containerd fixture cannot run: ", absl::StrJoin(problems, "; "),
      ". Run hack/install-deps as root."));
}

std::vector<std::string> MountsUnder(absl::string_view dir) {
  std::vector<std::string> mounts;
  for (absl::string_view line :
       Lines(ReadFileOrEmpty("/proc/self/mountinfo"))) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5) continue;
    std::string mount_point = UnescapeMountField(fields[4]);
    if (IsUnder(mount_point, dir)) mounts.push_back(mount_point);
  }
  return mounts;
}

std::vector<std::string> ProcessesOf(absl::string_view dir,
                                     absl::string_view ns) {
  std::vector<std::string> found;
  const std::string cgroup_part = absl::StrCat("/", ns, "/");
  const std::string cgroup_end = absl::StrCat("/", ns);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid)) continue;
    if (pid == getpid()) continue;
    const std::string base = e.path().string();
    std::string stat = ReadFileOrEmpty(base + "/stat");
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos || close_paren + 2 >= stat.size()) {
      continue;  // gone
    }
    if (stat[close_paren + 2] == 'Z') continue;
    std::string cmdline = ReadFileOrEmpty(base + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    bool match = !dir.empty() && absl::StrContains(cmdline, dir);
    if (!match && !ns.empty()) {
      for (absl::string_view line : Lines(ReadFileOrEmpty(base + "/cgroup"))) {
        if (absl::StrContains(line, cgroup_part) ||
            absl::EndsWith(line, cgroup_end)) {
          match = true;
          break;
        }
      }
    }
    if (match) found.push_back(absl::StrCat(pid, " ", cmdline));
  }
  return found;
}

ContainerdFixture::ContainerdFixture(ContainerdOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ContainerdFixture>> ContainerdFixture::Start(
    ContainerdOptions options) {
  if (absl::Status s = CheckContainerdPrerequisites(); !s.ok()) return s;
  static std::atomic<int> counter{0};
  if (options.ns.empty()) {
    options.ns = absl::StrCat("stockade-test-", getpid(), "-", ++counter);
  }
  if (options.bin_dir.empty()) options.bin_dir = STOCKADE_BIN_DIR;
  std::unique_ptr<ContainerdFixture> f(new ContainerdFixture(options));
  if (absl::Status s = f->Init(); !s.ok()) {
    std::string log = f->LogTail();
    return absl::Status(s.code(),
                        absl::StrCat(s.message(), "\n--- containerd log (",
                                     f->log_path_, ")\n", log));
  }
  return f;
}

absl::Status ContainerdFixture::Init() {
  std::string tmpl =
      absl::StrCat(options_.temp_parent, "/stockade-ctrd-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", tmpl, ": ", strerror(errno)));
  }
  dir_ = tmpl;
  address_ = dir_ + "/containerd.sock";
  ttrpc_address_ = dir_ + "/containerd.sock.ttrpc";
  root_ = dir_ + "/root";
  state_ = dir_ + "/state";
  config_path_ = dir_ + "/config.toml";
  log_path_ = dir_ + "/containerd.log";
  rootfs_ = dir_ + "/rootfs";
  // The kernel limits unix socket paths to 107 bytes.
  if (ttrpc_address_.size() > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path too long: ", ttrpc_address_));
  }
  for (const std::string& d : {root_, state_, dir_ + "/tmp"}) {
    if (mkdir(d.c_str(), 0711) != 0) {
      return absl::InternalError(
          absl::StrCat("mkdir ", d, ": ", strerror(errno)));
    }
  }
  {
    std::ofstream out(config_path_);
    out << ConfigToml();
    out.close();
    if (!out) return absl::InternalError("cannot write " + config_path_);
  }
  if (absl::Status s = BusyboxRootfs(rootfs_); !s.ok()) return s;
  return Launch();
}

std::string ContainerdFixture::ConfigToml() const {
  std::vector<std::string> disabled = {
      // Not needed by ctr; would want CNI (see ContainerdOptions::enable_cri).
      "io.containerd.grpc.v1.cri",
      // Would write to /opt/containerd.
      "io.containerd.internal.v1.opt",
      // Snapshotters that do not work here or are not needed.
      "io.containerd.snapshotter.v1.aufs",
      "io.containerd.snapshotter.v1.btrfs",
      "io.containerd.snapshotter.v1.devmapper",
      "io.containerd.snapshotter.v1.zfs",
      "io.containerd.tracing.processor.v1.otlp",
      "io.containerd.internal.v1.tracing",
  };
  if (options_.enable_cri) disabled.erase(disabled.begin());
  // containerd exits at start if one of these does not load (instead of
  // answering `ctr version` while unable to run a task).
  std::vector<std::string> required = {
      "io.containerd.grpc.v1.tasks", "io.containerd.runtime.v2.task",
      absl::StrCat("io.containerd.snapshotter.v1.", options_.snapshotter)};
  if (options_.enable_cri) required.push_back("io.containerd.grpc.v1.cri");
  const std::string cri = "plugins.\"io.containerd.grpc.v1.cri\"";
  std::string toml = absl::StrCat(
      "# Written by the Stockade test fixture (tests/support).\n",
      "version = 2\n",                                     //
      "root = ", TomlString(root_), "\n",                  //
      "state = ", TomlString(state_), "\n",                //
      "temp = ", TomlString(dir_ + "/tmp"), "\n",          //
      "disabled_plugins = ", QuoteList(disabled), "\n",    //
      "required_plugins = ", QuoteList(required), "\n\n",  //
      "[grpc]\n  address = ", TomlString(address_),
      "\n  uid = 0\n  gid = 0\n\n",
      "[ttrpc]\n  address = ", TomlString(ttrpc_address_), "\n\n",
      "[debug]\n  level = ", TomlString(options_.log_level), "\n\n",
      // The stockade runtime for CRI (RuntimeClass handler "stockade"). ctr
      // needs no registration: `--runtime io.containerd.stockade.v1` makes
      // containerd run containerd-shim-stockade-v1 from its PATH.
      "[", cri, "]\n",                                             //
      "  sandbox_image = \"stockade.test/pause:latest\"\n",        //
      "[", cri, ".cni]\n",                                         //
      "  conf_dir = ", TomlString(dir_ + "/cni/net.d"), "\n",      //
      "[", cri, ".containerd]\n",                                  //
      "  snapshotter = ", TomlString(options_.snapshotter), "\n",  //
      "  default_runtime_name = \"runc\"\n",                       //
      "[", cri, ".containerd.runtimes.runc]\n",                    //
      "  runtime_type = ", TomlString(kRuncV2Runtime), "\n",       //
      "[", cri, ".containerd.runtimes.stockade]\n",                //
      "  runtime_type = ", TomlString(kStockadeRuntime), "\n",     //
      "  pod_annotations = [\"stockade.dev/*\"]\n",                //
      "  container_annotations = [\"stockade.dev/*\"]\n");
  if (!options_.stockade_shim_config.empty()) {
    absl::StrAppend(
        &toml, "[", cri, ".containerd.runtimes.stockade.options]\n",
        "  ConfigPath = ", TomlString(options_.stockade_shim_config), "\n");
  }
  return toml;
}

absl::Status ContainerdFixture::Launch() {
  std::vector<std::string> env = {absl::StrCat(
      "PATH=", options_.bin_dir,
      ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")};
  env.insert(env.end(), options_.extra_env.begin(), options_.extra_env.end());
  const absl::Time begin = absl::Now();
  absl::StatusOr<pid_t> pid =
      SpawnDaemon({kContainerd, "--config", config_path_}, env, log_path_);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const absl::Time deadline = begin + options_.start_timeout;
  std::string last;
  while (absl::Now() < deadline) {
    if (std::optional<int> code = WaitForExit(pid_, absl::ZeroDuration())) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("containerd exited with code ", *code, " at start"));
    }
    struct stat st;
    if (stat(address_.c_str(), &st) == 0) {
      CommandResult r =
          RunCommand({kCtr, "--address", address_, "version"},
                     {.timeout = absl::Seconds(5),
                      .env = CtrEnvironment(options_.snapshotter)});
      if (r.ok()) {
        last_start_ = absl::Now() - begin;
        started_once_ = true;
        return absl::OkStatus();
      }
      last = r.ToString();
    }
    usleep(10000);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("containerd did not answer within ",
                   absl::FormatDuration(options_.start_timeout),
                   "; last `ctr version`: ", last));
}

absl::Status ContainerdFixture::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGTERM);
  std::optional<int> code = WaitForExit(pid_, absl::Seconds(10));
  absl::Status status = absl::OkStatus();
  if (!code.has_value()) {
    kill(pid_, SIGKILL);
    WaitForExit(pid_, absl::Seconds(10));
    status = absl::DeadlineExceededError(
        "containerd ignored SIGTERM for 10 s; killed");
  }
  pid_ = -1;
  return status;
}

absl::Status ContainerdFixture::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  if (absl::Status s = Launch(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "\n", LogTail()));
  }
  return absl::OkStatus();
}

CommandResult ContainerdFixture::CtrIn(absl::string_view ns,
                                       const std::vector<std::string>& args,
                                       std::optional<absl::Duration> timeout,
                                       const std::string& stdin_data) const {
  return CtrWith(ns, args,
                 {.timeout = timeout.value_or(options_.ctr_timeout),
                  .stdin_data = stdin_data});
}

CommandResult ContainerdFixture::CtrWith(absl::string_view ns,
                                         const std::vector<std::string>& args,
                                         CommandOptions options) const {
  std::vector<std::string> argv = {kCtr, "--address", address_, "--namespace",
                                   std::string(ns)};
  argv.insert(argv.end(), args.begin(), args.end());
  options.env = CtrEnvironment(options_.snapshotter);
  return RunCommand(argv, options);
}

CommandResult ContainerdFixture::Ctr(const std::vector<std::string>& args,
                                     std::optional<absl::Duration> timeout,
                                     const std::string& stdin_data) const {
  return CtrIn(options_.ns, args, timeout, stdin_data);
}

std::vector<std::string> ContainerdFixture::RunArgs(const RunSpec& spec) const {
  std::vector<std::string> args = {"run",       spec.detach ? "-d" : "--rm",
                                   "--runtime", spec.runtime,
                                   "--env",     kRootfsPathEnv};
  if (spec.tty) args.push_back("--tty");
  for (const std::string& e : spec.env) {
    args.push_back("--env");
    args.push_back(e);
  }
  for (const auto& [key, value] : spec.annotations) {
    args.push_back("--annotation");
    args.push_back(absl::StrCat(key, "=", value));
  }
  if (!spec.netns_path.empty()) {
    args.push_back("--with-ns");
    args.push_back(absl::StrCat("network:", spec.netns_path));
  }
  args.insert(args.end(), spec.extra_args.begin(), spec.extra_args.end());
  if (spec.image.empty()) {
    args.push_back("--rootfs");
    args.push_back(spec.rootfs.empty() ? rootfs_ : spec.rootfs);
  } else {
    args.push_back(spec.image);
  }
  args.push_back(spec.id);
  args.insert(args.end(), spec.cmd.begin(), spec.cmd.end());
  return args;
}

CommandResult ContainerdFixture::Run(const RunSpec& spec,
                                     std::optional<absl::Duration> timeout,
                                     const std::string& stdin_data) const {
  return CtrWith(options_.ns, RunArgs(spec),
                 {.timeout = timeout.value_or(options_.ctr_timeout),
                  .stdin_data = stdin_data,
                  .pty = spec.tty});
}

absl::StatusOr<std::string> ContainerdFixture::NewRootfs(
    absl::string_view name) const {
  std::string dir = absl::StrCat(dir_, "/rootfs-", name);
  if (absl::Status s = BusyboxRootfs(dir); !s.ok()) return s;
  return dir;
}

absl::StatusOr<std::string> ContainerdFixture::ImportBusyboxImage() {
  const std::string ref = absl::StrCat(kImageBaseName, ":", kImageTag);
  const std::string tar = dir_ + "/image/busybox.tar";
  if (access(tar.c_str(), R_OK) != 0) {
    if (absl::Status s =
            BuildOciArchive(rootfs_, dir_ + "/image", kImageTag, tar);
        !s.ok()) {
      return s;
    }
  }
  CommandResult r = Ctr({"image", "import", "--base-name", kImageBaseName, tar},
                        absl::Seconds(120));
  if (!r.ok()) {
    return absl::InternalError(
        absl::StrCat("ctr image import: ", r.ToString()));
  }
  return ref;
}

std::vector<std::string> ContainerdFixture::Tasks() const {
  CommandResult r = Ctr({"task", "ls", "-q"});
  if (!r.ok()) return {};
  return Lines(r.out);
}

std::string ContainerdFixture::TaskStatus(absl::string_view id) const {
  CommandResult r = Ctr({"task", "ls"});
  if (!r.ok()) return "";
  for (absl::string_view line : Lines(r.out)) {
    std::vector<absl::string_view> cols =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (cols.size() >= 3 && cols[0] == id) return std::string(cols[2]);
  }
  return "";
}

bool ContainerdFixture::WaitForTaskStatus(absl::string_view id,
                                          absl::string_view status,
                                          absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  do {
    if (TaskStatus(id) == status) return true;
    usleep(20000);
  } while (absl::Now() < deadline);
  return false;
}

std::string ContainerdFixture::LogTail(int max_lines) const {
  std::vector<std::string> lines;
  for (absl::string_view line :
       absl::StrSplit(ReadFileOrEmpty(log_path_), '\n')) {
    // One line per plugin at every start: noise when looking for a failure.
    if (!absl::StrContains(line, "msg=\"loading plugin ")) {
      lines.emplace_back(line);
    }
  }
  size_t from = lines.size() > static_cast<size_t>(max_lines)
                    ? lines.size() - static_cast<size_t>(max_lines)
                    : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(from),
                       lines.end(), "\n");
}

void ContainerdFixture::CleanUp() {
  std::vector<std::string> problems;
  // 1. Through containerd: kill and delete every task, delete every container.
  if (pid_ <= 0 && started_once_) {
    if (absl::Status s = Launch(); !s.ok()) {
      problems.push_back(absl::StrCat("restart for cleanup: ", s.message()));
    }
  }
  if (pid_ > 0) {
    CommandResult nss =
        CtrIn("default", {"namespaces", "ls", "-q"}, absl::Seconds(10));
    std::vector<std::string> namespaces = Lines(nss.out);
    for (const std::string& ns : namespaces) {
      CommandResult tasks = CtrIn(ns, {"task", "ls", "-q"}, absl::Seconds(10));
      for (const std::string& id : Lines(tasks.out)) {
        CtrIn(ns, {"task", "kill", "--all", "--signal", "SIGKILL", id},
              absl::Seconds(10));
      }
      for (const std::string& id : Lines(tasks.out)) {
        CommandResult del =
            CtrIn(ns, {"task", "delete", "--force", id}, absl::Seconds(20));
        if (!del.ok()) {
          problems.push_back(
              absl::StrCat("task delete ", ns, "/", id, ": ", del.ToString()));
        }
      }
      CommandResult containers =
          CtrIn(ns, {"container", "ls", "-q"}, absl::Seconds(10));
      for (const std::string& id : Lines(containers.out)) {
        CommandResult del =
            CtrIn(ns, {"container", "delete", id}, absl::Seconds(20));
        if (!del.ok()) {
          problems.push_back(absl::StrCat("container delete ", ns, "/", id,
                                          ": ", del.ToString()));
        }
      }
    }
  }
  if (absl::Status s = Stop(); !s.ok())
    problems.push_back(std::string(s.message()));

  // 2. Safety net: processes still tied to this fixture (a shim or container
  // that cleanup through containerd missed) are killed by pid.
  for (const std::string& p : ProcessesOf(dir_, options_.ns)) {
    int pid = 0;
    if (absl::SimpleAtoi(p.substr(0, p.find(' ')), &pid) && pid > 1) {
      problems.push_back(absl::StrCat("killed leftover process ", p));
      kill(pid, SIGKILL);
    }
  }
  // Shim sockets in /run/containerd/s of bundles that are still there.
  std::error_code ec;
  const std::string tasks_dir = state_ + "/io.containerd.runtime.v2.task";
  for (const auto& ns_dir : fs::directory_iterator(tasks_dir, ec)) {
    for (const auto& bundle : fs::directory_iterator(ns_dir.path(), ec)) {
      std::string address =
          ReadFileOrEmpty(bundle.path().string() + "/address");
      absl::string_view path = address;
      if (absl::ConsumePrefix(&path, "unix://") &&
          absl::StartsWith(path, "/run/containerd/s/")) {
        unlink(std::string(absl::StripTrailingAsciiWhitespace(path)).c_str());
      }
    }
  }

  // 3. Mounts under the temp dir, deepest first.
  std::vector<std::string> mounts = MountsUnder(dir_);
  std::sort(mounts.begin(), mounts.end(),
            [](const std::string& a, const std::string& b) {
              return a.size() > b.size();
            });
  for (const std::string& m : mounts) {
    problems.push_back(absl::StrCat("unmounted leftover mount ", m));
    if (umount2(m.c_str(), MNT_DETACH) != 0) {
      problems.push_back(absl::StrCat("umount ", m, ": ", strerror(errno)));
    }
  }

  // 4. The dirs, and what runc-v2 leaves outside them for this namespace.
  struct stat st;
  if (!dir_.empty() && lstat(dir_.c_str(), &st) == 0) {
    RemoveTree(dir_, st.st_dev, &problems);
  }
  const std::string runc_ns = absl::StrCat(kRuncStateRoot, "/", options_.ns);
  if (absl::StartsWith(options_.ns, "stockade-test-")) {
    fs::remove_all(runc_ns, ec);  // a namespace only this fixture used
  } else {
    rmdir(runc_ns.c_str());
  }
  RemoveNamespaceCgroups(options_.ns);

  // Leftovers are bugs (in the shim under test, typically): say so.
  if (!problems.empty()) {
    fprintf(stderr, "containerd fixture cleanup (%s):\n  %s\n", dir_.c_str(),
            absl::StrJoin(problems, "\n  ").c_str());
  }
}

ContainerdFixture::~ContainerdFixture() {
  if (::testing::Test::HasFailure() && !log_path_.empty()) {
    fprintf(stderr, "--- containerd log (last lines of %s)\n%s\n",
            log_path_.c_str(), LogTail().c_str());
  }
  CleanUp();
}

}  // namespace stockade::testing
