// Semantic validation of decoded API objects: what the schema alone cannot
// say (clean absolute paths, CIDRs, port ranges, syscall and capability
// names, quantities, contradictions such as a path both writable and denied).
// Each problem names the field path; lines are filled in from the document.
#ifndef STOCKADE_OPERATOR_COMPILER_VALIDATE_H_
#define STOCKADE_OPERATOR_COMPILER_VALIDATE_H_

#include <string>
#include <vector>

#include "operator/compiler/manifest/manifest.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::compiler {

// Problems of a policy spec whose fields live under `prefix` ("spec").
std::vector<Problem> ValidatePolicySpec(
    const stockade::v1::AgentPolicySpec& spec, const std::string& prefix);

std::vector<Problem> ValidateClusterPolicySpec(
    const stockade::v1::ClusterAgentPolicySpec& spec,
    const std::string& prefix);

std::vector<Problem> ValidateAgentSpec(const stockade::v1::AgentSpec& spec,
                                       const std::string& prefix);

// Validates a decoded document and fills in file and line of each problem.
std::vector<Problem> ValidateDocument(const Document& doc);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_VALIDATE_H_
