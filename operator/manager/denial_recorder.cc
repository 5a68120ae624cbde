#include "operator/manager/denial_recorder.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "operator/controller/agent_reconciler.h"
#include "operator/controller/objects.h"

namespace stockade::manager {
namespace {

using distribution::LogLevel;

// Every field of DenialCounts is an int64 count: `total`, and one per layer
// named as the layer is.
void Count(v1::DenialCounts& c, const v1::NodeDenial& d, int64_t n) {
  c.set_total(c.total() + n);
  const google::protobuf::FieldDescriptor* layer =
      c.GetDescriptor()->FindFieldByName(d.layer());
  if (layer != nullptr && layer->name() != "total" &&
      layer->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT64) {
    const google::protobuf::Reflection* r = c.GetReflection();
    r->SetInt64(&c, layer, r->GetInt64(c, layer) + n);
  }
}

// a + sign * b, count by count.
v1::DenialCounts Sum(const v1::DenialCounts& a, const v1::DenialCounts& b,
                     int64_t sign = 1) {
  v1::DenialCounts out = a;
  const google::protobuf::Descriptor* desc = out.GetDescriptor();
  const google::protobuf::Reflection* r = out.GetReflection();
  for (int i = 0; i < desc->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = desc->field(i);
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_INT64) {
      continue;
    }
    r->SetInt64(&out, f, r->GetInt64(a, f) + sign * r->GetInt64(b, f));
  }
  return out;
}

// The counts of a status.denials object ({} when it holds none).
v1::DenialCounts CountsIn(const nlohmann::json& j) {
  v1::DenialCounts out;
  if (!j.is_object()) return out;
  const google::protobuf::Descriptor* desc = out.GetDescriptor();
  const google::protobuf::Reflection* r = out.GetReflection();
  for (int i = 0; i < desc->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = desc->field(i);
    auto it = j.find(f->json_name());
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT64 &&
        it != j.end() && it->is_number_integer()) {
      r->SetInt64(&out, f, it->get<int64_t>());
    }
  }
  return out;
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
  } else if (d.path().empty() && !d.operation().empty()) {
    what = absl::StrCat(d.layer(), " denied ", d.operation(),
                        d.access().empty() ? "" : " (" + d.access() + ")");
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
  return absl::StrCat(
      what, " in ", where, " (",
      d.agent().empty() ? "" : absl::StrCat("Agent ", d.agent(), ", "),
      "policy ", policy, ")");
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
  absl::Status s = events_->Record(
      about,
      d.mode() == "complained" ? kube::EventType::kNormal
                               : kube::EventType::kWarning,
      d.mode() == "complained" ? "Complained" : "Denied",
      absl::StrCat(EventMessage(d), " on node ", node),
      d.agent().empty() ? std::map<std::string, std::string>{}
                        : std::map<std::string, std::string>{
                              {controller::kAgentLabel, d.agent()}});
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
        const nlohmann::json* status = nullptr;
        if (auto s = obj->find("status"); s != obj->end() && s->is_object()) {
          status = &*s;
        }
        total = Sum(total, status != nullptr && status->contains("denials")
                               ? CountsIn((*status)["denials"])
                               : v1::DenialCounts());
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
      now.counts = Sum(total, Sum(now.counts, c.counts, -1));
      now.loaded = true;
    } else if (absl::IsNotFound(written.status())) {
      // The policy is gone: so are its counters. Denials that arrived
      // meanwhile count for a policy of the same name made again, from
      // zero.
      if (now.dirty) {
        now.counts = Sum(now.counts, c.counts, -1);
        now.loaded = false;
      } else {
        policies_.erase(key);
      }
    } else {
      now.dirty = true;
      log_(LogLevel::kWarning, "cannot write a policy's denial counters",
           {{"policy", absl::StrCat(ns, "/", name)},
            {"error", std::string(written.status().message())}});
    }
  }
}

size_t DenialRecorder::tracked_policies() {
  std::lock_guard<std::mutex> lock(mu_);
  return policies_.size();
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
