#include "node/denials/denial_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace stockade::node::denials {
namespace {

std::string LogPath(const std::string& dir) {
  return absl::StrCat(dir, "/denials.jsonl");
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::Status(absl::ErrnoToStatusCode(errno),
                      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

}  // namespace

std::string DenialDir(const std::string& store_root) {
  return absl::StrCat(store_root, "/denials");
}

absl::StatusOr<DenialLog> DenialLog::Open(const std::string& dir,
                                          int64_t max_bytes) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Errno("cannot create", dir);
  }
  const std::string path = LogPath(dir);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open", path);
  struct stat st;
  int64_t size = fstat(fd, &st) == 0 ? st.st_size : 0;
  return DenialLog(dir, max_bytes, fd, size);
}

DenialLog::DenialLog(std::string dir, int64_t max_bytes, int fd, int64_t size)
    : dir_(std::move(dir)), max_bytes_(max_bytes), fd_(fd), size_(size) {}

DenialLog::DenialLog(DenialLog&& other) noexcept
    : dir_(std::move(other.dir_)),
      max_bytes_(other.max_bytes_),
      fd_(other.fd_),
      size_(other.size_) {
  other.fd_ = -1;
}

DenialLog& DenialLog::operator=(DenialLog&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    dir_ = std::move(other.dir_);
    max_bytes_ = other.max_bytes_;
    fd_ = other.fd_;
    size_ = other.size_;
    other.fd_ = -1;
  }
  return *this;
}

DenialLog::~DenialLog() {
  if (fd_ >= 0) close(fd_);
}

absl::Status DenialLog::Rotate() {
  const std::string path = LogPath(dir_);
  if (rename(path.c_str(), absl::StrCat(path, ".1").c_str()) != 0) {
    return Errno("cannot rotate", path);
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open", path);
  close(fd_);
  fd_ = fd;
  size_ = 0;
  return absl::OkStatus();
}

absl::Status DenialLog::Append(const Denial& denial) {
  std::string line = denial.ToLine();
  line.push_back('\n');
  if (size_ > 0 && size_ + static_cast<int64_t>(line.size()) > max_bytes_) {
    if (absl::Status s = Rotate(); !s.ok()) return s;
  }
  ssize_t n = write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    return Errno("cannot append to", LogPath(dir_));
  }
  size_ += n;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Denial>> ReadDenials(const std::string& dir,
                                                int* skipped) {
  std::vector<Denial> out;
  bool any = false;
  for (const std::string& path :
       {absl::StrCat(LogPath(dir), ".1"), LogPath(dir)}) {
    std::ifstream in(path);
    if (!in) continue;
    any = true;
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      absl::StatusOr<Denial> d = Denial::FromLine(line);
      if (d.ok()) {
        out.push_back(*std::move(d));
      } else if (skipped != nullptr) {
        ++*skipped;
      }
    }
  }
  if (!any) {
    return absl::NotFoundError(
        absl::StrCat("no denial log in ", dir,
                     " (stockade-node writes it where it collects denials)"));
  }
  return out;
}

}  // namespace stockade::node::denials
