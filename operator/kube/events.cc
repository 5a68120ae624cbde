#include "operator/kube/events.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace stockade::kube {

using json = nlohmann::json;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string Rfc3339Micro(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

ObjectReference ReferenceTo(const json& object) {
  return ObjectReference{
      .api_version = StringAt(object, {"apiVersion"}),
      .kind = StringAt(object, {"kind"}),
      .namespace_ = NamespaceOf(object),
      .name = NameOf(object),
      .uid = UidOf(object),
      .resource_version = ResourceVersionOf(object),
  };
}

EventRecorder::EventRecorder(Client* client, std::string component,
                             EventRecorderOptions options)
    : client_(client),
      component_(std::move(component)),
      options_(std::move(options)) {}

namespace {

// A Kubernetes label value: at most 63 characters of [A-Za-z0-9-_.],
// beginning and ending with a letter or digit (or empty).
bool IsLabelValue(const std::string& v) {
  if (v.size() > 63) return false;
  if (v.empty()) return true;
  auto alnum = [](char c) { return absl::ascii_isalnum(c); };
  return alnum(v.front()) && alnum(v.back()) &&
         std::all_of(v.begin(), v.end(), [&](char c) {
           return alnum(c) || c == '-' || c == '_' || c == '.';
         });
}

}  // namespace

absl::Status EventRecorder::Record(
    const ObjectReference& object, EventType type, absl::string_view reason,
    absl::string_view message,
    const std::map<std::string, std::string>& labels) {
  const std::string type_name =
      type == EventType::kWarning ? "Warning" : "Normal";
  const std::string ns =
      object.namespace_.empty() ? "default" : object.namespace_;
  const std::string key = absl::StrCat(
      object.uid, "\x1f", object.kind, "\x1f", object.namespace_, "\x1f",
      object.name, "\x1f", type_name, "\x1f", reason, "\x1f", message);
  const absl::Time now = absl::Now();

  // A repeat: bump the event recorded before.
  std::string event_name;
  int64_t count = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = tracked_.find(key);
    if (it != tracked_.end() &&
        now - it->second.last < options_.aggregation_window) {
      Tracked& t = it->second;
      t.count++;
      t.last = now;
      lru_.splice(lru_.begin(), lru_, t.lru);
      event_name = t.name;
      count = t.count;
    }
  }
  if (!event_name.empty()) {
    json patch = {{"count", count}, {"lastTimestamp", Rfc3339(now)}};
    absl::StatusOr<json> r =
        client_->Patch(kEvent, ns, event_name, PatchType::kMerge, patch);
    if (r.ok()) return absl::OkStatus();
    if (r.status().code() != absl::StatusCode::kNotFound) return r.status();
    // The event expired (the apiserver keeps them for an hour): a new one.
  }

  const std::string name =
      absl::StrFormat("%s.%x", object.name.empty() ? "unknown" : object.name,
                      static_cast<uint64_t>(absl::ToUnixNanos(now)));
  json involved = json::object();
  if (!object.api_version.empty()) involved["apiVersion"] = object.api_version;
  if (!object.kind.empty()) involved["kind"] = object.kind;
  if (!object.namespace_.empty()) involved["namespace"] = object.namespace_;
  if (!object.name.empty()) involved["name"] = object.name;
  if (!object.uid.empty()) involved["uid"] = object.uid;
  if (!object.resource_version.empty()) {
    involved["resourceVersion"] = object.resource_version;
  }
  json source = {{"component", component_}};
  if (!options_.host.empty()) source["host"] = options_.host;
  json metadata = {{"name", name}, {"namespace", ns}};
  for (const auto& [key, value] : labels) {
    if (IsLabelValue(value)) metadata["labels"][key] = value;
  }
  json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", std::move(metadata)},
      {"involvedObject", involved},
      {"type", type_name},
      {"reason", std::string(reason)},
      {"message", std::string(message)},
      {"source", source},
      {"firstTimestamp", Rfc3339(now)},
      {"lastTimestamp", Rfc3339(now)},
      {"count", 1},
      {"reportingComponent", component_},
      {"reportingInstance",
       options_.instance.empty() ? options_.host : options_.instance},
  };
  absl::StatusOr<json> created = client_->Create(kEvent, ns, event);
  if (!created.ok()) return created.status();

  absl::MutexLock lock(&mu_);
  auto it = tracked_.find(key);
  if (it != tracked_.end()) {
    lru_.erase(it->second.lru);
    tracked_.erase(it);
  }
  lru_.push_front(key);
  tracked_[key] = Tracked{ns, name, 1, now, lru_.begin()};
  while (tracked_.size() > options_.max_tracked && !lru_.empty()) {
    tracked_.erase(lru_.back());
    lru_.pop_back();
  }
  return absl::OkStatus();
}

}  // namespace stockade::kube
