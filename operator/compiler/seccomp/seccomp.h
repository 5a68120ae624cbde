// The seccomp compiler: effective policy -> the OCI runtime spec's
// linux.seccomp object (JSON), for runc to load.
#ifndef STOCKADE_OPERATOR_COMPILER_SECCOMP_SECCOMP_H_
#define STOCKADE_OPERATOR_COMPILER_SECCOMP_SECCOMP_H_

#include <string>

#include "absl/status/statusor.h"
#include "operator/compiler/effective.h"

namespace stockade::compiler {

// Returns the linux.seccomp object as deterministic JSON text.
absl::StatusOr<std::string> CompileSeccomp(const EffectivePolicy& policy);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_SECCOMP_SECCOMP_H_
