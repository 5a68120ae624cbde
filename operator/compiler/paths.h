// Absolute paths as policies use them: cleaning, and containment.
#ifndef STOCKADE_OPERATOR_COMPILER_PATHS_H_
#define STOCKADE_OPERATOR_COMPILER_PATHS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::compiler {

// Returns the path with "//" collapsed and a trailing "/" removed (unless
// `keep_trailing_slash` and it had one). Rejects relative paths, "." and ".."
// components, NUL and newline characters, and paths over 4096 bytes.
absl::StatusOr<std::string> CleanAbsolutePath(absl::string_view path,
                                              bool keep_trailing_slash = false);

// True when `path` is `dir` or lies beneath it (both clean; a trailing "/" on
// either is ignored).
bool IsBeneath(absl::string_view path, absl::string_view dir);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_PATHS_H_
