#include "operator/crdgen/generator.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream.h"
#include "nlohmann/json.hpp"
#include "operator/crdgen/structural.h"
#include "operator/crdgen/value.h"
#include "stockade/v1/schema.pb.h"
#include "yaml-cpp/yaml.h"

namespace stockade::crdgen {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::SourceLocation;

constexpr char kApiVersionDescription[] =
    "APIVersion defines the versioned schema of this representation of an "
    "object. Servers should convert recognized schemas to the latest internal "
    "value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#resources";
constexpr char kKindDescription[] =
    "Kind is a string value representing the REST resource this object "
    "represents. Servers may infer this from the endpoint the client submits "
    "requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#types-kinds";
// A Kubernetes resource.Quantity, for format "quantity" without a pattern.
constexpr char kQuantityPattern[] =
    "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    "([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";
constexpr char kObjectMeta[] = "stockade.v1.ObjectMeta";

// A proto comment as description text: lines trimmed and joined, one
// paragraph per blank-line-separated block.
std::string Paragraphs(absl::string_view comment) {
  std::vector<std::string> paragraphs;
  std::string current;
  for (absl::string_view line : absl::StrSplit(comment, '\n')) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty()) {
      if (!current.empty()) paragraphs.push_back(std::move(current));
      current.clear();
      continue;
    }
    if (!current.empty()) current += ' ';
    current.append(text.data(), text.size());
  }
  if (!current.empty()) paragraphs.push_back(std::move(current));
  return absl::StrJoin(paragraphs, "\n\n");
}

template <typename D>
std::string Comment(const D* descriptor) {
  SourceLocation location;
  if (!descriptor->GetSourceLocation(&location)) return "";
  std::string text = Paragraphs(location.leading_comments);
  return text.empty() ? Paragraphs(location.trailing_comments) : text;
}

// The field's comment, else the comment of its message or enum type.
std::string Describe(const FieldDescriptor* field) {
  std::string text = Comment(field);
  if (text.empty() && field->message_type() != nullptr && !field->is_map()) {
    text = Comment(field->message_type());
  }
  if (text.empty() && field->enum_type() != nullptr) {
    text = Comment(field->enum_type());
  }
  return text;
}

int KeyRank(absl::string_view key) {
  static constexpr absl::string_view kOrder[] = {
      "description",
      "type",
      "format",
      "enum",
      "default",
      "pattern",
      "minimum",
      "maximum",
      "minLength",
      "maxLength",
      "minItems",
      "maxItems",
      "items",
      "properties",
      "additionalProperties",
      "required",
      "x-kubernetes-int-or-string",
      "x-kubernetes-preserve-unknown-fields",
      "x-kubernetes-list-type",
      "x-kubernetes-list-map-keys",
  };
  const auto* it = std::find(std::begin(kOrder), std::end(kOrder), key);
  return static_cast<int>(it - std::begin(kOrder));
}

// Puts every schema node's keywords in one fixed order and its properties in
// alphabetical order.
void Canonicalize(Value& schema) {
  schema.SortKeys([](const std::string& a, const std::string& b) {
    const int ra = KeyRank(a);
    const int rb = KeyRank(b);
    return ra != rb ? ra < rb : a < b;
  });
  if (Value* properties = schema.Find("properties")) {
    properties->SortKeys(
        [](const std::string& a, const std::string& b) { return a < b; });
    for (Value& child : properties->children()) Canonicalize(child);
  }
  if (Value* items = schema.Find("items")) Canonicalize(*items);
  if (Value* additional = schema.Find("additionalProperties")) {
    Canonicalize(*additional);
  }
}

absl::StatusOr<Value> JsonToValue(const nlohmann::json& json) {
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value();
    case nlohmann::json::value_t::boolean:
      return Value(json.get<bool>());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return Value(json.get<int64_t>());
    case nlohmann::json::value_t::number_float:
      return Value::Double(json.get<double>());
    case nlohmann::json::value_t::string:
      return Value(json.get<std::string>());
    case nlohmann::json::value_t::array: {
      Value list = Value::List();
      for (const auto& item : json) {
        absl::StatusOr<Value> v = JsonToValue(item);
        if (!v.ok()) return v.status();
        list.Append(*std::move(v));
      }
      return list;
    }
    case nlohmann::json::value_t::object: {
      Value map = Value::Map();
      for (const auto& [key, item] : json.items()) {
        absl::StatusOr<Value> v = JsonToValue(item);
        if (!v.ok()) return v.status();
        map[key] = *std::move(v);
      }
      return map;
    }
    default:
      return absl::InvalidArgumentError("unsupported JSON value");
  }
}

