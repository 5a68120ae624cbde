#include "node/sync.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade::node {
namespace {

using distribution::LogLevel;
using stockade::v1::NodeStatus;
using stockade::v1::PolicyUpdate;

// NodeStatus.errors limits (the server rejects more).
constexpr size_t kMaxErrors = 100;
constexpr size_t kMaxErrorBytes = 4096;

std::string Display(const std::string& ns, const std::string& name) {
  return ns.empty() ? name : absl::StrCat(ns, "/", name);
}

std::string Truncate(std::string s, size_t max) {
  if (s.size() > max) {
    s.resize(max - 3);
    s += "...";
  }
  return s;
}

absl::Status Protocol(std::string message) {
  return absl::FailedPreconditionError(
      absl::StrCat("protocol: ", std::move(message)));
}

}  // namespace

StoreSync::StoreSync(SyncOptions options, store::Store store)
    : options_(std::move(options)), store_(std::move(store)) {
  if (options_.apparmor) apparmor_.emplace(options_.apparmor_options);
}

absl::StatusOr<std::unique_ptr<StoreSync>> StoreSync::Open(
    SyncOptions options) {
  auto store = store::Store::Open(options.store_root);
  if (!store.ok()) return store.status();
  std::unique_ptr<StoreSync> sync(
      new StoreSync(std::move(options), *std::move(store)));
  auto hashes = sync->store_.ListPolicies();
  if (!hashes.ok()) return hashes.status();
  for (const std::string& hash : *hashes) {
    auto policy = sync->store_.ReadPolicy(hash);
    if (!policy.ok()) {
      sync->SetError(absl::StrCat("store:", hash), hash,
                     absl::StrCat("store: ", policy.status().message()));
      continue;
    }
    sync->held_.insert(hash);
    if (!policy->apparmor().name().empty()) {
      sync->profile_names_[hash] = policy->apparmor().name();
    }
  }
  if (sync->apparmor_.has_value()) {
    auto loaded = sync->apparmor_->Loaded();
    if (loaded.ok()) {
      const absl::flat_hash_set<std::string> names(loaded->begin(),
                                                   loaded->end());
      for (const auto& [hash, name] : sync->profile_names_) {
        if (names.contains(name)) sync->loaded_.insert(hash);
      }
    } else {
      sync->SetError("apparmor", "", std::string(loaded.status().message()));
    }
  }
  sync->Log(LogLevel::kInfo, "node store opened",
            {{"store", sync->store_.root()},
             {"policies", absl::StrCat(sync->held_.size())},
             {"profiles_loaded", absl::StrCat(sync->loaded_.size())},
             {"apparmor", sync->apparmor_.has_value() ? "on" : "off"}});
  return sync;
}

void StoreSync::SetError(const std::string& key, const std::string& hash,
                         const std::string& message) {
  stockade::v1::NodeError e;
  e.set_hash(hash);
  e.set_message(Truncate(message, kMaxErrorBytes));
  auto it = errors_.find(key);
  if (it != errors_.end() && it->second.message() == e.message()) return;
  errors_[key] = std::move(e);
  errors_changed_ = true;
}

void StoreSync::ClearError(const std::string& key) {
  if (errors_.erase(key) > 0) errors_changed_ = true;
}

NodeStatus StoreSync::BeginStream() {
  std::lock_guard<std::mutex> lock(mu_);
  reported_held_.clear();
  reported_profiles_.clear();
  reported_in_use_.clear();
  errors_changed_ = true;
  stream_synced_ = false;
  awaiting_snapshot_ = true;
  pending_.reset();
  NodeStatus status = ReportLocked();
  // The hello acknowledges nothing (AppliedVersion is in hello itself).
  status.clear_applied();
  return status;
}

void StoreSync::EndStream() {
  std::lock_guard<std::mutex> lock(mu_);
  stream_synced_ = false;
  awaiting_snapshot_ = false;
  pending_.reset();
}

