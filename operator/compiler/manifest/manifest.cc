#include "operator/compiler/manifest/manifest.h"

#include <yaml-cpp/yaml.h>

#include <regex>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "stockade/v1/schema.pb.h"

namespace stockade::compiler {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Nodes visited per document; bounds work on alias-heavy input.
constexpr int kMaxNodes = 200000;
// Strings longer than this are rejected before any pattern is tried.
constexpr size_t kMaxPatternedLength = 4096;

int LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

// A plain (unquoted) scalar that YAML's core schema reads as something other
// than a string.
enum class ScalarKind { kString, kNull, kBool, kInt, kFloat };

ScalarKind Classify(const YAML::Node& node) {
  if (node.Tag() != "?") return ScalarKind::kString;  // quoted or tagged
  const std::string& s = node.Scalar();
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return ScalarKind::kNull;
  }
  static const std::regex kBool("true|True|TRUE|false|False|FALSE");
  static const std::regex kInt("[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+");
  static const std::regex kFloat(
      "[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\\.(inf|Inf|"
      "INF)|\\.nan|\\.NaN|\\.NAN");
  if (s.size() > 64) return ScalarKind::kString;
  if (std::regex_match(s, kBool)) return ScalarKind::kBool;
  if (std::regex_match(s, kInt)) return ScalarKind::kInt;
  if (std::regex_match(s, kFloat)) return ScalarKind::kFloat;
  return ScalarKind::kString;
}

absl::string_view KindName(ScalarKind k) {
  switch (k) {
    case ScalarKind::kString:
      return "a string";
    case ScalarKind::kNull:
      return "null";
    case ScalarKind::kBool:
      return "a boolean";
    case ScalarKind::kInt:
      return "an integer";
    case ScalarKind::kFloat:
      return "a number";
  }
  return "a value";
}

absl::string_view NodeTypeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "an object";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return KindName(Classify(node));
    default:
      return "nothing";
  }
}

const std::regex& CachedRegex(const std::string& pattern) {
  static auto* cache = new std::map<std::string, std::regex>();
  auto it = cache->find(pattern);
  if (it == cache->end()) {
    it = cache->emplace(pattern, std::regex(pattern, std::regex::ECMAScript))
             .first;
  }
  return it->second;
}

class Decoder {
 public:
  Decoder(absl::string_view file, SourceLines* lines,
          std::vector<Problem>* problems)
      : file_(file), lines_(lines), problems_(problems) {}

  void Fail(const YAML::Node& node, absl::string_view path,
            std::string message) {
    problems_->push_back(
        Problem{file_, LineOf(node), std::string(path), std::move(message)});
  }
  void FailAt(int line, absl::string_view path, std::string message) {
    problems_->push_back(
        Problem{file_, line, std::string(path), std::move(message)});
  }

