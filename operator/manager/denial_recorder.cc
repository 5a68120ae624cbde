#include "operator/manager/denial_recorder.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "operator/controller/objects.h"

namespace stockade::manager {
namespace {

using distribution::LogLevel;

void Count(v1::DenialCounts& c, const v1::NodeDenial& d, int64_t n) {
  c.set_total(c.total() + n);
  if (d.layer() == "seccomp") c.set_seccomp(c.seccomp() + n);
  if (d.layer() == "apparmor") c.set_apparmor(c.apparmor() + n);
  if (d.layer() == "landlock") c.set_landlock(c.landlock() + n);
  if (d.layer() == "network") c.set_network(c.network() + n);
}

}  // namespace

DenialRecorder::DenialRecorder(kube::Client* client,
                               kube::EventRecorder* events,
                               OperatorMetrics* metrics,
                               distribution::LogFn log,
                               absl::Duration flush_interval)
    : client_(client),
      events_(events),
      metrics_(metrics),
      log_(std::move(log)),
      flush_interval_(flush_interval),
      thread_([this] { Run(); }) {}

DenialRecorder::~DenialRecorder() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void DenialRecorder::Add(
    const std::string& node,
    const google::protobuf::RepeatedPtrField<v1::NodeDenial>& denials) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::NodeDenial& d : denials) {
      if (queue_.size() >= 10000) break;  // a flood waits for the next batch
      queue_.emplace_back(node, d);
    }
  }
  wake_.notify_one();
}

std::string DenialRecorder::EventMessage(const v1::NodeDenial& d) {
  std::string what;
  if (d.suppressed() > 0) {
    what = absl::StrCat(d.suppressed(),
                        " more denials (rate-limited on the node)");
  } else if (!d.syscall().empty()) {
    what = absl::StrCat(d.layer(), " denied syscall ", d.syscall());
  } else if (!d.destination().empty()) {
    what = absl::StrCat(d.layer(), " denied ", d.protocol(),
                        d.protocol().empty() ? "" : " ", d.destination(),
                        d.port() ? absl::StrCat(":", d.port()) : "");
  } else {
    what = absl::StrCat(d.layer(), " denied ", d.access(), " ", d.path());
  }
  if (d.mode() == "complained") {
    what = absl::StrCat(what, " (Complain mode: allowed, reported)");
  }
  std::string where = d.container_name().empty()
                          ? absl::StrCat("container ", d.container_id())
                          : absl::StrCat("container ", d.container_name());
  std::string policy =
      d.policy_namespace().empty()
          ? d.policy_name()
          : absl::StrCat(d.policy_namespace(), "/", d.policy_name());
  return absl::StrCat(what, " in ", where, " (policy ", policy, ")");
}

void DenialRecorder::Handle(const std::string& node, const v1::NodeDenial& d) {
  const int64_t n = d.suppressed() > 0 ? d.suppressed() : 1;
  metrics_->denials
      ->Add({{"namespace", d.policy_namespace()},
             {"policy", d.policy_name()},
             {"layer", d.layer().empty() ? "unknown" : d.layer()},
             {"mode", d.mode().empty() ? "enforced" : d.mode()}})
      .Increment(static_cast<double>(n));
  if (!d.policy_name().empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    Counts& c = policies_[{d.policy_namespace(), d.policy_name()}];
    // Counted even before the stored counters are read (added then).
    Count(c.counts, d, n);
    c.dirty = true;
  }
  kube::ObjectReference about;
  if (!d.pod_name().empty()) {
    about = {"v1", "Pod", d.pod_namespace(), d.pod_name(), "", ""};
  } else {
    about = {"stockade.dev/v1alpha1",
             "AgentPolicy",
             d.policy_namespace(),
             d.policy_name(),
             "",
             ""};
  }
  if (about.name.empty()) return;
  absl::Status s =
      events_->Record(about,
                      d.mode() == "complained" ? kube::EventType::kNormal
                                               : kube::EventType::kWarning,
                      d.mode() == "complained" ? "Complained" : "Denied",
                      absl::StrCat(EventMessage(d), " on node ", node));
  if (!s.ok()) {
    log_(LogLevel::kWarning, "cannot record a denial's Event",
         {{"object", absl::StrCat(about.namespace_, "/", about.name)},
          {"error", std::string(s.message())}});
  }
}