absl::Status StoreSync::CheckPartLocked(const PolicyUpdate& part) {
  if (part.kind() != PolicyUpdate::SNAPSHOT &&
      part.kind() != PolicyUpdate::DELTA) {
    return Protocol(
        absl::StrCat("update of unknown kind ", static_cast<int>(part.kind())));
  }
  if (pending_.has_value()) {
    if (part.server_id() != pending_->server_id ||
        part.version() != pending_->version || part.kind() != pending_->kind) {
      return Protocol(absl::StrCat("a part of version ", part.version(),
                                   " arrived while version ", pending_->version,
                                   " was incomplete"));
    }
    return absl::OkStatus();
  }
  if (part.kind() == PolicyUpdate::DELTA) {
    if (!stream_synced_ || !applied_.has_value()) {
      return Protocol(absl::StrCat("delta ", part.version(),
                                   " before the stream's snapshot"));
    }
    if (part.server_id() != applied_->server_id() ||
        part.version() != applied_->version() + 1) {
      return Protocol(absl::StrCat("delta ", part.version(),
                                   " does not follow applied version ",
                                   applied_->version()));
    }
  } else if (stream_synced_ && applied_.has_value() &&
             part.server_id() == applied_->server_id() &&
             part.version() < applied_->version()) {
    return Protocol(absl::StrCat("snapshot ", part.version(),
                                 " is older than applied version ",
                                 applied_->version()));
  }
  if (part.kind() == PolicyUpdate::SNAPSHOT &&
      (!part.dropped_hashes().empty() || !part.index_removed().empty())) {
    return Protocol("a snapshot cannot drop hashes or remove index entries");
  }
  if (part.kind() == PolicyUpdate::DELTA && !part.desired_hashes().empty()) {
    return Protocol("a delta cannot list desired hashes");
  }
  pending_.emplace();
  pending_->server_id = part.server_id();
  pending_->version = part.version();
  pending_->kind = part.kind();
  return absl::OkStatus();
}

absl::StatusOr<StoreSync::PartResult> StoreSync::Apply(
    const PolicyUpdate& part) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = CheckPartLocked(part); !s.ok()) {
    pending_.reset();
    return s;
  }
  for (const std::string& h : part.desired_hashes()) {
    if (!store::IsPolicyHash(h)) {
      pending_.reset();
      return Protocol(absl::StrCat("desired hash \"", Truncate(h, 100),
                                   "\" is not a policy hash"));
    }
  }
  for (const std::string& h : part.dropped_hashes()) {
    if (!store::IsPolicyHash(h)) {
      pending_.reset();
      return Protocol(absl::StrCat("dropped hash \"", Truncate(h, 100),
                                   "\" is not a policy hash"));
    }
  }
  // Policy files first: harmless until an index entry names them.
  std::vector<const stockade::v1::CompiledPolicy*> policies;
  for (const auto& p : part.policies()) policies.push_back(&p);
  if (absl::Status s = store_.WritePolicies(policies); !s.ok()) {
    pending_.reset();
    return s;
  }
  for (const auto& p : part.policies()) {
    held_.insert(p.hash());
    pending_->written.insert(p.hash());
    ClearError(absl::StrCat("store:", p.hash()));
    if (!p.apparmor().name().empty()) {
      profile_names_[p.hash()] = p.apparmor().name();
    }
  }
  pending_->desired_hashes.insert(pending_->desired_hashes.end(),
                                  part.desired_hashes().begin(),
                                  part.desired_hashes().end());
  pending_->dropped.insert(pending_->dropped.end(),
                           part.dropped_hashes().begin(),
                           part.dropped_hashes().end());
  for (const auto& e : part.index_set()) {
    if (!store::IsPolicyHash(e.hash())) {
      pending_.reset();
      return Protocol(absl::StrCat(
          "index entry ", Display(e.key().namespace_(), e.key().name()),
          " names \"", Truncate(e.hash(), 100), "\", not a policy hash"));
    }
    pending_->index_set.push_back(
        {e.key().namespace_(), e.key().name(), e.hash()});
  }
  for (const auto& k : part.index_removed()) {
    pending_->index_removed.push_back({k.namespace_(), k.name(), ""});
  }
  if (!part.last_part()) return PartResult::kPending;
  auto result = FinishVersionLocked();
  pending_.reset();
  return result;
}

