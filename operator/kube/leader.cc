#include "operator/kube/leader.h"

#include <cmath>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "operator/kube/events.h"

namespace stockade::kube {

using json = nlohmann::json;

namespace {

int64_t Seconds(absl::Duration d) {
  return std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(d))));
}

}  // namespace

LeaderElector::LeaderElector(Client* client, LeaderElectionConfig config)
    : client_(client), config_(std::move(config)) {}

LeaderElector::~LeaderElector() { Stop(); }

absl::Status LeaderElector::Start() {
  const LeaderElectionConfig& c = config_;
  if (c.lease_name.empty() || c.lease_namespace.empty() || c.identity.empty()) {
    return absl::InvalidArgumentError(
        "leader election: lease_name, lease_namespace and identity are "
        "required");
  }
  if (c.lease_duration <= c.renew_deadline) {
    return absl::InvalidArgumentError(
        "leader election: lease_duration must exceed renew_deadline");
  }
  if (c.renew_deadline <= c.retry_period * 1.2) {
    return absl::InvalidArgumentError(
        "leader election: renew_deadline must exceed 1.2 * retry_period");
  }
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) {
    return absl::FailedPreconditionError("leader election: started already");
  }
  started_ = true;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void LeaderElector::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // From a callback (the elector's own thread) it cannot join itself; the
  // thread ends after the callback returns and a later Stop joins it.
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

bool LeaderElector::IsLeader() const {
  absl::MutexLock lock(&mu_);
  return leading_ && absl::Now() - last_renew_ < config_.renew_deadline;
}

std::string LeaderElector::Leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

bool LeaderElector::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

void LeaderElector::ReportError(const absl::Status& s) {
  if (config_.on_error) config_.on_error(s);
}

void LeaderElector::ObserveHolder(const std::string& holder) {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    changed = leader_ != holder;
    leader_ = holder;
  }
  if (changed && config_.on_new_leader) config_.on_new_leader(holder);
}

bool LeaderElector::TryAcquireOrRenew() {
  const absl::Time now = absl::Now();
  const std::string now_str = Rfc3339Micro(now);
  absl::StatusOr<json> lease =
      client_->Get(kLease, config_.lease_namespace, config_.lease_name);
  if (!lease.ok() && lease.status().code() == absl::StatusCode::kNotFound) {
    json fresh = {
        {"apiVersion", "coordination.k8s.io/v1"},
        {"kind", "Lease"},
        {"metadata",
         {{"name", config_.lease_name},
          {"namespace", config_.lease_namespace}}},
        {"spec",
         {{"holderIdentity", config_.identity},
          {"leaseDurationSeconds", Seconds(config_.lease_duration)},
          {"acquireTime", now_str},
          {"renewTime", now_str},
          {"leaseTransitions", 0}}},
    };
    absl::StatusOr<json> created =
        client_->Create(kLease, config_.lease_namespace, fresh);
    if (!created.ok()) {
      if (created.status().code() != absl::StatusCode::kAlreadyExists) {
        ReportError(created.status());
      }
      return false;
    }
    observed_lease_ = *created;
    observed_record_ = Dump((*created)["spec"]);
    observed_time_ = now;
    ObserveHolder(config_.identity);
    return true;
  }
  if (!lease.ok()) {
    ReportError(lease.status());
    return false;
  }
  json spec = lease->contains("spec") && (*lease)["spec"].is_object()
                  ? (*lease)["spec"]
                  : json::object();
  const std::string record = Dump(spec);
  if (record != observed_record_) {
    observed_record_ = record;
    observed_time_ = now;
  }
  observed_lease_ = *lease;
  const std::string holder = StringAt(spec, {"holderIdentity"});
  ObserveHolder(holder);
  int64_t duration = Seconds(config_.lease_duration);
  if (auto it = spec.find("leaseDurationSeconds");
      it != spec.end() && it->is_number_integer()) {
    duration = it->get<int64_t>();
  }
  if (!holder.empty() && holder != config_.identity &&
      now < observed_time_ + absl::Seconds(duration)) {
    return false;  // held by another, and renewed recently
  }
  int64_t transitions = 0;
  if (auto it = spec.find("leaseTransitions");
      it != spec.end() && it->is_number_integer()) {
    transitions = it->get<int64_t>();
  }
  if (holder != config_.identity) {
    spec["acquireTime"] = now_str;
    spec["leaseTransitions"] = transitions + 1;
  }
  spec["holderIdentity"] = config_.identity;
  spec["leaseDurationSeconds"] = Seconds(config_.lease_duration);
  spec["renewTime"] = now_str;
  json updated_lease = *lease;
  updated_lease["spec"] = spec;
  absl::StatusOr<json> updated =
      client_->Update(kLease, config_.lease_namespace, updated_lease);
  if (!updated.ok()) {
    if (!IsConflict(updated.status())) ReportError(updated.status());
    return false;
  }
  observed_lease_ = *updated;
  observed_record_ = Dump((*updated)["spec"]);
  observed_time_ = now;
  ObserveHolder(config_.identity);
  return true;
}

void LeaderElector::Release() {
  if (!observed_lease_.is_object() ||
      StringAt(observed_lease_, {"spec", "holderIdentity"}) !=
          config_.identity) {
    return;
  }
  json lease = observed_lease_;
  json& spec = lease["spec"];
  spec.erase("holderIdentity");
  spec["leaseDurationSeconds"] = 1;
  spec["renewTime"] = Rfc3339Micro(absl::Now());
  absl::StatusOr<json> released =
      client_->Update(kLease, config_.lease_namespace, lease);
  if (!released.ok()) {
    ReportError(released.status());
    return;
  }
  observed_lease_ = *released;
  ObserveHolder("");
}

void LeaderElector::Run() {
  absl::BitGen gen;
  while (true) {
    bool leading;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      leading = leading_;
    }
    if (!leading) {
      if (TryAcquireOrRenew()) {
        {
          absl::MutexLock lock(&mu_);
          leading_ = true;
          last_renew_ = absl::Now();
        }
        if (config_.on_started_leading) config_.on_started_leading();
        continue;
      }
      Sleep(config_.retry_period * absl::Uniform(gen, 1.0, 1.2));
      continue;
    }
    if (!Sleep(config_.retry_period)) break;
    const bool renewed = TryAcquireOrRenew();
    bool lost = false;
    {
      absl::MutexLock lock(&mu_);
      if (renewed) {
        last_renew_ = absl::Now();
      } else if (absl::Now() - last_renew_ >= config_.renew_deadline) {
        leading_ = false;
        lost = true;
      }
    }
    if (lost && config_.on_stopped_leading) config_.on_stopped_leading();
  }
  bool was_leading;
  {
    absl::MutexLock lock(&mu_);
    was_leading = leading_;
    leading_ = false;
  }
  if (was_leading) {
    if (config_.release_on_stop) Release();
    if (config_.on_stopped_leading) config_.on_stopped_leading();
  }
}

}  // namespace stockade::kube
