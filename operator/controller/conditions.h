// Kubernetes status conditions (metav1.Condition) as the controllers keep
// them: one condition per type, lastTransitionTime moving only when the
// condition's status changes, times in RFC 3339 (UTC, whole seconds) as the
// API server writes metav1.Time.
#ifndef STOCKADE_OPERATOR_CONTROLLER_CONDITIONS_H_
#define STOCKADE_OPERATOR_CONTROLLER_CONDITIONS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "stockade/v1/meta.pb.h"

namespace stockade::controller {

using Conditions = google::protobuf::RepeatedPtrField<stockade::v1::Condition>;

// "2026-01-02T03:04:05Z".
std::string Rfc3339(absl::Time t);

// The condition of `type`, or nullptr.
const stockade::v1::Condition* FindCondition(const Conditions& conditions,
                                             absl::string_view type);

// A condition with these fields and lastTransitionTime taken from the
// condition of the same type in `previous` when its status is the same (and
// it has a time), else `now`.
stockade::v1::Condition MakeCondition(const Conditions& previous,
                                      absl::string_view type,
                                      stockade::v1::ConditionStatus status,
                                      absl::string_view reason,
                                      absl::string_view message,
                                      int64_t observed_generation,
                                      absl::string_view now);

// "True", "False", "Unknown".
absl::string_view StatusName(stockade::v1::ConditionStatus status);

// At most `max_bytes` of `message`, cut at a UTF-8 character boundary and
// ending in " [truncated]" when cut. Condition messages are limited to
// 32768 bytes by the CRD.
std::string Truncate(std::string message, size_t max_bytes);
inline constexpr size_t kMaxConditionMessage = 32768;

}  // namespace stockade::controller

#endif  // STOCKADE_OPERATOR_CONTROLLER_CONDITIONS_H_
