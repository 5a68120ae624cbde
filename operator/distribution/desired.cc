#include "operator/distribution/desired.h"

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/store.h"

namespace stockade::distribution {
namespace {

using stockade::v1::PolicyUpdate;

std::string Display(const IndexKey& key) {
  return key.first.empty() ? key.second
                           : absl::StrCat(key.first, "/", key.second);
}

// Encoding overhead allowed per item on top of its payload (tags, lengths).
constexpr size_t kItemOverhead = 16;

// Fills one part up to a byte budget: at least one item, then items while
// they fit.
class PartBudget {
 public:
  explicit PartBudget(size_t bytes) : bytes_(bytes) {}
  // Whether an item of size bytes goes into this part; counts it if so.
  bool Take(size_t size) {
    size += kItemOverhead;
    if (items_ > 0 && used_ + size > bytes_) return false;
    used_ += size;
    ++items_;
    return true;
  }

 private:
  size_t bytes_;
  size_t used_ = 0;
  size_t items_ = 0;
};

// Adds the body of `policy` to `out`. A policy that does not unpack (memory
// corruption: nothing else makes it fail) is left out; the node then reports
// the hash missing and the next version sends it again.
void AddPolicy(const PolicyPtr& policy, PolicyUpdate* out) {
  if (!policy->UnpackTo(out->add_policies()).ok()) {
    out->mutable_policies()->RemoveLast();
  }
}

void FillIndexEntry(const IndexKey& key, const std::string& hash,
                    stockade::v1::IndexEntry* out) {
  out->mutable_key()->set_namespace_(key.first);
  out->mutable_key()->set_name(key.second);
  out->set_hash(hash);
}

class SnapshotSource : public PartSource {
 public:
  SnapshotSource(std::shared_ptr<const DesiredState> state,
                 absl::flat_hash_set<std::string> held, std::string server_id,
                 size_t part_bytes)
      : state_(std::move(state)),
        held_(std::move(held)),
        server_id_(std::move(server_id)),
        part_bytes_(part_bytes),
        body_(state_->policies.begin()),
        hash_(state_->policies.begin()),
        index_(state_->index.begin()) {}

  bool Next(PolicyUpdate* out) override {
    if (done_) return false;
    out->Clear();
    out->set_server_id(server_id_);
    out->set_version(state_->version);
    out->set_kind(PolicyUpdate::SNAPSHOT);
    started_ = true;
    PartBudget budget(part_bytes_);
    for (; body_ != state_->policies.end(); ++body_) {
      if (held_.contains(body_->first)) continue;
      if (!budget.Take(body_->second.bytes)) return true;
      AddPolicy(body_->second.policy, out);
      ++policies_sent_;
    }
    for (; hash_ != state_->policies.end(); ++hash_) {
      if (!budget.Take(hash_->first.size())) return true;
      out->add_desired_hashes(hash_->first);
    }
    for (; index_ != state_->index.end(); ++index_) {
      const auto& [key, hash] = *index_;
      if (!budget.Take(key.first.size() + key.second.size() + hash.size())) {
        return true;
      }
      FillIndexEntry(key, hash, out->add_index_set());
    }
    out->set_last_part(true);
    done_ = true;
    return true;
  }
  bool started() const override { return started_; }
  uint64_t version() const override { return state_->version; }
  PolicyUpdate::Kind kind() const override { return PolicyUpdate::SNAPSHOT; }
  size_t policies_sent() const override { return policies_sent_; }

 private:
  std::shared_ptr<const DesiredState> state_;
  absl::flat_hash_set<std::string> held_;
  std::string server_id_;
  size_t part_bytes_;
  std::map<std::string, DesiredState::Policy>::const_iterator body_;
  std::map<std::string, DesiredState::Policy>::const_iterator hash_;
  std::map<IndexKey, std::string>::const_iterator index_;
  bool started_ = false;
  bool done_ = false;
  size_t policies_sent_ = 0;
};

class DeltaSource : public PartSource {
 public:
  DeltaSource(std::shared_ptr<const Delta> delta, std::string server_id,
              size_t part_bytes)
      : delta_(std::move(delta)),
        server_id_(std::move(server_id)),
        part_bytes_(part_bytes) {}

