// Compiled policies in words, for people: `stockade explain` (every rule and
// the layers that enforce it) and `stockade diff` (what an agent may do after
// a change that it could not before, and the reverse).
#ifndef STOCKADE_OPERATOR_COMPILER_EXPLAIN_H_
#define STOCKADE_OPERATOR_COMPILER_EXPLAIN_H_

#include <string>
#include <vector>

#include "stockade/v1/compiled.pb.h"

namespace stockade::compiler {

std::string ExplainPolicy(const stockade::v1::CompiledPolicy& policy);

struct PolicyDiff {
  std::vector<std::string> gained;  // allowed after, not before
  std::vector<std::string> lost;    // allowed before, not after
  std::vector<std::string> other;   // changes that are neither (mode, ...)

  bool empty() const { return gained.empty() && lost.empty() && other.empty(); }
  std::string ToString() const;
};

PolicyDiff DiffPolicies(const stockade::v1::CompiledPolicy& before,
                        const stockade::v1::CompiledPolicy& after);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_EXPLAIN_H_
