#include "shim/policy/seccomp_cache.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "shim/init/seccomp_loader.h"
#include "store/store.h"

namespace stockade::shim {
namespace {

// Bump when the way programs are generated changes.
constexpr char kFormat[] = "stockade-seccomp-bpf-1";

bool IsProgram(const std::string& bytes) {
  return !bytes.empty() && bytes.size() % sizeof(sock_filter) == 0 &&
         bytes.size() / sizeof(sock_filter) <= BPF_MAXINSNS;
}

bool ReadSmallFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  char buf[8192];
  bool ok = true;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > BPF_MAXINSNS * sizeof(sock_filter)) {
      ok = false;
      break;
    }
  }
  close(fd);
  return ok;
}

void WriteCacheFile(const std::string& dir, const std::string& path,
                    const std::string& bytes) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    // Parents (e.g. /run/stockade) first, then the directory itself.
    const size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash == 0) return;
    mkdir(dir.substr(0, slash).c_str(), 0700);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return;
  }
  std::string tmp = absl::StrCat(path, ".tmp.XXXXXX");
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = close(fd) == 0 && done == bytes.size();
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) unlink(tmp.c_str());
}

}  // namespace

std::string SeccompCachePath(absl::string_view seccomp_json,
                             const std::string& cache_dir) {
  const scmp_version* v = seccomp_version();
  const std::string key = store::Sha256Hex(
      absl::StrCat(kFormat, "\n", seccomp_arch_native(), "\n", v->major, ".",
                   v->minor, ".", v->micro, "\n", seccomp_json));
  return absl::StrCat(cache_dir, "/", key, ".bpf");
}

absl::StatusOr<std::string> SeccompBpf(absl::string_view seccomp_json,
                                       const std::string& cache_dir) {
  std::string path;
  if (!cache_dir.empty()) {
    path = SeccompCachePath(seccomp_json, cache_dir);
    std::string cached;
    if (ReadSmallFile(path, &cached) && IsProgram(cached)) return cached;
  }
  absl::StatusOr<OciSeccompFilter> filter = OciSeccompFilter::Build(
      std::string_view(seccomp_json.data(), seccomp_json.size()));
  if (!filter.ok()) return filter.status();
  absl::StatusOr<std::string> bpf = filter->ExportBpf();
  if (!bpf.ok()) return bpf.status();
  if (!IsProgram(*bpf)) {
    return absl::InternalError(absl::StrCat(
        "libseccomp generated no usable program (", bpf->size(), " bytes)"));
  }
  if (!cache_dir.empty()) WriteCacheFile(cache_dir, path, *bpf);
  return bpf;
}

}  // namespace stockade::shim