  // Decodes a mapping into `msg`. `lenient` ignores unknown keys (metadata).
  void DecodeMessage(const YAML::Node& node, const std::string& path,
                     Message* msg) {
    if (!Visit(node, path)) return;
    if (node.IsNull()) return;
    if (!node.IsMap()) {
      Fail(node, path,
           absl::StrCat("expected an object, got ", NodeTypeName(node)));
      return;
    }
    const Descriptor* desc = msg->GetDescriptor();
    const bool lenient = desc->full_name() == "stockade.v1.ObjectMeta";
    std::set<const FieldDescriptor*> present;
    std::set<const FieldDescriptor*> failed;  // already reported
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: yaml-cpp's iterator yields temporaries.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Fail(key, path, "object keys must be strings");
        continue;
      }
      const std::string& name = key.Scalar();
      const std::string child =
          path.empty() ? name : absl::StrCat(path, ".", name);
      const FieldDescriptor* field = FindField(desc, name);
      if (field == nullptr) {
        if (!lenient) {
          Fail(key, child,
               absl::StrCat("unknown field \"", name,
                            "\"; allowed: ", AllowedFields(desc)));
        }
        continue;
      }
      if (!present.insert(field).second) {
        Fail(key, child, "field given twice");
        continue;
      }
      (*lines_)[child] = LineOf(key);
      const size_t before = problems_->size();
      DecodeField(value, child, field, msg);
      if (problems_->size() != before) failed.insert(field);
    }
    CheckRequired(node, path, desc, present, failed, *msg);
  }

 private:
  bool Visit(const YAML::Node& node, absl::string_view path) {
    if (++visited_ > kMaxNodes) {
      if (!overflowed_) {
        Fail(node, path,
             absl::StrCat("document too large (more than ", kMaxNodes,
                          " nodes)"));
      }
      overflowed_ = true;
      return false;
    }
    return true;
  }

  static const FieldDescriptor* FindField(const Descriptor* desc,
                                          const std::string& json_name) {
    for (int i = 0; i < desc->field_count(); ++i) {
      if (desc->field(i)->json_name() == json_name) return desc->field(i);
    }
    return nullptr;
  }

  static std::string AllowedFields(const Descriptor* desc) {
    std::vector<std::string> names;
    for (int i = 0; i < desc->field_count(); ++i) {
      names.push_back(desc->field(i)->json_name());
    }
    return absl::StrJoin(names, ", ");
  }

  static const v1::FieldSchema& Schema(const FieldDescriptor* field) {
    return field->options().GetExtension(v1::field);
  }

  void CheckRequired(const YAML::Node& node, const std::string& path,
                     const Descriptor* desc,
                     const std::set<const FieldDescriptor*>& present,
                     const std::set<const FieldDescriptor*>& failed,
                     const Message& msg) {
    for (int i = 0; i < desc->field_count(); ++i) {
      const FieldDescriptor* f = desc->field(i);
      if (!Schema(f).required() || failed.count(f)) continue;
      const std::string child = path.empty()
                                    ? f->json_name()
                                    : absl::StrCat(path, ".", f->json_name());
      if (!present.count(f)) {
        Fail(node, child, "required field is missing");
        continue;
      }
      const Reflection* r = msg.GetReflection();
      if (f->is_repeated() && r->FieldSize(msg, f) == 0) {
        FailAt((*lines_)[child], child, "must not be empty");
      } else if (!f->is_repeated() &&
                 f->type() == FieldDescriptor::TYPE_STRING &&
                 r->GetString(msg, f).empty()) {
        FailAt((*lines_)[child], child, "must not be empty");
      }
    }
  }

  void DecodeField(const YAML::Node& value, const std::string& path,
                   const FieldDescriptor* field, Message* msg) {
    const v1::FieldSchema& schema = Schema(field);
    if (field->is_map()) {
      if (value.IsNull()) return;
      if (!value.IsMap()) {
        Fail(value, path,
             absl::StrCat("expected an object of strings, got ",
                          NodeTypeName(value)));
        return;
      }
      const FieldDescriptor* key_f = field->message_type()->map_key();
      const FieldDescriptor* val_f = field->message_type()->map_value();
      for (auto it = value.begin(); it != value.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node val = it->second;
        if (!Visit(val, path)) return;
        const std::string child = absl::StrCat(
            path, ".", key.IsScalar() ? key.Scalar() : std::string("?"));
        if (!key.IsScalar() || !val.IsScalar() ||
            key_f->type() != FieldDescriptor::TYPE_STRING ||
            val_f->type() != FieldDescriptor::TYPE_STRING) {
          Fail(val, child, "expected a string");
          continue;
        }
        Message* entry = msg->GetReflection()->AddMessage(msg, field);
        entry->GetReflection()->SetString(entry, key_f, key.Scalar());
        entry->GetReflection()->SetString(entry, val_f, val.Scalar());
      }
      return;
    }
    if (field->is_repeated()) {
      if (value.IsNull()) return;
      if (!value.IsSequence()) {
        Fail(value, path,
             absl::StrCat("expected a list, got ", NodeTypeName(value)));
        return;
      }
      if (schema.max_items() > 0 &&
          static_cast<int>(value.size()) > schema.max_items()) {
        Fail(value, path,
             absl::StrCat("too many items: ", value.size(), " (at most ",
                          schema.max_items(), ")"));
        return;
      }
      std::set<std::string> seen;
      for (size_t i = 0; i < value.size(); ++i) {
        const YAML::Node item = value[i];
        const std::string child = absl::StrCat(path, "[", i, "]");
        (*lines_)[child] = LineOf(item);
        if (!DecodeValue(item, child, field, msg)) continue;
        std::string key;
        if (schema.list_set() && item.IsScalar()) key = item.Scalar();
        if (!schema.list_map_key().empty() && item.IsMap() &&
            item[schema.list_map_key()].IsScalar()) {
          key = item[schema.list_map_key()].Scalar();
        }
        if (!key.empty() && !seen.insert(key).second) {
          Fail(item, child, absl::StrCat("duplicate entry \"", key, "\""));
        }
      }
      return;
    }
    DecodeValue(value, path, field, msg);
  }

  // Decodes one value (a singular field, or one element of a repeated
  // field). Returns false on a problem.
  bool DecodeValue(const YAML::Node& value, const std::string& path,
                   const FieldDescriptor* field, Message* msg) {
    if (!Visit(value, path)) return false;
    const Reflection* r = msg->GetReflection();
    const bool rep = field->is_repeated();
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      Message* child =
          rep ? r->AddMessage(msg, field) : r->MutableMessage(msg, field);
      const size_t before = problems_->size();
      DecodeMessage(value, path, child);
      return problems_->size() == before;
    }
    if (!value.IsScalar()) {
      Fail(value, path,
           absl::StrCat("expected ", ExpectedName(field), ", got ",
                        NodeTypeName(value)));
      return false;
    }
    const ScalarKind kind = Classify(value);
    const std::string& s = value.Scalar();
    const v1::FieldSchema& schema = Schema(field);
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING: {
        if (kind != ScalarKind::kString) {
          Fail(value, path,
               absl::StrCat("expected a string, got ", KindName(kind),
                            " (quote it: \"", s, "\")"));
          return false;
        }
        if (!CheckString(value, path, schema, s)) return false;
        rep ? r->AddString(msg, field, s) : r->SetString(msg, field, s);
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        if (kind != ScalarKind::kBool) {
          Fail(value, path,
               absl::StrCat("expected a boolean (true or false), got ",
                            KindName(kind)));
          return false;
        }
        const bool b = absl::AsciiStrToLower(s) == "true";
        rep ? r->AddBool(msg, field, b) : r->SetBool(msg, field, b);
        return true;
      }
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v = 0;
        if (kind != ScalarKind::kInt || !absl::SimpleAtoi(s, &v)) {
          Fail(value, path,
               absl::StrCat("expected an integer, got ", KindName(kind)));
          return false;
        }
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32 &&
            (v < INT32_MIN || v > INT32_MAX)) {
          Fail(value, path, absl::StrCat(v, " is out of range"));
          return false;
        }
        if (schema.has_minimum() && v < schema.minimum()) {
          Fail(value, path,
               absl::StrCat(v, " is below the minimum ", schema.minimum()));
          return false;
        }
        if (schema.has_maximum() && v > schema.maximum()) {
          Fail(value, path,
               absl::StrCat(v, " is above the maximum ", schema.maximum()));
          return false;
        }
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
          rep ? r->AddInt32(msg, field, static_cast<int32_t>(v))
              : r->SetInt32(msg, field, static_cast<int32_t>(v));
        } else {
          rep ? r->AddInt64(msg, field, v) : r->SetInt64(msg, field, v);
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        std::vector<std::string> allowed;
        const auto* e = field->enum_type();
        for (int i = 0; i < e->value_count(); ++i) {
          const std::string spelling = EnumSpelling(e->value(i));
          if (spelling.empty()) continue;
          if (kind == ScalarKind::kString && spelling == s) {
            rep ? r->AddEnumValue(msg, field, e->value(i)->number())
                : r->SetEnumValue(msg, field, e->value(i)->number());
            return true;
          }
          allowed.push_back(spelling);
        }
        Fail(value, path,
             absl::StrCat("unsupported value \"", s,
                          "\"; allowed: ", absl::StrJoin(allowed, ", ")));
        return false;
      }
      default:
        Fail(value, path, "field type not supported in manifests");
        return false;
    }
  }

  bool CheckString(const YAML::Node& value, const std::string& path,
                   const v1::FieldSchema& schema, const std::string& s) {
    if (schema.max_length() > 0 &&
        static_cast<int>(s.size()) > schema.max_length()) {
      Fail(value, path,
           absl::StrCat("too long: ", s.size(), " characters (at most ",
                        schema.max_length(), ")"));
      return false;
    }
    if (!schema.pattern().empty()) {
      if (s.size() > kMaxPatternedLength ||
          !std::regex_search(s, CachedRegex(schema.pattern()))) {
        Fail(value, path,
             absl::StrCat("\"", s.substr(0, 80),
                          "\" does not match the pattern ", schema.pattern()));
        return false;
      }
    }
    return true;
  }

  static std::string ExpectedName(const FieldDescriptor* field) {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL:
        return "a boolean";
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
        return "an integer";
      default:
        return "a string";
    }
  }

  std::string file_;
  SourceLines* lines_;
  std::vector<Problem>* problems_;
  int visited_ = 0;
  bool overflowed_ = false;
};

