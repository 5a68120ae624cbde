// The `stockade` command line: validate, compile, explain, diff, apply-spec
// and install policies. Runs in-process for tests; main.cc only forwards.
#ifndef STOCKADE_CLI_CLI_H_
#define STOCKADE_CLI_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace stockade::cli {

// Exit codes (documented in `stockade --help` and docs/cli.md).
inline constexpr int kExitOk = 0;
// Invalid input, a guardrail violation, or (diff) the policies differ.
inline constexpr int kExitInvalid = 1;
// Bad command line.
inline constexpr int kExitUsage = 2;
// The input was fine but something failed (I/O, the store).
inline constexpr int kExitFailure = 3;

int Run(const std::vector<std::string>& args, std::ostream& out,
        std::ostream& err);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_CLI_H_
