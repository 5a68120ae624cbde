// The operator's side of policy distribution: a gRPC server
// (stockade.v1.PolicyDistribution, proto/stockade/v1/distribution.proto) that
// streams the desired state to every connected node agent (a snapshot, then
// deltas) and keeps what each node reports (what it holds, which version it
// applied, its layers and errors) for the controllers' status. Protocol and
// security: docs/distribution.md.
#ifndef STOCKADE_OPERATOR_DISTRIBUTION_SERVER_H_
#define STOCKADE_OPERATOR_DISTRIBUTION_SERVER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "operator/distribution/desired.h"
#include "operator/distribution/log.h"
#include "stockade/v1/compiled.pb.h"
#include "stockade/v1/distribution.pb.h"

namespace stockade::distribution {

// Called with the denials a node reported (NodeReport.denials), on a gRPC
// thread: enqueue, do not block.
using DenialCallback = std::function<void(
    const std::string& node,
    const google::protobuf::RepeatedPtrField<stockade::v1::NodeDenial>&)>;

struct ServerOptions {
  // Where to listen: "0.0.0.0:9443", "[::]:9443", "127.0.0.1:0" (any free
  // port; see DistributionServer::port()).
  std::string address = "0.0.0.0:9443";
  // mTLS (the default): PEM files of the server's certificate (chain) and
  // key, and of the CA that signed the node agents' client certificates.
  // Every client must present a certificate that CA verifies.
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  // Plaintext, no authentication: local development only. Logged loudly.
  bool insecure = false;
  // Largest NodeReport accepted; a larger one ends its stream with
  // RESOURCE_EXHAUSTED. 16 MiB holds a first report of ~200,000 hashes.
  size_t max_report_bytes = 16 << 20;
  // Target size of one PolicyUpdate message (a part holds at least one
  // policy, so a message may be up to kMaxPolicyBytes larger).
  size_t part_bytes = 1 << 20;
  // A stream with more versions than this queued (a slow node) gets its
  // queued deltas replaced by one snapshot of the current state.
  size_t max_queued_versions = 16;
  // Records of disconnected nodes are forgotten after this long.
  absl::Duration forget_disconnected_after = absl::Minutes(10);
  // Where log lines go; default JSON on stderr.
  LogFn log;
  // Where reported denials go (docs/denials.md); none: they are dropped.
  DenialCallback on_denials;
};

// A problem a node reported.
struct NodeProblem {
  std::string hash;  // The policy concerned, if any.
  std::string message;
};

// What the server knows about one node agent.
struct NodeInfo {
  std::string name;
  bool connected = false;
  std::string peer;          // "ipv4:10.0.0.3:51234".
  std::string peer_subject;  // Client certificate's subject (mTLS only).
  std::string agent_version;
  int landlock_abi = 0;
  bool apparmor_enabled = false;
  // Sorted. Copies: with many policies, prefer NodesHolding.
  std::vector<std::string> held;
  std::vector<std::string> profiles_loaded;
  // Hashes the node's running containers use.
  std::vector<std::string> in_use;
  std::vector<NodeProblem> errors;
  // The last version of this server the node applied; 0 when none on its
  // current stream.
  uint64_t acked_version = 0;
  absl::Time connected_at;
  absl::Time last_report;
  absl::Time disconnected_at;  // InfinitePast while connected.
};

// For a policy's status: nodes{ready,total}.
struct HoldingCount {
  // Connected nodes that hold the policy, report no error about it and, when
  // they have AppArmor enabled, report its profile loaded.
  int ready = 0;
  // Connected nodes.
  int total = 0;
};

// Distribution latency: seconds from SetDesired to a node's acknowledgement
// of the version (or of a later one), once per (node, version), counted for
// versions made while the node was connected. Prometheus histogram shape.
struct LatencyHistogram {
  static constexpr std::array<double, 12> kBounds = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  // counts[i]: observations <= kBounds[i] (cumulative); +Inf is count.
  std::array<uint64_t, kBounds.size()> counts{};
  uint64_t count = 0;
  double sum_seconds = 0;
  double max_seconds = 0;
};

// Plain counters and gauges, for the operator's /metrics.
struct Metrics {
  int64_t connected_nodes = 0;    // Gauge.
  uint64_t desired_version = 0;   // Gauge.
  uint64_t streams_started = 0;   // Streams that said hello.
  uint64_t streams_rejected = 0;  // Ended for a malformed or invalid report.
  uint64_t snapshots_sent = 0;    // Versions, whole.
  uint64_t deltas_sent = 0;       // Versions, whole.
  uint64_t updates_sent = 0;      // PolicyUpdate messages.
  uint64_t update_bytes_sent = 0;
  uint64_t policies_sent = 0;  // Policy bodies.
  uint64_t acks = 0;           // Reports that advanced a node's version.
  LatencyHistogram distribution_latency;
};

class DistributionServer {
 public:
  // Called with a node's new state whenever it changes (connected,
  // disconnected, acknowledged a version, reported). Runs on a gRPC thread:
  // it must be quick and must not call back into the server's mutating
  // methods synchronously (enqueue work instead). Calls for one node may
  // arrive out of order; read Nodes() for the latest.
  using NodeCallback = std::function<void(const NodeInfo&)>;

  // Loads the credentials and starts listening. Fails on missing or bad
  // certificate files, or when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<DistributionServer>> Start(
      ServerOptions options);
  // Shuts down: ends every stream (UNAVAILABLE), stops listening.
  ~DistributionServer();
  DistributionServer(const DistributionServer&) = delete;
  DistributionServer& operator=(const DistributionServer&) = delete;

  // The port listened on.
  int port() const;
  // Random, new at each Start: PolicyUpdate.server_id.
  const std::string& server_id() const;

  // Replaces the desired state: every policy the nodes should hold and the
  // whole index. Computes the delta from the previous desired state and
  // sends it, as the next version, to every connected node; a node that
  // connects later gets a snapshot. A call that changes nothing sends
  // nothing. Until the first call, connected nodes wait (they never see an
  // empty state that is merely not computed yet); call it only once the
  // controllers know every policy. InvalidArgument (and nothing changes)
  // when the state is inconsistent (see MakeDesiredState).
  absl::Status SetDesired(std::vector<stockade::v1::CompiledPolicy> policies,
                          const std::vector<IndexEntry>& index);
  // The same, with the policies packed already (shared with the caller).
  absl::Status SetDesired(std::vector<PolicyPtr> policies,
                          const std::vector<IndexEntry>& index);

  // The current desired version (0 before the first SetDesired).
  uint64_t version() const;

  // Every node known: connected ones, and disconnected ones for
  // forget_disconnected_after. Sorted by name.
  std::vector<NodeInfo> Nodes() const;
  std::optional<NodeInfo> Node(std::string_view name) const;
  HoldingCount NodesHolding(std::string_view hash) const;
  // Connected nodes that acknowledged version or a later one, and all
  // connected nodes.
  HoldingCount NodesAcked(uint64_t version) const;
  // Every hash a running container uses on some node, as known nodes
  // (connected, or disconnected and not yet forgotten) last reported: keep
  // these policies in the desired state.
  std::vector<std::string> HashesInUse() const;

  void SetNodeCallback(NodeCallback callback);

  Metrics GetMetrics() const;

  class Impl;

 private:
  explicit DistributionServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stockade::distribution

#endif  // STOCKADE_OPERATOR_DISTRIBUTION_SERVER_H_