template <typename T>
void DecodeObject(const YAML::Node& node, absl::string_view file,
                  DecodeResult* out) {
  Document doc;
  doc.file = std::string(file);
  doc.line = LineOf(node);
  T object;
  const size_t before = out->problems.size();
  Decoder decoder(file, &doc.lines, &out->problems);
  decoder.DecodeMessage(node, "", &object);
  const auto& resource = T::descriptor()->options().GetExtension(v1::resource);
  auto* meta = object.mutable_metadata();
  static const std::regex kName("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$");
  if (meta->name().empty()) {
    decoder.FailAt(doc.line, "metadata.name", "required field is missing");
  } else if (meta->name().size() > 253 ||
             !std::regex_match(meta->name(), kName)) {
    decoder.FailAt(doc.LineOf("metadata.name"), "metadata.name",
                   absl::StrCat("\"", meta->name().substr(0, 80),
                                "\" is not a valid name: lower-case letters, "
                                "digits, '-' and '.', at most 253"));
  }
  if (resource.scope() == "Cluster") {
    if (!meta->namespace_().empty()) {
      decoder.FailAt(doc.LineOf("metadata.namespace"), "metadata.namespace",
                     absl::StrCat(resource.kind(),
                                  " is cluster-scoped: remove the namespace"));
    }
  } else if (meta->namespace_().empty()) {
    meta->set_namespace_("default");
  } else if (meta->namespace_().size() > 63 ||
             !std::regex_match(meta->namespace_(), kName)) {
    decoder.FailAt(doc.LineOf("metadata.namespace"), "metadata.namespace",
                   "not a valid namespace name");
  }
  if (out->problems.size() != before) return;
  doc.object = std::move(object);
  out->documents.push_back(std::move(doc));
}

