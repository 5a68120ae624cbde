// One denial as Stockade reports it: which container of which pod under
// which policy tried what, which layer stopped it (or, in Complain mode,
// would have), and the process. Serialized as one JSON object per line
// (the node's denial log, `stockade denials`).
#ifndef STOCKADE_NODE_DENIALS_DENIAL_H_
#define STOCKADE_NODE_DENIALS_DENIAL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "stockade/v1/distribution.pb.h"

namespace stockade::node::denials {

struct Denial {
  absl::Time time;
  std::string node;
  // Who: the container (its containerd id) and, where known, its pod and
  // the Agent it runs for.
  std::string container_id;
  std::string pod_namespace, pod_name, container_name;
  std::string agent;
  // Under which policy.
  std::string policy_namespace, policy_name, policy_hash;
  std::string layer;  // seccomp, apparmor, landlock, network
  std::string mode;   // "enforced" or "complained" (let through)
  // What was attempted (the fields of its layer).
  std::string syscall;
  std::string path, access, operation;
  std::string destination, protocol;
  int port = 0;
  // The process.
  int64_t pid = 0;
  std::string comm, exe;
  // A summary record: this many denials of this container were dropped by
  // the rate limit since the last record (the other fields describe the
  // container only).
  int64_t suppressed = 0;

  nlohmann::json ToJson() const;
  static absl::StatusOr<Denial> FromJson(const nlohmann::json& j);
  // One line of the denial log (no newline).
  std::string ToLine() const;
  static absl::StatusOr<Denial> FromLine(absl::string_view line);
  // As the node agent sends it to the operator (NodeReport.denials).
  stockade::v1::NodeDenial ToProto() const;
  static Denial FromProto(const stockade::v1::NodeDenial& p);
};

}  // namespace stockade::node::denials

#endif  // STOCKADE_NODE_DENIALS_DENIAL_H_
