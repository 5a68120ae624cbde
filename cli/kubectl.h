// `kubectl stockade`: the stockade command as a kubectl plugin. kubectl runs
// an executable named kubectl-stockade found on $PATH for `kubectl stockade
// ...` (install: a symlink kubectl-stockade -> stockade). Under that name,
// `status`, `explain NAME` and `diff FILE` read the cluster (kubeconfig
// found as kubectl finds it); every other command is the local one (cli.h).
#ifndef STOCKADE_CLI_KUBECTL_H_
#define STOCKADE_CLI_KUBECTL_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace stockade::cli {

// The name kubectl looks for.
inline constexpr char kPluginName[] = "kubectl-stockade";

// Whether the program was started under the plugin's name (argv[0] ends in
// kubectl-stockade).
bool IsKubectlPlugin(absl::string_view argv0);

// `kubectl stockade ARGS...`.
int RunKubectlPlugin(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err);

// Whether `command` is one of the commands that read the cluster.
bool IsClusterCommand(absl::string_view command, bool plugin);

// Runs a cluster command: args[0] is status, explain or diff. `program` names
// the command in messages ("kubectl stockade" or "stockade").
int RunClusterCommand(const std::vector<std::string>& args,
                      absl::string_view program, std::ostream& out,
                      std::ostream& err);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_KUBECTL_H_
