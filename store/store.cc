#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
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

// How WriteFileAtomic makes the file durable.
enum class Durability {
  kFileAndDir,  // fsync the file, rename, fsync the directory.
  kFile,        // fsync the file, rename; the caller fsyncs the directory.
  kNone,        // rename only (references: lost only with what they track).
};

// Writes dir/base atomically: a temporary file in dir (".base.tmp.XXXXXX"),
// written, fsynced, renamed over dir/base, then dir fsynced (as durability
// says).
absl::Status WriteFileAtomic(const std::string& dir, const std::string& base,
                             std::string_view data,
                             Durability durability = Durability::kFileAndDir) {
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
  if (durability != Durability::kNone && fsync(fd) != 0) {
    return fail("fsync", errno);
  }
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
  if (durability != Durability::kFileAndDir) return absl::OkStatus();
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

// A flock(2) on one of the store's lock files, held while alive: exclusive
// unless shared is set.
class WriterLock {
 public:
  static absl::StatusOr<WriterLock> Take(const std::string& path,
                                         bool shared = false) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
    if (fd < 0) {
      return absl::InternalError(
          absl::StrCat("open lock file ", path, ": ", Errno(errno)));
    }
    while (flock(fd, shared ? LOCK_SH : LOCK_EX) != 0) {
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

}  // namespace

std::string SerializePolicy(const stockade::v1::CompiledPolicy& policy) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    policy.SerializeToCodedStream(&coded);
  }
  return bytes;
}

namespace {

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

constexpr char kLockFile[] = "/v1/.lock";
// Taken shared by AddRef, exclusively by garbage collection and
// RemoveStaleRefs: a reference is never added to a policy being collected.
constexpr char kRefsLockFile[] = "/v1/.refs.lock";
// How often AddRef retries when RemoveRef of another container removed the
// (then empty) directory of the hash under it.
constexpr int kAddRefAttempts = 5;

// containerd ids are [A-Za-z0-9]+ joined by [._-]; ':' and '@' let a caller
// qualify one with its containerd namespace.
bool IsContainerId(std::string_view s) {
  if (s.empty() || s.size() > 200 || s[0] == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
           c == '@' || c == '-';
  });
}

absl::Status CheckRef(std::string_view hash, std::string_view container_id) {
  if (!IsHash(hash)) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference: hash \"", AV(hash),
                     "\" is not a sha256 hex string (64 lowercase hex "
                     "digits)"));
  }
  if (!IsContainerId(container_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reference: invalid container id \"", AV(container_id),
        "\": want 1-200 characters of [A-Za-z0-9_.:@-], not starting with "
        "'.'"));
  }
  return absl::OkStatus();
}

// Field 22 (starttime) of /proc/<pid>/stat. NotFound when there is no such
// process.
absl::StatusOr<uint64_t> ProcStartTime(int64_t pid) {
  auto text = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) return text.status();
  // The command name (field 2) is in parentheses and may hold anything.
  const size_t paren = text->rfind(')');
  if (paren == std::string::npos) {
    return absl::DataLossError(absl::StrCat("/proc/", pid, "/stat: no ')'"));
  }
  // Fields 3.. follow ") ".
  std::string_view rest(*text);
  rest.remove_prefix(std::min(rest.size(), paren + 2));
  int field = 3;
  while (!rest.empty()) {
    const size_t space = rest.find(' ');
    const std::string_view token = rest.substr(0, space);
    if (field == 22) {
      uint64_t value = 0;
      for (char c : token) {
        if (c < '0' || c > '9') break;
        value = value * 10 + static_cast<uint64_t>(c - '0');
      }
      return value;
    }
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
    ++field;
  }
  return absl::DataLossError(
      absl::StrCat("/proc/", pid, "/stat: fewer than 22 fields"));
}

absl::StatusOr<std::string> BootId() {
  auto text = ReadFile("/proc/sys/kernel/random/boot_id");
  if (!text.ok()) return text.status();
  while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) {
    text->pop_back();
  }
  if (text->empty()) return absl::DataLossError("empty boot_id");
  return *text;
}

absl::StatusOr<std::string> PidNamespace(const std::string& pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/ns/pid");
  char buf[128];
  const ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) {
    return absl::InternalError(
        absl::StrCat("readlink ", path, ": ", Errno(errno)));
  }
  return std::string(buf, static_cast<size_t>(n));
}

