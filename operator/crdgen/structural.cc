#include "operator/crdgen/structural.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "operator/crdgen/value.h"

namespace stockade::crdgen {
namespace {

// Schema keywords crdgen emits and this check understands. Kubernetes allows
// a few more (anyOf, allOf, ...) under extra rules; crdgen never needs them.
const std::set<absl::string_view>& Keywords() {
  static const auto* const kKeywords =
      new std::set<absl::string_view>{"description",
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
                                      "nullable",
                                      "x-kubernetes-preserve-unknown-fields",
                                      "x-kubernetes-int-or-string",
                                      "x-kubernetes-list-type",
                                      "x-kubernetes-list-map-keys",
                                      "x-kubernetes-map-type",
                                      "x-kubernetes-embedded-resource",
                                      "x-kubernetes-validations"};
  return *kKeywords;
}

std::string Str(const YAML::Node& node) {
  return node && node.IsScalar() ? node.Scalar() : std::string();
}

bool IsTrue(const YAML::Node& node) { return Str(node) == "true"; }

class SchemaChecker {
 public:
  explicit SchemaChecker(std::vector<std::string>* problems)
      : problems_(problems) {}

  void Check(const YAML::Node& node, const std::string& path, bool root,
             bool under_spec) {
    if (!node.IsMap()) {
      Problem(path, "a schema must be a mapping");
      return;
    }
    for (const auto& entry : node) {
      const std::string key = Str(entry.first);
      if (key == "$ref") {
        Problem(path, "$ref is not allowed in a CRD schema: inline the type");
      } else if (!Keywords().contains(key)) {
        Problem(path, absl::StrCat("unknown schema keyword \"", key, "\""));
      }
    }
    const bool preserve = IsTrue(node["x-kubernetes-preserve-unknown-fields"]);
    const bool int_or_string = IsTrue(node["x-kubernetes-int-or-string"]);
    const std::string type = Str(node["type"]);
    if (type.empty()) {
      if (!preserve && !int_or_string) {
        Problem(path,
                "has no type (a structural schema needs one on every node)");
      }
    } else if (type != "object" && type != "array" && type != "string" &&
               type != "integer" && type != "number" && type != "boolean") {
      Problem(path, absl::StrCat("unknown type \"", type, "\""));
    }
    if (root && type != "object") Problem(path, "the root must be an object");

    const std::string format = Str(node["format"]);
    if (under_spec && type == "integer" && format != "int32") {
      Problem(path, absl::StrCat(
                        "integer with format \"", format,
                        "\" under spec: JSON clients read 64-bit integers as "
                        "floats; use int32 (or a quantity string for sizes)"));
    }

    auto only_for = [&](absl::string_view keyword, bool applies,
                        absl::string_view what) {
      // An untyped node was reported above (or may hold anything).
      if (!type.empty() && node[std::string(keyword)] && !applies) {
        Problem(path, absl::StrCat(keyword, " applies only to ", what,
                                   ", not to type \"", type, "\""));
      }
    };
    const bool is_object = type == "object" || (type.empty() && preserve);
    const bool is_string = type == "string" || int_or_string;
    const bool is_number = type == "integer" || type == "number";
    only_for("properties", is_object, "objects");
    only_for("additionalProperties", is_object, "objects");
    only_for("required", is_object, "objects");
    only_for("items", type == "array", "arrays");
    only_for("minItems", type == "array", "arrays");
    only_for("maxItems", type == "array", "arrays");
    only_for("x-kubernetes-list-type", type == "array", "arrays");
    only_for("x-kubernetes-list-map-keys", type == "array", "arrays");
    only_for("pattern", is_string, "strings");
    only_for("minLength", is_string, "strings");
    only_for("maxLength", is_string, "strings");
    only_for("minimum", is_number, "numbers");
    only_for("maximum", is_number, "numbers");

    if (const YAML::Node values = node["enum"]) {
      if (!values.IsSequence() || values.size() == 0) {
        Problem(path, "enum must be a non-empty list");
      } else if (type == "string") {
        for (const auto& value : values) {
          // A plain "True" or "no" is a bool to YAML 1.1 readers (kubectl).
          if (!value.IsScalar() ||
              (value.Tag() == "?" && NeedsQuotes(value.Scalar()))) {
            Problem(path, absl::StrCat("enum value ", Str(value),
                                       " does not read back as a string"));
          }
        }
      }
    }

    CheckObject(node, path, root, under_spec);
    if (type == "array") CheckArray(node, path, under_spec);
  }

 private:
  void Problem(const std::string& path, absl::string_view message) {
    problems_->push_back(absl::StrCat(path, ": ", message));
  }

  static std::string Join(const std::string& path, absl::string_view name) {
    return path == "." ? absl::StrCat(".", name)
                       : absl::StrCat(path, ".", name);
  }