void DenialRecorder::FlushCounts() {
  std::map<std::pair<std::string, std::string>, Counts> dirty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, c] : policies_) {
      if (c.dirty) dirty[key] = c;
      c.dirty = false;
    }
  }
  for (auto& [key, c] : dirty) {
    const auto& [ns, name] = key;
    v1::DenialCounts total = c.counts;
    if (!c.loaded) {
      // The first time: what the status holds already (counted before this
      // operator started) is the base.
      absl::StatusOr<nlohmann::json> obj =
          client_->Get(kube::kAgentPolicy, ns, name);
      if (obj.ok()) {
        const nlohmann::json& j = (*obj)["status"]["denials"];
        auto get = [&](const char* k) {
          return j.is_object() && j.contains(k) && j[k].is_number_integer()
                     ? j[k].get<int64_t>()
                     : int64_t{0};
        };
        total.set_total(total.total() + get("total"));
        total.set_seccomp(total.seccomp() + get("seccomp"));
        total.set_apparmor(total.apparmor() + get("apparmor"));
        total.set_landlock(total.landlock() + get("landlock"));
        total.set_network(total.network() + get("network"));
      } else if (!absl::IsNotFound(obj.status())) {
        std::lock_guard<std::mutex> lock(mu_);
        policies_[key].dirty = true;  // try again at the next flush
        continue;
      }
    }
    v1::AgentPolicyStatus status;
    *status.mutable_denials() = total;
    nlohmann::json patch =
        nlohmann::json::parse(controller::StatusMergePatch(status));
    // Only the counters: the reconciler owns everything else.
    nlohmann::json only = {
        {"status", {{"denials", patch["status"]["denials"]}}}};
    absl::StatusOr<nlohmann::json> written = client_->PatchStatus(
        kube::kAgentPolicy, ns, name, kube::PatchType::kMerge, only);
    std::lock_guard<std::mutex> lock(mu_);
    Counts& now = policies_[key];
    if (written.ok()) {
      // What was added meanwhile stays on top of what was written.
      v1::DenialCounts since = now.counts;
      since.set_total(since.total() - c.counts.total());
      since.set_seccomp(since.seccomp() - c.counts.seccomp());
      since.set_apparmor(since.apparmor() - c.counts.apparmor());
      since.set_landlock(since.landlock() - c.counts.landlock());
      since.set_network(since.network() - c.counts.network());
      now.counts = total;
      now.counts.set_total(total.total() + since.total());
      now.counts.set_seccomp(total.seccomp() + since.seccomp());
      now.counts.set_apparmor(total.apparmor() + since.apparmor());
      now.counts.set_landlock(total.landlock() + since.landlock());
      now.counts.set_network(total.network() + since.network());
      now.loaded = true;
    } else if (!absl::IsNotFound(written.status())) {
      now.dirty = true;
      log_(LogLevel::kWarning, "cannot write a policy's denial counters",
           {{"policy", absl::StrCat(ns, "/", name)},
            {"error", std::string(written.status().message())}});
    }
  }
}

void DenialRecorder::Run() {
  absl::Time next_flush = absl::Now() + flush_interval_;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait_for(lock, std::chrono::milliseconds(200),
                   [&] { return stopping_ || !queue_.empty(); });
    std::deque<std::pair<std::string, v1::NodeDenial>> batch;
    batch.swap(queue_);
    const bool stop = stopping_;
    lock.unlock();
    for (const auto& [node, d] : batch) Handle(node, d);
    if (stop || absl::Now() >= next_flush) {
      FlushCounts();
      next_flush = absl::Now() + flush_interval_;
    }
    lock.lock();
    if (stop && queue_.empty()) return;
  }
}

}  // namespace stockade::manager