// Whether a default value fits the schema type it is a default of.
bool DefaultFits(const Value& value, const std::string& type) {
  switch (value.kind()) {
    case Value::Kind::kString:
      return type == "string";
    case Value::Kind::kInt:
      return type == "integer" || type == "number";
    case Value::Kind::kDouble:
      return type == "number";
    case Value::Kind::kBool:
      return type == "boolean";
    case Value::Kind::kMap:
      return type == "object";
    case Value::Kind::kList:
      return type == "array";
    case Value::Kind::kNull:
      return false;
  }
  return false;
}

// Builds the openAPIV3Schema of one resource.
class SchemaBuilder {
 public:
  explicit SchemaBuilder(std::string kind) : kind_(std::move(kind)) {}

  absl::StatusOr<Value> Resource(const Descriptor* message) {
    Value schema = Value::Map();
    const std::string description = Comment(message);
    if (!description.empty()) schema["description"] = description;
    schema["type"] = "object";
    Value& properties = schema["properties"];
    properties = Value::Map();
    std::vector<std::string> required;
    for (int i = 0; i < message->field_count(); ++i) {
      const FieldDescriptor* field = message->field(i);
      const std::string& name = field->json_name();
      const bool is_string = field->type() == FieldDescriptor::TYPE_STRING &&
                             !field->is_repeated();
      if (field->name() == "api_version" && is_string) {
        properties[name] = StringWithDescription(kApiVersionDescription);
      } else if (field->name() == "kind" && is_string) {
        properties[name] = StringWithDescription(kKindDescription);
      } else if (field->message_type() != nullptr && !field->is_repeated() &&
                 field->message_type()->full_name() == kObjectMeta) {
        // The API server owns the schema of metadata.
        Value metadata = Value::Map();
        metadata["type"] = "object";
        properties[name] = std::move(metadata);
      } else {
        absl::StatusOr<Value> child =
            Field(field, absl::StrCat(".", name), name != "status");
        if (!child.ok()) return child.status();
        properties[name] = *std::move(child);
      }
      if (field->options().GetExtension(v1::field).required()) {
        required.push_back(name);
      }
    }
    SetRequired(std::move(required), schema);
    Canonicalize(schema);
    return schema;
  }

 private:
  static Value StringWithDescription(const char* description) {
    Value v = Value::Map();
    v["description"] = description;
    v["type"] = "string";
    return v;
  }

  static void SetRequired(std::vector<std::string> required, Value& schema) {
    if (required.empty()) return;
    std::sort(required.begin(), required.end());
    Value& list = schema["required"];
    list = Value::List();
    for (std::string& name : required) list.Append(std::move(name));
  }