  bool Next(PolicyUpdate* out) override {
    if (done_) return false;
    out->Clear();
    out->set_server_id(server_id_);
    out->set_version(delta_->version);
    out->set_kind(PolicyUpdate::DELTA);
    started_ = true;
    PartBudget budget(part_bytes_);
    for (; upsert_ < delta_->upserts.size(); ++upsert_) {
      const DesiredState::Policy& p = delta_->upserts[upsert_];
      if (!budget.Take(p.bytes)) return true;
      AddPolicy(p.policy, out);
      ++policies_sent_;
    }
    for (; dropped_ < delta_->dropped.size(); ++dropped_) {
      if (!budget.Take(delta_->dropped[dropped_].size())) return true;
      out->add_dropped_hashes(delta_->dropped[dropped_]);
    }
    for (; set_ < delta_->index_set.size(); ++set_) {
      const IndexEntry& e = delta_->index_set[set_];
      if (!budget.Take(e.namespace_.size() + e.name.size() + e.hash.size())) {
        return true;
      }
      FillIndexEntry({e.namespace_, e.name}, e.hash, out->add_index_set());
    }
    for (; removed_ < delta_->index_removed.size(); ++removed_) {
      const IndexKey& key = delta_->index_removed[removed_];
      if (!budget.Take(key.first.size() + key.second.size())) return true;
      auto* k = out->add_index_removed();
      k->set_namespace_(key.first);
      k->set_name(key.second);
    }
    out->set_last_part(true);
    done_ = true;
    return true;
  }
  bool started() const override { return started_; }
  uint64_t version() const override { return delta_->version; }
  PolicyUpdate::Kind kind() const override { return PolicyUpdate::DELTA; }
  size_t policies_sent() const override { return policies_sent_; }

 private:
  std::shared_ptr<const Delta> delta_;
  std::string server_id_;
  size_t part_bytes_;
  size_t upsert_ = 0;
  size_t dropped_ = 0;
  size_t set_ = 0;
  size_t removed_ = 0;
  bool started_ = false;
  bool done_ = false;
  size_t policies_sent_ = 0;
};

}  // namespace

absl::StatusOr<DesiredState> MakeDesiredState(
    std::vector<PolicyPtr> policies, const std::vector<IndexEntry>& index,
    size_t max_policy_bytes) {
  DesiredState state;
  for (PolicyPtr& policy : policies) {
    if (policy == nullptr) {
      return absl::InvalidArgumentError("desired state: a null policy");
    }
    const std::string& hash = policy->hash();
    const IndexKey source{policy->source().namespace_(),
                          policy->source().name()};
    if (!store::IsPolicyHash(hash)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "desired state: policy ", Display(source), ": hash \"", hash,
          "\" is not a sha256 hex string (64 lowercase hex digits)"));
    }
    if (absl::Status s = store::CheckIndexKey(source.first, source.second);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "desired state: policy ", hash, ": source ", s.message()));
    }
    const size_t bytes = policy->serialized_size();
    if (bytes > max_policy_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("desired state: policy ", Display(source), " (", hash,
                       ") is ", bytes, " bytes serialized, more than the ",
                       max_policy_bytes, " a node accepts"));
    }
    auto [it, inserted] = state.policies.try_emplace(hash);
    if (!inserted) {
      if (!it->second.policy->SameContent(*policy)) {
        return absl::InvalidArgumentError(
            absl::StrCat("desired state: two different policies have hash ",
                         hash, " (", Display(source), ")"));
      }
      continue;
    }
    it->second.policy = std::move(policy);
    it->second.bytes = bytes;
  }
  for (const IndexEntry& e : index) {
    const IndexKey key{e.namespace_, e.name};
    if (absl::Status s = store::CheckIndexKey(e.namespace_, e.name); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("desired state: index entry: ", s.message()));
    }
    auto policy = state.policies.find(e.hash);
    if (policy == state.policies.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "desired state: index entry ", Display(key), " names policy \"",
          e.hash, "\", which is not among the desired policies"));
    }
    const auto& source = policy->second.policy->source();
    if (source.namespace_() != e.namespace_ || source.name() != e.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("desired state: index entry ", Display(key),
                       " names policy ", e.hash, ", which was compiled for ",
                       Display({source.namespace_(), source.name()})));
    }
    if (!state.index.try_emplace(key, e.hash).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "desired state: index entry ", Display(key), " given twice"));
    }
  }
  return state;
}

Delta ComputeDelta(const DesiredState& from, const DesiredState& to) {
  Delta delta;
  delta.version = to.version;
  delta.created = to.created;
  for (const auto& [hash, policy] : to.policies) {
    if (!from.policies.contains(hash)) delta.upserts.push_back(policy);
  }
  for (const auto& [hash, policy] : from.policies) {
    if (!to.policies.contains(hash)) delta.dropped.push_back(hash);
  }
  for (const auto& [key, hash] : to.index) {
    auto old = from.index.find(key);
    if (old == from.index.end() || old->second != hash) {
      delta.index_set.push_back({key.first, key.second, hash});
    }
  }
  for (const auto& [key, hash] : from.index) {
    if (!to.index.contains(key)) delta.index_removed.push_back(key);
  }
  return delta;
}

std::unique_ptr<PartSource> SnapshotParts(
    std::shared_ptr<const DesiredState> state,
    absl::flat_hash_set<std::string> held, std::string server_id,
    size_t part_bytes) {
  return std::make_unique<SnapshotSource>(std::move(state), std::move(held),
                                          std::move(server_id), part_bytes);
}

std::unique_ptr<PartSource> DeltaParts(std::shared_ptr<const Delta> delta,
                                       std::string server_id,
                                       size_t part_bytes) {
  return std::make_unique<DeltaSource>(std::move(delta), std::move(server_id),
                                       part_bytes);
}

}  // namespace stockade::distribution
