// The reconcile logic of the Agent controller, without any I/O: an Agent,
// the AgentPolicy confining it, the ClusterAgentPolicies of its namespace and
// what the cluster shows of its Deployment and NetworkPolicy -> the objects
// to server-side apply (an owned AgentPolicy for an inline policy, the
// Deployment, the NetworkPolicy), the Agent's status and the Events to emit.
//
// Level-triggered and deterministic: the output depends only on the input
// and the clock (condition times). Rules, conditions and reasons:
// docs/operator.md ("The Agent controller").
#ifndef STOCKADE_OPERATOR_CONTROLLER_AGENT_RECONCILER_H_
#define STOCKADE_OPERATOR_CONTROLLER_AGENT_RECONCILER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/merge.h"
#include "operator/controller/objects.h"
#include "operator/controller/reconciler.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::controller {

// Condition types of an Agent.
inline constexpr char kPolicyReady[] = "PolicyReady";
inline constexpr char kAvailable[] = "Available";
inline constexpr char kProgressing[] = "Progressing";

// Reasons (besides kReasonInvalidSpec, kReasonGuardrailViolation and
// kReasonNamespaceUnknown of reconciler.h).
inline constexpr char kReasonPolicyReady[] = "PolicyReady";
inline constexpr char kReasonPolicyNotFound[] = "PolicyNotFound";
inline constexpr char kReasonPolicyNotCompiled[] = "PolicyNotCompiled";
inline constexpr char kReasonPolicyNotReady[] = "PolicyNotReady";
inline constexpr char kReasonPolicyConflict[] = "PolicyConflict";
inline constexpr char kReasonNameConflict[] = "NameConflict";
inline constexpr char kReasonReplicasAvailable[] = "ReplicasAvailable";
inline constexpr char kReasonReplicasUnavailable[] = "ReplicasUnavailable";
inline constexpr char kReasonScaledToZero[] = "ScaledToZero";
inline constexpr char kReasonNoDeployment[] = "NoDeployment";
inline constexpr char kReasonRollingOut[] = "RollingOut";
inline constexpr char kReasonRolledOut[] = "RolledOut";
inline constexpr char kReasonProgressDeadlineExceeded[] =
    "ProgressDeadlineExceeded";

// What the Deployment's pods carry. The annotation keys are the shim's
// (shim/policy/policy.h kPolicyAnnotation: the AgentPolicy's name, resolved
// in the pod's namespace; shim/spec/apply_spec.h kPolicyHashAnnotation).
inline constexpr char kRuntimeClassName[] = "stockade";
inline constexpr char kPolicyAnnotation[] = "stockade.dev/policy";
inline constexpr char kPolicyHashAnnotation[] = "stockade.dev/policy-hash";
// On the Deployment, its pods, the NetworkPolicy and an inline policy's
// AgentPolicy, and on the Events of its pods' denials: the Agent's name. The
// Deployment's selector.
inline constexpr char kAgentLabel[] = "stockade.dev/agent";
// On its pods, the Agent's name again: CRI passes annotations (not labels)
// to the runtime, and the shim records it for the pods' denials
// (shim/policy/policy.h kAgentAnnotation).
inline constexpr char kAgentAnnotation[] = "stockade.dev/agent";
inline constexpr char kContainerName[] = "agent";

// What the cluster shows of an object the Agent should own.
struct OwnedObject {
  bool exists = false;
  // uid in the ownerReference with controller: true ("" when none).
  std::string controller_uid;
};

// An observed apps/v1 Deployment.
struct DeploymentState {
  OwnedObject owner;
  int64_t generation = 0;
  int64_t observed_generation = 0;  // status.observedGeneration
  int32_t spec_replicas = 0;
  int32_t replicas = 0;  // status.replicas ...
  int32_t ready_replicas = 0;
  int32_t available_replicas = 0;
  int32_t updated_replicas = 0;
  // The pod template's stockade.dev/policy-hash annotation.
  std::string policy_hash;
  // The Progressing condition says ProgressDeadlineExceeded; its message.
  bool deadline_exceeded = false;
  std::string progress_message;
};

// From the API server's JSON (null or not an object: exists = false).
OwnedObject ObserveOwner(const nlohmann::json& object);
DeploymentState ObserveDeployment(const nlohmann::json& deployment);

struct AgentSnapshot {
  const AgentObject* agent = nullptr;  // required
  // The AgentPolicy named by spec.policyRef, or, for an inline policy, the
  // one named after the Agent; nullptr when there is none.
  const AgentPolicyObject* policy = nullptr;
  // Every ClusterAgentPolicy (those not selecting the namespace are
  // ignored).
  absl::Span<const ClusterAgentPolicyObject> cluster_policies;
  // The Agent namespace's labels; nullptr when the namespace is not known.
  const compiler::NamespaceLabels* namespace_labels = nullptr;
  DeploymentState deployment;
  OwnedObject network_policy;
};

struct AgentResult {
  ObjectRef object;
  // The AgentPolicy confining the Agent ("" when the spec names none).
  std::string policy_name;
  // Objects to server-side apply, in this order; unset: leave as they are.
  std::optional<nlohmann::json> inline_policy;
  std::optional<nlohmann::json> deployment;
  std::optional<nlohmann::json> network_policy;
  stockade::v1::AgentStatus status;
  // The status differs from the one the Agent has: write it.
  bool status_changed = false;
  // One per condition whose status or reason changed.
  std::vector<Event> events;
};

// The name of the AgentPolicy an Agent with an inline spec.policy owns.
std::string InlinePolicyName(const stockade::v1::Agent& agent);

AgentResult ReconcileAgent(const AgentSnapshot& snapshot, absl::Time now);

}  // namespace stockade::controller

#endif  // STOCKADE_OPERATOR_CONTROLLER_AGENT_RECONCILER_H_
