#include "node/install/installer.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "node/install/containerd_config.h"

namespace stockade::node::install {
namespace {

namespace fs = std::filesystem;

constexpr char kShimBinary[] = "containerd-shim-stockade-v1";
constexpr char kShimConfigHeader[] =
    "# The stockade shim's settings, written by stockade-node-install (its "
    "uninstall deletes this file).";

// A host path as the installer reaches it.
std::string OnHost(const InstallOptions& o, absl::string_view path) {
  if (o.host_root.empty() || o.host_root == "/") return std::string(path);
  return absl::StrCat(absl::StripSuffix(o.host_root, "/"), path);
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::Status(absl::ErrnoToStatusCode(errno),
                      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

// The file's contents, or nullopt when it does not exist.
absl::StatusOr<std::optional<std::string>> ReadIfExists(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    return Errno("cannot read", path);
  }
  std::ostringstream out;
  out << in.rdbuf();
  return std::optional<std::string>(out.str());
}

// Writes through a temporary file and rename, so a reader (containerd, a
// running shim's exec of a binary) sees the old or the new file, never half.
absl::Status WriteAtomically(const std::string& path, absl::string_view data,
                             mode_t mode) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", fs::path(path).parent_path().string(),
                     ": ", ec.message()));
  }
  std::string tmp = absl::StrCat(path, ".stockade-tmp");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Errno("cannot write", tmp);
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = Errno("cannot write", tmp);
      close(fd);
      unlink(tmp.c_str());
      return s;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
    absl::Status s = Errno("cannot write", tmp);
    close(fd);
    unlink(tmp.c_str());
    return s;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = Errno("cannot rename onto", path);
    unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

// Writes `data` unless the file holds it already; says which in `log`.
absl::Status Put(const std::string& path, absl::string_view data, mode_t mode,
                 absl::string_view shown, std::vector<std::string>* log) {
  absl::StatusOr<std::optional<std::string>> now = ReadIfExists(path);
  if (!now.ok()) return now.status();
  if (now->has_value() && **now == data) {
    log->push_back(absl::StrCat("unchanged ", shown));
    return absl::OkStatus();
  }
  if (absl::Status s = WriteAtomically(path, data, mode); !s.ok()) return s;
  log->push_back(absl::StrCat("wrote ", shown));
  return absl::OkStatus();
}

absl::Status Remove(const std::string& path, absl::string_view shown,
                    std::vector<std::string>* log) {
  if (unlink(path.c_str()) == 0) {
    log->push_back(absl::StrCat("removed ", shown));
    return absl::OkStatus();
  }
  if (errno == ENOENT) return absl::OkStatus();
  return Errno("cannot remove", path);
}

void RemoveDirIfEmpty(const std::string& path, absl::string_view shown,
                      std::vector<std::string>* log) {
  if (rmdir(path.c_str()) == 0) {
    log->push_back(absl::StrCat("removed ", shown, "/"));
  }
}

std::string Dirname(absl::string_view path) {
  return fs::path(std::string(path)).parent_path().string();
}

// containerd 2.x reads this drop-in when its configuration imports it.
std::string DropInPath(const InstallOptions& o) {
  return absl::StrCat(Dirname(o.containerd_config), "/conf.d/", o.handler,
                      ".toml");
}

RuntimeEntry EntryFor(const InstallOptions& o) {
  RuntimeEntry e;
  e.handler = o.handler;
  e.shim_path = absl::StrCat(o.prefix, "/bin/", kShimBinary);
  e.shim_config_path = o.shim_config;
  return e;
}

// From the link directory to the installed shim, relative, so the link
// resolves under any host root.
std::string LinkTarget(const InstallOptions& o) {
  return fs::path(absl::StrCat(o.prefix, "/bin/", kShimBinary))
      .lexically_relative(o.link_dir)
      .string();
}

// Runs `systemctl restart containerd` in the host's namespaces (the
// installer runs with hostPID; pid 1 is the host's init).
absl::Status RestartContainerd(const InstallOptions& o,
                               std::vector<std::string>* log) {
  pid_t pid = fork();
  if (pid < 0) return Errno("cannot fork", "systemctl");
  if (pid == 0) {
    if (o.host_root != "/" && !o.host_root.empty()) {
      for (const char* ns : {"mnt", "uts", "ipc", "net", "pid"}) {
        std::string path = absl::StrCat("/proc/1/ns/", ns);
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, 0) != 0) {
          dprintf(2, "stockade-node-install: cannot enter %s: %s\n",
                  path.c_str(), strerror(errno));
          _exit(125);
        }
        close(fd);
      }
    }
    execlp("systemctl", "systemctl", "restart", "containerd",
           static_cast<char*>(nullptr));
    dprintf(2, "stockade-node-install: cannot run systemctl: %s\n",
            strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        "`systemctl restart containerd` on the host failed (status ", status,
        "); restart containerd for the stockade runtime to take effect"));
  }
  log->push_back("restarted containerd");
  return absl::OkStatus();
}

