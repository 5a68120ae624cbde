#include "operator/controller/objects.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/validate.h"

namespace stockade::controller {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

// JSON text of `value`. Invalid UTF-8 (a message cut inside a character, a
// byte string from a user) becomes U+FFFD instead of an exception.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Decodes `value` (a JSON value of the object) into `message` with the
// manifest decoder, which knows the CRDs' enum spellings and schema rules;
// paths start at `prefix`.
std::vector<compiler::Problem> DecodePart(const json& value,
                                          absl::string_view prefix,
                                          Message* message) {
  std::vector<compiler::Problem> problems =
      compiler::DecodeInto(Dump(value), "", message);
  for (compiler::Problem& p : problems) {
    p.line = 0;  // lines of a re-serialized document mean nothing
    p.path = p.path.empty() ? std::string(prefix)
                            : absl::StrCat(prefix, ".", p.path);
  }
  return problems;
}

// Parses `text`, checks kind and apiVersion and decodes metadata; the
// remaining parts are left to the caller.
absl::StatusOr<json> ParseObject(absl::string_view text, absl::string_view kind,
                                 absl::string_view api_version,
                                 stockade::v1::ObjectMeta* meta) {
  json doc = json::parse(text.begin(), text.end(), nullptr,
                         /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, ": not a JSON object"));
  }
  if (auto it = doc.find("kind");
      it != doc.end() && (!it->is_string() || it->get<std::string>() != kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected kind ", kind, ", got ", Dump(*it)));
  }
  if (auto it = doc.find("apiVersion");
      it != doc.end() &&
      (!it->is_string() || it->get<std::string>() != api_version)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, ": unsupported apiVersion ", Dump(*it),
                     "; supported: ", api_version));
  }
  auto it = doc.find("metadata");
  if (it == doc.end() || !it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(kind, ": no metadata"));
  }
  std::vector<compiler::Problem> problems = DecodePart(*it, "metadata", meta);
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kind, ": ", problems.front().path, ": ", problems.front().message));
  }
  if (meta->name().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, ": metadata.name is missing"));
  }
  return doc;
}

template <typename Object, typename Result>
absl::StatusOr<Result> DecodeApiObject(absl::string_view text,
                                       absl::string_view kind) {
  Result out;
  Object& object = out.object;
  absl::StatusOr<json> doc =
      ParseObject(text, kind, compiler::kApiVersion, object.mutable_metadata());
  if (!doc.ok()) return doc.status();
  object.set_api_version(compiler::kApiVersion);
  object.set_kind(std::string(kind));
  if (auto it = doc->find("spec"); it == doc->end() || it->is_null()) {
    out.problems.push_back(
        compiler::Problem{"", 0, "spec", "required field is missing"});
  } else {
    out.problems = DecodePart(*it, "spec", object.mutable_spec());
  }
  if (auto it = doc->find("status"); it != doc->end() && !it->is_null()) {
    if (!DecodePart(*it, "status", object.mutable_status()).empty()) {
      object.clear_status();
    }
  }
  return out;
}

json Scalar(const Message& m, const Reflection* r, const FieldDescriptor* f,
            int index) {
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL:
      return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s =
          rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
      if (f->type() == FieldDescriptor::TYPE_BYTES) {
        return absl::Base64Escape(s);
      }
      return s;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* v = rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f);
      return compiler::EnumSpelling(v);  // "" when unspelled; caller drops
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return nullptr;
}

json ToJson(const Message& m) {
  json out = json::object();
  const Descriptor* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string& name = f->json_name();
    if (f->is_map()) {
      json obj = json::object();
      const FieldDescriptor* key = f->message_type()->map_key();
      const FieldDescriptor* value = f->message_type()->map_value();
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        const Message& entry = r->GetRepeatedMessage(m, f, j);
        const Reflection* er = entry.GetReflection();
        json k = Scalar(entry, er, key, -1);
        const std::string ks = k.is_string() ? k.get<std::string>() : Dump(k);
        obj[ks] = value->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE
                      ? ToJson(er->GetMessage(entry, value))
                      : Scalar(entry, er, value, -1);
      }
      out[name] = std::move(obj);
    } else if (f->is_repeated()) {
      json arr = json::array();
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          arr.push_back(ToJson(r->GetRepeatedMessage(m, f, j)));
        } else {
          json v = Scalar(m, r, f, j);
          if (!(f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM &&
                v.get<std::string>().empty())) {
            arr.push_back(std::move(v));
          }
        }
      }
      out[name] = std::move(arr);
    } else if (f->has_presence() && !r->HasField(m, f)) {
      // An unset message or optional scalar: absent, not a default that
      // would mean something else (readOnlyRoot: false).
      continue;
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      out[name] = ToJson(r->GetMessage(m, f));
    } else {
      json v = Scalar(m, r, f, -1);
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM &&
          v.get<std::string>().empty()) {
        continue;  // UNSPECIFIED has no spelling in the CRD
      }
      out[name] = std::move(v);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<AgentPolicyObject> DecodeAgentPolicy(absl::string_view text) {
  return DecodeApiObject<stockade::v1::AgentPolicy, AgentPolicyObject>(
      text, "AgentPolicy");
}

absl::StatusOr<ClusterAgentPolicyObject> DecodeClusterAgentPolicy(
    absl::string_view text) {
  return DecodeApiObject<stockade::v1::ClusterAgentPolicy,
                         ClusterAgentPolicyObject>(text, "ClusterAgentPolicy");
}

absl::StatusOr<AgentObject> DecodeAgent(absl::string_view text) {
  absl::StatusOr<AgentObject> out =
      DecodeApiObject<stockade::v1::Agent, AgentObject>(text, "Agent");
  if (out.ok() && out->problems.empty()) {
    out->problems = compiler::ValidateAgentSpec(out->object.spec(), "spec");
  }
  return out;
}

absl::StatusOr<NamespaceObject> DecodeNamespace(absl::string_view text) {
  stockade::v1::ObjectMeta meta;
  absl::StatusOr<json> doc = ParseObject(text, "Namespace", "v1", &meta);
  if (!doc.ok()) return doc.status();
  NamespaceObject out;
  out.name = meta.name();
  out.labels.insert(meta.labels().begin(), meta.labels().end());
  return out;
}

std::string ToCrdJson(const google::protobuf::Message& message) {
  return Dump(ToJson(message));
}

std::string StatusMergePatch(const stockade::v1::AgentPolicyStatus& status) {
  return Dump(json{{"status", ToJson(status)}});
}

std::string StatusMergePatch(
    const stockade::v1::ClusterAgentPolicyStatus& status) {
  return Dump(json{{"status", ToJson(status)}});
}

std::string StatusMergePatch(const stockade::v1::AgentStatus& status) {
  return Dump(json{{"status", ToJson(status)}});
}

}  // namespace stockade::controller
