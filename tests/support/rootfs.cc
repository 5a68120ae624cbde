#include "tests/support/rootfs.h"

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {
namespace {

namespace fs = std::filesystem;

// True if the ELF file at `path` has no PT_INTERP (needs no dynamic loader).
absl::Status CheckStaticElf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh;
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof(eh)) ||
      std::string(reinterpret_cast<const char*>(eh.e_ident), 4) != ELFMAG ||
      eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a 64-bit ELF executable"));
  }
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    in.seekg(static_cast<std::streamoff>(eh.e_phoff + i * eh.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof(ph))) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": truncated program headers"));
    }
    if (ph.p_type == PT_INTERP) {
      return absl::FailedPreconditionError(
          absl::StrCat(path,
                       " is dynamically linked; install busybox-static "
                       "(hack/install-deps)"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const fs::path& path, absl::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("write ", path.string()));
  return absl::OkStatus();
}

absl::Status Run(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv, {.timeout = absl::Seconds(120)});
  if (!r.ok()) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(argv, " "), ": ", r.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& RequiredApplets() {
  static const auto* applets = new std::vector<std::string>{
      "sh",    "echo",    "cat",    "sleep", "touch",    "ls",
      "mkdir", "dd",      "nc",     "wget",  "rm",       "id",
      "env",   "kill",    "ps",     "grep",  "head",     "test",
      "true",  "false",   "wc",     "mount", "unshare",  "chmod",
      "stat",  "timeout", "printf", "seq",   "fallocate"};
  return *applets;
}

absl::Status BusyboxRootfs(const std::string& dir) {
  if (access(kBusyboxBinary, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kBusyboxBinary,
                     " missing: install busybox-static (hack/install-deps)"));
  }
  if (absl::Status s = CheckStaticElf(kBusyboxBinary); !s.ok()) return s;
  CommandResult list = RunCommand({kBusyboxBinary, "--list"});
  if (!list.ok()) {
    return absl::InternalError(
        absl::StrCat("busybox --list: ", list.ToString()));
  }
  std::vector<std::string> applets =
      absl::StrSplit(list.out, '\n', absl::SkipWhitespace());
  std::sort(applets.begin(), applets.end());
  std::vector<std::string> missing;
  for (const std::string& want : RequiredApplets()) {
    if (!std::binary_search(applets.begin(), applets.end(), want)) {
      missing.push_back(want);
    }
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        kBusyboxBinary, " lacks applets: ", absl::StrJoin(missing, " ")));
  }

  std::error_code ec;
  const fs::path root(dir);
  fs::create_directories(root, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message()));
  if (!fs::is_empty(root, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " is not empty"));
  }
  for (const char* sub :
       {"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "var/tmp", "proc",
        "sys", "dev", "run", "root", "home"}) {
    fs::create_directories(root / sub, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("mkdir ", (root / sub).string(), ": ", ec.message()));
    }
  }
  fs::permissions(root / "tmp", fs::perms(01777), ec);
  fs::permissions(root / "var/tmp", fs::perms(01777), ec);
  fs::permissions(root / "root", fs::perms(0700), ec);
  if (ec) return absl::InternalError(absl::StrCat("chmod: ", ec.message()));

  fs::copy_file(kBusyboxBinary, root / "bin/busybox", ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("copy ", kBusyboxBinary, ": ", ec.message()));
  }
  fs::permissions(root / "bin/busybox", fs::perms(0755), ec);
  for (const std::string& applet : applets) {
    if (applet == "busybox" || applet.find('/') != std::string::npos) continue;
    fs::create_symlink("busybox", root / "bin" / applet, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("symlink bin/", applet, ": ", ec.message()));
    }
  }
  if (absl::Status s = WriteFile(root / "etc/passwd",
                                 "root:x:0:0:root:/root:/bin/sh\n"
                                 "nobody:x:65534:65534:nobody:/nonexistent:"
                                 "/bin/false\n");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          WriteFile(root / "etc/group", "root:x:0:\nnogroup:x:65534:\n");
      !s.ok()) {
    return s;
  }
  return WriteFile(root / "etc/hosts", "127.0.0.1 localhost\n::1 localhost\n");
}

absl::Status BuildOciArchive(const std::string& rootfs,
                             const std::string& work_dir, absl::string_view tag,
                             const std::string& tar_path) {
  for (const char* tool : {"umoci", "tar", "cp"}) {
    if (FindExecutable(tool).empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(tool, " missing: run hack/install-deps"));
    }
  }
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", work_dir));
  const std::string layout = work_dir + "/layout";
  const std::string bundle = work_dir + "/bundle";
  fs::remove_all(layout, ec);
  fs::remove_all(bundle, ec);
  const std::string image = absl::StrCat(layout, ":", tag);
  for (const std::vector<std::string>& step :
       std::vector<std::vector<std::string>>{
           {"umoci", "init", "--layout", layout},
           {"umoci", "new", "--image", image},
           {"umoci", "unpack", "--image", image, bundle},
           {"cp", "-a", rootfs + "/.", bundle + "/rootfs/"},
           {"umoci", "repack", "--image", image, bundle},
           {"umoci", "config", "--image", image, "--config.env", kRootfsPathEnv,
            "--config.cmd", "sh"},
           {"umoci", "gc", "--layout", layout},
           {"tar", "-C", layout, "-cf", tar_path, "."}}) {
    if (absl::Status s = Run(step); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> UnpackOciArchive(const std::string& tar_path,
                                             const std::string& work_dir,
                                             absl::string_view tag) {
  std::error_code ec;
  if (!fs::exists(tar_path, ec)) {
    return absl::NotFoundError(
        absl::StrCat(tar_path, " missing: build the `images` target"));
  }
  const std::string layout = work_dir + "/layout";
  const std::string bundle = work_dir + "/bundle";
  fs::remove_all(work_dir, ec);
  fs::create_directories(layout, ec);
  for (const std::vector<std::string>& step :
       std::vector<std::vector<std::string>>{
           {"tar", "-C", layout, "-xf", tar_path},
           {"umoci", "unpack", "--image", absl::StrCat(layout, ":", tag),
            bundle}}) {
    if (absl::Status s = Run(step); !s.ok()) return s;
  }
  return bundle + "/rootfs";
}

}  // namespace stockade::testing
