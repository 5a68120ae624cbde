// Egress enforcement in network namespaces: decides where a container's
// compiled nftables rules go (its own network namespace, the pod's through
// the sandbox, or nowhere: the host's network fails closed) and loads them
// into the network namespace of a process with libnftables (in the
// stockade-nft helper).
#ifndef STOCKADE_SHIM_POLICY_EGRESS_H_
#define STOCKADE_SHIM_POLICY_EGRESS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shim/policy/policy.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::shim {

// The network namespace an OCI spec gives its container.
enum class NetworkNamespace {
  kOwn,     // linux.namespaces has "network" without a path: a new one
  kJoined,  // "network" with a path: an existing one (a pod's, ...)
  kHost,    // no "network" entry: the runtime's (the host's) network
};

// Reads linux.namespaces of an OCI spec (config.json text).
absl::StatusOr<NetworkNamespace> NetworkNamespaceOf(
    absl::string_view config_json);

// True when the spec creates its own network namespace (install the rules
// there); false for a joined one or the host's (see DecideEgress).
absl::StatusOr<bool> HasOwnNetworkNamespace(absl::string_view config_json);

// True when the policy's nftables rules drop traffic (Enforce mode, rules
// present). Complain-mode rules only log.
bool RestrictsEgress(const stockade::v1::CompiledPolicy& policy);

// Where the egress rules go:
// - no rules: nothing to install;
// - kOwn: install;
// - kJoined: a CRI container (applied.pod_container) shares the pod's
//   namespace, whose rules the sandbox installed: skip. The sandbox itself
//   and any other container: install (the rules replace table inet stockade);
// - kHost: FailedPrecondition when the policy restricts egress (the rules
//   would apply to the whole host); a Complain-mode policy is skipped.
absl::StatusOr<EgressPlan> DecideEgress(NetworkNamespace netns,
                                        const AppliedPolicy& applied);

// Loads `nft_ruleset` (nft -f syntax) into the network namespace of `pid`
// through `helper`, the stockade-nft binary (nft_main.cc): it gets the
// namespace (/proc/<pid>/ns/net, opened here) on descriptor 3 and the
// ruleset on stdin, enters the namespace and loads the ruleset with
// libnftables in one transaction; its errors (nft's error buffer) come back
// in the status. The shim itself never loads libnftables. Refuses the caller's
// own network namespace (a container without one would get the host's rules).
// An empty ruleset installs nothing.
//
// Returns as soon as the helper has answered (its rules are committed then);
// the helper is reaped in the background. Its exit status is not used (the
// answer travels over a pipe), so a process-wide SIGCHLD reaper
// (waitpid(-1)) may reap it first: that is fine.
absl::Status InstallEgress(int pid, const std::string& nft_ruleset,
                           const std::string& helper);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_POLICY_EGRESS_H_