std::string RefOwnerJson(const RefOwner& owner, const RefPod& pod) {
  nlohmann::json j = nlohmann::json::object();
  j["pid"] = owner.pid;
  j["start_time"] = owner.start_time;
  j["boot_id"] = owner.boot_id;
  j["pid_ns"] = owner.pid_ns;
  if (!pod.name.empty()) {
    j["pod_namespace"] = pod.namespace_;
    j["pod_name"] = pod.name;
    j["container_name"] = pod.container;
  }
  if (!pod.agent.empty()) j["agent"] = pod.agent;
  return j.dump() + "\n";
}

// The pod fields of a ref file (none when absent or unreadable).
RefPod ParseRefPod(const std::string& text) {
  RefPod pod;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return pod;
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  };
  pod.namespace_ = str("pod_namespace");
  pod.name = str("pod_name");
  pod.container = str("container_name");
  pod.agent = str("agent");
  return pod;
}

absl::StatusOr<RefOwner> ParseRefOwner(const std::string& text,
                                       const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  auto bad = [&](std::string_view what) {
    return absl::DataLossError(
        absl::StrCat("reference ", path, ": ", AV(what)));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  RefOwner owner;
  auto pid = j.find("pid");
  auto start = j.find("start_time");
  auto boot = j.find("boot_id");
  auto ns = j.find("pid_ns");
  if (pid == j.end() || !pid->is_number_integer() || pid->get<int64_t>() <= 0) {
    return bad("\"pid\" missing or not a positive integer");
  }
  if (start == j.end() || !start->is_number_unsigned()) {
    return bad("\"start_time\" missing or not an unsigned integer");
  }
  if (boot == j.end() || !boot->is_string() ||
      boot->get<std::string>().empty()) {
    return bad("\"boot_id\" missing or empty");
  }
  if (ns == j.end() || !ns->is_string()) {
    return bad("\"pid_ns\" missing or not a string");
  }
  owner.pid = pid->get<int64_t>();
  owner.start_time = start->get<uint64_t>();
  owner.boot_id = boot->get<std::string>();
  owner.pid_ns = ns->get<std::string>();
  return owner;
}

absl::StatusOr<absl::Time> ModifiedTime(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(path);
    return absl::InternalError(absl::StrCat("stat ", path, ": ", Errno(err)));
  }
  return absl::TimeFromTimespec(st.st_mtim);
}

// The non-hidden entries of dir; an absent dir has none.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir,
                                                 bool hidden = false) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return out;
  for (fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.empty() || (name[0] == '.' && !hidden)) continue;
    out.push_back(std::move(name));
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Parses and checks one policy file's bytes.
absl::StatusOr<stockade::v1::CompiledPolicy> ParsePolicyFile(
    const std::string& bytes, std::string_view hash, const std::string& path) {
  stockade::v1::CompiledPolicy policy;
  if (!policy.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(
        "policy file ", path, " does not parse as a CompiledPolicy"));
  }
  if (policy.hash() != AV(hash)) {
    return absl::DataLossError(absl::StrCat(
        "policy file ", path, " holds policy hash \"", policy.hash(), "\""));
  }
  return policy;
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
  for (const char* dir : {"/v1", "/v1/policies", "/v1/index", "/v1/refs"}) {
    if (auto s = MakeDir(absl::StrCat(root, dir)); !s.ok()) return s;
  }
  return Store(std::move(root));
}

std::string Store::PolicyPath(std::string_view hash) const {
  return absl::StrCat(root_, "/v1/policies/", AV(hash), kPolicySuffix);
}

std::string Store::RefPath(std::string_view hash,
                           std::string_view container_id) const {
  return absl::StrCat(root_, "/v1/refs/", AV(hash), "/", AV(container_id));
}

bool IsPolicyHash(std::string_view s) { return IsHash(s); }