  void CheckObject(const YAML::Node& node, const std::string& path, bool root,
                   bool under_spec) {
    const YAML::Node properties = node["properties"];
    if (properties) {
      if (!properties.IsMap()) {
        Problem(path, "properties must be a mapping");
      } else {
        for (const auto& entry : properties) {
          const std::string name = Str(entry.first);
          const std::string child = Join(path, name);
          if (root && name == "metadata") {
            CheckRootMetadata(entry.second, child);
            continue;
          }
          if (root && (name == "apiVersion" || name == "kind") &&
              Str(entry.second["type"]) != "string") {
            Problem(child, "must be of type string");
          }
          Check(entry.second, child, false,
                under_spec || (root && name == "spec"));
        }
      }
    }
    if (const YAML::Node additional = node["additionalProperties"]) {
      if (properties) {
        Problem(path,
                "properties and additionalProperties are mutually exclusive");
      }
      if (additional.IsMap()) {
        Check(additional, path + "[*]", false, under_spec);
      } else {
        Problem(path, "additionalProperties must be a schema, not a bool");
      }
    }
    if (const YAML::Node required = node["required"]) {
      if (!required.IsSequence()) {
        Problem(path, "required must be a list");
        return;
      }
      std::set<std::string> seen;
      for (const auto& item : required) {
        const std::string name = Str(item);
        if (!seen.insert(name).second) {
          Problem(path, absl::StrCat("required lists ", name, " twice"));
        }
        if (properties && !properties[name]) {
          Problem(path, absl::StrCat("required field ", name,
                                     " is not among the properties"));
        }
      }
    }
  }

  void CheckArray(const YAML::Node& node, const std::string& path,
                  bool under_spec) {
    const YAML::Node items = node["items"];
    if (!items) {
      Problem(path, "an array needs items");
      return;
    }
    Check(items, path + "[]", false, under_spec);
    const std::string list_type = Str(node["x-kubernetes-list-type"]);
    const YAML::Node keys = node["x-kubernetes-list-map-keys"];
    const std::string item_type = Str(items["type"]);
    if (list_type.empty() || list_type == "atomic") {
      // Nothing more to check.
    } else if (list_type == "set") {
      if (item_type == "object" || item_type == "array") {
        Problem(path, "x-kubernetes-list-type set needs scalar items");
      }
    } else if (list_type == "map") {
      if (item_type != "object") {
        Problem(path, "x-kubernetes-list-type map needs object items");
      }
      if (!keys || !keys.IsSequence() || keys.size() == 0) {
        Problem(path,
                "x-kubernetes-list-type map needs "
                "x-kubernetes-list-map-keys");
      } else {
        const YAML::Node required = items["required"];
        for (const auto& key : keys) {
          const std::string name = Str(key);
          const YAML::Node field = items["properties"][name];
          if (!field) {
            Problem(path, absl::StrCat("list map key ", name,
                                       " is not a field of the items"));
            continue;
          }
          bool is_required = false;
          if (required && required.IsSequence()) {
            for (const auto& r : required) is_required |= Str(r) == name;
          }
          if (!is_required && !field["default"]) {
            Problem(path, absl::StrCat("list map key ", name,
                                       " must be required or have a default"));
          }
        }
      }
    } else {
      Problem(path, absl::StrCat("unknown x-kubernetes-list-type \"", list_type,
                                 "\""));
    }
    if (keys && list_type != "map") {
      Problem(path, "x-kubernetes-list-map-keys needs list type map");
    }
  }

  // The API server owns metadata's schema: a CRD may only say it is an object.
  void CheckRootMetadata(const YAML::Node& node, const std::string& path) {
    if (!node.IsMap() || Str(node["type"]) != "object") {
      Problem(path, "must be {type: object}");
      return;
    }
    for (const auto& entry : node) {
      const std::string key = Str(entry.first);
      if (key != "type" && key != "description") {
        Problem(path, absl::StrCat("may only declare type and description, "
                                   "not ",
                                   key));
      }
    }
  }

