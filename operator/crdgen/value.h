// An ordered, typed YAML tree for crdgen and its deterministic emitter: map
// keys keep the order they were set in, and strings a YAML 1.1 reader (kubectl,
// PyYAML) would take for a bool, null or number are quoted.
#ifndef STOCKADE_OPERATOR_CRDGEN_VALUE_H_
#define STOCKADE_OPERATOR_CRDGEN_VALUE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace stockade::crdgen {

class Value {
 public:
  enum class Kind { kNull, kString, kInt, kDouble, kBool, kMap, kList };

  Value() = default;  // null
  Value(std::string s) : kind_(Kind::kString), string_(std::move(s)) {}
  Value(const char* s) : Value(std::string(s)) {}
  Value(int64_t i) : kind_(Kind::kInt), int_(i) {}
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(bool b) : kind_(Kind::kBool), bool_(b) {}
  static Value Double(double d);
  static Value Map();
  static Value List();

  Kind kind() const { return kind_; }
  bool IsMap() const { return kind_ == Kind::kMap; }
  bool IsList() const { return kind_ == Kind::kList; }
  const std::string& string() const { return string_; }
  int64_t int_value() const { return int_; }
  double double_value() const { return double_; }
  bool bool_value() const { return bool_; }

  // Map access. operator[] turns a null value into a map and appends `key`
  // (as null) when absent.
  Value& operator[](std::string_view key);
  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  void Erase(std::string_view key);
  const std::vector<std::string>& keys() const { return keys_; }
  // Reorders the keys of this map, stably, by `less`.
  void SortKeys(
      const std::function<bool(const std::string&, const std::string&)>& less);

  // List access. Append turns a null value into a list.
  void Append(Value v);

  // Entries of a map (parallel to keys()) or items of a list.
  const std::vector<Value>& children() const { return children_; }
  std::vector<Value>& children() { return children_; }

 private:
  Kind kind_ = Kind::kNull;
  std::string string_;
  int64_t int_ = 0;
  double double_ = 0;
  bool bool_ = false;
  std::vector<std::string> keys_;
  std::vector<Value> children_;
};

// True when `s`, written as a plain YAML scalar, would not read back as this
// string under YAML 1.1 or 1.2 rules ("True", "no", "~", "1e3", "0x1F", "").
bool NeedsQuotes(std::string_view s);

// `value` as block YAML, with `header` (a comment, without "# ") on the first
// line when not empty. Ends with a newline.
std::string EmitYaml(const Value& value, std::string_view header);

}  // namespace stockade::crdgen

#endif  // STOCKADE_OPERATOR_CRDGEN_VALUE_H_
