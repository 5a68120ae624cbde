// Policy application at container creation, fail-closed: resolve the
// container's compiled policy from the node store (no network call), rewrite
// the bundle's config.json (shim/spec), and wrap the entrypoint with
// stockade-init and its Landlock ruleset. Called by the task service at
// Create (and its Exec counterpart at Exec).
#ifndef STOCKADE_SHIM_POLICY_POLICY_H_
#define STOCKADE_SHIM_POLICY_POLICY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shim/policy/apparmor_load.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::shim {

// The annotation naming the policy of a container (or of a pod).
inline constexpr char kPolicyAnnotation[] = "stockade.dev/policy";
// The annotation naming the Agent a container runs for (the Agent controller
// sets it on its pods; anyone may set it by hand): what denials name.
inline constexpr char kAgentAnnotation[] = "stockade.dev/agent";

// Annotations CRI sets on every container it creates.
inline constexpr char kCriContainerTypeAnnotation[] =
    "io.kubernetes.cri.container-type";
inline constexpr char kCriSandboxNamespaceAnnotation[] =
    "io.kubernetes.cri.sandbox-namespace";
inline constexpr char kCriSandboxNameAnnotation[] =
    "io.kubernetes.cri.sandbox-name";
inline constexpr char kCriContainerNameAnnotation[] =
    "io.kubernetes.cri.container-name";

// The layout inside a confined container (see docs/shim.md): the bundle's
// stockade/ directory bind-mounted read-only at kContainerDir, holding the
// Landlock ruleset, and the stockade-init binary bind-mounted read-only over
// the placeholder kContainerInit.
inline constexpr char kContainerDir[] = "/.stockade";
inline constexpr char kContainerInit[] = "/.stockade/init";
inline constexpr char kContainerRuleset[] = "/.stockade/landlock.binpb";
inline constexpr char kContainerSeccomp[] = "/.stockade/seccomp.bpf";
// The bundle's directory holding the ruleset (and the init placeholder).
inline constexpr char kBundleDir[] = "stockade";

// The shim's own settings (from its config file; see docs/shim.md).
struct PolicyConfig {
  std::string store_root = "/var/lib/stockade";
  // Host path of the stockade-init binary bind-mounted into containers.
  std::string init_binary = "/usr/local/lib/stockade/stockade-init";
  // Host path of the stockade-nft helper that loads egress rules.
  std::string nft_helper = "/usr/local/lib/stockade/stockade-nft";
  // Policy used when a container names none; empty = such containers fail.
  std::string default_policy;
  // Cache of generated seccomp programs (seccomp_cache.h); empty: none.
  std::string seccomp_cache_dir = "/run/stockade/seccomp";
  // Where AppArmor is enabled in the kernel (aa_is_enabled()).
  bool apparmor_enabled = false;
  // How a profile not loaded yet is loaded (only where apparmor_enabled).
  AppArmorLoader apparmor;
};

// Where a container's egress rules go (decided once, at Create, from the
// spec: see DecideEgress in egress.h).
struct EgressPlan {
  // Install applied.policy.nftables() into the container's network
  // namespace after `runc create`, before `runc start`.
  bool install = false;
  // Why, in words (for the shim's log).
  std::string reason;
};

struct AppliedPolicy {
  stockade::v1::CompiledPolicy policy;
  std::string namespace_;  // policy namespace used
  std::string name;
  bool sandbox = false;  // the pod's pause container (fixed minimal policy)
  // A CRI container of a pod (not the sandbox): its network namespace is the
  // pod's, whose egress rules were installed with the sandbox.
  bool pod_container = false;
  // process.apparmorProfile was set (PolicyConfig.apparmor_enabled); exec'd
  // processes get the same.
  bool set_apparmor_profile = false;
  // The spec's linux.seccomp was moved into stockade-init (kContainerSeccomp
  // in the bundle's directory); exec'd processes load the same program.
  bool seccomp_in_init = false;
  // Hash of the stored policy this container references in the store
  // (store::Store::AddRef, keyed by the container id); remove it at Delete.
  std::string ref_hash;
  // Host path of the Landlock ruleset written into the bundle.
  std::string ruleset_path;
  // Whether the shim installs the egress rules in the container's netns.
  EgressPlan egress;
};

// Rewrites <bundle>/config.json in place for the container. `containerd_ns`
// is the containerd namespace (used when the spec has no Kubernetes
// namespace annotation). Errors name the policy and the reason, e.g.
// `stockade: no policy "agents/research" in store /var/lib/stockade`.
//
// The spec's linux.seccomp is not left to runc: the shim turns it into a BPF
// program once (SeccompBpf, cached per policy) and stockade-init loads it
// right after Landlock, before the agent's first instruction.
//
// The container (its id is the bundle directory's name) is confined by the
// policy its annotation stockade.dev/policy names (a name only: policies of
// other namespaces cannot be named), else by config.default_policy
// ("NAMESPACE/NAME" or "NAME", "_cluster/NAME" for a cluster-scoped one),
// else it fails. The pod's sandbox (pause) container gets SandboxPolicy()
// built for the pod's policy. The spec is rewritten by ApplySpec
// (shim/spec), then the entrypoint is wrapped by stockade-init
// (WrapArgs) and kContainerDir and kContainerInit are mounted read-only.
// The container's use of the stored policy is recorded in the store
// (AddRef(hash, container id)) so that the node agent keeps the policy while
// it runs; the caller removes it at Delete (AppliedPolicy.ref_hash).
// A container on the host's network (no network namespace) fails when its
// policy restricts egress (DecideEgress in egress.h). All or nothing: on
// error config.json is unchanged and nothing is left in the bundle.
absl::StatusOr<AppliedPolicy> ApplyPolicyToBundle(
    const PolicyConfig& config, const std::string& bundle,
    const std::string& containerd_ns);

// Rewrites an exec'd process (OCI Process JSON) so it runs through
// stockade-init with the container's policy. Returns the new JSON.
absl::StatusOr<std::string> ApplyPolicyToExec(const AppliedPolicy& applied,
                                              absl::string_view process_json);

// The fixed minimal policy of a pod's sandbox (pause) container, compiled:
// read-only root, nothing writable, only `pause_path` executable, no
// capabilities, /proc and /sys hidden, the Strict syscall baseline, a pids
// limit of 8 (no RLIMIT_NPROC: it would count the pause processes of every
// pod, all of one uid); the network rules and mode of `pod_policy` (the sandbox
// holds the pod's network namespace, so its egress rules are the pod's). Source
// kind "Sandbox", name "sandbox", namespace `namespace_`.
absl::StatusOr<stockade::v1::CompiledPolicy> SandboxPolicy(
    absl::string_view pause_path,
    const stockade::v1::CompiledPolicy& pod_policy,
    absl::string_view namespace_);

// [kContainerInit, "--ruleset", kContainerRuleset, ("--seccomp",
// kContainerSeccomp,) "--", args...]; args that already start with exactly
// that prefix are returned unchanged.
std::vector<std::string> WrapArgs(const std::vector<std::string>& args,
                                  bool seccomp);

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_POLICY_POLICY_H_
