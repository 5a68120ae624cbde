// The reconcile logic of the AgentPolicy and ClusterAgentPolicy controllers,
// without any I/O: a snapshot of the cluster (policies, guardrails,
// namespaces, what each node holds and runs) -> the compiled policies every
// node should hold, the status of every policy and the Events to emit.
//
// Level-triggered: each call recomputes everything from the snapshot, so a
// guardrail change recompiles every policy it selects with no bookkeeping of
// what changed. Compilation is cached by its complete input (namespace,
// name, uid, generation, spec and the selecting guardrails), so only what
// changed is compiled again. Deterministic: the
// output depends on the snapshot, the clock and what earlier calls on the
// same reconciler saw (the last version of each policy that compiled, the
// compiled policies still in use, condition times), never on input order.
// Rules, conditions and reasons: docs/operator.md.
#ifndef STOCKADE_OPERATOR_CONTROLLER_RECONCILER_H_
#define STOCKADE_OPERATOR_CONTROLLER_RECONCILER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "operator/compiler/merge.h"
#include "operator/compiler/packed_policy.h"
#include "operator/controller/objects.h"
#include "stockade/v1/compiled.pb.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::controller {

// Condition types and reasons (docs/operator.md has the table).
inline constexpr char kCompiled[] = "Compiled";
inline constexpr char kDistributed[] = "Distributed";
inline constexpr char kReady[] = "Ready";

inline constexpr char kReasonCompiled[] = "Compiled";
inline constexpr char kReasonInvalidSpec[] = "InvalidSpec";
inline constexpr char kReasonGuardrailViolation[] = "GuardrailViolation";
inline constexpr char kReasonInvalidGuardrail[] = "InvalidGuardrail";
inline constexpr char kReasonCompileError[] = "CompileError";
inline constexpr char kReasonNamespaceUnknown[] = "NamespaceUnknown";
inline constexpr char kReasonDistributed[] = "Distributed";
inline constexpr char kReasonDistributing[] = "Distributing";
inline constexpr char kReasonNoNodes[] = "NoNodes";
inline constexpr char kReasonNotCompiled[] = "NotCompiled";
inline constexpr char kReasonReady[] = "Ready";
inline constexpr char kReasonApplied[] = "Applied";
inline constexpr char kReasonInvalidGuardrails[] = "InvalidGuardrails";

// A node as its agent reports it.
struct NodeState {
  std::string name;
  // Hashes of the compiled policies in the node's store.
  absl::flat_hash_set<std::string> held;
  // Hashes of the compiled policies of the containers running on the node
  // (their stockade.dev/policy-hash annotation).
  absl::flat_hash_set<std::string> in_use;
};

// What the reconciler reads. Order of the lists does not matter.
struct Snapshot {
  std::vector<AgentPolicyObject> policies;
  std::vector<ClusterAgentPolicyObject> cluster_policies;
  // Labels of every namespace, by name. A policy in a namespace missing here
  // is not compiled (Compiled=Unknown) until the namespace is known.
  absl::flat_hash_map<std::string, compiler::NamespaceLabels> namespaces;
  // The connected node agents: each should hold every desired policy.
  std::vector<NodeState> nodes;
};

// An index key: the policy's namespace and name; namespace "" for a
// cluster-scoped source, as in store::IndexEntry and the distribution
// protocol (the node store files those under store::kClusterNamespace).
using IndexKey = std::pair<std::string, std::string>;

// What every node should hold.
struct DesiredSet {
  // Every desired compiled policy, by hash: the one in force for each policy
  // and older ones still used by a container on some node. Held packed
  // (compressed): the operator keeps every policy of the cluster.
  std::map<std::string, compiler::PackedPolicyPtr> policies;
  // (namespace, name) -> hash of the compiled policy in force.
  std::map<IndexKey, std::string> index;
  // sha256 (hex) over the hashes and the index: equal versions, equal sets.
  std::string fingerprint;
};

// The object an Event is about.
struct ObjectRef {
  std::string api_version;
  std::string kind;
  std::string namespace_;  // "" for cluster-scoped objects
  std::string name;
  std::string uid;
  int64_t generation = 0;

  friend bool operator==(const ObjectRef&, const ObjectRef&) = default;
};

// A Kubernetes Event (type Normal or Warning).
struct Event {
  ObjectRef object;
  std::string type;
  std::string reason;
  std::string message;

  friend bool operator==(const Event&, const Event&) = default;
};

struct AgentPolicyResult {
  ObjectRef object;
  stockade::v1::AgentPolicyStatus status;
  // The status differs from the one in the snapshot: write it.
  bool status_changed = false;
};

struct ClusterAgentPolicyResult {
  ObjectRef object;
  stockade::v1::ClusterAgentPolicyStatus status;
  bool status_changed = false;
};

struct ReconcileStats {
  int compiled = 0;         // policies compiled by this call (cache misses)
  int cache_hits = 0;       // policies whose compilation was reused
  int failed = 0;           // policies with Compiled other than True
  int kept_last_good = 0;   // failing policies whose last good version stays
  int retained_in_use = 0;  // desired hashes kept only because in use
};

struct ReconcileResult {
  DesiredSet desired;
  // Every AgentPolicy, sorted by (namespace, name).
  std::vector<AgentPolicyResult> policies;
  // Every ClusterAgentPolicy, sorted by name.
  std::vector<ClusterAgentPolicyResult> cluster_policies;
  // ClusterAgentPolicies' events first, then AgentPolicies', each in the
  // order of the lists above.
  std::vector<Event> events;
  ReconcileStats stats;
};

// Thread-compatible: one reconcile at a time.
class PolicyReconciler {
 public:
  using Clock = std::function<absl::Time()>;

  explicit PolicyReconciler(Clock clock = absl::Now);
  ~PolicyReconciler();
  PolicyReconciler(const PolicyReconciler&) = delete;
  PolicyReconciler& operator=(const PolicyReconciler&) = delete;

  ReconcileResult Reconcile(const Snapshot& snapshot);

  // Memory held between calls.
  struct CompileEntry;
  struct PolicyMemory;
  struct ClusterMemory;

 private:
  Clock clock_;
  // Counts calls; memory and cache entries not used by a call are dropped.
  uint64_t round_ = 0;
  // Compilation by complete input; only the entries the last call used.
  struct CacheSlot {
    std::shared_ptr<const CompileEntry> entry;
    uint64_t round = 0;
  };
  absl::flat_hash_map<std::string, CacheSlot> cache_;
  // By object (namespace/name/uid).
  absl::flat_hash_map<std::string, std::unique_ptr<PolicyMemory>> memory_;
  absl::flat_hash_map<std::string, std::unique_ptr<ClusterMemory>>
      cluster_memory_;
  // The last call's desired policies, for retention while in use.
  std::map<std::string, compiler::PackedPolicyPtr> previous_desired_;
};

}  // namespace stockade::controller

#endif  // STOCKADE_OPERATOR_CONTROLLER_RECONCILER_H_
