// Reads a PEM file (certificate, key or CA bundle) for TLS, with errors that
// name what the file is for: "cannot read the client key file /x",
// "the CA file /y holds no PEM block".
#ifndef STOCKADE_BASE_PEM_H_
#define STOCKADE_BASE_PEM_H_

#include <string>

#include "absl/status/statusor.h"

namespace stockade {

// The file's text. `what` names its role ("server certificate"). An empty
// `path` is InvalidArgument ("mTLS needs the WHAT file (or --insecure)").
absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        const std::string& what);

}  // namespace stockade

#endif  // STOCKADE_BASE_PEM_H_
