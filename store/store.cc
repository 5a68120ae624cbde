#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "nlohmann/json.hpp"

namespace stockade::store {
namespace {

namespace fs = std::filesystem;

constexpr char kPolicySuffix[] = ".binpb";
constexpr char kIndexSuffix[] = ".json";
constexpr mode_t kDirMode = 0755;
constexpr mode_t kFileMode = 0644;
// How often Resolve re-reads the index when the policy it named vanished
// (replaced and garbage-collected between the two reads).
constexpr int kResolveAttempts = 3;

std::string Errno(int err) { return std::strerror(err); }

absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool IsHash(std::string_view s) { return IsLowerHex(s, 64); }

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// RFC 1123 label: Kubernetes namespace names.
bool IsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-'; });
}

// RFC 1123 subdomain: Kubernetes object names. Never "", "." or "..", never a
// "/": safe as a file name.
bool IsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  if (!IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '.'; });
}

// "ns/name", or "name" for a cluster-scoped policy.
std::string Display(std::string_view ns, std::string_view name) {
  return ns.empty() ? std::string(name) : absl::StrCat(AV(ns), "/", AV(name));
}

absl::Status CheckKey(std::string_view ns, std::string_view name) {
  if (!ns.empty() && !IsLabel(ns)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid namespace \"", AV(ns),
        "\": want a Kubernetes namespace name (lowercase letters, digits, "
        "'-'; at most 63)"));
  }
  if (!IsSubdomain(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid policy name \"", AV(name),
        "\": want a Kubernetes object name (lowercase letters, digits, '-', "
        "'.'; at most 253)"));
  }
  return absl::OkStatus();
}

// Creates dir with kDirMode if missing (the mode set explicitly, whatever
// the umask). Fails if path exists and is not a directory.
absl::Status MakeDir(const std::string& dir) {
  if (mkdir(dir.c_str(), kDirMode) == 0) {
    if (chmod(dir.c_str(), kDirMode) != 0) {
      return absl::InternalError(
          absl::StrCat("chmod ", dir, ": ", Errno(errno)));
    }
    return absl::OkStatus();
  }
  const int err = errno;
  struct stat st;
  if (err == EEXIST && stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat(
      "cannot create directory ", dir, ": ",
      err == EEXIST ? "exists and is not a directory" : Errno(err)));
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", dir, ": ", Errno(errno)));
  }
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("fsync ", dir, ": ", Errno(err)));
  }
  return absl::OkStatus();
}

// Writes dir/base atomically: a temporary file in dir (".base.tmp.XXXXXX"),
// written, fsynced, renamed over dir/base, then dir fsynced.
absl::Status WriteFileAtomic(const std::string& dir, const std::string& base,
                             std::string_view data) {
  const std::string path = absl::StrCat(dir, "/", base);
  std::string tmp = absl::StrCat(dir, "/.", base, ".tmp.XXXXXX");
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat(
        "cannot create a temporary file in ", dir, ": ", Errno(errno)));
  }
  auto fail = [&](std::string_view what, int err) {
    close(fd);
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("writing ", path, ": ", AV(what), ": ", Errno(err)));
  };
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write", errno);
    }
    done += static_cast<size_t>(n);
  }
  if (fchmod(fd, kFileMode) != 0) return fail("fchmod", errno);
  if (fsync(fd) != 0) return fail("fsync", errno);
  if (close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("writing ", path, ": close: ", Errno(err)));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("rename ", tmp, " to ", path, ": ", Errno(err)));
  }
  return SyncDir(dir);
}

// The whole file; NotFound when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT)
      return absl::NotFoundError(absl::StrCat(path, ": ", Errno(err)));
    return absl::InternalError(absl::StrCat("open ", path, ": ", Errno(err)));
  }
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("read ", path, ": ", Errno(err)));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

// An exclusive flock(2) on the store's lock file, held while alive.
class WriterLock {
 public:
  static absl::StatusOr<WriterLock> Take(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
    if (fd < 0) {
      return absl::InternalError(
          absl::StrCat("open lock file ", path, ": ", Errno(errno)));
    }
    while (flock(fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("lock ", path, ": ", Errno(err)));
    }
    return WriterLock(fd);
  }
  WriterLock(WriterLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  WriterLock& operator=(WriterLock&&) = delete;
  ~WriterLock() {
    if (fd_ >= 0) close(fd_);  // Releases the lock.
  }

 private:
  explicit WriterLock(int fd) : fd_(fd) {}
  int fd_;
};

std::string Serialize(const stockade::v1::CompiledPolicy& policy) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    policy.SerializeToCodedStream(&coded);
  }
  return bytes;
}