absl::Status CheckOptions(const InstallOptions& o) {
  for (const auto& [flag, value] :
       {std::pair<const char*, const std::string*>{"--prefix", &o.prefix},
        {"--containerd-config", &o.containerd_config},
        {"--shim-config", &o.shim_config},
        {"--store", &o.store}}) {
    if (!absl::StartsWith(*value, "/")) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": \"", *value, "\" must be an absolute host path"));
    }
  }
  if (!o.link_dir.empty() && !absl::StartsWith(o.link_dir, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--link-dir: \"", o.link_dir,
                     "\" must be an absolute host path or \"\""));
  }
  if (o.handler.empty() ||
      o.handler.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") !=
          std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--runtime-handler: \"", o.handler,
        "\" must be lower-case letters, digits and '-' (a RuntimeClass "
        "handler)"));
  }
  return absl::OkStatus();
}

// Adds the runtime to containerd's configuration; sets *changed.
absl::Status AddRuntime(const InstallOptions& o, bool* changed,
                        std::vector<std::string>* log) {
  const std::string config_path = OnHost(o, o.containerd_config);
  const std::string dropin_path = OnHost(o, DropInPath(o));
  const RuntimeEntry entry = EntryFor(o);
  absl::StatusOr<std::optional<std::string>> config = ReadIfExists(config_path);
  if (!config.ok()) return config.status();
  std::string before_dropin;
  if (absl::StatusOr<std::optional<std::string>> d = ReadIfExists(dropin_path);
      d.ok() && d->has_value()) {
    before_dropin = **d;
  }

  if (!config->has_value()) {
    *changed = true;
    return Put(config_path, NewConfigFile(entry), 0644, o.containerd_config,
               log);
  }
  absl::StatusOr<int> version = ConfigVersion(**config);
  if (!version.ok()) {
    return absl::Status(
        version.status().code(),
        absl::StrCat(o.containerd_config, ": ", version.status().message()));
  }
  if (*version == 3 &&
      ImportsCover(Imports(**config, Dirname(o.containerd_config)),
                   DropInPath(o))) {
    // containerd 2.x merges the drop-in key by key.
    std::string base = RemoveRuntimeBlock(**config);
    if (base != **config) {
      if (absl::Status s =
              Put(config_path, base, 0644, o.containerd_config, log);
          !s.ok()) {
        return s;
      }
    }
    std::string dropin = DropInFile(base, entry);
    *changed = *changed || base != **config || dropin != before_dropin;
    return Put(dropin_path, dropin, 0644, DropInPath(o), log);
  }
  absl::StatusOr<std::string> next = AddRuntimeBlock(**config, entry);
  if (!next.ok()) {
    return absl::Status(
        next.status().code(),
        absl::StrCat(o.containerd_config, ": ", next.status().message()));
  }
  *changed = *changed || *next != **config;
  absl::Status s = Put(config_path, *next, 0644, o.containerd_config, log);
  if (s.ok() && absl::StartsWith(before_dropin, "# The stockade runtime")) {
    s = Remove(dropin_path, DropInPath(o), log);
  }
  return s;
}

