// The node agent's state machine, without the network: applies the parts of
// the operator's snapshots and deltas to the node store (policy files first,
// then the index, everything fsynced), loads the AppArmor profiles of the
// policies it holds where the kernel has AppArmor, collects garbage, and
// says what changed since its last report. Protocol: docs/distribution.md.
#ifndef STOCKADE_NODE_SYNC_H_
#define STOCKADE_NODE_SYNC_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "node/apparmor.h"
#include "operator/distribution/log.h"
#include "stockade/v1/distribution.pb.h"
#include "store/store.h"

namespace stockade::node {

struct SyncOptions {
  std::string store_root = store::kDefaultRoot;
  // Load the policies' AppArmor profiles into the kernel.
  bool apparmor = false;
  AppArmor::Options apparmor_options;
  // References older than this whose process is gone are removed
  // (store::Store::RemoveStaleRefs).
  absl::Duration stale_ref_age = absl::Minutes(10);
  distribution::LogFn log;
};

class StoreSync {
 public:
  // Opens the store and reads what it holds: every policy file is verified
  // (one that does not parse or holds another hash is not reported as held
  // and is reported as an error). Where AppArmor is on, reads which of the
  // held policies' profiles the kernel has loaded already.
  static absl::StatusOr<std::unique_ptr<StoreSync>> Open(SyncOptions options);

  // A new stream: returns its first status, in full (everything held and
  // loaded, every error). Garbage collection pauses until the stream's
  // snapshot is applied (the hello's list of held policies must stay true:
  // the server sends only the bodies missing from it).
  stockade::v1::NodeStatus BeginStream();
  // The stream ended (garbage collection resumes, with the last desired
  // state).
  void EndStream();

  enum class PartResult {
    kPending,  // More parts of the version follow.
    kApplied,  // The version is applied: report it.
  };
  // Applies one part. Policies are written as they arrive; the index
  // changes when the last part arrives, after every policy it names is on
  // disk and its AppArmor profile loaded (where AppArmor is on). An error
  // (a protocol violation, a version that names a policy the node does not
  // hold, a store failure) means: drop the stream and reconnect; the index
  // is then as the last applied version left it.
  absl::StatusOr<PartResult> Apply(const stockade::v1::PolicyUpdate& part);

  // What changed since the previous report of this stream (the first after
  // BeginStream: everything), with the last applied version. Reads the
  // store's references for the hashes in use.
  stockade::v1::NodeStatus Report();
  // Whether Report() would say something new (reads the references).
  bool HasNews() const;

  // Removes stale references, then the policy files that no index entry
  // names, no container references and the operator no longer wants, and
  // unloads their AppArmor profiles. Does nothing before the first snapshot
  // of this process, nor while a stream waits for its snapshot.
  absl::Status CollectGarbage();

  // The last version applied, on any stream (unset: none yet).
  std::optional<stockade::v1::AppliedVersion> last_applied() const;
  // For tests and status.
  std::vector<std::string> Held() const;
  std::vector<std::string> ProfilesLoaded() const;
  std::vector<stockade::v1::NodeError> Errors() const;
  const store::Store& store() const { return store_; }

 private:
  StoreSync(SyncOptions options, store::Store store);

  struct Pending {
    std::string server_id;
    uint64_t version = 0;
    stockade::v1::PolicyUpdate::Kind kind =
        stockade::v1::PolicyUpdate::KIND_UNSPECIFIED;
    absl::flat_hash_set<std::string> written;
    std::vector<std::string> desired_hashes;
    std::vector<std::string> dropped;
    std::vector<store::IndexChange> index_set;
    std::vector<store::IndexChange> index_removed;
  };

  absl::Status CheckPartLocked(const stockade::v1::PolicyUpdate& part);
  absl::StatusOr<PartResult> FinishVersionLocked();
  // Loads the profiles of hashes not loaded yet (and not known not to
  // compile).
  void LoadProfilesLocked(const absl::flat_hash_set<std::string>& hashes);
  absl::Status CollectGarbageLocked();
  stockade::v1::NodeStatus ReportLocked();
  // Hashes with container references; on error, what was reported last
  // (and the error is recorded).
  absl::flat_hash_set<std::string> InUseLocked() const;
  void SetError(const std::string& key, const std::string& hash,
                const std::string& message);
  void ClearError(const std::string& key);
  void Log(distribution::LogLevel level, std::string_view msg,
           const distribution::LogFields& fields) const {
    if (options_.log) options_.log(level, msg, fields);
  }

  const SyncOptions options_;
  store::Store store_;
  std::optional<AppArmor> apparmor_;

  mutable std::mutex mu_;
  // Verified policy files on disk.
  absl::flat_hash_set<std::string> held_;
  // hash -> AppArmor profile name, of held policies that have one.
  absl::flat_hash_map<std::string, std::string> profile_names_;
  // Hashes whose profile this agent loaded, or found loaded.
  absl::flat_hash_set<std::string> loaded_;
  // Hashes whose profile text apparmor_parser rejected (deterministic: not
  // retried).
  absl::flat_hash_set<std::string> uncompilable_;
  // Problems, by a key that says what they are about.
  std::map<std::string, stockade::v1::NodeError> errors_;
  bool errors_changed_ = false;  // Since the previous report.
  // What the previous report of this stream said.
  absl::flat_hash_set<std::string> reported_held_;
  absl::flat_hash_set<std::string> reported_profiles_;
  absl::flat_hash_set<std::string> reported_in_use_;
  // The operator's desired hashes, as of the last applied version.
  absl::flat_hash_set<std::string> desired_;
  bool have_desired_ = false;   // A snapshot was applied since Open.
  bool stream_synced_ = false;  // This stream's snapshot was applied.
  bool awaiting_snapshot_ = false;
  std::optional<stockade::v1::AppliedVersion> applied_;
  std::optional<Pending> pending_;
};

}  // namespace stockade::node

#endif  // STOCKADE_NODE_SYNC_H_