absl::StatusOr<StoreSync::PartResult> StoreSync::FinishVersionLocked() {
  Pending& p = *pending_;
  const bool snapshot = p.kind == PolicyUpdate::SNAPSHOT;
  absl::flat_hash_set<std::string> desired;
  if (snapshot) {
    desired.insert(p.desired_hashes.begin(), p.desired_hashes.end());
  } else {
    desired = desired_;
    for (const std::string& h : p.written) desired.insert(h);
    for (const std::string& h : p.dropped) desired.erase(h);
  }
  // Everything the version names must be on disk now.
  std::vector<std::string> missing;
  for (const std::string& h : desired) {
    if (!held_.contains(h)) missing.push_back(h);
  }
  for (const auto& e : p.index_set) {
    if (!held_.contains(e.hash)) missing.push_back(e.hash);
  }
  if (!missing.empty()) {
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    return absl::FailedPreconditionError(
        absl::StrCat("version ", p.version, " names ", missing.size(),
                     " policies the node does not hold (e.g. ", missing[0],
                     "); resynchronizing"));
  }

  // AppArmor profiles before the index entries that let containers use
  // them.
  if (apparmor_.has_value()) {
    absl::flat_hash_set<std::string> wanted = desired;
    for (const auto& e : p.index_set) wanted.insert(e.hash);
    LoadProfilesLocked(wanted);
  }

  std::vector<store::IndexChange> changes;
  if (snapshot) {
    absl::flat_hash_map<std::pair<std::string, std::string>, std::string> want;
    for (const auto& e : p.index_set) want[{e.namespace_, e.name}] = e.hash;
    auto current = store_.List();
    if (!current.ok()) {
      // Unreadable entries: overwrite what the snapshot names; the rest
      // stays (and garbage collection stops) until a person looks.
      SetError("index", "",
               absl::StrCat("store: ", current.status().message()));
      changes = p.index_set;
    } else {
      ClearError("index");
      for (const store::IndexEntry& e : *current) {
        auto it = want.find({e.namespace_, e.name});
        if (it == want.end()) {
          changes.push_back({e.namespace_, e.name, ""});
        } else if (it->second == e.hash) {
          want.erase(it);
        }
      }
      for (const auto& e : p.index_set) {
        if (want.contains({e.namespace_, e.name})) changes.push_back(e);
      }
    }
  } else {
    changes = p.index_removed;
    changes.insert(changes.end(), p.index_set.begin(), p.index_set.end());
  }
  if (absl::Status s = store_.UpdateIndex(changes); !s.ok()) return s;

  desired_ = std::move(desired);
  have_desired_ = true;
  stream_synced_ = true;
  awaiting_snapshot_ = false;
  stockade::v1::AppliedVersion applied;
  applied.set_server_id(p.server_id);
  applied.set_version(p.version);
  applied_ = applied;
  // Problems of policies the operator no longer wants are moot.
  for (auto it = errors_.begin(); it != errors_.end();) {
    const std::string& hash = it->second.hash();
    if (!hash.empty() && !desired_.contains(hash) && !held_.contains(hash)) {
      it = errors_.erase(it);
      errors_changed_ = true;
    } else {
      ++it;
    }
  }
  Log(LogLevel::kInfo, snapshot ? "applied snapshot" : "applied delta",
      {{"version", absl::StrCat(p.version)},
       {"server_id", p.server_id},
       {"policies_written", absl::StrCat(p.written.size())},
       {"index_changes", absl::StrCat(changes.size())},
       {"desired", absl::StrCat(desired_.size())}});
  if (absl::Status s = CollectGarbageLocked(); !s.ok()) {
    Log(LogLevel::kWarning, "garbage collection failed",
        {{"error", std::string(s.message())}});
  }
  return PartResult::kApplied;
}

