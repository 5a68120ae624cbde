#include "shim/task/events.h"

#include <chrono>

#include "absl/time/clock.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "shim/ttrpc/client.h"

namespace stockade::shim {
namespace {

constexpr char kService[] = "containerd.services.events.ttrpc.v1.Events";
constexpr int kMaxAttempts = 8;

}  // namespace

ForwardingPublisher::ForwardingPublisher(std::string ttrpc_address,
                                         std::string containerd_ns)
    : address_(std::move(ttrpc_address)),
      namespace_(std::move(containerd_ns)),
      thread_([this] { Run(); }) {}

ForwardingPublisher::~ForwardingPublisher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ForwardingPublisher::Publish(const std::string& topic,
                                  const google::protobuf::Message& event) {
  const absl::Time now = absl::Now();
  Pending p;
  p.topic = topic;
  p.type_url = event.GetDescriptor()->full_name();
  p.payload = event.SerializeAsString();
  p.seconds = absl::ToUnixSeconds(now);
  p.nanos = static_cast<int32_t>(
      absl::ToInt64Nanoseconds(now - absl::FromUnixSeconds(p.seconds)));
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(p));
  }
  cv_.notify_all();
}

void ForwardingPublisher::Flush(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
               [this] { return queue_.empty(); });
}

void ForwardingPublisher::Run() {
  std::unique_ptr<ttrpc::Client> client;
  while (true) {
    Pending next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      next = queue_.front();
    }
    containerd::services::events::ttrpc::v1::ForwardRequest request;
    auto* envelope = request.mutable_envelope();
    envelope->mutable_timestamp()->set_seconds(next.seconds);
    envelope->mutable_timestamp()->set_nanos(next.nanos);
    envelope->set_namespace_(namespace_);
    envelope->set_topic(next.topic);
    envelope->mutable_event()->set_type_url(next.type_url);
    envelope->mutable_event()->set_value(next.payload);
    const std::string payload = request.SerializeAsString();
    absl::Duration backoff = absl::Milliseconds(20);
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      if (!client) {
        auto connected = ttrpc::Client::Connect(address_);
        if (connected.ok()) client = *std::move(connected);
      }
      if (client) {
        auto reply = client->Call(kService, "Forward", payload,
                                  {{"containerd-namespace-ttrpc", namespace_}},
                                  absl::Seconds(5));
        if (reply.ok()) break;
        client.reset();
      }
      {
        std::unique_lock<std::mutex> lock(mu_);
        // While stopping, still try, but do not sleep long.
        if (stopping_ && attempt >= 2) break;
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
    std::lock_guard<std::mutex> lock(mu_);
    queue_.pop_front();
    cv_.notify_all();
  }
}

}  // namespace stockade::shim
