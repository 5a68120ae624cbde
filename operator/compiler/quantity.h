// Kubernetes resource quantities ("64Mi", "1G", "500k"), as used for sizes in
// policies. Only whole, non-negative byte counts are accepted.
#ifndef STOCKADE_OPERATOR_COMPILER_QUANTITY_H_
#define STOCKADE_OPERATOR_COMPILER_QUANTITY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::compiler {

// Parses a quantity into bytes. Accepts the binary suffixes Ki Mi Gi Ti Pi Ei,
// the decimal suffixes k M G T P E, and exponents (1e6). Rejects negative,
// fractional-byte and overflowing values.
absl::StatusOr<int64_t> ParseQuantity(absl::string_view text);

// Formats bytes the way a person writes them: the largest binary suffix that
// divides evenly ("64Mi"), else the plain number.
std::string FormatQuantity(int64_t bytes);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_QUANTITY_H_
