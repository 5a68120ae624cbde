// `stockade suggest`: an audit2allow for agents. From the denials a policy's
// containers met (the node's denial log), drafts the least additions to the
// policy that would have allowed them, and prints the policy with them for a
// person to review. Never applied by itself.
#ifndef STOCKADE_CLI_SUGGEST_H_
#define STOCKADE_CLI_SUGGEST_H_

#include <ostream>
#include <string>
#include <vector>

#include "cli/flags.h"
#include "node/denials/denial.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::cli {

// Widens `policy` just enough for each denial; returns one line per change
// ("+ exec.allow /usr/bin/pip  (landlock: 2 denials)") and, for denials no
// policy field can allow, why.
std::vector<std::string> SuggestAdditions(
    const std::vector<node::denials::Denial>& denials,
    stockade::v1::AgentPolicy* policy);

// The policy as a YAML manifest (the CRD's spelling).
std::string PolicyYaml(const stockade::v1::AgentPolicy& policy);

int SuggestCommand(const Flags& flags, std::ostream& out, std::ostream& err);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_SUGGEST_H_
