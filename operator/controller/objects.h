// The operator's objects as the API server sends and takes them (JSON): an
// AgentPolicy, ClusterAgentPolicy or Agent from a list or watch -> proto plus
// the problems of its spec, each naming the field; a status -> the JSON body of
// a write to the /status subresource. Field names, enum spellings and integer
// types are those of the generated CRDs (crds/), which protobuf's own JSON
// mapping does not produce: it spells enums MODE_ENFORCE where the CRD says
// Enforce (and, told to ignore unknown fields, silently drops "Enforce"), and
// writes int64 fields as strings where the CRD says integer.
#ifndef STOCKADE_OPERATOR_CONTROLLER_OBJECTS_H_
#define STOCKADE_OPERATOR_CONTROLLER_OBJECTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/merge.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::controller {

// An AgentPolicy as the reconciler takes it: the object (metadata, spec and
// the status last written) and the problems of its spec. A spec that does
// not decode (the CRD schema should have refused it; a schema older than the
// operator can let it through) is reported as InvalidSpec, never guessed at.
struct AgentPolicyObject {
  stockade::v1::AgentPolicy object;
  // Problems of spec, paths from "spec" ("spec.mode"). When non-empty the
  // spec is not compiled.
  std::vector<compiler::Problem> problems;
};

struct ClusterAgentPolicyObject {
  stockade::v1::ClusterAgentPolicy object;
  std::vector<compiler::Problem> problems;
};

// An Agent: the object and the problems of its spec (schema and semantic,
// e.g. both or neither of policyRef and policy), paths from "spec".
struct AgentObject {
  stockade::v1::Agent object;
  std::vector<compiler::Problem> problems;
};

// Decodes an object from the API server. Fails (InvalidArgument) only when
// the text is not a JSON object, is of another kind, or has no
// metadata.name; problems of the spec land in `problems`. Unknown metadata
// fields (creationTimestamp, managedFields, ...) are ignored; a status that
// does not decode (written by another version) is dropped, as if none had
// been written.
absl::StatusOr<AgentPolicyObject> DecodeAgentPolicy(absl::string_view text);
absl::StatusOr<ClusterAgentPolicyObject> DecodeClusterAgentPolicy(
    absl::string_view text);
absl::StatusOr<AgentObject> DecodeAgent(absl::string_view text);

// A Namespace (core/v1) from the API server: its name and labels.
struct NamespaceObject {
  std::string name;
  compiler::NamespaceLabels labels;
};
absl::StatusOr<NamespaceObject> DecodeNamespace(absl::string_view text);

// `message` (one of the API's messages) as a JSON object in the CRDs'
// spelling, with every field written, defaults included: a merge patch then
// replaces every value the operator owns, never leaving a stale one behind.
// Keys are sorted.
std::string ToCrdJson(const google::protobuf::Message& message);

// {"status": STATUS}: the body of a JSON merge patch
// (Content-Type: application/merge-patch+json) of the /status subresource.
// Lists (conditions) are replaced whole, as a merge patch does.
std::string StatusMergePatch(const stockade::v1::AgentPolicyStatus& status);
std::string StatusMergePatch(
    const stockade::v1::ClusterAgentPolicyStatus& status);
std::string StatusMergePatch(const stockade::v1::AgentStatus& status);

}  // namespace stockade::controller

#endif  // STOCKADE_OPERATOR_CONTROLLER_OBJECTS_H_
