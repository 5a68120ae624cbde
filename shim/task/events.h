// Task events to containerd: published in order through ttrpc
// (containerd.services.events.ttrpc.v1.Events/Forward at TTRPC_ADDRESS),
// from one background thread that retries with back-off, so an RPC handler
// never waits on containerd.
#ifndef STOCKADE_SHIM_TASK_EVENTS_H_
#define STOCKADE_SHIM_TASK_EVENTS_H_

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace stockade::shim {

class EventPublisher {
 public:
  virtual ~EventPublisher() = default;
  // `topic` such as "/tasks/exit"; `event` a containerd.events message.
  virtual void Publish(const std::string& topic,
                       const google::protobuf::Message& event) = 0;
};

class ForwardingPublisher : public EventPublisher {
 public:
  ForwardingPublisher(std::string ttrpc_address, std::string containerd_ns);
  // Delivers what is queued (bounded wait), then stops.
  ~ForwardingPublisher() override;

  void Publish(const std::string& topic,
               const google::protobuf::Message& event) override;

  // Waits until everything queued was delivered (or given up), at most
  // `timeout`.
  void Flush(absl::Duration timeout);

 private:
  struct Pending {
    std::string topic;
    std::string type_url;
    std::string payload;
    int64_t seconds;
    int32_t nanos;
  };
  void Run();

  const std::string address_;
  const std::string namespace_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_TASK_EVENTS_H_
