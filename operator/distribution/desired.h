// The desired state the operator distributes (every compiled policy plus the
// (namespace, name) -> hash index), the delta between two of them, and the
// splitting of a snapshot or a delta into PolicyUpdate messages of bounded
// size. Pure data and functions: the server (server.h) shares one immutable
// DesiredState and one Delta among all its streams.
#ifndef STOCKADE_OPERATOR_DISTRIBUTION_DESIRED_H_
#define STOCKADE_OPERATOR_DISTRIBUTION_DESIRED_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "operator/compiler/packed_policy.h"
#include "stockade/v1/compiled.pb.h"
#include "stockade/v1/distribution.pb.h"

namespace stockade::distribution {

// Compiled policies are held packed (compressed); see packed_policy.h.
using PolicyPtr = compiler::PackedPolicyPtr;

// (namespace, name); namespace "" for cluster-scoped policies.
using IndexKey = std::pair<std::string, std::string>;

// One index entry: (namespace, name) -> hash of the policy it uses now.
struct IndexEntry {
  std::string namespace_;
  std::string name;
  std::string hash;
};

// Largest serialized CompiledPolicy accepted (one PolicyUpdate carries at
// least one whole policy, and the node accepts messages up to 64 MiB).
inline constexpr size_t kMaxPolicyBytes = 8 << 20;

// An immutable desired state, shared by the streams that send it.
struct DesiredState {
  struct Policy {
    PolicyPtr policy;
    size_t bytes = 0;  // Serialized size.
  };
  // 0: no desired state yet.
  uint64_t version = 0;
  // When SetDesired created this version.
  absl::Time created;
  std::map<std::string, Policy> policies;  // By hash.
  std::map<IndexKey, std::string> index;   // -> hash.
};

// Builds a desired state from policies and index entries, checking that
// every hash is a sha256 hex string, every policy at most max_policy_bytes,
// no hash is given twice with different content, every index key is valid
// and unique, and every entry names one of the policies, compiled for that
// same (namespace, name). InvalidArgument naming the first problem.
absl::StatusOr<DesiredState> MakeDesiredState(
    std::vector<PolicyPtr> policies, const std::vector<IndexEntry>& index,
    size_t max_policy_bytes = kMaxPolicyBytes);

// The changes from one desired state to the next.
struct Delta {
  uint64_t version = 0;  // The version it leads to.
  absl::Time created;
  std::vector<DesiredState::Policy> upserts;  // Hashes new to the state.
  std::vector<std::string> dropped;           // Hashes gone from it.
  std::vector<IndexEntry> index_set;          // Entries added or changed.
  std::vector<IndexKey> index_removed;

  bool empty() const {
    return upserts.empty() && dropped.empty() && index_set.empty() &&
           index_removed.empty();
  }
};

// from -> to (version and created taken from to).
Delta ComputeDelta(const DesiredState& from, const DesiredState& to);

// Produces the PolicyUpdate messages (parts) of one version, one at a time,
// so that a stream holds one part in memory, never a copy of the state.
class PartSource {
 public:
  virtual ~PartSource() = default;
  // Fills *out with the next part (cleared first); false once the last part
  // (last_part set) was produced.
  virtual bool Next(stockade::v1::PolicyUpdate* out) = 0;
  // Whether Next produced a part already.
  virtual bool started() const = 0;
  virtual uint64_t version() const = 0;
  virtual stockade::v1::PolicyUpdate::Kind kind() const = 0;
  // Policies whose bodies were produced so far.
  virtual size_t policies_sent() const = 0;
};

// Parts of a snapshot of state: the bodies of the policies not in held,
// every desired hash and the whole index. A part holds at most part_bytes of
// items, or one item when that one is larger.
std::unique_ptr<PartSource> SnapshotParts(
    std::shared_ptr<const DesiredState> state,
    absl::flat_hash_set<std::string> held, std::string server_id,
    size_t part_bytes);

// Parts of a delta.
std::unique_ptr<PartSource> DeltaParts(std::shared_ptr<const Delta> delta,
                                       std::string server_id,
                                       size_t part_bytes);

}  // namespace stockade::distribution

#endif  // STOCKADE_OPERATOR_DISTRIBUTION_DESIRED_H_