absl::StatusOr<IndexEntry> ParseIndex(const std::string& text,
                                      const std::string& path) {
  auto bad = [&](std::string_view what) {
    return absl::DataLossError(
        absl::StrCat("index entry ", path, ": ", AV(what)));
  };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return bad("not valid JSON");
  if (!j.is_object()) return bad("not a JSON object");
  IndexEntry e;
  auto hash = j.find("hash");
  if (hash == j.end() || !hash->is_string() ||
      !IsHash(hash->get<std::string>())) {
    return bad("\"hash\" missing or not a sha256 hex string");
  }
  e.hash = hash->get<std::string>();
  auto sha = j.find("sha256");
  if (sha == j.end() || !sha->is_string() ||
      !IsLowerHex(sha->get<std::string>(), 64)) {
    return bad("\"sha256\" missing or not a sha256 hex string");
  }
  e.sha256 = sha->get<std::string>();
  auto source = j.find("source");
  if (source == j.end() || !source->is_string()) {
    return bad("\"source\" missing or not a string");
  }
  e.source = source->get<std::string>();
  return e;
}

bool IsTempFile(const std::string& name) {
  return !name.empty() && name[0] == '.' &&
         name.find(".tmp.") != std::string::npos;
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  return ::stockade::Sha256Hex(absl::string_view(data.data(), data.size()));
}

absl::StatusOr<Store> Store::Open(std::string root) {
  if (root.empty()) return absl::InvalidArgumentError("store root is empty");
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  // mkdir -p of the root itself, then the store's own directories.
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create store root ", root, ": ", ec.message()));
  }
  if (!fs::is_directory(root, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("store root ", root, " is not a directory"));
  }
  for (const char* dir : {"/v1", "/v1/policies", "/v1/index"}) {
    if (auto s = MakeDir(absl::StrCat(root, dir)); !s.ok()) return s;
  }
  return Store(std::move(root));
}

std::string Store::PolicyPath(std::string_view hash) const {
  return absl::StrCat(root_, "/v1/policies/", AV(hash), kPolicySuffix);
}

std::string Store::IndexPath(std::string_view ns, std::string_view name) const {
  return absl::StrCat(
      root_, "/v1/index/",
      ns.empty() ? absl::string_view(kClusterNamespace) : AV(ns), "/", AV(name),
      kIndexSuffix);
}

absl::Status Store::Install(const stockade::v1::CompiledPolicy& policy) {
  const std::string& hash = policy.hash();
  const std::string& ns = policy.source().namespace_();
  const std::string& name = policy.source().name();
  if (!IsHash(hash)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy ", Display(ns, name), ": hash \"", hash,
        "\" is not a sha256 hex string (64 lowercase hex digits)"));
  }
  if (auto s = CheckKey(ns, name); !s.ok()) return s;

  const std::string bytes = Serialize(policy);
  const std::string sha = Sha256Hex(bytes);
  nlohmann::json index = nlohmann::json::object();
  index["hash"] = hash;
  index["sha256"] = sha;
  index["source"] =
      policy.source().kind().empty() ? "AgentPolicy" : policy.source().kind();
  const std::string index_text = index.dump() + "\n";

  auto lock = WriterLock::Take(absl::StrCat(root_, "/v1/.lock"));
  if (!lock.ok()) return lock.status();

  // Policy file first: an index entry never names a missing policy.
  const std::string policies = absl::StrCat(root_, "/v1/policies");
  const std::string policy_base = absl::StrCat(hash, kPolicySuffix);
  auto existing = ReadFile(PolicyPath(hash));
  if (!existing.ok() || *existing != bytes) {
    if (auto s = WriteFileAtomic(policies, policy_base, bytes); !s.ok()) {
      return s;
    }
  }
  const std::string ns_dir = absl::StrCat(
      root_, "/v1/index/", ns.empty() ? std::string(kClusterNamespace) : ns);
  if (auto s = MakeDir(ns_dir); !s.ok()) return s;
  if (auto s = SyncDir(absl::StrCat(root_, "/v1/index")); !s.ok()) return s;
  return WriteFileAtomic(ns_dir, absl::StrCat(name, kIndexSuffix), index_text);
}

absl::StatusOr<stockade::v1::CompiledPolicy> Store::Resolve(
    std::string_view ns, std::string_view name) const {
  if (auto s = CheckKey(ns, name); !s.ok()) return s;
  const std::string index_path = IndexPath(ns, name);
  std::string previous_hash;
  for (int attempt = 0;; ++attempt) {
    auto text = ReadFile(index_path);
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(absl::StrCat("no policy \"", Display(ns, name),
                                              "\" in store ", root_));
    }
    if (!text.ok()) return text.status();
    auto entry = ParseIndex(*text, index_path);
    if (!entry.ok()) return entry.status();
    const std::string policy_path = PolicyPath(entry->hash);
    auto bytes = ReadFile(policy_path);
    if (absl::IsNotFound(bytes.status())) {
      // Replaced and collected between the two reads: read the index again,
      // unless it still names the same policy.
      if (attempt + 1 < kResolveAttempts && entry->hash != previous_hash) {
        previous_hash = entry->hash;
        continue;
      }
      return absl::DataLossError(
          absl::StrCat("index entry ", index_path, " names policy ",
                       entry->hash, ", but ", policy_path, " does not exist"));
    }
    if (!bytes.ok()) return bytes.status();
    const std::string sha = Sha256Hex(*bytes);
    if (sha != entry->sha256) {
      return absl::DataLossError(absl::StrCat(
          "policy file ", policy_path, " is corrupt: its sha256 is ", sha,
          ", index entry ", index_path, " records ", entry->sha256));
    }
    stockade::v1::CompiledPolicy policy;
    if (!policy.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat(
          "policy file ", policy_path, " does not parse as a CompiledPolicy"));
    }
    if (policy.hash() != entry->hash) {
      return absl::DataLossError(absl::StrCat(
          "policy file ", policy_path, " holds policy hash \"", policy.hash(),
          "\", but index entry ", index_path, " names ", entry->hash));
    }
    if (policy.source().namespace_() != AV(ns) ||
        policy.source().name() != AV(name)) {
      return absl::DataLossError(absl::StrCat(
          "policy file ", policy_path, " was compiled for \"",
          Display(policy.source().namespace_(), policy.source().name()),
          "\", but index entry ", index_path, " is for \"", Display(ns, name),
          "\""));
    }
    return policy;
  }
}

