#include "operator/crdgen/value.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <numeric>
#include <utility>

#include "yaml-cpp/yaml.h"

namespace stockade::crdgen {

Value Value::Double(double d) {
  Value v;
  v.kind_ = Kind::kDouble;
  v.double_ = d;
  return v;
}

Value Value::Map() {
  Value v;
  v.kind_ = Kind::kMap;
  return v;
}

Value Value::List() {
  Value v;
  v.kind_ = Kind::kList;
  return v;
}

Value& Value::operator[](std::string_view key) {
  if (kind_ == Kind::kNull) kind_ = Kind::kMap;
  if (Value* found = Find(key)) return *found;
  keys_.emplace_back(key);
  children_.emplace_back();
  return children_.back();
}

const Value* Value::Find(std::string_view key) const {
  if (kind_ != Kind::kMap) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) return &children_[i];
  }
  return nullptr;
}

Value* Value::Find(std::string_view key) {
  return const_cast<Value*>(std::as_const(*this).Find(key));
}

void Value::Erase(std::string_view key) {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      keys_.erase(keys_.begin() + i);
      children_.erase(children_.begin() + i);
      return;
    }
  }
}

void Value::SortKeys(
    const std::function<bool(const std::string&, const std::string&)>& less) {
  std::vector<size_t> order(keys_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return less(keys_[a], keys_[b]);
  });
  std::vector<std::string> keys;
  std::vector<Value> children;
  keys.reserve(order.size());
  children.reserve(order.size());
  for (size_t i : order) {
    keys.push_back(std::move(keys_[i]));
    children.push_back(std::move(children_[i]));
  }
  keys_ = std::move(keys);
  children_ = std::move(children);
}

void Value::Append(Value v) {
  if (kind_ == Kind::kNull) kind_ = Kind::kList;
  children_.push_back(std::move(v));
}

bool NeedsQuotes(std::string_view s) {
  if (s.empty()) return true;
  // YAML 1.1 booleans and nulls, and the value/merge keys.
  static constexpr std::array<std::string_view, 28> kWords = {
      "y",     "Y",     "yes",  "Yes",  "YES",  "n",    "N",
      "no",    "No",    "NO",   "true", "True", "TRUE", "false",
      "False", "FALSE", "on",   "On",   "ON",   "off",  "Off",
      "OFF",   "null",  "Null", "NULL", "~",    "=",    "<<"};
  if (std::find(kWords.begin(), kWords.end(), s) != kWords.end()) return true;
  // Anything that starts like a number, timestamp, .inf or .nan.
  auto digit = [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  };
  if (digit(s[0])) return true;
  if (s.size() > 1 && (s[0] == '+' || s[0] == '-') &&
      (digit(s[1]) || s[1] == '.')) {
    return true;
  }
  if (s.size() > 1 && s[0] == '.' &&
      (digit(s[1]) ||
       std::string_view("iInN").find(s[1]) != std::string_view::npos)) {
    return true;
  }
  return false;
}

namespace {

void EmitString(YAML::Emitter& out, const std::string& s) {
  if (NeedsQuotes(s) || s.find('\n') != std::string::npos) {
    out << YAML::DoubleQuoted << s;
  } else {
    out << s;
  }
}

void Emit(YAML::Emitter& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      out << YAML::Null;
      return;
    case Value::Kind::kString:
      EmitString(out, v.string());
      return;
    case Value::Kind::kInt:
      out << static_cast<long long>(v.int_value());
      return;
    case Value::Kind::kDouble:
      out << v.double_value();
      return;
    case Value::Kind::kBool:
      out << v.bool_value();
      return;
    case Value::Kind::kMap:
      if (v.keys().empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (size_t i = 0; i < v.keys().size(); ++i) {
        out << YAML::Key;
        EmitString(out, v.keys()[i]);
        out << YAML::Value;
        Emit(out, v.children()[i]);
      }
      out << YAML::EndMap;
      return;
    case Value::Kind::kList:
      if (v.children().empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const Value& item : v.children()) Emit(out, item);
      out << YAML::EndSeq;
      return;
  }
}

}  // namespace

std::string EmitYaml(const Value& value, std::string_view header) {
  YAML::Emitter out;
  out.SetIndent(2);
  Emit(out, value);
  std::string text;
  if (!header.empty()) {
    text.append("# ").append(header).append("\n");
  }
  text.append(out.c_str());
  text.append("\n");
  return text;
}

}  // namespace stockade::crdgen
