#include "node/denials/attribution.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace stockade::node::denials {

Attributor::Attributor(const store::Store* store, std::string proc)
    : store_(store), proc_(std::move(proc)) {}

std::vector<std::string> Attributor::Candidates(
    const std::string& cgroup_text) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(cgroup_text, '\n')) {
    // "hierarchy-ID:controllers:path"
    size_t second = line.find(':', line.find(':') + 1);
    if (second == absl::string_view::npos) continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line.substr(second + 1), '/', absl::SkipEmpty());
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
      absl::string_view part = *it;
      absl::ConsumeSuffix(&part, ".scope");
      absl::ConsumePrefix(&part, "cri-containerd-");
      // systemd: kubepods-...-pod<uid>.slice:cri-containerd:<id>
      if (size_t colon = part.rfind(':'); colon != absl::string_view::npos) {
        part = part.substr(colon + 1);
      }
      std::string id(part);
      if (!id.empty() && std::find(out.begin(), out.end(), id) == out.end()) {
        out.push_back(id);
      }
    }
  }
  return out;
}

void Attributor::Refresh() {
  absl::StatusOr<std::vector<store::Ref>> refs = store_->ListRefs();
  if (!refs.ok()) return;
  hash_of_container_.clear();
  pod_of_container_.clear();
  for (const store::Ref& r : *refs) {
    hash_of_container_[r.container_id] = r.hash;
    pod_of_container_[r.container_id] = r.pod;
  }
  refreshed_ = absl::Now();
}

std::optional<Attribution> Attributor::ForContainer(
    const std::string& container_id) {
  auto it = hash_of_container_.find(container_id);
  if (it == hash_of_container_.end()) return std::nullopt;
  const std::string& hash = it->second;
  auto known = policy_of_hash_.find(hash);
  if (known == policy_of_hash_.end()) {
    Attribution a;
    a.policy_hash = hash;
    if (absl::StatusOr<v1::CompiledPolicy> p = store_->ReadPolicy(hash);
        p.ok()) {
      a.policy_namespace = p->source().namespace_();
      a.policy_name = p->source().name();
    }
    known = policy_of_hash_.emplace(hash, std::move(a)).first;
  }
  Attribution a = known->second;
  a.container_id = container_id;
  if (auto pod = pod_of_container_.find(container_id);
      pod != pod_of_container_.end()) {
    a.pod = pod->second;
  }
  return a;
}

std::optional<Attribution> Attributor::ForPid(int64_t pid) {
  if (pid <= 0) return std::nullopt;
  // A process that keeps being denied is looked up every 100 ms: reading
  // /proc/<pid>/cgroup is most of a record's cost. Host pids are handed out
  // in turn up to pid_max (32768 at least): none comes round again within
  // 100 ms without 300,000 forks a second.
  const absl::Time now = absl::Now();
  auto hit = by_pid_.find(pid);
  if (hit != by_pid_.end() &&
      now - hit->second.first < absl::Milliseconds(100)) {
    return hit->second.second;
  }
  std::ifstream in(absl::StrCat(proc_, "/", pid, "/cgroup"));
  if (!in) {
    // Gone, as the records of a flood often are by the time they are read:
    // no process holds the pid now, so the last one seen with it (within
    // 2 s: 16,000 forks a second would be needed to come round) sent them.
    if (hit != by_pid_.end() && now - hit->second.first < absl::Seconds(2)) {
      return hit->second.second;
    }
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  std::optional<Attribution> found = ForCandidates(Candidates(text.str()));
  if (found) {
    if (by_pid_.size() >= 4096) by_pid_.clear();
    by_pid_[pid] = {now, *found};
  }
  return found;
}

std::optional<Attribution> Attributor::ForCgroupPath(const std::string& path) {
  return ForCandidates(Candidates(absl::StrCat("0::", path)));
}

std::optional<Attribution> Attributor::ForCandidates(
    const std::vector<std::string>& candidates) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (const std::string& id : candidates) {
      if (std::optional<Attribution> a = ForContainer(id)) return a;
    }
    // A container started since the last look: read the references again
    // (at most every 50 ms, so a flood from unknown processes stays cheap).
    if (absl::Now() - refreshed_ < absl::Milliseconds(50)) break;
    Refresh();
  }
  return std::nullopt;
}

std::optional<Attribution> Attributor::ForPolicy(
    const std::string& namespaced_name) {
  if (absl::Now() - refreshed_ >= absl::Milliseconds(50)) Refresh();
  std::vector<std::string> containers;
  std::optional<Attribution> found;
  for (const auto& [container, hash] : hash_of_container_) {
    std::optional<Attribution> a = ForContainer(container);
    if (!a) continue;
    std::string name =
        a->policy_namespace.empty()
            ? a->policy_name
            : absl::StrCat(a->policy_namespace, "/", a->policy_name);
    if (name != namespaced_name) continue;
    containers.push_back(container);
    found = a;
  }
  if (!found) return std::nullopt;
  if (containers.size() != 1) found->container_id.clear();
  return found;
}

}  // namespace stockade::node::denials
