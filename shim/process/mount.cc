#include "shim/process/mount.h"

#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade::shim {
namespace {

struct Flag {
  bool clear;
  unsigned long flag;
};

const std::map<std::string, Flag>& Flags() {
  static const auto* flags = new std::map<std::string, Flag>{
      {"async", {true, MS_SYNCHRONOUS}},
      {"atime", {true, MS_NOATIME}},
      {"bind", {false, MS_BIND}},
      {"defaults", {false, 0}},
      {"dev", {true, MS_NODEV}},
      {"diratime", {true, MS_NODIRATIME}},
      {"dirsync", {false, MS_DIRSYNC}},
      {"exec", {true, MS_NOEXEC}},
      {"mand", {false, MS_MANDLOCK}},
      {"noatime", {false, MS_NOATIME}},
      {"nodev", {false, MS_NODEV}},
      {"nodiratime", {false, MS_NODIRATIME}},
      {"noexec", {false, MS_NOEXEC}},
      {"nomand", {true, MS_MANDLOCK}},
      {"norelatime", {true, MS_RELATIME}},
      {"nostrictatime", {true, MS_STRICTATIME}},
      {"nosuid", {false, MS_NOSUID}},
      {"rbind", {false, MS_BIND | MS_REC}},
      {"relatime", {false, MS_RELATIME}},
      {"remount", {false, MS_REMOUNT}},
      {"ro", {false, MS_RDONLY}},
      {"rw", {true, MS_RDONLY}},
      {"strictatime", {false, MS_STRICTATIME}},
      {"suid", {true, MS_NOSUID}},
      {"sync", {false, MS_SYNCHRONOUS}},
  };
  return *flags;
}

const std::map<std::string, unsigned long>& Propagation() {
  static const auto* flags = new std::map<std::string, unsigned long>{
      {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
      {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
      {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
      {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
  };
  return *flags;
}

absl::Status MountOne(const std::string& target, const RootfsMount& m) {
  unsigned long flags = 0;
  unsigned long propagation = 0;
  std::vector<std::string> data;
  for (const std::string& option : m.options) {
    if (auto it = Flags().find(option); it != Flags().end()) {
      if (it->second.clear) {
        flags &= ~it->second.flag;
      } else {
        flags |= it->second.flag;
      }
    } else if (auto p = Propagation().find(option); p != Propagation().end()) {
      propagation |= p->second;
    } else {
      data.push_back(option);
    }
  }
  if (m.type == "bind") flags |= MS_BIND;
  const std::string joined = absl::StrJoin(data, ",");
  const char* type = m.type.empty() ? nullptr : m.type.c_str();
  const char* source = m.source.empty() ? "none" : m.source.c_str();
  auto error = [&](absl::string_view step) {
    return absl::InternalError(absl::StrCat("mount ", m.type, " ", m.source,
                                            " on ", target, " (", step,
                                            "): ", strerror(errno)));
  };
  // A bind mount ignores every flag but MS_REC: read-only and the like need
  // a remount.
  const bool bind = (flags & MS_BIND) != 0 && (flags & MS_REMOUNT) == 0;
  if (mount(source, target.c_str(), type,
            bind ? (flags & (MS_BIND | MS_REC)) : flags,
            joined.empty() ? nullptr : joined.c_str()) != 0) {
    return error("mount");
  }
  const unsigned long rest = flags & ~(MS_BIND | MS_REC);
  if (bind && rest != 0) {
    if (mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | rest,
              nullptr) != 0) {
      absl::Status status = error("remount");
      UnmountAll(target).IgnoreError();
      return status;
    }
  }
  if (propagation != 0 &&
      mount(nullptr, target.c_str(), nullptr, propagation, nullptr) != 0) {
    absl::Status status = error("propagation");
    UnmountAll(target).IgnoreError();
    return status;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MountRootfs(const std::string& rootfs,
                         const std::vector<RootfsMount>& mounts) {
  if (mounts.empty()) return absl::OkStatus();
  if (mkdir(rootfs.c_str(), 0711) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("mkdir ", rootfs, ": ", strerror(errno)));
  }
  std::vector<std::string> done;
  for (const RootfsMount& m : mounts) {
    std::string target =
        m.target.empty() || m.target == "/"
            ? rootfs
            : absl::StrCat(rootfs, m.target.front() == '/' ? "" : "/",
                           m.target);
    absl::Status status = MountOne(target, m);
    if (!status.ok()) {
      for (auto it = done.rbegin(); it != done.rend(); ++it) {
        UnmountAll(*it).IgnoreError();
      }
      return status;
    }
    done.push_back(target);
  }
  return absl::OkStatus();
}

absl::Status UnmountAll(const std::string& path) {
  for (int i = 0; i < 1000; ++i) {
    if (umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
    if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("unmount ", path, ": ", strerror(errno)));
  }
  return absl::InternalError(absl::StrCat("unmount ", path, ": still mounted"));
}

}  // namespace stockade::shim
