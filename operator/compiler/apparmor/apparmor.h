// The AppArmor compiler: effective policy -> profile source text for
// apparmor_parser (rules and decisions: docs/apparmor.md).
#ifndef STOCKADE_OPERATOR_COMPILER_APPARMOR_APPARMOR_H_
#define STOCKADE_OPERATOR_COMPILER_APPARMOR_APPARMOR_H_

#include <string>
#include <string_view>

#include "operator/compiler/effective.h"

namespace stockade::compiler {

// Renders the profile named `profile_name` (matches ^[a-zA-Z0-9_./-]+$).
std::string RenderAppArmorProfile(const EffectivePolicy& policy,
                                  std::string_view profile_name);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_APPARMOR_APPARMOR_H_
