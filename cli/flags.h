// Command-line flags of the `stockade` commands: --name VALUE, --name=VALUE,
// switches (--name), short names (-n VALUE, -nVALUE) and positional
// arguments, with errors that list the flags a command takes.
#ifndef STOCKADE_CLI_FLAGS_H_
#define STOCKADE_CLI_FLAGS_H_

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace stockade::cli {

// The flags one command takes.
struct FlagSet {
  std::vector<std::string> values;            // --name VALUE
  std::vector<std::string> switches{};        // --name (no value)
  std::map<char, std::string> short_names{};  // 'n' -> "namespace"
};

// A parsed command line.
struct Flags {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> values;
  bool help = false;

  // The last value given for `name`, else `def`.
  std::string Get(const std::string& name, const std::string& def = "") const;
  // Every value given for `name`, in order.
  std::vector<std::string> All(const std::string& name) const;
  // Whether a switch (or a value flag) was given.
  bool Has(const std::string& name) const { return values.count(name) > 0; }
};

// Parses args[start...] against `set`. On a bad flag prints
// "<program>: <what is wrong>" on `err` and returns false. "--help" and "-h"
// set Flags::help; "--" ends the flags.
bool ParseFlags(const std::vector<std::string>& args, size_t start,
                const FlagSet& set, absl::string_view program, Flags* flags,
                std::ostream& err);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_FLAGS_H_
