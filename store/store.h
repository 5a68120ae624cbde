// The node store: compiled policies on a node's disk, by content hash, with
// an index from (namespace, name) to hash. The shim reads it at container
// Create without any network call; the node agent and `stockade install`
// write it. Format: docs/store.md.
#ifndef STOCKADE_STORE_STORE_H_
#define STOCKADE_STORE_STORE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::store {

inline constexpr char kDefaultRoot[] = "/var/lib/stockade";
// The index namespace of cluster-scoped policies (no Kubernetes namespace
// can be spelled so).
inline constexpr char kClusterNamespace[] = "_cluster";

// One index entry.
struct IndexEntry {
  std::string namespace_;  // "" for cluster-scoped policies.
  std::string name;
  std::string hash;    // CompiledPolicy.hash.
  std::string sha256;  // sha256 (hex) of the policy file's bytes.
  std::string source;  // PolicySource.kind, e.g. "AgentPolicy".
};

// Thread-compatible handle on a store directory. Writers (Install, Remove,
// GarbageCollect) serialize on a lock file, across processes too; readers
// take no lock: every file is replaced by rename(2), so a reader sees the
// old or the new file, never part of one.
class Store {
 public:
  // Opens the store at root, creating root/v1/policies and root/v1/index
  // (mode 0755) when missing.
  static absl::StatusOr<Store> Open(std::string root = kDefaultRoot);

  const std::string& root() const { return root_; }

  // Writes the policy file (unless an identical one exists), then points the
  // index entry of (source.namespace, source.name) at it. The hash must be
  // lowercase hex; namespace and name Kubernetes names.
  absl::Status Install(const stockade::v1::CompiledPolicy& policy);

  // The policy (namespace, name) refers to, verified: the index entry
  // parses, the policy file exists, its sha256 matches the index and its
  // hash field matches the hash the index names. NotFound when there is no
  // entry; DataLoss, naming the file and the problem, on any mismatch.
  // namespace_ "" for a cluster-scoped policy.
  absl::StatusOr<stockade::v1::CompiledPolicy> Resolve(
      std::string_view namespace_, std::string_view name) const;

  // Removes the index entry of (namespace, name). NotFound if absent. The
  // policy file stays until GarbageCollect.
  absl::Status Remove(std::string_view namespace_, std::string_view name);

  // Every index entry, sorted by (namespace, name). Fails, naming the file,
  // on an entry that does not parse.
  absl::StatusOr<std::vector<IndexEntry>> List() const;

  // Removes the policy files no index entry refers to and whose hash is not
  // in keep (hashes of running containers). Returns the removed hashes,
  // sorted. Removes nothing when an index entry cannot be read.
  absl::StatusOr<std::vector<std::string>> GarbageCollect(
      const absl::flat_hash_set<std::string>& keep);

  // Paths, for messages and tests.
  std::string PolicyPath(std::string_view hash) const;
  std::string IndexPath(std::string_view namespace_,
                        std::string_view name) const;

 private:
  explicit Store(std::string root) : root_(std::move(root)) {}

  std::string root_;
};

// sha256 of data, lowercase hex.
std::string Sha256Hex(std::string_view data);

}  // namespace stockade::store

#endif  // STOCKADE_STORE_STORE_H_
