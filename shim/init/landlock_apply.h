// Applies a compiled Landlock ruleset (stockade.v1.LandlockRuleset) to the
// calling process, as stockade-init does just before it execs the agent: the
// process and everything it starts afterwards are confined for good.
#ifndef STOCKADE_SHIM_INIT_LANDLOCK_APPLY_H_
#define STOCKADE_SHIM_INIT_LANDLOCK_APPLY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::shim {

struct LandlockOptions {
  // Apply what the kernel supports when its Landlock ABI is lower than the
  // ruleset's min_abi (or Landlock is missing), instead of failing. What is
  // dropped is listed in the report either way.
  bool best_effort = false;
};

// What ApplyLandlock did.
struct LandlockReport {
  // The kernel's Landlock ABI (0: no Landlock).
  int abi = 0;
  // True once landlock_restrict_self succeeded.
  bool enforced = false;
  // Rights and features of the ruleset the kernel cannot enforce, in words.
  std::vector<std::string> dropped;
  // Rule paths (and exceptions) that do not exist, so were skipped.
  std::vector<std::string> skipped_paths;
  // ELF interpreters granted because of with_interpreter.
  std::vector<std::string> interpreters;
  // Rules added to the kernel ruleset.
  int path_rules = 0;
  int port_rules = 0;
};

// Applies `ruleset` to the calling process (and sets no_new_privs). Fails,
// changing nothing, when the kernel's ABI is below ruleset.min_abi (unless
// options.best_effort) or a rule cannot be built.
absl::Status ApplyLandlock(const stockade::v1::LandlockRuleset& ruleset,
                           LandlockReport* report);
absl::Status ApplyLandlock(const stockade::v1::LandlockRuleset& ruleset,
                           const LandlockOptions& options,
                           LandlockReport* report);

// The kernel's Landlock ABI version; 0 when Landlock is unavailable.
int LandlockAbi();

// --- Building blocks, exposed for tests. ---

// One path rule as the kernel gets it.
struct PlannedPathRule {
  std::string path;
  // LANDLOCK_ACCESS_FS_* bits. For a non-directory the applier keeps only
  // the rights that apply to files.
  uint64_t access = 0;
  // Open without following a final symlink (entries found while expanding
  // `except`; symlinks among them are never granted).
  bool no_follow = false;
};

// The ruleset translated for a kernel of one ABI.
struct LandlockPlan {
  uint64_t handled_fs = 0;
  uint64_t handled_net = 0;
  uint64_t scoped = 0;
  std::vector<PlannedPathRule> path_rules;
  std::vector<uint16_t> connect_ports;
};

// Translates `ruleset` for a kernel with Landlock ABI `abi`: masks rights the
// ABI lacks (recording each in report->dropped), expands `except`, resolves
// with_interpreter. Reads the filesystem; changes nothing.
absl::StatusOr<LandlockPlan> PlanLandlock(
    const stockade::v1::LandlockRuleset& ruleset, int abi,
    const LandlockOptions& options, LandlockReport* report);

// Rules granting `access` beneath `path` except beneath each of `except`:
// one rule per directory entry beside the way down to each exception
// (symlinks skipped), plus the rights on the directories along the way that
// cannot reach into an exception. Missing exceptions are ignored.
std::vector<PlannedPathRule> ExpandExcept(
    const std::string& path, uint64_t access,
    const std::vector<std::string>& except, LandlockReport* report);

// The PT_INTERP path of an ELF executable, "" when it has none (static, a
// script, not ELF).
absl::StatusOr<std::string> ElfInterpreter(const std::string& path);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_INIT_LANDLOCK_APPLY_H_