absl::Status Store::Remove(std::string_view ns, std::string_view name) {
  if (auto s = CheckKey(ns, name); !s.ok()) return s;
  auto lock = WriterLock::Take(absl::StrCat(root_, "/v1/.lock"));
  if (!lock.ok()) return lock.status();
  const std::string path = IndexPath(ns, name);
  if (unlink(path.c_str()) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("no policy \"", Display(ns, name),
                                              "\" in store ", root_));
    }
    return absl::InternalError(absl::StrCat("unlink ", path, ": ", Errno(err)));
  }
  return SyncDir(fs::path(path).parent_path().string());
}

absl::StatusOr<std::vector<IndexEntry>> Store::List() const {
  std::vector<IndexEntry> out;
  const std::string index_dir = absl::StrCat(root_, "/v1/index");
  std::error_code ec;
  std::vector<std::string> namespaces;
  for (fs::directory_iterator it(index_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string dir_name = it->path().filename().string();
    if (dir_name.empty() || dir_name[0] == '.') continue;
    if (it->is_directory(ec)) namespaces.push_back(dir_name);
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", index_dir, ": ", ec.message()));
  }
  for (const std::string& dir_name : namespaces) {
    const std::string ns = dir_name == kClusterNamespace ? "" : dir_name;
    const std::string dir = absl::StrCat(index_dir, "/", dir_name);
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string file = it->path().filename().string();
      if (file.empty() || file[0] == '.' || !file.ends_with(kIndexSuffix)) {
        continue;
      }
      const std::string path = absl::StrCat(dir, "/", file);
      auto text = ReadFile(path);
      // Removed since the directory was read.
      if (absl::IsNotFound(text.status())) continue;
      if (!text.ok()) return text.status();
      auto entry = ParseIndex(*text, path);
      if (!entry.ok()) return entry.status();
      entry->namespace_ = ns;
      entry->name = file.substr(0, file.size() - strlen(kIndexSuffix));
      out.push_back(*std::move(entry));
    }
    if (ec) {
      return absl::InternalError(
          absl::StrCat("listing ", dir, ": ", ec.message()));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.namespace_, a.name) < std::tie(b.namespace_, b.name);
  });
  return out;
}

absl::StatusOr<std::vector<std::string>> Store::GarbageCollect(
    const absl::flat_hash_set<std::string>& keep) {
  auto lock = WriterLock::Take(absl::StrCat(root_, "/v1/.lock"));
  if (!lock.ok()) return lock.status();
  auto entries = List();
  if (!entries.ok()) {
    return absl::Status(
        entries.status().code(),
        absl::StrCat("garbage collection stopped, nothing removed: ",
                     entries.status().message()));
  }
  absl::flat_hash_set<std::string> used(keep.begin(), keep.end());
  for (const IndexEntry& e : *entries) used.insert(e.hash);

  std::vector<std::string> removed;
  std::error_code ec;
  const std::string policies = absl::StrCat(root_, "/v1/policies");
  std::vector<std::string> files;
  for (fs::directory_iterator it(policies, ec), end; !ec && it != end;
       it.increment(ec)) {
    files.push_back(it->path().filename().string());
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", policies, ": ", ec.message()));
  }
  for (const std::string& file : files) {
    const std::string path = absl::StrCat(policies, "/", file);
    // Writers hold the lock while a temporary file exists: one seen now was
    // left by a writer that died.
    if (IsTempFile(file)) {
      unlink(path.c_str());
      continue;
    }
    if (!file.ends_with(kPolicySuffix)) continue;
    const std::string hash =
        file.substr(0, file.size() - strlen(kPolicySuffix));
    if (used.contains(hash)) continue;
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      const int err = errno;
      return absl::InternalError(
          absl::StrCat("unlink ", path, ": ", Errno(err)));
    }
    removed.push_back(hash);
  }
  if (auto s = SyncDir(policies); !s.ok()) return s;
  std::sort(removed.begin(), removed.end());
  return removed;
}

}  // namespace stockade::store