  absl::Status Error(const std::string& path, const FieldDescriptor* field,
                     absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(
        kind_, path,
        field != nullptr ? absl::StrCat(" (", field->full_name(), ")")
                         : std::string(),
        ": ", message));
  }

  absl::StatusOr<Value> Object(const Descriptor* message,
                               const std::string& path, bool no_int64,
                               const FieldDescriptor* via) {
    if (std::find(stack_.begin(), stack_.end(), message) != stack_.end()) {
      return Error(path, via,
                   absl::StrCat("message ", message->full_name(),
                                " contains itself; a CRD schema cannot be "
                                "recursive (mark the field "
                                "preserve_unknown_fields or break the cycle)"));
    }
    stack_.push_back(message);
    Value schema = Value::Map();
    schema["type"] = "object";
    Value properties = Value::Map();
    std::vector<std::string> required;
    for (int i = 0; i < message->field_count(); ++i) {
      const FieldDescriptor* field = message->field(i);
      absl::StatusOr<Value> child =
          Field(field, absl::StrCat(path, ".", field->json_name()), no_int64);
      if (!child.ok()) return child.status();
      properties[field->json_name()] = *std::move(child);
      if (field->options().GetExtension(v1::field).required()) {
        required.push_back(field->json_name());
      }
    }
    if (!properties.keys().empty())
      schema["properties"] = std::move(properties);
    SetRequired(std::move(required), schema);
    stack_.pop_back();
    return schema;
  }

  absl::StatusOr<Value> Enum(const EnumDescriptor* type,
                             const std::string& path,
                             const FieldDescriptor* field) {
    Value values = Value::List();
    std::vector<std::string> seen;
    for (int i = 0; i < type->value_count(); ++i) {
      const auto* value = type->value(i);
      const std::string& spelling = value->options().GetExtension(v1::value);
      if (spelling.empty()) {
        if (value->number() == 0) continue;  // proto3's "not set"
        return Error(path, field,
                     absl::StrCat("enum value ", value->full_name(),
                                  " has no (stockade.v1.value) spelling"));
      }
      if (std::find(seen.begin(), seen.end(), spelling) != seen.end()) {
        return Error(path, field,
                     absl::StrCat("enum ", type->full_name(), " spells \"",
                                  spelling, "\" twice"));
      }
      seen.push_back(spelling);
      values.Append(spelling);
    }
    if (seen.empty()) {
      return Error(
          path, field,
          absl::StrCat("enum ", type->full_name(), " has no spelled values"));
    }
    Value schema = Value::Map();
    schema["type"] = "string";
    schema["enum"] = std::move(values);
    return schema;
  }

  // The schema of one value of `field`, ignoring repeated. `no_int64`: the
  // value lies outside status (and metadata), where 64-bit integers are
  // refused.
  absl::StatusOr<Value> Element(const FieldDescriptor* field,
                                const std::string& path, bool no_int64) {
    Value schema = Value::Map();
    switch (field->type()) {
      case FieldDescriptor::TYPE_STRING:
        schema["type"] = "string";
        return schema;
      case FieldDescriptor::TYPE_BYTES:
        schema["type"] = "string";
        schema["format"] = "byte";
        return schema;
      case FieldDescriptor::TYPE_BOOL:
        schema["type"] = "boolean";
        return schema;
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32:
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
        schema["type"] = "integer";
        schema["format"] = "int32";
        return schema;
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        if (no_int64) {
          const std::string top(
              path.substr(1, path.find_first_of(".[", 1) - 1));
          return Error(
              path, field,
              absl::StrCat(field->type_name(), " is not allowed under ", top,
                           " (only status and metadata may hold "
                           "one): JSON "
                           "clients read 64-bit integers as floats; "
                           "use int32, or a quantity string "
                           "(\"64Mi\") for sizes"));
        }
        schema["type"] = "integer";
        schema["format"] = "int64";
        return schema;
      case FieldDescriptor::TYPE_FLOAT:
      case FieldDescriptor::TYPE_DOUBLE:
        schema["type"] = "number";
        return schema;
      case FieldDescriptor::TYPE_ENUM:
        return Enum(field->enum_type(), path, field);
      case FieldDescriptor::TYPE_MESSAGE:
      case FieldDescriptor::TYPE_GROUP:
        return Object(field->message_type(), path, no_int64, field);
    }
    return Error(path, field, "unsupported field type");
  }

  // FieldSchema options that constrain one value (string or integer).
  absl::Status ApplyValueOptions(const v1::FieldSchema& options,
                                 const FieldDescriptor* field,
                                 const std::string& path, Value& schema) {
    const bool is_string = field->type() == FieldDescriptor::TYPE_STRING;
    const bool is_integer = schema.Find("type") != nullptr &&
                            schema.Find("type")->string() == "integer";
    auto misfit = [&](absl::string_view option, absl::string_view what) {
      return Error(path, field,
                   absl::StrCat("schema option ", option, " applies only to ",
                                what, " fields"));
    };
    if (!options.pattern().empty()) {
      if (!is_string) return misfit("pattern", "string");
      schema["pattern"] = options.pattern();
    }
    if (options.max_length() != 0) {
      if (!is_string) return misfit("max_length", "string");
      schema["maxLength"] = static_cast<int64_t>(options.max_length());
    }
    if (!options.format().empty()) {
      if (!is_string) return misfit("format", "string");
      if (options.format() == "quantity") {
        // Kubernetes has no "quantity" format: the pattern says it.
        if (!schema.Has("pattern")) schema["pattern"] = kQuantityPattern;
      } else {
        schema["format"] = options.format();
      }
    }
    if (options.has_minimum() || options.has_maximum()) {
      if (!is_integer) return misfit("minimum/maximum", "integer");
      if (options.has_minimum() && options.has_maximum() &&
          options.minimum() > options.maximum()) {
        return Error(path, field, "minimum is above maximum");
      }
      if (options.has_minimum()) schema["minimum"] = options.minimum();
      if (options.has_maximum()) schema["maximum"] = options.maximum();
    }
    return absl::OkStatus();
  }

  absl::Status ApplyListOptions(const v1::FieldSchema& options,
                                const FieldDescriptor* field,
                                const std::string& path, Value& schema) {
    if (!field->is_repeated() || field->is_map()) {
      if (options.max_items() != 0 || options.list_set() ||
          !options.list_map_key().empty()) {
        return Error(path, field,
                     "max_items, list_set and list_map_key apply only to "
                     "repeated fields");
      }
      return absl::OkStatus();
    }
    if (options.required()) schema["minItems"] = 1;
    if (options.max_items() != 0) {
      schema["maxItems"] = static_cast<int64_t>(options.max_items());
    }
    if (options.list_set() && !options.list_map_key().empty()) {
      return Error(path, field, "list_set and list_map_key exclude each other");
    }
    if (options.list_set()) {
      if (field->message_type() != nullptr) {
        return Error(path, field, "list_set needs scalar items");
      }
      schema["x-kubernetes-list-type"] = "set";
    }
    if (!options.list_map_key().empty()) {
      const Descriptor* item = field->message_type();
      if (item == nullptr) {
        return Error(path, field, "list_map_key needs message items");
      }
      const FieldDescriptor* key =
          item->FindFieldByName(options.list_map_key());
      for (int i = 0; key == nullptr && i < item->field_count(); ++i) {
        if (item->field(i)->json_name() == options.list_map_key()) {
          key = item->field(i);
        }
      }
      if (key == nullptr) {
        return Error(path, field,
                     absl::StrCat("list_map_key \"", options.list_map_key(),
                                  "\" is not a field of ", item->full_name()));
      }
      const v1::FieldSchema& key_options =
          key->options().GetExtension(v1::field);
      if (key->is_repeated() || key->message_type() != nullptr ||
          (!key_options.required() && key_options.default_json().empty())) {
        return Error(path, field,
                     absl::StrCat("list map key ", key->full_name(),
                                  " must be a required (or defaulted) "
                                  "scalar"));
      }
      schema["x-kubernetes-list-type"] = "map";
      Value keys = Value::List();
      keys.Append(key->json_name());
      schema["x-kubernetes-list-map-keys"] = std::move(keys);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Field(const FieldDescriptor* field,
                              const std::string& path, bool no_int64) {
    const v1::FieldSchema& options = field->options().GetExtension(v1::field);
    Value schema;
    if (options.preserve_unknown_fields()) {
      // Free-form JSON: the server keeps whatever is there, unchecked.
      if (field->message_type() == nullptr || field->is_repeated()) {
        return Error(path, field,
                     "preserve_unknown_fields applies only to message and "
                     "map fields");
      }
      schema = Value::Map();
      schema["type"] = "object";
      schema["x-kubernetes-preserve-unknown-fields"] = true;
    } else if (field->is_map()) {
      const FieldDescriptor* key = field->message_type()->map_key();
      if (key->type() != FieldDescriptor::TYPE_STRING) {
        return Error(path, field, "map keys must be strings in JSON");
      }
      schema = Value::Map();
      schema["type"] = "object";
      absl::StatusOr<Value> value =
          Element(field->message_type()->map_value(), path + "[*]", no_int64);
      if (!value.ok()) return value.status();
      schema["additionalProperties"] = *std::move(value);
      if (!options.pattern().empty() || options.max_length() != 0 ||
          !options.format().empty() || options.has_minimum() ||
          options.has_maximum()) {
        return Error(path, field, "value options do not apply to map fields");
      }
    } else if (field->is_repeated()) {
      absl::StatusOr<Value> items = Element(field, path + "[]", no_int64);
      if (!items.ok()) return items.status();
      if (absl::Status s = ApplyValueOptions(options, field, path, *items);
          !s.ok()) {
        return s;
      }
      schema = Value::Map();
      schema["type"] = "array";
      schema["items"] = *std::move(items);
    } else {
      absl::StatusOr<Value> element = Element(field, path, no_int64);
      if (!element.ok()) return element.status();
      schema = *std::move(element);
      if (absl::Status s = ApplyValueOptions(options, field, path, schema);
          !s.ok()) {
        return s;
      }
      if (options.required() && field->type() == FieldDescriptor::TYPE_STRING) {
        schema["minLength"] = 1;
      }
    }
    if (absl::Status s = ApplyListOptions(options, field, path, schema);
        !s.ok()) {
      return s;
    }
    if (!options.default_json().empty()) {
      const nlohmann::json json = nlohmann::json::parse(
          options.default_json(), nullptr, /*allow_exceptions=*/false);
      if (json.is_discarded()) {
        return Error(path, field, "default_json is not valid JSON");
      }
      absl::StatusOr<Value> value = JsonToValue(json);
      if (!value.ok()) return Error(path, field, value.status().message());
      if (!DefaultFits(*value, schema["type"].string())) {
        return Error(
            path, field,
            absl::StrCat("default_json ", options.default_json(),
                         " does not fit type ", schema["type"].string()));
      }
      if (const Value* values = schema.Find("enum")) {
        const auto& allowed = values->children();
        if (std::none_of(allowed.begin(), allowed.end(), [&](const Value& v) {
              return v.string() == value->string();
            })) {
          return Error(path, field,
                       absl::StrCat("default_json ", options.default_json(),
                                    " is not one of the enum values"));
        }
      }
      schema["default"] = *std::move(value);
    }
    const std::string description = Describe(field);
    if (!description.empty()) schema["description"] = description;
    return schema;
  }

  std::string kind_;
  std::vector<const Descriptor*> stack_;
};

absl::StatusOr<CrdFile> GenerateCrd(const Descriptor* message) {
  const v1::ResourceSchema& resource =
      message->options().GetExtension(v1::resource);
  const std::string where = absl::StrCat(message->full_name(), ": ");
  if (resource.kind().empty() || resource.plural().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "(stockade.v1.resource) needs kind and plural"));
  }
  if (resource.scope() != "Namespaced" && resource.scope() != "Cluster") {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "(stockade.v1.resource) scope must be Namespaced or Cluster"));
  }
  absl::StatusOr<Value> schema =
      SchemaBuilder(resource.kind()).Resource(message);
  if (!schema.ok()) return schema.status();

  Value names = Value::Map();
  names["kind"] = resource.kind();
  names["listKind"] = absl::StrCat(resource.kind(), "List");
  names["plural"] = resource.plural();
  names["singular"] = resource.singular().empty()
                          ? absl::AsciiStrToLower(resource.kind())
                          : resource.singular();
  if (resource.short_names_size() > 0) {
    Value& short_names = names["shortNames"];
    for (const std::string& s : resource.short_names()) short_names.Append(s);
  }
  if (resource.categories_size() > 0) {
    Value& categories = names["categories"];
    for (const std::string& c : resource.categories()) categories.Append(c);
  }

  Value version = Value::Map();
  version["name"] = kVersion;
  version["served"] = true;
  version["storage"] = true;
  if (message->FindFieldByName("status") != nullptr) {
    version["subresources"]["status"] = Value::Map();
  }
  if (resource.printer_columns_size() > 0) {
    Value& columns = version["additionalPrinterColumns"];
    for (const v1::PrinterColumn& c : resource.printer_columns()) {
      Value column = Value::Map();
      column["name"] = c.name();
      column["type"] = c.type();
      column["jsonPath"] = c.json_path();
      if (!c.description().empty()) column["description"] = c.description();
      if (c.priority() != 0) column["priority"] = c.priority();
      columns.Append(std::move(column));
    }
  }
  version["schema"]["openAPIV3Schema"] = *std::move(schema);

  Value crd = Value::Map();
  crd["apiVersion"] = "apiextensions.k8s.io/v1";
  crd["kind"] = "CustomResourceDefinition";
  crd["metadata"]["name"] = absl::StrCat(resource.plural(), ".", kGroup);
  crd["spec"]["group"] = kGroup;
  crd["spec"]["names"] = std::move(names);
  crd["spec"]["scope"] = resource.scope();
  crd["spec"]["versions"].Append(std::move(version));

  const std::string& proto = message->file()->name();
  const size_t slash = proto.rfind('/');
  const std::string source =
      slash == std::string::npos ? proto : proto.substr(0, slash);
  CrdFile file;
  file.name = absl::StrCat(kGroup, "_", resource.plural(), ".yaml");
  file.content = EmitYaml(
      crd, absl::StrCat("Generated by protoc-gen-stockade-crd from proto/",
                        source, ". DO NOT EDIT."));

  // Check the result as the API server would before handing it out.
  std::vector<std::string> problems;
  try {
    problems = CheckCrd(YAML::Load(file.content));
  } catch (const YAML::Exception& e) {
    problems.push_back(absl::StrCat("emitted YAML does not parse: ", e.what()));
  }
  if (!problems.empty()) {
    return absl::InternalError(
        absl::StrCat(where, "the generated CRD fails its structural check:\n  ",
                     absl::StrJoin(problems, "\n  ")));
  }
  return file;
}

