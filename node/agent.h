// stockade-node, the node agent: keeps the node store in step with the
// operator over one long-lived gRPC stream (stockade.v1.PolicyDistribution),
// reconnecting forever with exponential back-off and jitter, and reports
// what the node holds and can enforce. While the operator is unreachable the
// store keeps serving the shim; on reconnect the agent resynchronizes from a
// fresh snapshot. Protocol: docs/distribution.md.
#ifndef STOCKADE_NODE_AGENT_H_
#define STOCKADE_NODE_AGENT_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "node/sync.h"
#include "operator/distribution/log.h"

namespace grpc {
class ClientContext;
}  // namespace grpc

namespace stockade::node {

// Whether to load AppArmor profiles.
enum class AppArmorMode {
  kAuto,  // Where the kernel has AppArmor enabled.
  kOn,    // Always (fails, and reports so, where the kernel has none).
  kOff,   // Never.
};

struct AgentOptions {
  // The operator's distribution service, host:port.
  std::string server;
  // This node's name (the Kubernetes node name).
  std::string node_name;
  // mTLS: this agent's client certificate and key, and the CA that signed
  // the operator's server certificate (PEM files, re-read at every
  // connection, so rotated files take effect at the next reconnect).
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // The name to verify the server's certificate against, when it differs
  // from the host in server.
  std::string tls_server_name;
  // Plaintext, no authentication: local development only. Logged loudly.
  bool insecure = false;
  std::string store_root = store::kDefaultRoot;
  AppArmorMode apparmor = AppArmorMode::kAuto;
  AppArmor::Options apparmor_options;
  // Back-off between connection attempts: doubles from initial to max,
  // each wait drawn uniformly from [d/2, d]. Reset once a stream applied
  // its snapshot.
  absl::Duration backoff_initial = absl::Milliseconds(200);
  absl::Duration backoff_max = absl::Seconds(30);
  // How often to collect garbage (also after every applied version).
  absl::Duration gc_interval = absl::Minutes(1);
  // How often to look for news to report between versions (containers
  // started or deleted, profiles retried).
  absl::Duration report_interval = absl::Seconds(10);
  absl::Duration stale_ref_age = absl::Minutes(10);
  distribution::LogFn log;
  std::string agent_version;
};

// Exponential back-off with jitter.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max);
  // The next wait: uniform in [d/2, d], d doubling from initial up to max.
  absl::Duration Next();
  void Reset();

 private:
  absl::Duration initial_;
  absl::Duration max_;
  absl::Duration current_;
  std::mt19937_64 rng_;
};

// The Landlock ABI the kernel offers; 0 without Landlock.
int LandlockAbi();

class NodeAgent {
 public:
  // Opens the store (verifying what it holds). Fails on bad options or an
  // unusable store.
  static absl::StatusOr<std::unique_ptr<NodeAgent>> Create(
      AgentOptions options);
  ~NodeAgent();

  // Connects, applies, reports, reconnects, until Stop(). Blocks.
  void Run();
  // Ends Run() (from any thread, a signal-handling one too).
  void Stop();

  // What the agent says about itself, for tests and logs.
  struct State {
    bool connected = false;  // A stream is open and its snapshot applied.
    uint64_t streams = 0;    // Streams opened so far.
    std::optional<stockade::v1::AppliedVersion> applied;
    int landlock_abi = 0;
    bool apparmor_enabled = false;
  };
  State state() const;
  StoreSync& sync() { return *sync_; }

  // Sends a denial the node collected to the operator: at once while
  // connected; while not, up to 1000 wait (the oldest dropped first) and go
  // out when the next stream opens. Thread-safe (the collector's thread).
  void ReportDenial(stockade::v1::NodeDenial denial);

 private:
  NodeAgent(AgentOptions options, std::unique_ptr<StoreSync> sync,
            bool apparmor_enabled, int landlock_abi);
  // One stream, from connect to its end.
  void RunStream();
  void GcLoop();
  void SendReportIfConnected();
  void Log(distribution::LogLevel level, std::string_view msg,
           const distribution::LogFields& fields) const {
    options_.log(level, msg, fields);
  }

  const AgentOptions options_;
  std::unique_ptr<StoreSync> sync_;
  const bool apparmor_enabled_;
  const int landlock_abi_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool connected_ = false;
  // Set when a stream applied its snapshot: the back-off starts over.
  bool connected_reset_ = false;
  uint64_t streams_ = 0;
  grpc::ClientContext* context_ = nullptr;  // Of the open stream.

  // Serializes writes to the open stream (the stream thread's
  // acknowledgements, the GC thread's reports); guards writer_.
  std::mutex write_mu_;
  class Writer;
  Writer* writer_ = nullptr;
  std::deque<stockade::v1::NodeDenial> pending_denials_;  // by write_mu_
  void SendDenialsLocked();
};

}  // namespace stockade::node

#endif  // STOCKADE_NODE_AGENT_H_