absl::Status CheckIndexKey(std::string_view namespace_, std::string_view name) {
  return CheckKey(namespace_, name);
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

  const std::string bytes = SerializePolicy(policy);
  const std::string sha = Sha256Hex(bytes);
  nlohmann::json index = nlohmann::json::object();
  index["hash"] = hash;
  index["sha256"] = sha;
  index["source"] =
      policy.source().kind().empty() ? "AgentPolicy" : policy.source().kind();
  const std::string index_text = index.dump() + "\n";

  auto lock = WriterLock::Take(absl::StrCat(root_, kLockFile));
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
  auto lock = WriterLock::Take(absl::StrCat(root_, kLockFile));
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
  auto lock = WriterLock::Take(absl::StrCat(root_, kLockFile));
  if (!lock.ok()) return lock.status();
  // No AddRef runs while this one is held: a policy referenced from now on
  // was referenced before (and is kept), or AddRef finds it gone.
  auto refs_lock = WriterLock::Take(absl::StrCat(root_, kRefsLockFile));
  if (!refs_lock.ok()) return refs_lock.status();
  auto entries = List();
  if (!entries.ok()) {
    return absl::Status(
        entries.status().code(),
        absl::StrCat("garbage collection stopped, nothing removed: ",
                     entries.status().message()));
  }
  absl::flat_hash_set<std::string> used(keep.begin(), keep.end());
  for (const IndexEntry& e : *entries) used.insert(e.hash);
  const std::string refs_dir = absl::StrCat(root_, "/v1/refs");
  auto referenced = ListDir(refs_dir);
  if (!referenced.ok()) {
    return absl::Status(
        referenced.status().code(),
        absl::StrCat("garbage collection stopped, nothing removed: ",
                     referenced.status().message()));
  }
  for (const std::string& hash : *referenced) {
    auto containers = ListDir(absl::StrCat(refs_dir, "/", hash));
    if (!containers.ok()) {
      return absl::Status(
          containers.status().code(),
          absl::StrCat("garbage collection stopped, nothing removed: ",
                       containers.status().message()));
    }
    if (!containers->empty()) used.insert(hash);
  }

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

absl::Status Store::WritePolicies(
    absl::Span<const stockade::v1::CompiledPolicy* const> policies) {
  for (const stockade::v1::CompiledPolicy* policy : policies) {
    const std::string& ns = policy->source().namespace_();
    const std::string& name = policy->source().name();
    if (!IsHash(policy->hash())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "policy ", Display(ns, name), ": hash \"", policy->hash(),
          "\" is not a sha256 hex string (64 lowercase hex digits)"));
    }
    if (auto s = CheckKey(ns, name); !s.ok()) return s;
  }
  if (policies.empty()) return absl::OkStatus();
  auto lock = WriterLock::Take(absl::StrCat(root_, kLockFile));
  if (!lock.ok()) return lock.status();
  const std::string dir = absl::StrCat(root_, "/v1/policies");
  bool wrote = false;
  for (const stockade::v1::CompiledPolicy* policy : policies) {
    const std::string bytes = SerializePolicy(*policy);
    auto existing = ReadFile(PolicyPath(policy->hash()));
    if (existing.ok() && *existing == bytes) continue;
    if (auto s =
            WriteFileAtomic(dir, absl::StrCat(policy->hash(), kPolicySuffix),
                            bytes, Durability::kFile);
        !s.ok()) {
      return s;
    }
    wrote = true;
  }
  return wrote ? SyncDir(dir) : absl::OkStatus();
}

