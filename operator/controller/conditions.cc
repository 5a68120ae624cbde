#include "operator/controller/conditions.h"

#include "absl/strings/str_cat.h"

namespace stockade::controller {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

const stockade::v1::Condition* FindCondition(const Conditions& conditions,
                                             absl::string_view type) {
  for (const auto& c : conditions) {
    if (c.type() == type) return &c;
  }
  return nullptr;
}

stockade::v1::Condition MakeCondition(const Conditions& previous,
                                      absl::string_view type,
                                      stockade::v1::ConditionStatus status,
                                      absl::string_view reason,
                                      absl::string_view message,
                                      int64_t observed_generation,
                                      absl::string_view now) {
  stockade::v1::Condition c;
  c.set_type(std::string(type));
  c.set_status(status);
  c.set_reason(std::string(reason));
  c.set_message(Truncate(std::string(message), kMaxConditionMessage));
  c.set_observed_generation(observed_generation);
  const stockade::v1::Condition* prev = FindCondition(previous, type);
  if (prev != nullptr && prev->status() == status &&
      !prev->last_transition_time().empty()) {
    c.set_last_transition_time(prev->last_transition_time());
  } else {
    c.set_last_transition_time(std::string(now));
  }
  return c;
}

absl::string_view StatusName(stockade::v1::ConditionStatus status) {
  switch (status) {
    case stockade::v1::CONDITION_STATUS_TRUE:
      return "True";
    case stockade::v1::CONDITION_STATUS_FALSE:
      return "False";
    default:
      return "Unknown";
  }
}

std::string Truncate(std::string message, size_t max_bytes) {
  if (message.size() <= max_bytes) return message;
  constexpr absl::string_view kMark = " [truncated]";
  size_t cut = max_bytes > kMark.size() ? max_bytes - kMark.size() : 0;
  // Back up over UTF-8 continuation bytes (10xxxxxx).
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  message.resize(cut);
  absl::StrAppend(&message, kMark);
  return message;
}

}  // namespace stockade::controller