void DecodeDocument(const YAML::Node& node, absl::string_view file,
                    DecodeResult* out) {
  if (node.IsNull()) return;  // empty document between separators
  if (!node.IsMap()) {
    out->problems.push_back(Problem{std::string(file), LineOf(node), "",
                                    "a manifest must be an object with "
                                    "apiVersion, kind, metadata and spec"});
    return;
  }
  const YAML::Node api = node["apiVersion"];
  const YAML::Node kind = node["kind"];
  if (!api.IsScalar() || !kind.IsScalar()) {
    out->problems.push_back(Problem{std::string(file), LineOf(node),
                                    !api.IsScalar() ? "apiVersion" : "kind",
                                    "required field is missing"});
    return;
  }
  const std::string& version = api.Scalar();
  if (!absl::StartsWith(version, absl::StrCat(kApiGroup, "/"))) {
    const YAML::Node name = node["metadata"]["name"];
    out->skipped.push_back(absl::StrCat(
        kind.Scalar(), " ", name.IsScalar() ? name.Scalar() : "(unnamed)"));
    return;
  }
  if (version != kApiVersion) {
    out->problems.push_back(
        Problem{std::string(file), LineOf(api), "apiVersion",
                absl::StrCat("unsupported version \"", version,
                             "\"; supported: ", kApiVersion)});
    return;
  }
  const std::string& k = kind.Scalar();
  if (k == "AgentPolicy") {
    DecodeObject<v1::AgentPolicy>(node, file, out);
  } else if (k == "ClusterAgentPolicy") {
    DecodeObject<v1::ClusterAgentPolicy>(node, file, out);
  } else if (k == "Agent") {
    DecodeObject<v1::Agent>(node, file, out);
  } else {
    out->problems.push_back(
        Problem{std::string(file), LineOf(kind), "kind",
                absl::StrCat("unsupported kind \"", k,
                             "\"; allowed: AgentPolicy, ClusterAgentPolicy, "
                             "Agent")});
  }
}

Problem ParseProblem(const YAML::Exception& e, absl::string_view file) {
  return Problem{std::string(file), e.mark.is_null() ? 0 : e.mark.line + 1, "",
                 absl::StrCat("not valid YAML or JSON: ", e.msg)};
}

