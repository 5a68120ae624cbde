#include "operator/compiler/quantity.h"

#include <cctype>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace stockade::compiler {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

absl::Status Invalid(absl::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid quantity \"", text,
      "\": want a whole number of bytes with an optional suffix "
      "(Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E), for example \"64Mi\""));
}

// Multiplies with overflow detection.
bool MulOk(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

}  // namespace

absl::StatusOr<int64_t> ParseQuantity(absl::string_view text) {
  size_t i = 0;
  if (text.empty() || text.size() > 64) return Invalid(text);
  // Mantissa: digits, optionally a fraction.
  int64_t whole = 0;
  size_t digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (!MulOk(whole, 10, &whole) ||
        __builtin_add_overflow(whole, text[i] - '0', &whole)) {
      return Invalid(text);
    }
    ++i;
    ++digits;
  }
  if (digits == 0) return Invalid(text);
  // Fraction digits, kept as numerator / 10^n.
  int64_t frac = 0;
  int64_t frac_den = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t fdigits = 0;
    while (i < text.size() &&
           std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (fdigits >= 18) return Invalid(text);
      frac = frac * 10 + (text[i] - '0');
      frac_den *= 10;
      ++i;
      ++fdigits;
    }
    if (fdigits == 0) return Invalid(text);
  }
  absl::string_view suffix = text.substr(i);
  int64_t mult = 1;
  if (suffix.empty()) {
    mult = 1;
  } else if (suffix[0] == 'e' || suffix[0] == 'E') {
    absl::string_view exp = suffix.substr(1);
    if (exp.empty() || exp.size() > 2) return Invalid(text);
    int e = 0;
    for (char c : exp) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return Invalid(text);
      e = e * 10 + (c - '0');
    }
    if (e > 18) return Invalid(text);
    for (int k = 0; k < e; ++k) mult *= 10;
  } else {
    static constexpr struct {
      absl::string_view name;
      int64_t value;
    } kSuffixes[] = {
        {"Ki", int64_t{1} << 10},
        {"Mi", int64_t{1} << 20},
        {"Gi", int64_t{1} << 30},
        {"Ti", int64_t{1} << 40},
        {"Pi", int64_t{1} << 50},
        {"Ei", int64_t{1} << 60},
        {"k", 1000},
        {"M", 1000000},
        {"G", 1000000000},
        {"T", 1000000000000},
        {"P", 1000000000000000},
        {"E", 1000000000000000000},
    };
    bool found = false;
    for (const auto& s : kSuffixes) {
      if (suffix == s.name) {
        mult = s.value;
        found = true;
        break;
      }
    }
    if (!found) return Invalid(text);
  }
  int64_t bytes = 0;
  if (!MulOk(whole, mult, &bytes)) return Invalid(text);
  if (frac != 0) {
    // frac * mult must divide evenly by frac_den: no fractional bytes.
    int64_t scaled = 0;
    if (!MulOk(frac, mult, &scaled) || scaled % frac_den != 0) {
      return Invalid(text);
    }
    if (__builtin_add_overflow(bytes, scaled / frac_den, &bytes)) {
      return Invalid(text);
    }
  }
  if (bytes > kMax / 2) return Invalid(text);
  return bytes;
}

std::string FormatQuantity(int64_t bytes) {
  static constexpr absl::string_view kNames[] = {"Ei", "Pi", "Ti",
                                                 "Gi", "Mi", "Ki"};
  static constexpr int kShifts[] = {60, 50, 40, 30, 20, 10};
  if (bytes > 0) {
    for (int k = 0; k < 6; ++k) {
      int64_t unit = int64_t{1} << kShifts[k];
      if (bytes % unit == 0) return absl::StrCat(bytes / unit, kNames[k]);
    }
  }
  return absl::StrCat(bytes);
}

}  // namespace stockade::compiler
