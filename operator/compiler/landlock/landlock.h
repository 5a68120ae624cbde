// The Landlock compiler: effective policy -> the ruleset stockade-init applies
// inside the container before it execs the agent.
#ifndef STOCKADE_OPERATOR_COMPILER_LANDLOCK_LANDLOCK_H_
#define STOCKADE_OPERATOR_COMPILER_LANDLOCK_LANDLOCK_H_

#include <string>
#include <vector>

#include "operator/compiler/effective.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::compiler {

// Builds the ruleset. What Landlock cannot express for this policy is
// appended to `notes` in words. Handles every filesystem right up to ABI 5,
// TCP bind/connect (ABI 4) and scoping (ABI 6), so min_abi is 6. Complain
// mode yields an empty ruleset (Landlock cannot log without denying).
// Deterministic: rules sorted by path, rights in enum order.
stockade::v1::LandlockRuleset CompileLandlock(const EffectivePolicy& policy,
                                              std::vector<std::string>* notes);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_LANDLOCK_LANDLOCK_H_