absl::Status Store::UpdateIndex(absl::Span<const IndexChange> changes) {
  for (const IndexChange& c : changes) {
    if (auto s = CheckKey(c.namespace_, c.name); !s.ok()) return s;
    if (!c.hash.empty() && !IsHash(c.hash)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "index entry ", Display(c.namespace_, c.name), ": hash \"", c.hash,
          "\" is not a sha256 hex string (64 lowercase hex digits)"));
    }
  }
  if (changes.empty()) return absl::OkStatus();
  auto lock = WriterLock::Take(absl::StrCat(root_, kLockFile));
  if (!lock.ok()) return lock.status();

  // Check every change and render its entry before writing any.
  std::vector<std::string> texts(changes.size());
  for (size_t i = 0; i < changes.size(); ++i) {
    const IndexChange& c = changes[i];
    if (c.hash.empty()) continue;
    const std::string path = PolicyPath(c.hash);
    auto bytes = ReadFile(path);
    if (absl::IsNotFound(bytes.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "index entry ", Display(c.namespace_, c.name), " would name policy ",
          c.hash, ", which is not in store ", root_, "; index unchanged"));
    }
    if (!bytes.ok()) return bytes.status();
    auto policy = ParsePolicyFile(*bytes, c.hash, path);
    if (!policy.ok()) return policy.status();
    if (policy->source().namespace_() != c.namespace_ ||
        policy->source().name() != c.name) {
      return absl::InvalidArgumentError(absl::StrCat(
          "index entry ", Display(c.namespace_, c.name), " would name policy ",
          c.hash, ", which was compiled for \"",
          Display(policy->source().namespace_(), policy->source().name()),
          "\"; index unchanged"));
    }
    nlohmann::json index = nlohmann::json::object();
    index["hash"] = c.hash;
    index["sha256"] = Sha256Hex(*bytes);
    index["source"] = policy->source().kind().empty() ? "AgentPolicy"
                                                      : policy->source().kind();
    texts[i] = index.dump() + "\n";
  }

  const std::string index_dir = absl::StrCat(root_, "/v1/index");
  std::vector<std::string> touched;
  bool new_dir = false;
  for (size_t i = 0; i < changes.size(); ++i) {
    const IndexChange& c = changes[i];
    const std::string ns_dir = absl::StrCat(
        index_dir, "/",
        c.namespace_.empty() ? std::string(kClusterNamespace) : c.namespace_);
    if (std::find(touched.begin(), touched.end(), ns_dir) == touched.end()) {
      touched.push_back(ns_dir);
    }
    if (c.hash.empty()) {
      const std::string path = IndexPath(c.namespace_, c.name);
      if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        return absl::InternalError(
            absl::StrCat("unlink ", path, ": ", Errno(errno)));
      }
      continue;
    }
    struct stat st;
    if (stat(ns_dir.c_str(), &st) != 0) {
      if (auto s = MakeDir(ns_dir); !s.ok()) return s;
      new_dir = true;
    }
    if (auto s = WriteFileAtomic(ns_dir, absl::StrCat(c.name, kIndexSuffix),
                                 texts[i], Durability::kFile);
        !s.ok()) {
      return s;
    }
  }
  if (new_dir) {
    if (auto s = SyncDir(index_dir); !s.ok()) return s;
  }
  for (const std::string& dir : touched) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) continue;  // Only removals, never made.
    if (auto s = SyncDir(dir); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Store::ListPolicies() const {
  auto files = ListDir(absl::StrCat(root_, "/v1/policies"));
  if (!files.ok()) return files.status();
  std::vector<std::string> out;
  for (const std::string& file : *files) {
    if (!file.ends_with(kPolicySuffix)) continue;
    std::string hash = file.substr(0, file.size() - strlen(kPolicySuffix));
    if (IsHash(hash)) out.push_back(std::move(hash));
  }
  return out;
}

absl::StatusOr<stockade::v1::CompiledPolicy> Store::ReadPolicy(
    std::string_view hash) const {
  if (!IsHash(hash)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", AV(hash),
        "\" is not a sha256 hex string (64 lowercase hex digits)"));
  }
  const std::string path = PolicyPath(hash);
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParsePolicyFile(*bytes, hash, path);
}

absl::StatusOr<RefOwner> CurrentRefOwner() {
  static std::mutex mu;
  static RefOwner* cached = nullptr;  // Of the pid that filled it.
  std::lock_guard<std::mutex> guard(mu);
  const int64_t pid = getpid();
  if (cached != nullptr && cached->pid == pid) return *cached;
  RefOwner owner;
  owner.pid = pid;
  auto start = ProcStartTime(pid);
  if (!start.ok()) return start.status();
  owner.start_time = *start;
  auto boot = BootId();
  if (!boot.ok()) return boot.status();
  owner.boot_id = *std::move(boot);
  auto ns = PidNamespace("self");
  if (!ns.ok()) return ns.status();
  owner.pid_ns = *std::move(ns);
  if (cached == nullptr) cached = new RefOwner;
  *cached = owner;
  return owner;
}

absl::Status Store::AddRef(std::string_view hash, std::string_view container_id,
                           const RefPod& pod) {
  if (auto s = CheckRef(hash, container_id); !s.ok()) return s;
  auto owner = CurrentRefOwner();
  if (!owner.ok()) {
    return absl::InternalError(absl::StrCat(
        "reference ", AV(container_id),
        ": cannot identify this process: ", owner.status().message()));
  }
  const std::string text = RefOwnerJson(*owner, pod);
  auto lock = WriterLock::Take(absl::StrCat(root_, kRefsLockFile),
                               /*shared=*/true);
  if (!lock.ok()) return lock.status();
  struct stat st;
  if (stat(PolicyPath(hash).c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "policy ", AV(hash), " is no longer in store ", root_,
        " (collected since it was resolved): resolve the policy again"));
  }
  const std::string dir = absl::StrCat(root_, "/v1/refs/", AV(hash));
  absl::Status status;
  for (int attempt = 0; attempt < kAddRefAttempts; ++attempt) {
    if (mkdir(dir.c_str(), kDirMode) == 0) {
      chmod(dir.c_str(), kDirMode);
    } else if (errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("cannot create directory ", dir, ": ", Errno(errno)));
    }
    status = WriteFileAtomic(dir, std::string(container_id), text,
                             Durability::kNone);
    if (status.ok()) return status;
    // RemoveRef of the hash's last other container removed dir meanwhile.
    if (stat(dir.c_str(), &st) == 0) return status;
  }
  return status;
}

