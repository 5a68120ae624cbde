// Which container, and so which policy, a denied process belongs to: the
// process's cgroup names its container (containerd's id), the node store's
// references say which policy hash that container runs (the shim records
// them at Create), and the store's policy file names the policy.
#ifndef STOCKADE_NODE_DENIALS_ATTRIBUTION_H_
#define STOCKADE_NODE_DENIALS_ATTRIBUTION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace stockade::node::denials {

struct Attribution {
  std::string container_id;
  store::RefPod pod;  // from the reference, when the shim knew the pod
  std::string policy_namespace, policy_name, policy_hash;
};

class Attributor {
 public:
  // `proc` is where /proc is (tests give another).
  explicit Attributor(const store::Store* store, std::string proc = "/proc");

  // The container of process pid, by its cgroup. nullopt when the process
  // is gone or runs in no container known to the store.
  std::optional<Attribution> ForPid(int64_t pid);

  // The container of a cgroup path ("/k8s.io/<id>", as the kernel names a
  // cgroup in its log). nullopt when it is no container known to the store.
  std::optional<Attribution> ForCgroupPath(const std::string& path);

  // The policy namespace/name (an nftables log prefix names it) and, when
  // exactly one container on this node runs it, that container.
  std::optional<Attribution> ForPolicy(const std::string& namespaced_name);

  // The container ids a /proc/<pid>/cgroup text may name, most specific
  // first: each path part, and cri-containerd-<id>.scope as <id>.
  static std::vector<std::string> Candidates(const std::string& cgroup_text);

 private:
  void Refresh();  // the container -> hash map from the store's references
  std::optional<Attribution> ForContainer(const std::string& container_id);
  std::optional<Attribution> ForCandidates(
      const std::vector<std::string>& candidates);

  const store::Store* store_;
  std::string proc_;
  absl::flat_hash_map<std::string, std::string> hash_of_container_;
  absl::flat_hash_map<std::string, store::RefPod> pod_of_container_;
  absl::flat_hash_map<std::string, Attribution> policy_of_hash_;
  // pid -> when it was looked up, and its container.
  absl::flat_hash_map<int64_t, std::pair<absl::Time, Attribution>> by_pid_;
  absl::Time refreshed_ = absl::InfinitePast();
};

}  // namespace stockade::node::denials

#endif  // STOCKADE_NODE_DENIALS_ATTRIBUTION_H_