  std::vector<std::string>* problems_;
};

// Whether `json_path` (".status.nodes.summary") names a field of `schema`.
bool Resolves(const YAML::Node& schema, absl::string_view json_path) {
  if (!absl::StartsWith(json_path, ".")) return false;
  YAML::Node node;
  node.reset(schema);  // rebinds; operator= would write into the tree
  bool root = true;
  for (absl::string_view segment : absl::StrSplit(json_path.substr(1), '.')) {
    if (root && segment == "metadata") return true;    // owned by the server
    if (absl::StrContains(segment, "[")) return true;  // beyond this check
    const YAML::Node& here = node;
    if (IsTrue(here["x-kubernetes-preserve-unknown-fields"]) ||
        here["additionalProperties"]) {
      return true;
    }
    const YAML::Node& current = node;
    const YAML::Node next = current["properties"][std::string(segment)];
    if (!next) return false;
    node.reset(next);
    root = false;
  }
  return true;
}

void CheckVersion(const YAML::Node& version, const std::string& where,
                  std::vector<std::string>* problems) {
  auto problem = [&](absl::string_view message) {
    problems->push_back(absl::StrCat(where, ": ", message));
  };
  const YAML::Node schema = version["schema"]["openAPIV3Schema"];
  if (!schema) {
    problem("no schema.openAPIV3Schema");
    return;
  }
  for (const std::string& p : CheckStructuralSchema(schema)) {
    problems->push_back(absl::StrCat(where, ".schema.openAPIV3Schema", p));
  }
  if (const YAML::Node sub = version["subresources"]) {
    if (sub["status"] && !sub["status"].IsMap()) {
      problem("subresources.status must be {}");
    }
  }
  const YAML::Node columns = version["additionalPrinterColumns"];
  if (!columns) return;
  if (!columns.IsSequence()) {
    problem("additionalPrinterColumns must be a list");
    return;
  }
  std::set<std::string> names;
  for (const auto& column : columns) {
    const std::string name = Str(column["name"]);
    const std::string type = Str(column["type"]);
    const std::string path = Str(column["jsonPath"]);
    if (name.empty() || !names.insert(name).second) {
      problem(absl::StrCat("printer column \"", name,
                           "\" is unnamed or named twice"));
    }
    if (type != "string" && type != "integer" && type != "number" &&
        type != "boolean" && type != "date") {
      problem(absl::StrCat("printer column ", name, " has type \"", type,
                           "\" (string, integer, number, boolean or date)"));
    }
    if (!Resolves(schema, path)) {
      problem(absl::StrCat("printer column ", name, ": jsonPath \"", path,
                           "\" names no field of the schema"));
    }
  }
}

}  // namespace

std::vector<std::string> CheckStructuralSchema(const YAML::Node& schema) {
  std::vector<std::string> problems;
  try {
    SchemaChecker(&problems).Check(schema, ".", /*root=*/true,
                                   /*under_spec=*/false);
  } catch (const YAML::Exception& e) {
    problems.push_back(absl::StrCat(".: unreadable schema: ", e.what()));
  }
  return problems;
}

std::vector<std::string> CheckCrd(const YAML::Node& crd) {
  std::vector<std::string> problems;
  auto problem = [&](absl::string_view message) {
    problems.emplace_back(message);
  };
  try {
    if (!crd.IsMap()) {
      problem("a CRD must be a mapping");
      return problems;
    }
    if (Str(crd["apiVersion"]) != "apiextensions.k8s.io/v1") {
      problem("apiVersion must be apiextensions.k8s.io/v1");
    }
    if (Str(crd["kind"]) != "CustomResourceDefinition") {
      problem("kind must be CustomResourceDefinition");
    }
    const YAML::Node spec = crd["spec"];
    const YAML::Node names = spec["names"];
    const std::string group = Str(spec["group"]);
    const std::string plural = Str(names["plural"]);
    if (!absl::StrContains(group, ".")) {
      problem("spec.group must be a domain name");
    }
    if (Str(crd["metadata"]["name"]) != absl::StrCat(plural, ".", group)) {
      problem("metadata.name must be <plural>.<group>");
    }
    auto lower = [](const std::string& s) {
      return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      });
    };
    if (Str(names["kind"]).empty()) problem("spec.names.kind is empty");
    if (Str(names["listKind"]).empty()) problem("spec.names.listKind is empty");
    if (!lower(plural)) problem("spec.names.plural must be lowercase");
    if (!lower(Str(names["singular"]))) {
      problem("spec.names.singular must be lowercase");
    }
    if (const YAML::Node short_names = names["shortNames"]) {
      for (const auto& s : short_names) {
        if (!lower(Str(s))) problem("spec.names.shortNames must be lowercase");
      }
    }
    const std::string scope = Str(spec["scope"]);
    if (scope != "Namespaced" && scope != "Cluster") {
      problem("spec.scope must be Namespaced or Cluster");
    }
    const YAML::Node versions = spec["versions"];
    if (!versions || !versions.IsSequence() || versions.size() == 0) {
      problem("spec.versions is empty");
      return problems;
    }
    int storage = 0;
    for (const auto& version : versions) {
      const std::string where =
          absl::StrCat("spec.versions[", Str(version["name"]), "]");
      if (Str(version["name"]).empty()) problem(where + ": unnamed version");
      if (IsTrue(version["storage"])) ++storage;
      CheckVersion(version, where, &problems);
    }
    if (storage != 1) problem("exactly one version must be the storage one");
  } catch (const YAML::Exception& e) {
    problems.push_back(absl::StrCat("unreadable CRD: ", e.what()));
  }
  return problems;
}

}  // namespace stockade::crdgen