void StoreSync::LoadProfilesLocked(
    const absl::flat_hash_set<std::string>& hashes) {
  std::vector<std::string> todo;
  for (const std::string& h : hashes) {
    if (!loaded_.contains(h) && !uncompilable_.contains(h) &&
        profile_names_.contains(h)) {
      todo.push_back(h);
    }
  }
  std::sort(todo.begin(), todo.end());
  for (const std::string& hash : todo) {
    const std::string key = absl::StrCat("apparmor:", hash);
    auto policy = store_.ReadPolicy(hash);
    if (!policy.ok()) {
      SetError(key, hash,
               absl::StrCat("apparmor: ", policy.status().message()));
      continue;
    }
    if (policy->apparmor().text().empty()) continue;
    auto binary = apparmor_->Compile(policy->apparmor().text());
    if (!binary.ok()) {
      if (absl::IsInvalidArgument(binary.status())) uncompilable_.insert(hash);
      SetError(key, hash,
               absl::StrCat("profile ", policy->apparmor().name(), ": ",
                            binary.status().message()));
      Log(LogLevel::kError, "cannot compile AppArmor profile",
          {{"profile", policy->apparmor().name()},
           {"hash", hash},
           {"error", std::string(binary.status().message())}});
      continue;
    }
    if (absl::Status s = apparmor_->Load(*binary); !s.ok()) {
      SetError(key, hash,
               absl::StrCat("profile ", policy->apparmor().name(), ": ",
                            s.message()));
      Log(LogLevel::kError, "cannot load AppArmor profile",
          {{"profile", policy->apparmor().name()},
           {"hash", hash},
           {"error", std::string(s.message())}});
      continue;
    }
    loaded_.insert(hash);
    ClearError(key);
    Log(LogLevel::kInfo, "loaded AppArmor profile",
        {{"profile", policy->apparmor().name()}, {"hash", hash}});
  }
}

absl::Status StoreSync::CollectGarbage() {
  std::lock_guard<std::mutex> lock(mu_);
  // Retry profiles that failed to load (a kernel that was busy, ...).
  if (apparmor_.has_value() && have_desired_) LoadProfilesLocked(desired_);
  return CollectGarbageLocked();
}

absl::Status StoreSync::CollectGarbageLocked() {
  if (!have_desired_ || awaiting_snapshot_) return absl::OkStatus();
  auto stale = store_.RemoveStaleRefs(options_.stale_ref_age);
  if (!stale.ok()) {
    SetError("refs", "",
             absl::StrCat("store: references: ", stale.status().message()));
  } else {
    ClearError("refs");
    for (const store::Ref& r : *stale) {
      Log(LogLevel::kInfo, "removed a stale reference",
          {{"hash", r.hash},
           {"container", r.container_id},
           {"pid", r.owner.ok() ? absl::StrCat(r.owner->pid) : ""}});
    }
  }
  absl::flat_hash_set<std::string> keep = desired_;
  if (pending_.has_value()) {
    keep.insert(pending_->written.begin(), pending_->written.end());
  }
  auto removed = store_.GarbageCollect(keep);
  if (!removed.ok()) {
    SetError("gc", "", absl::StrCat("store: ", removed.status().message()));
    return removed.status();
  }
  ClearError("gc");
  for (const std::string& hash : *removed) {
    held_.erase(hash);
    ClearError(absl::StrCat("store:", hash));
    ClearError(absl::StrCat("apparmor:", hash));
    uncompilable_.erase(hash);
    auto name = profile_names_.find(hash);
    if (loaded_.contains(hash) && name != profile_names_.end() &&
        apparmor_.has_value()) {
      if (absl::Status s = apparmor_->Unload(name->second); !s.ok()) {
        SetError(absl::StrCat("apparmor-unload:", hash), "",
                 absl::StrCat("profile ", name->second, ": ", s.message()));
      } else {
        ClearError(absl::StrCat("apparmor-unload:", hash));
      }
    }
    loaded_.erase(hash);
    if (name != profile_names_.end()) profile_names_.erase(name);
  }
  if (!removed->empty()) {
    Log(LogLevel::kInfo, "collected unused policies",
        {{"hashes", absl::StrJoin(*removed, ",")}});
  }
  return absl::OkStatus();
}

NodeStatus StoreSync::Report() {
  std::lock_guard<std::mutex> lock(mu_);
  return ReportLocked();
}