absl::Status RemoveRuntime(const InstallOptions& o, bool* changed,
                           std::vector<std::string>* log) {
  const std::string config_path = OnHost(o, o.containerd_config);
  const std::string dropin_path = OnHost(o, DropInPath(o));
  absl::StatusOr<std::optional<std::string>> dropin = ReadIfExists(dropin_path);
  if (!dropin.ok()) return dropin.status();
  if (dropin->has_value() &&
      absl::StartsWith(**dropin, "# The stockade runtime")) {
    *changed = true;
    if (absl::Status s = Remove(dropin_path, DropInPath(o), log); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<std::optional<std::string>> config = ReadIfExists(config_path);
  if (!config.ok()) return config.status();
  if (!config->has_value()) return absl::OkStatus();
  std::string base = RemoveRuntimeBlock(**config);
  if (base == **config) return absl::OkStatus();
  *changed = true;
  if (base == absl::StrCat(kCreatedMarker, "\nversion = 2\n")) {
    return Remove(config_path, o.containerd_config, log);
  }
  return Put(config_path, base, 0644, o.containerd_config, log);
}

}  // namespace

absl::Status Install(const InstallOptions& o, std::vector<std::string>* log) {
  if (absl::Status s = CheckOptions(o); !s.ok()) return s;
  // Everything is read before anything is written.
  std::vector<std::string> binaries;
  for (const std::string& name : PayloadBinaries()) {
    absl::StatusOr<std::optional<std::string>> data =
        ReadIfExists(absl::StrCat(o.payload, "/", name));
    if (!data.ok()) return data.status();
    if (!data->has_value()) {
      return absl::NotFoundError(
          absl::StrCat("the payload has no ", name, " (looked in ", o.payload,
                       "; --payload names the directory)"));
    }
    binaries.push_back(std::move(**data));
  }
  for (size_t i = 0; i < binaries.size(); ++i) {
    const std::string& name = PayloadBinaries()[i];
    std::string dest = absl::StrCat(o.prefix, "/bin/", name);
    if (absl::Status s = Put(OnHost(o, dest), binaries[i], 0755, dest, log);
        !s.ok()) {
      return s;
    }
  }
  if (!o.link_dir.empty()) {
    std::string link = absl::StrCat(o.link_dir, "/", kShimBinary);
    std::string on_host = OnHost(o, link);
    std::string target = LinkTarget(o);
    struct stat st;
    if (lstat(on_host.c_str(), &st) == 0) {
      if (!S_ISLNK(st.st_mode)) {
        return absl::FailedPreconditionError(absl::StrCat(
            link,
            " exists and is not a link this installer made; remove it "
            "or pass --link-dir=\"\""));
      }
      std::error_code ec;
      if (fs::read_symlink(on_host, ec).string() != target) {
        unlink(on_host.c_str());
      }
    }
    std::error_code ec;
    fs::create_directories(Dirname(on_host), ec);
    if (symlink(target.c_str(), on_host.c_str()) == 0) {
      log->push_back(absl::StrCat("linked ", link, " -> ", target));
    } else if (errno != EEXIST) {
      return Errno("cannot link", link);
    }
  }
  if (absl::Status s =
          Put(OnHost(o, o.shim_config),
              absl::StrCat(kShimConfigHeader, "\nstore: ", o.store, "\n"), 0644,
              o.shim_config, log);
      !s.ok()) {
    return s;
  }
  std::error_code ec;
  fs::create_directories(OnHost(o, o.store), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create the store ", o.store, ": ", ec.message()));
  }
  bool changed = false;
  if (absl::Status s = AddRuntime(o, &changed, log); !s.ok()) return s;
  if (changed && o.restart_containerd) return RestartContainerd(o, log);
  if (changed) {
    log->push_back(
        "containerd reads its configuration when it starts: restart it for "
        "the runtime handler to take effect (or --restart-containerd)");
  }
  return absl::OkStatus();
}

absl::Status Uninstall(const InstallOptions& o, std::vector<std::string>* log) {
  if (absl::Status s = CheckOptions(o); !s.ok()) return s;
  bool changed = false;
  if (absl::Status s = RemoveRuntime(o, &changed, log); !s.ok()) return s;
  if (!o.link_dir.empty()) {
    std::string link = absl::StrCat(o.link_dir, "/", kShimBinary);
    std::error_code ec;
    if (fs::read_symlink(OnHost(o, link), ec).string() == LinkTarget(o)) {
      if (absl::Status s = Remove(OnHost(o, link), link, log); !s.ok()) {
        return s;
      }
    }
  }
  for (const std::string& name : PayloadBinaries()) {
    std::string path = absl::StrCat(o.prefix, "/bin/", name);
    if (absl::Status s = Remove(OnHost(o, path), path, log); !s.ok()) return s;
  }
  RemoveDirIfEmpty(OnHost(o, absl::StrCat(o.prefix, "/bin")),
                   absl::StrCat(o.prefix, "/bin"), log);
  RemoveDirIfEmpty(OnHost(o, o.prefix), o.prefix, log);
  absl::StatusOr<std::optional<std::string>> shim_config =
      ReadIfExists(OnHost(o, o.shim_config));
  if (shim_config.ok() && shim_config->has_value() &&
      absl::StartsWith(**shim_config, kShimConfigHeader)) {
    if (absl::Status s = Remove(OnHost(o, o.shim_config), o.shim_config, log);
        !s.ok()) {
      return s;
    }
    RemoveDirIfEmpty(OnHost(o, Dirname(o.shim_config)), Dirname(o.shim_config),
                     log);
  }
  if (o.purge_store) {
    std::error_code ec;
    if (fs::remove_all(OnHost(o, o.store), ec) > 0) {
      log->push_back(absl::StrCat("removed ", o.store, "/"));
    }
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot remove the store ",
                                              o.store, ": ", ec.message()));
    }
  }
  if (changed && o.restart_containerd) return RestartContainerd(o, log);
  return absl::OkStatus();
}

}  // namespace stockade::node::install
