#include "shim/spec/apply_spec.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace stockade::shim {
namespace {

// Keeps the spec's key order, so a diff against the input shows only what
// the policy changed.
using Json = nlohmann::ordered_json;

absl::Status Malformed(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: ", field, ": ", problem));
}

absl::Status WrongType(absl::string_view field, absl::string_view want,
                       const Json& got) {
  return Malformed(field, absl::StrCat("want ", want, ", got ",
                                       std::string(got.type_name())));
}

// Returns parent[key] as an object, created when absent or null.
absl::StatusOr<Json*> ObjectField(Json& parent, const std::string& key,
                                  absl::string_view field) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) {
    parent[key] = Json::object();
    return &parent[key];
  }
  if (!it->is_object()) return WrongType(field, "an object", *it);
  return &*it;
}

// Returns parent[key] as an array, created when absent or null.
absl::StatusOr<Json*> ArrayField(Json& parent, const std::string& key,
                                 absl::string_view field) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) {
    parent[key] = Json::array();
    return &parent[key];
  }
  if (!it->is_array()) return WrongType(field, "an array", *it);
  return &*it;
}

// Checks that every element of array is a string.
absl::Status CheckStrings(const Json& array, absl::string_view field) {
  for (size_t i = 0; i < array.size(); ++i) {
    if (!array[i].is_string()) {
      return WrongType(absl::StrCat(field, "[", i, "]"), "a string", array[i]);
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOptionalBool(const Json& parent, const std::string& key,
                               absl::string_view field) {
  auto it = parent.find(key);
  if (it != parent.end() && !it->is_null() && !it->is_boolean()) {
    return WrongType(field, "a boolean", *it);
  }
  return absl::OkStatus();
}

// "/tmp/agent/" and "/tmp/agent" name the same mount point.
std::string CleanDestination(std::string d) {
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d;
}

absl::Status ApplyRoot(Json& doc, const stockade::v1::OciChanges& oci) {
  auto root = ObjectField(doc, "root", "root");
  if (!root.ok()) return root.status();
  if (auto s = CheckOptionalBool(**root, "readonly", "root.readonly");
      !s.ok()) {
    return s;
  }
  if (oci.readonly_root()) (**root)["readonly"] = true;
  return absl::OkStatus();
}

absl::Status ApplyMounts(Json& doc, const stockade::v1::OciChanges& oci) {
  auto mounts_or = ArrayField(doc, "mounts", "mounts");
  if (!mounts_or.ok()) return mounts_or.status();
  Json& mounts = **mounts_or;
  for (size_t i = 0; i < mounts.size(); ++i) {
    const std::string field = absl::StrCat("mounts[", i, "]");
    if (!mounts[i].is_object()) {
      return WrongType(field, "an object", mounts[i]);
    }
    auto d = mounts[i].find("destination");
    if (d == mounts[i].end()) {
      return Malformed(absl::StrCat(field, ".destination"), "missing");
    }
    if (!d->is_string()) {
      return WrongType(absl::StrCat(field, ".destination"), "a string", *d);
    }
  }
  for (const stockade::v1::OciMount& m : oci.mounts()) {
    Json entry = Json::object();
    entry["destination"] = m.destination();
    entry["type"] = m.type();
    entry["source"] = m.source();
    entry["options"] = Json::array();
    for (const std::string& o : m.options()) entry["options"].push_back(o);
    const std::string dest = CleanDestination(m.destination());
    Json out = Json::array();
    bool placed = false;
    for (Json& existing : mounts) {
      if (CleanDestination(existing["destination"].get<std::string>()) ==
          dest) {
        if (placed) continue;
        out.push_back(entry);
        placed = true;
      } else {
        out.push_back(std::move(existing));
      }
    }
    if (!placed) out.push_back(std::move(entry));
    mounts = std::move(out);
  }
  return absl::OkStatus();
}

// linux[key] = sorted union of its strings and add.
absl::Status UnionPaths(
    Json& linux, const std::string& key,
    const google::protobuf::RepeatedPtrField<std::string>& add) {
  const std::string field = absl::StrCat("linux.", key);
  auto array = ArrayField(linux, key, field);
  if (!array.ok()) return array.status();
  if (auto s = CheckStrings(**array, field); !s.ok()) return s;
  std::set<std::string> all(add.begin(), add.end());
  for (const Json& p : **array) all.insert(p.get<std::string>());
  Json out = Json::array();
  for (const std::string& p : all) out.push_back(p);
  **array = std::move(out);
  return absl::OkStatus();
}

absl::Status ApplyCapabilities(Json& process,
                               const stockade::v1::OciChanges& oci) {
  // Without a capabilities object runc leaves the process every capability
  // of root (and no inheritable or ambient ones).
  auto it = process.find("capabilities");
  const bool absent = it == process.end() || it->is_null();
  auto caps = ObjectField(process, "capabilities", "process.capabilities");
  if (!caps.ok()) return caps.status();
  const std::set<std::string> allowed(oci.capabilities().begin(),
                                      oci.capabilities().end());
  for (const std::string set :
       {"bounding", "effective", "permitted", "inheritable", "ambient"}) {
    const std::string field = absl::StrCat("process.capabilities.", set);
    auto array = ArrayField(**caps, set, field);
    if (!array.ok()) return array.status();
    if (auto s = CheckStrings(**array, field); !s.ok()) return s;
    std::set<std::string> kept;
    if (absent) {
      if (set != "inheritable" && set != "ambient") kept = allowed;
    } else {
      for (const Json& c : **array) {
        if (allowed.contains(c.get<std::string>())) {
          kept.insert(c.get<std::string>());
        }
      }
    }
    Json out = Json::array();
    for (const std::string& c : kept) out.push_back(c);
    **array = std::move(out);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RlimitValue(const Json& entry, const char* key,
                                     absl::string_view field) {
  const std::string f = absl::StrCat(field, ".", key);
  auto it = entry.find(key);
  if (it == entry.end()) return Malformed(f, "missing");
  if (!it->is_number_integer() ||
      (it->is_number_integer() && !it->is_number_unsigned() &&
       it->get<int64_t>() < 0)) {
    return WrongType(f, "a non-negative integer", *it);
  }
  return it->get<uint64_t>();
}

absl::Status ApplyRlimits(Json& process, const stockade::v1::OciChanges& oci) {
  auto rlimits_or = ArrayField(process, "rlimits", "process.rlimits");
  if (!rlimits_or.ok()) return rlimits_or.status();
  Json& rlimits = **rlimits_or;
  for (size_t i = 0; i < rlimits.size(); ++i) {
    const std::string field = absl::StrCat("process.rlimits[", i, "]");
    if (!rlimits[i].is_object()) {
      return WrongType(field, "an object", rlimits[i]);
    }
    auto t = rlimits[i].find("type");
    if (t == rlimits[i].end()) {
      return Malformed(absl::StrCat(field, ".type"), "missing");
    }
    if (!t->is_string()) {
      return WrongType(absl::StrCat(field, ".type"), "a string", *t);
    }
    for (const char* key : {"hard", "soft"}) {
      if (auto v = RlimitValue(rlimits[i], key, field); !v.ok()) {
        return v.status();
      }
    }
  }
  for (const stockade::v1::OciRlimit& r : oci.rlimits()) {
    uint64_t hard = r.hard();
    uint64_t soft = r.soft();
    for (const Json& existing : rlimits) {
      if (existing["type"].get<std::string>() != r.type()) continue;
      hard = std::min(hard, existing["hard"].get<uint64_t>());
      soft = std::min(soft, existing["soft"].get<uint64_t>());
    }
    soft = std::min(soft, hard);
    Json entry = Json::object();
    entry["type"] = r.type();
    entry["hard"] = hard;
    entry["soft"] = soft;
    Json out = Json::array();
    bool placed = false;
    for (Json& existing : rlimits) {
      if (existing["type"].get<std::string>() == r.type()) {
        if (placed) continue;
        out.push_back(entry);
        placed = true;
      } else {
        out.push_back(std::move(existing));
      }
    }
    if (!placed) out.push_back(std::move(entry));
    rlimits = std::move(out);
  }
  return absl::OkStatus();
}

absl::Status ApplyProcess(Json& doc, const stockade::v1::CompiledPolicy& policy,
                          const ApplySpecOptions& options) {
  auto process = ObjectField(doc, "process", "process");
  if (!process.ok()) return process.status();
  if (auto s = ApplyCapabilities(**process, policy.oci()); !s.ok()) return s;
  if (auto s = CheckOptionalBool(**process, "noNewPrivileges",
                                 "process.noNewPrivileges");
      !s.ok()) {
    return s;
  }
  if (policy.oci().no_new_privileges()) {
    (**process)["noNewPrivileges"] = true;
  }
  if (auto s = ApplyRlimits(**process, policy.oci()); !s.ok()) return s;
  if (options.set_apparmor_profile) {
    auto it = (*process)->find("apparmorProfile");
    if (it != (*process)->end() && !it->is_null() && !it->is_string()) {
      return WrongType("process.apparmorProfile", "a string", *it);
    }
    (**process)["apparmorProfile"] = policy.apparmor().name();
  }
  return absl::OkStatus();
}

absl::Status ApplyLinux(Json& doc, const stockade::v1::CompiledPolicy& policy,
                        Json seccomp) {
  auto linux_or = ObjectField(doc, "linux", "linux");
  if (!linux_or.ok()) return linux_or.status();
  Json& linux = **linux_or;
  if (auto s = UnionPaths(linux, "maskedPaths", policy.oci().masked_paths());
      !s.ok()) {
    return s;
  }
  if (auto s =
          UnionPaths(linux, "readonlyPaths", policy.oci().readonly_paths());
      !s.ok()) {
    return s;
  }
  const int64_t ours = policy.oci().pids_limit();
  if (ours > 0) {
    auto resources = ObjectField(linux, "resources", "linux.resources");
    if (!resources.ok()) return resources.status();
    auto pids = ObjectField(**resources, "pids", "linux.resources.pids");
    if (!pids.ok()) return pids.status();
    int64_t limit = ours;
    auto it = (*pids)->find("limit");
    if (it != (*pids)->end() && !it->is_null()) {
      if (!it->is_number_integer()) {
        return WrongType("linux.resources.pids.limit", "an integer", *it);
      }
      // Zero or negative: no limit. Above INT64_MAX: larger than ours.
      if (it->is_number_unsigned()) {
        const uint64_t v = it->get<uint64_t>();
        if (v > 0 && v <= static_cast<uint64_t>(INT64_MAX)) {
          limit = std::min(limit, static_cast<int64_t>(v));
        }
      } else if (it->get<int64_t>() > 0) {
        limit = std::min(limit, it->get<int64_t>());
      }
    }
    (**pids)["limit"] = limit;
  }
  linux["seccomp"] = std::move(seccomp);
  return absl::OkStatus();
}

absl::Status ApplyAnnotation(Json& doc, const std::string& hash) {
  auto annotations = ObjectField(doc, "annotations", "annotations");
  if (!annotations.ok()) return annotations.status();
  (**annotations)[kPolicyHashAnnotation] = hash;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ApplyOrError(
    std::string_view config_json, const stockade::v1::CompiledPolicy& policy,
    const ApplySpecOptions& options) {
  const std::string hash_field =
      policy.hash().empty() ? std::string("compiled policy")
                            : absl::StrCat("compiled policy ", policy.hash());
  if (policy.hash().empty()) {
    return absl::InvalidArgumentError("compiled policy: hash is empty");
  }
  if (policy.seccomp_json().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(hash_field, ": seccomp_json is empty"));
  }
  Json seccomp;
  try {
    seccomp = Json::parse(policy.seccomp_json());
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        hash_field, ": seccomp_json is not valid JSON: ", e.what()));
  }
  if (!seccomp.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(hash_field, ": seccomp_json: want an object, got ",
                     std::string(seccomp.type_name())));
  }
  if (options.set_apparmor_profile && policy.apparmor().name().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(hash_field, ": apparmor.name is empty"));
  }

  Json doc;
  try {
    doc = Json::parse(config_json);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: want a JSON object at the top level, got ",
                     std::string(doc.type_name())));
  }
  if (auto s = ApplyRoot(doc, policy.oci()); !s.ok()) return s;
  if (auto s = ApplyMounts(doc, policy.oci()); !s.ok()) return s;
  if (auto s = ApplyProcess(doc, policy, options); !s.ok()) return s;
  if (auto s = ApplyLinux(doc, policy, std::move(seccomp)); !s.ok()) return s;
  if (auto s = ApplyAnnotation(doc, policy.hash()); !s.ok()) return s;
  return doc.dump(2) + "\n";
}

}  // namespace

absl::StatusOr<std::string> ApplySpec(
    std::string_view config_json, const stockade::v1::CompiledPolicy& policy,
    const ApplySpecOptions& options) {
  // Every shape is checked before use; this only turns a missed case into an
  // error instead of an exception crossing the module boundary.
  try {
    return ApplyOrError(config_json, policy, options);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("applying the policy to config.json: ", e.what()));
  }
}

}  // namespace stockade::shim
