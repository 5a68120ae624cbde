// SHA-256 of a byte string, as lowercase hex: policy hashes, the node
// store's checksums, cache keys and socket names. Nettle's implementation:
// no library initialisation and no heap, which matters in the shim (one
// process per pod).
#ifndef STOCKADE_BASE_SHA256_H_
#define STOCKADE_BASE_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace stockade {

// 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view data);

}  // namespace stockade

#endif  // STOCKADE_BASE_SHA256_H_
