// `stockade denials --store DIR`: the denials a node collected (the JSON
// lines node/denials writes), filtered and shown as a table or as JSON lines,
// optionally following new ones.
#ifndef STOCKADE_CLI_DENIALS_H_
#define STOCKADE_CLI_DENIALS_H_

#include <ostream>
#include <string>
#include <vector>

#include "cli/flags.h"
#include "node/denials/denial.h"

namespace stockade::cli {

// The filters of --namespace, --policy, --container, --layer, --mode.
bool DenialMatches(const node::denials::Denial& d, const Flags& flags);

// What was attempted, in one cell: "unshare", "write /etc/passwd",
// "tcp 203.0.113.9:443".
std::string AttemptedText(const node::denials::Denial& d);

// Table of denials (TIME, POLICY, CONTAINER, LAYER, MODE, ATTEMPTED,
// PROCESS).
std::string DenialTable(const std::vector<node::denials::Denial>& denials);

int DenialsCommand(const Flags& flags, std::ostream& out, std::ostream& err);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_DENIALS_H_