void CollectResources(const Descriptor* message,
                      std::vector<const Descriptor*>* out) {
  if (message->options().HasExtension(v1::resource)) out->push_back(message);
  for (int i = 0; i < message->nested_type_count(); ++i) {
    CollectResources(message->nested_type(i), out);
  }
}

}  // namespace

absl::StatusOr<std::vector<CrdFile>> GenerateCrds(const FileDescriptor* file) {
  std::vector<const Descriptor*> resources;
  for (int i = 0; i < file->message_type_count(); ++i) {
    CollectResources(file->message_type(i), &resources);
  }
  std::vector<CrdFile> files;
  for (const Descriptor* message : resources) {
    absl::StatusOr<CrdFile> crd = GenerateCrd(message);
    if (!crd.ok()) return crd.status();
    for (const CrdFile& other : files) {
      if (other.name == crd->name) {
        return absl::InvalidArgumentError(
            absl::StrCat(file->name(), ": two resources generate ", crd->name));
      }
    }
    files.push_back(*std::move(crd));
  }
  std::sort(files.begin(), files.end(),
            [](const CrdFile& a, const CrdFile& b) { return a.name < b.name; });
  return files;
}

bool CrdGenerator::Generate(
    const FileDescriptor* file, const std::string& parameter,
    google::protobuf::compiler::GeneratorContext* context,
    std::string* error) const {
  if (!parameter.empty()) {
    *error = absl::StrCat("protoc-gen-stockade-crd takes no parameters, got \"",
                          parameter, "\"");
    return false;
  }
  absl::StatusOr<std::vector<CrdFile>> files = GenerateCrds(file);
  if (!files.ok()) {
    *error = std::string(files.status().message());
    return false;
  }
  for (const CrdFile& crd : *files) {
    std::unique_ptr<google::protobuf::io::ZeroCopyOutputStream> stream(
        context->Open(crd.name));
    google::protobuf::io::CodedOutputStream out(stream.get());
    out.WriteRaw(crd.content.data(), static_cast<int>(crd.content.size()));
  }
  return true;
}

}  // namespace stockade::crdgen
