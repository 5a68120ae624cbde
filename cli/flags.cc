#include "cli/flags.h"

#include <algorithm>

#include "absl/strings/str_join.h"

namespace stockade::cli {
namespace {

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string Allowed(const FlagSet& set) {
  std::vector<std::string> all = set.values;
  all.insert(all.end(), set.switches.begin(), set.switches.end());
  std::sort(all.begin(), all.end());
  if (all.empty()) return "none";
  return "--" + absl::StrJoin(all, ", --");
}

}  // namespace

std::string Flags::Get(const std::string& name, const std::string& def) const {
  auto [b, e] = values.equal_range(name);
  return b == e ? def : std::prev(e)->second;
}

std::vector<std::string> Flags::All(const std::string& name) const {
  std::vector<std::string> out;
  auto [b, e] = values.equal_range(name);
  for (auto it = b; it != e; ++it) out.push_back(it->second);
  return out;
}

bool ParseFlags(const std::vector<std::string>& args, size_t start,
                const FlagSet& set, absl::string_view program, Flags* flags,
                std::ostream& err) {
  for (size_t i = start; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      flags->help = true;
      continue;
    }
    if (a == "--") {
      flags->positional.insert(flags->positional.end(), args.begin() + i + 1,
                               args.end());
      break;
    }
    std::string name, value;
    bool has_value = false;
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      name = a.substr(2);
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
        has_value = true;
      }
    } else if (a.size() > 1 && a[0] == '-' && a[1] != '-') {
      auto it = set.short_names.find(a[1]);
      if (it == set.short_names.end()) {
        err << program << ": unknown flag " << a.substr(0, 2)
            << "; allowed: " << Allowed(set) << "\n";
        return false;
      }
      name = it->second;
      if (a.size() > 2) {
        value = a.substr(a[2] == '=' ? 3 : 2);
        has_value = true;
      }
    } else {
      flags->positional.push_back(a);
      continue;
    }
    if (Contains(set.switches, name)) {
      if (has_value) {
        err << program << ": --" << name << " takes no value\n";
        return false;
      }
      flags->values.emplace(name, "true");
      continue;
    }
    if (!Contains(set.values, name)) {
      err << program << ": unknown flag --" << name
          << "; allowed: " << Allowed(set) << "\n";
      return false;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        err << program << ": --" << name << " needs a value\n";
        return false;
      }
      value = args[++i];
    }
    flags->values.emplace(name, value);
  }
  return true;
}

}  // namespace stockade::cli
