// Linux capability names, as policies write them (without "CAP_").
#ifndef STOCKADE_OPERATOR_COMPILER_CAPABILITIES_H_
#define STOCKADE_OPERATOR_COMPILER_CAPABILITIES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace stockade::compiler {

// "NET_BIND_SERVICE" or "CAP_NET_BIND_SERVICE" -> "NET_BIND_SERVICE"; empty
// when the name is not a Linux capability.
std::string NormalizeCapability(absl::string_view name);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_CAPABILITIES_H_
