// The node store: compiled policies on a node's disk, by content hash, with
// an index from (namespace, name) to hash, and references from running
// containers to the policies they use. The shim reads it at container Create
// without any network call and records its references; the node agent and
// `stockade install` write it. Format: docs/store.md.
#ifndef STOCKADE_STORE_STORE_H_
#define STOCKADE_STORE_STORE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
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

// A change to one index entry (UpdateIndex).
struct IndexChange {
  std::string namespace_;  // "" for cluster-scoped policies.
  std::string name;
  std::string hash;  // The policy the entry names; "" removes the entry.
};

// The process that recorded a reference (AddRef): enough to tell later,
// reliably, whether it still runs.
struct RefOwner {
  int64_t pid = 0;
  // Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid,
  // names one process of one boot; a reused pid has another start time.
  uint64_t start_time = 0;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id.
  std::string pid_ns;   // readlink /proc/self/ns/pid, e.g. "pid:[4026531836]".
};

// The pod a referencing container belongs to, from its CRI annotations
// (empty outside Kubernetes), and the Agent it runs for (the pod's
// stockade.dev/agent annotation): what a denial report names.
struct RefPod {
  std::string namespace_;
  std::string name;
  std::string container;
  std::string agent;
};

// One reference: container container_id uses policy hash.
struct Ref {
  std::string hash;
  std::string container_id;
  // Parsed from the ref file; ok() false when the file does not parse.
  absl::StatusOr<RefOwner> owner;
  absl::Time modified;  // The ref file's mtime (when AddRef wrote it).
  RefPod pod;
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

  // Writes the policy files of policies (skipping identical ones), each
  // fsynced, then fsyncs the directory: afterwards all are durable. Validates
  // every hash, namespace and name first and writes nothing if one is bad.
  // Touches no index entry: until one names it, a policy file is unused.
  absl::Status WritePolicies(
      absl::Span<const stockade::v1::CompiledPolicy* const> policies);

  // Applies index changes, every entry atomically (a reader sees the old or
  // the new entry). Checks all of them first and changes nothing when one is
  // invalid: a bad key, or a hash whose policy file is missing, does not
  // parse, holds another hash or was compiled for another (namespace, name).
  // Then writes the entries (each fsynced) and removes the removed ones
  // (absent ones are fine) and fsyncs the directories. The index as a whole
  // is not switched atomically: should this fail half-way (disk full, crash),
  // some entries are old and some new, each naming a policy on disk.
  absl::Status UpdateIndex(absl::Span<const IndexChange> changes);

  // The hashes of the policy files in the store, sorted (by name only; see
  // ReadPolicy to verify one).
  absl::StatusOr<std::vector<std::string>> ListPolicies() const;

  // The policy file of hash, verified: it parses and its hash field is hash.
  // NotFound when absent, DataLoss otherwise.
  absl::StatusOr<stockade::v1::CompiledPolicy> ReadPolicy(
      std::string_view hash) const;

  // Removes the policy files no index entry refers to, that no container
  // references (AddRef) and whose hash is not in keep. Returns the removed
  // hashes, sorted. Removes nothing when an index entry cannot be read.
  absl::StatusOr<std::vector<std::string>> GarbageCollect(
      const absl::flat_hash_set<std::string>& keep);

  // References: which containers use which policy, so that garbage
  // collection keeps a policy while a container runs on it, whatever the
  // index says by then. Files v1/refs/<hash>/<container_id>.
  //
  // Records that container_id uses the policy hash: the shim calls it at
  // container Create, after Resolve, from the long-lived process that
  // manages the container (its pid, start time, boot id and pid namespace
  // are recorded, for RemoveStaleRefs). NotFound when the policy file is no
  // longer in the store (collected after Resolve read it): Resolve again.
  // Not fsynced (a crash that loses it also ends the container). Cheap: no
  // fsync, waits only for a running garbage collection. container_id: 1-200
  // characters of [A-Za-z0-9_.:@-], not starting with '.'. Adding an
  // existing reference refreshes it.
  absl::Status AddRef(std::string_view hash, std::string_view container_id,
                      const RefPod& pod = {});

  // Removes the reference (at container Delete). OK when it is absent.
  absl::Status RemoveRef(std::string_view hash, std::string_view container_id);

  // Every reference, sorted by (hash, container_id).
  absl::StatusOr<std::vector<Ref>> ListRefs() const;

  // The hashes at least one container references, sorted (directory names
  // only: cheaper than ListRefs).
  absl::StatusOr<std::vector<std::string>> ReferencedHashes() const;

  // Removes the references older than min_age whose recording process is
  // certainly gone: it was recorded in another boot, or it was recorded in
  // this process's pid namespace and no process with that pid and start time
  // exists. References from other pid namespaces (the agent not running with
  // the host's pids) and unreadable ones are kept. Also removes temporary
  // files older than min_age left by a writer that died. Returns the removed
  // references.
  absl::StatusOr<std::vector<Ref>> RemoveStaleRefs(absl::Duration min_age);

  // Paths, for messages and tests.
  std::string PolicyPath(std::string_view hash) const;
  std::string IndexPath(std::string_view namespace_,
                        std::string_view name) const;
  std::string RefPath(std::string_view hash,
                      std::string_view container_id) const;

 private:
  explicit Store(std::string root) : root_(std::move(root)) {}

  std::string root_;
};

// sha256 of data, lowercase hex.
std::string Sha256Hex(std::string_view data);

// The bytes of policy's file: deterministic binary protobuf.
std::string SerializePolicy(const stockade::v1::CompiledPolicy& policy);

// Whether s is a policy hash: 64 lowercase hex digits.
bool IsPolicyHash(std::string_view s);

// OK when (namespace_, name) can key an index entry: namespace_ "" or a
// Kubernetes namespace name, name a Kubernetes object name. InvalidArgument
// saying which is wrong otherwise.
absl::Status CheckIndexKey(std::string_view namespace_, std::string_view name);

// The calling process, as AddRef records it.
absl::StatusOr<RefOwner> CurrentRefOwner();

}  // namespace stockade::store

#endif  // STOCKADE_STORE_STORE_H_