NodeStatus StoreSync::ReportLocked() {
  NodeStatus status;
  std::vector<std::string> added, removed;
  for (const std::string& h : held_) {
    if (!reported_held_.contains(h)) added.push_back(h);
  }
  for (const std::string& h : reported_held_) {
    if (!held_.contains(h)) removed.push_back(h);
  }
  std::sort(added.begin(), added.end());
  std::sort(removed.begin(), removed.end());
  for (auto& h : added) status.add_held_added(std::move(h));
  for (auto& h : removed) status.add_held_removed(std::move(h));
  reported_held_ = held_;

  absl::flat_hash_set<std::string> profiles;
  for (const std::string& h : loaded_) {
    auto name = profile_names_.find(h);
    if (name != profile_names_.end()) profiles.insert(name->second);
  }
  std::vector<std::string> p_added, p_removed;
  for (const std::string& p : profiles) {
    if (!reported_profiles_.contains(p)) p_added.push_back(p);
  }
  for (const std::string& p : reported_profiles_) {
    if (!profiles.contains(p)) p_removed.push_back(p);
  }
  std::sort(p_added.begin(), p_added.end());
  std::sort(p_removed.begin(), p_removed.end());
  for (auto& p : p_added) status.add_profiles_added(std::move(p));
  for (auto& p : p_removed) status.add_profiles_removed(std::move(p));
  reported_profiles_ = std::move(profiles);

  absl::flat_hash_set<std::string> in_use = InUseLocked();
  std::vector<std::string> u_added, u_removed;
  for (const std::string& h : in_use) {
    if (!reported_in_use_.contains(h)) u_added.push_back(h);
  }
  for (const std::string& h : reported_in_use_) {
    if (!in_use.contains(h)) u_removed.push_back(h);
  }
  std::sort(u_added.begin(), u_added.end());
  std::sort(u_removed.begin(), u_removed.end());
  for (auto& h : u_added) status.add_in_use_added(std::move(h));
  for (auto& h : u_removed) status.add_in_use_removed(std::move(h));
  reported_in_use_ = std::move(in_use);

  size_t n = 0;
  for (const auto& [key, error] : errors_) {
    if (n + 1 == kMaxErrors && errors_.size() > kMaxErrors) {
      auto* more = status.add_errors();
      more->set_message(absl::StrCat("and ", errors_.size() - n,
                                     " more problems (see the agent's log)"));
      break;
    }
    *status.add_errors() = error;
    ++n;
  }
  errors_changed_ = false;
  if (stream_synced_ && applied_.has_value()) {
    *status.mutable_applied() = *applied_;
  }
  return status;
}

absl::flat_hash_set<std::string> StoreSync::InUseLocked() const {
  auto referenced = store_.ReferencedHashes();
  if (!referenced.ok()) {
    // Keep saying what was said: a transient error must not make the
    // operator drop policies containers use.
    Log(LogLevel::kWarning, "cannot read the store's references",
        {{"error", std::string(referenced.status().message())}});
    return reported_in_use_;
  }
  return absl::flat_hash_set<std::string>(referenced->begin(),
                                          referenced->end());
}

bool StoreSync::HasNews() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (errors_changed_ || held_ != reported_held_) return true;
  if (InUseLocked() != reported_in_use_) return true;
  if (loaded_.size() != reported_profiles_.size()) return true;
  for (const std::string& h : loaded_) {
    auto name = profile_names_.find(h);
    if (name != profile_names_.end() &&
        !reported_profiles_.contains(name->second)) {
      return true;
    }
  }
  return false;
}

std::optional<stockade::v1::AppliedVersion> StoreSync::last_applied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

std::vector<std::string> StoreSync::Held() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out(held_.begin(), held_.end());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> StoreSync::ProfilesLoaded() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const std::string& h : loaded_) {
    auto name = profile_names_.find(h);
    if (name != profile_names_.end()) out.push_back(name->second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<stockade::v1::NodeError> StoreSync::Errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<stockade::v1::NodeError> out;
  for (const auto& [key, e] : errors_) out.push_back(e);
  return out;
}

}  // namespace stockade::node