absl::Status Store::RemoveRef(std::string_view hash,
                              std::string_view container_id) {
  if (auto s = CheckRef(hash, container_id); !s.ok()) return s;
  const std::string path = RefPath(hash, container_id);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(
        absl::StrCat("unlink ", path, ": ", Errno(errno)));
  }
  // Fails (ENOTEMPTY) while other containers use the policy: fine.
  rmdir(absl::StrCat(root_, "/v1/refs/", AV(hash)).c_str());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Ref>> Store::ListRefs() const {
  const std::string refs_dir = absl::StrCat(root_, "/v1/refs");
  auto hashes = ListDir(refs_dir);
  if (!hashes.ok()) return hashes.status();
  std::vector<Ref> out;
  for (const std::string& hash : *hashes) {
    if (!IsHash(hash)) continue;
    auto containers = ListDir(absl::StrCat(refs_dir, "/", hash));
    if (!containers.ok()) return containers.status();
    for (const std::string& id : *containers) {
      const std::string path = RefPath(hash, id);
      auto text = ReadFile(path);
      if (absl::IsNotFound(text.status())) continue;  // Removed meanwhile.
      if (!text.ok()) return text.status();
      auto modified = ModifiedTime(path);
      if (absl::IsNotFound(modified.status())) continue;
      if (!modified.ok()) return modified.status();
      out.push_back(Ref{hash, id, ParseRefOwner(*text, path), *modified,
                        ParseRefPod(*text)});
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Store::ReferencedHashes() const {
  const std::string refs_dir = absl::StrCat(root_, "/v1/refs");
  auto hashes = ListDir(refs_dir);
  if (!hashes.ok()) return hashes.status();
  std::vector<std::string> out;
  for (const std::string& hash : *hashes) {
    if (!IsHash(hash)) continue;
    auto containers = ListDir(absl::StrCat(refs_dir, "/", hash));
    if (absl::IsNotFound(containers.status())) continue;
    if (!containers.ok()) return containers.status();
    if (!containers->empty()) out.push_back(hash);
  }
  return out;
}

absl::StatusOr<std::vector<Ref>> Store::RemoveStaleRefs(
    absl::Duration min_age) {
  auto lock = WriterLock::Take(absl::StrCat(root_, kRefsLockFile));
  if (!lock.ok()) return lock.status();
  auto boot = BootId();
  if (!boot.ok()) return boot.status();
  auto pid_ns = PidNamespace("self");
  if (!pid_ns.ok()) return pid_ns.status();
  const absl::Time cutoff = absl::Now() - min_age;

  const std::string refs_dir = absl::StrCat(root_, "/v1/refs");
  auto hashes = ListDir(refs_dir);
  if (!hashes.ok()) return hashes.status();
  std::vector<Ref> removed;
  for (const std::string& hash : *hashes) {
    const std::string dir = absl::StrCat(refs_dir, "/", hash);
    auto files = ListDir(dir, /*hidden=*/true);
    if (!files.ok()) return files.status();
    for (const std::string& file : *files) {
      const std::string path = absl::StrCat(dir, "/", file);
      auto modified = ModifiedTime(path);
      if (!modified.ok() || *modified > cutoff) continue;
      if (IsTempFile(file)) {  // Left by an AddRef that died.
        unlink(path.c_str());
        continue;
      }
      if (file[0] == '.') continue;
      auto text = ReadFile(path);
      if (!text.ok()) continue;
      auto owner = ParseRefOwner(*text, path);
      if (!owner.ok()) continue;  // Cannot tell: keep.
      bool stale = false;
      if (owner->boot_id != *boot) {
        stale = true;  // No container outlives a reboot.
      } else if (owner->pid_ns == *pid_ns) {
        auto start = ProcStartTime(owner->pid);
        stale = absl::IsNotFound(start.status()) ||
                (start.ok() && *start != owner->start_time);
      }
      if (!stale) continue;
      if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        return absl::InternalError(
            absl::StrCat("unlink ", path, ": ", Errno(errno)));
      }
      removed.push_back(Ref{hash, file, *owner, *modified, RefPod{}});
    }
    rmdir(dir.c_str());  // When now empty.
  }
  return removed;
}

}  // namespace stockade::store