// 1-based line of the first line of `document` that is neither blank, a
// comment, a directive nor a document marker; 0 when there is none.
int FirstContentLine(absl::string_view document) {
  int line = 0;
  for (absl::string_view l : absl::StrSplit(document, '\n')) {
    ++line;
    const absl::string_view t = absl::StripLeadingAsciiWhitespace(l);
    if (t.empty() || t[0] == '#' || t[0] == '%' || t == "---" || t == "..." ||
        t.substr(0, 4) == "--- " || t == "null" || t == "~" ||
        t == "--- null" || t == "--- ~") {
      continue;
    }
    return line;
  }
  return 0;
}

// Splits a YAML stream into its documents. A line starting with "---" opens
// a document (YAML allows that marker nowhere else at column 0) and a line
// "..." closes one. Each document is preceded by as many newlines as lines
// came before it, so parse errors and field lines keep their file lines.
std::vector<std::string> SplitDocuments(absl::string_view text) {
  std::vector<std::string> out;
  std::string current;
  int line = 0;
  int start = 0;
  auto marker = [](absl::string_view l, absl::string_view m) {
    return l.substr(0, 3) == m &&
           (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
  };
  auto flush = [&] {
    out.push_back(std::string(start, '\n') + current);
    current.clear();
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == absl::string_view::npos) end = text.size();
    const absl::string_view l = text.substr(pos, end - pos);
    if (marker(l, "---")) {
      if (!current.empty()) flush();
      start = line;
    }
    absl::StrAppend(&current, l, "\n");
    if (marker(l, "...")) {
      flush();
      start = line + 1;
    }
    ++line;
    if (end == text.size()) break;
    pos = end + 1;
  }
  if (!current.empty()) flush();
  return out;
}

}  // namespace

std::string Problem::ToString() const {
  std::string out = file;
  if (line > 0) absl::StrAppend(&out, ":", line);
  absl::StrAppend(&out, ": ");
  if (!path.empty()) absl::StrAppend(&out, path, ": ");
  absl::StrAppend(&out, message);
  return out;
}

int Document::LineOf(absl::string_view path) const {
  std::string p(path);
  while (!p.empty()) {
    auto it = lines.find(p);
    if (it != lines.end() && it->second > 0) return it->second;
    const size_t cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p.resize(cut);
  }
  return line;
}

absl::string_view Document::Kind() const {
  return std::visit(
      [](const auto& o) -> absl::string_view {
        return std::decay_t<decltype(o)>::descriptor()
            ->options()
            .GetExtension(v1::resource)
            .kind();
      },
      object);
}

const v1::ObjectMeta& Document::Metadata() const {
  return std::visit(
      [](const auto& o) -> const v1::ObjectMeta& { return o.metadata(); },
      object);
}

std::string EnumSpelling(const EnumValueDescriptor* value) {
  return value->options().GetExtension(v1::value);
}

DecodeResult DecodeManifests(absl::string_view text, absl::string_view file) {
  DecodeResult out;
  if (text.size() > kMaxManifestBytes) {
    out.problems.push_back(
        Problem{std::string(file), 0, "",
                absl::StrCat("file too large: ", text.size(),
                             " bytes (at most ", kMaxManifestBytes, ")")});
    return out;
  }
  // Documents are split here and parsed one by one with YAML::Load:
  // yaml-cpp 0.7's LoadAll loops forever on some malformed streams (", x"
  // at the top level), found by the fuzzer.
  for (const std::string& document : SplitDocuments(text)) {
    try {
      const YAML::Node node = YAML::Load(document);
      // yaml-cpp reads nothing (null) from some malformed documents instead
      // of failing: content that does not parse must not vanish silently.
      if (const int line = FirstContentLine(document);
          node.IsNull() && line > 0) {
        out.problems.push_back(Problem{
            std::string(file), line, "",
            "not valid YAML or JSON: this document does not parse from here"});
        continue;
      }
      DecodeDocument(node, file, &out);
    } catch (const YAML::Exception& e) {
      out.problems.push_back(ParseProblem(e, file));
    } catch (const std::exception& e) {
      out.problems.push_back(Problem{std::string(file), 0, "",
                                     absl::StrCat("cannot parse: ", e.what())});
    }
  }
  return out;
}

std::vector<Problem> DecodeInto(absl::string_view text, absl::string_view file,
                                Message* message) {
  std::vector<Problem> problems;
  SourceLines lines;
  try {
    const YAML::Node node = YAML::Load(std::string(text));
    Decoder(file, &lines, &problems).DecodeMessage(node, "", message);
  } catch (const YAML::Exception& e) {
    problems.push_back(ParseProblem(e, file));
  }
  return problems;
}

}  // namespace stockade::compiler
