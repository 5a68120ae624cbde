#include "operator/distribution/server.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/pem.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "stockade/v1/distribution.grpc.pb.h"
#include "stockade/v1/distribution.pb.h"
#include "store/store.h"

namespace stockade::distribution {
namespace {

using stockade::v1::NodeHello;
using stockade::v1::NodeReport;
using stockade::v1::NodeStatus;
using stockade::v1::PolicyUpdate;

// Limits on what a node may report (beyond the message size limit).
constexpr size_t kMaxHeld = 1'000'000;
constexpr size_t kMaxProfiles = 1'000'000;
constexpr int kMaxErrors = 100;
constexpr size_t kMaxErrorBytes = 4096;
constexpr size_t kMaxAgentVersionBytes = 128;
constexpr size_t kMaxProfileNameBytes = 512;
constexpr int kMaxLandlockAbi = 1000;
// Versions remembered for the latency of acknowledgements.
constexpr size_t kRecentVersions = 4096;

// A policy hash in 32 bytes instead of 64 hex digits (held sets of many
// nodes times many policies).
using HashKey = std::array<uint8_t, 32>;

std::optional<HashKey> ParseHash(std::string_view hex) {
  if (!store::IsPolicyHash(hex)) return std::nullopt;
  HashKey key;
  auto nibble = [](char c) -> uint8_t {
    return c <= '9' ? static_cast<uint8_t>(c - '0')
                    : static_cast<uint8_t>(c - 'a' + 10);
  };
  for (size_t i = 0; i < key.size(); ++i) {
    key[i] =
        static_cast<uint8_t>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
  }
  return key;
}

std::string HashHex(const HashKey& key) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

bool IsProfileName(std::string_view s) {
  if (s.empty() || s.size() > kMaxProfileNameBytes) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '/' ||
           c == '-';
  });
}

bool IsPrintable(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f; });
}

absl::Status ValidateHello(const NodeHello& hello) {
  if (!IsDnsSubdomain(hello.node_name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello: node_name \"",
                     absl::CHexEscape(hello.node_name().substr(0, 300)),
                     "\" is not a Kubernetes node name (RFC 1123 subdomain)"));
  }
  if (hello.agent_version().size() > kMaxAgentVersionBytes ||
      !IsPrintable(hello.agent_version())) {
    return absl::InvalidArgumentError(
        "hello: agent_version is longer than 128 bytes or not printable");
  }
  if (hello.landlock_abi() < 0 || hello.landlock_abi() > kMaxLandlockAbi) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hello: landlock_abi ", hello.landlock_abi(), " out of range"));
  }
  return absl::OkStatus();
}

absl::Status ValidateStatus(const NodeStatus& status) {
  for (const auto* list : {&status.held_added(), &status.held_removed(),
                           &status.in_use_added(), &status.in_use_removed()}) {
    for (const std::string& h : *list) {
      if (!store::IsPolicyHash(h)) {
        return absl::InvalidArgumentError(
            absl::StrCat("status: \"", absl::CHexEscape(h.substr(0, 100)),
                         "\" is not a policy hash (64 lowercase hex digits)"));
      }
    }
  }
  for (const auto* list :
       {&status.profiles_added(), &status.profiles_removed()}) {
    for (const std::string& p : *list) {
      if (!IsProfileName(p)) {
        return absl::InvalidArgumentError(
            absl::StrCat("status: \"", absl::CHexEscape(p.substr(0, 100)),
                         "\" is not an AppArmor profile name"));
      }
    }
  }
  if (status.errors_size() > kMaxErrors) {
    return absl::InvalidArgumentError(absl::StrCat(
        "status: ", status.errors_size(), " errors, more than ", kMaxErrors));
  }
  for (const auto& e : status.errors()) {
    if (!e.hash().empty() && !store::IsPolicyHash(e.hash())) {
      return absl::InvalidArgumentError(
          "status: an error's hash is not a policy hash");
    }
    if (e.message().size() > kMaxErrorBytes) {
      return absl::InvalidArgumentError(
          "status: an error message is longer than 4096 bytes");
    }
  }
  return absl::OkStatus();
}

std::string RandomId() {
  std::array<uint8_t, 16> bytes{};
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = getrandom(bytes.data() + done, bytes.size() - done, 0);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (done < bytes.size()) {
    // No entropy at all: time is unique enough to tell server runs apart.
    const int64_t now = absl::ToUnixNanos(absl::Now());
    std::memcpy(bytes.data(), &now, sizeof now);
  }
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace

class SyncReactor;

class DistributionServer::Impl {
 public:
  explicit Impl(ServerOptions options)
      : options_(std::move(options)), server_id_(RandomId()) {
    if (!options_.log) options_.log = StderrJsonLog("distribution");
  }

  absl::Status Start();
  void Shutdown();

  // Called by reactors (without their own lock held).
  void AddReactor(SyncReactor* r);
  void RemoveReactor(SyncReactor* r);
  absl::Status Hello(SyncReactor* r, const NodeReport& report);
  absl::Status Report(SyncReactor* r, const NodeReport& report);
  void CountSent(const PolicyUpdate& part, size_t policies);

  absl::Status SetDesired(std::vector<PolicyPtr> policies,
                          const std::vector<IndexEntry>& index);
  uint64_t version() const;
  std::vector<NodeInfo> Nodes() const;
  std::optional<NodeInfo> Node(std::string_view name) const;
  HoldingCount NodesHolding(std::string_view hash) const;
  HoldingCount NodesAcked(uint64_t version) const;
  std::vector<std::string> HashesInUse() const;
  void SetNodeCallback(NodeCallback callback) {
    std::lock_guard<std::mutex> lock(mu_);
    callback_ = std::move(callback);
  }
  Metrics GetMetrics() const;

  const ServerOptions& options() const { return options_; }
  const std::string& server_id() const { return server_id_; }
  int port() const { return port_; }
  void Log(LogLevel level, std::string_view msg, const LogFields& fields) {
    options_.log(level, msg, fields);
  }

 private:
  struct NodeRecord {
    std::string name;
    SyncReactor* reactor = nullptr;  // Current stream; null: disconnected.
    std::string peer;
    std::string peer_subject;
    std::string agent_version;
    int landlock_abi = 0;
    bool apparmor_enabled = false;
    absl::flat_hash_set<HashKey> held;
    absl::flat_hash_set<std::string> profiles;
    absl::flat_hash_set<HashKey> in_use;
    std::vector<NodeProblem> errors;
    uint64_t acked = 0;
    // The desired version when the stream started: later versions count
    // towards distribution latency.
    uint64_t stream_start_version = 0;
    absl::Time connected_at;
    absl::Time last_report;
    absl::Time disconnected_at = absl::InfinitePast();
  };

  class Service : public stockade::v1::PolicyDistribution::CallbackService {
   public:
    explicit Service(Impl* impl) : impl_(impl) {}
    grpc::ServerBidiReactor<NodeReport, PolicyUpdate>* Sync(
        grpc::CallbackServerContext* context) override;

   private:
    Impl* impl_;
  };

  NodeInfo InfoLocked(const NodeRecord& record) const;
  // Applies a validated status to record; InvalidArgument on an
  // inconsistent acknowledgement.
  absl::Status ApplyStatusLocked(NodeRecord& record, const NodeStatus& status,
                                 absl::Time now);
  void ObserveLatencyLocked(double seconds);
  std::unique_ptr<PartSource> SnapshotForLocked(const NodeRecord& record) const;
  void ForgetOldLocked(absl::Time now);
  void Notify(const std::optional<NodeInfo>& info);

  ServerOptions options_;
  const std::string server_id_;
  int port_ = 0;
  Service service_{this};
  std::unique_ptr<grpc::Server> server_;

  mutable std::mutex mu_;
  std::condition_variable reactors_done_;
  bool shutting_down_ = false;
  absl::flat_hash_set<SyncReactor*> reactors_;
  std::shared_ptr<const DesiredState> desired_;
  std::deque<std::pair<uint64_t, absl::Time>> recent_versions_;
  std::map<std::string, NodeRecord> nodes_;
  NodeCallback callback_;
  LatencyHistogram latency_;
  uint64_t streams_started_ = 0;
  uint64_t streams_rejected_ = 0;
  uint64_t acks_ = 0;
  std::atomic<uint64_t> snapshots_sent_{0};
  std::atomic<uint64_t> deltas_sent_{0};
  std::atomic<uint64_t> updates_sent_{0};
  std::atomic<uint64_t> update_bytes_sent_{0};
  std::atomic<uint64_t> policies_sent_{0};
};

// One node's stream. Lock order: Impl::mu_, then SyncReactor::mu_.
class SyncReactor : public grpc::ServerBidiReactor<NodeReport, PolicyUpdate> {
 public:
  SyncReactor(DistributionServer::Impl* impl,
              grpc::CallbackServerContext* context)
      : impl_(impl), context_(context) {
    peer_ = context_->peer();
    auto auth = context_->auth_context();
    if (auth != nullptr) {
      for (const auto& v :
           auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME)) {
        peer_subject_.assign(v.data(), v.size());
      }
    }
    impl_->AddReactor(this);
    std::lock_guard<std::mutex> lock(mu_);
    StartRead(&report_);
  }

  const std::string& peer() const { return peer_; }
  const std::string& peer_subject() const { return peer_subject_; }
  // Set once, at hello, before the reactor is in any node record.
  const std::string& node_name() const { return node_name_; }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The stream broke, the node half-closed (a node leaves by cancelling
      // instead), or it sent bytes that do not parse as a NodeReport: gRPC
      // does not tell these apart.
      FinishOnce(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "the node's side of the stream ended: closed, or a message that "
          "is not a NodeReport"));
      return;
    }
    absl::Status s;
    if (node_name_.empty()) {
      s = impl_->Hello(this, report_);
    } else {
      s = impl_->Report(this, report_);
    }
    if (!s.ok()) {
      FinishOnce(grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                              std::string(s.message())));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_) StartRead(&report_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      write_failed_ = true;  // The stream broke; the read side ends it.
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    impl_->RemoveReactor(this);
    delete this;
  }

  // Ends the stream with status (once; later calls do nothing).
  void FinishOnce(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    queue_.clear();
    Finish(status);
  }

  void SetNodeName(std::string name) { node_name_ = std::move(name); }

  // Queues a version's parts.
  void Enqueue(std::unique_ptr<PartSource> source) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    queue_.push_back(std::move(source));
    MaybeWriteLocked();
  }

  // Replaces every queued version not started yet with snapshot.
  void ReplaceQueued(std::unique_ptr<PartSource> snapshot) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    std::deque<std::unique_ptr<PartSource>> kept;
    if (!queue_.empty() && queue_.front()->started()) {
      kept.push_back(std::move(queue_.front()));
    }
    queue_ = std::move(kept);
    queue_.push_back(std::move(snapshot));
    MaybeWriteLocked();
  }

  size_t QueuedVersions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }

 private:
  void MaybeWriteLocked() {
    while (!writing_ && !finished_ && !write_failed_ && !queue_.empty()) {
      PartSource& source = *queue_.front();
      const size_t before = source.policies_sent();
      if (source.Next(&out_)) {
        writing_ = true;
        impl_->CountSent(out_, source.policies_sent() - before);
        StartWrite(&out_);
        return;
      }
      queue_.pop_front();
    }
  }

  DistributionServer::Impl* const impl_;
  grpc::CallbackServerContext* const context_;
  std::string peer_;
  std::string peer_subject_;
  std::string node_name_;

  mutable std::mutex mu_;
  NodeReport report_;  // Read buffer.
  PolicyUpdate out_;   // The part being written.
  bool writing_ = false;
  bool write_failed_ = false;
  bool finished_ = false;
  std::deque<std::unique_ptr<PartSource>> queue_;
};

grpc::ServerBidiReactor<NodeReport, PolicyUpdate>*
DistributionServer::Impl::Service::Sync(grpc::CallbackServerContext* context) {
  return new SyncReactor(impl_, context);
}

absl::Status DistributionServer::Impl::Start() {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (options_.insecure) {
    credentials = grpc::InsecureServerCredentials();
    Log(LogLevel::kWarning,
        "INSECURE: policy distribution serves plaintext gRPC without "
        "authentication; anyone who can reach this address reads every "
        "compiled policy and can report as any node. For local development "
        "only: give --tls-cert, --tls-key and --tls-client-ca in production",
        {{"address", options_.address}});
  } else {
    auto cert = ReadPemFile(options_.cert_file, "server certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(options_.key_file, "server key");
    if (!key.ok()) return key.status();
    auto ca = ReadPemFile(options_.client_ca_file, "client CA");
    if (!ca.ok()) return ca.status();
    grpc::SslServerCredentialsOptions ssl(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = *ca;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.address, credentials, &port_);
  builder.RegisterService(&service_);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<size_t>(options_.max_report_bytes, INT32_MAX)));
  // Detect dead nodes; let nodes ping every 30 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat(
        "policy distribution: cannot listen on ", options_.address,
        options_.insecure ? "" : " with the given TLS credentials",
        " (address in use, or a bad certificate or key; see the grpc log)"));
  }
  Log(LogLevel::kInfo, "policy distribution listening",
      {{"address", options_.address},
       {"port", absl::StrCat(port_)},
       {"tls", options_.insecure ? "off (INSECURE)" : "mTLS"},
       {"server_id", server_id_}});
  return absl::OkStatus();
}

void DistributionServer::Impl::Shutdown() {
  std::vector<SyncReactor*> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    live.assign(reactors_.begin(), reactors_.end());
    // Ending streams while holding mu_: OnDone (RemoveReactor) waits for it.
    for (SyncReactor* r : live) {
      r->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the operator is shutting down"));
    }
  }
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
    server_->Wait();
  }
  std::unique_lock<std::mutex> lock(mu_);
  reactors_done_.wait(lock, [&] { return reactors_.empty(); });
}

void DistributionServer::Impl::AddReactor(SyncReactor* r) {
  std::lock_guard<std::mutex> lock(mu_);
  reactors_.insert(r);
  if (shutting_down_) {
    r->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               "the operator is shutting down"));
  }
}

void DistributionServer::Impl::RemoveReactor(SyncReactor* r) {
  std::optional<NodeInfo> info;
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reactors_.erase(r);
    auto it = nodes_.find(r->node_name());
    if (it != nodes_.end() && it->second.reactor == r) {
      it->second.reactor = nullptr;
      it->second.acked = 0;
      it->second.disconnected_at = absl::Now();
      name = it->first;
      info = InfoLocked(it->second);
    }
    if (reactors_.empty()) reactors_done_.notify_all();
  }
  if (info.has_value()) {
    Log(LogLevel::kInfo, "node disconnected",
        {{"node", name}, {"peer", r->peer()}});
    Notify(info);
  }
}

absl::Status DistributionServer::Impl::Hello(SyncReactor* r,
                                             const NodeReport& report) {
  auto reject = [&](absl::Status s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++streams_rejected_;
    }
    Log(LogLevel::kWarning, "rejected a node's stream",
        {{"peer", r->peer()}, {"error", std::string(s.message())}});
    return s;
  };
  if (!report.has_hello()) {
    return reject(absl::InvalidArgumentError(
        "the first NodeReport of a stream must carry hello"));
  }
  if (absl::Status s = ValidateHello(report.hello()); !s.ok()) {
    return reject(s);
  }
  if (absl::Status s = ValidateStatus(report.status()); !s.ok()) {
    return reject(s);
  }
  if (!report.status().held_removed().empty() ||
      !report.status().profiles_removed().empty() ||
      !report.status().in_use_removed().empty() ||
      report.status().has_applied()) {
    return reject(absl::InvalidArgumentError(
        "the first report of a stream lists what the node holds; it cannot "
        "remove or acknowledge anything"));
  }
  const NodeHello& hello = report.hello();
  r->SetNodeName(hello.node_name());
  const absl::Time now = absl::Now();
  std::optional<NodeInfo> info;
  bool replaced = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) {
      return absl::UnavailableError("the operator is shutting down");
    }
    ForgetOldLocked(now);
    NodeRecord& record = nodes_[hello.node_name()];
    if (record.reactor != nullptr && record.reactor != r) {
      record.reactor->FinishOnce(
          grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                       "replaced by a newer stream of the same node"));
      replaced = true;
    }
    record = NodeRecord();
    record.name = hello.node_name();
    record.reactor = r;
    record.peer = r->peer();
    record.peer_subject = r->peer_subject();
    record.agent_version = hello.agent_version();
    record.landlock_abi = hello.landlock_abi();
    record.apparmor_enabled = hello.apparmor_enabled();
    record.connected_at = now;
    record.stream_start_version = desired_ ? desired_->version : 0;
    if (absl::Status s = ApplyStatusLocked(record, report.status(), now);
        !s.ok()) {
      ++streams_rejected_;
      record.reactor = nullptr;
      record.disconnected_at = now;
      return s;
    }
    ++streams_started_;
    if (desired_ != nullptr) r->Enqueue(SnapshotForLocked(record));
    info = InfoLocked(record);
  }
  Log(LogLevel::kInfo, "node connected",
      {{"node", hello.node_name()},
       {"peer", r->peer()},
       {"subject", r->peer_subject()},
       {"agent_version", hello.agent_version()},
       {"landlock_abi", absl::StrCat(hello.landlock_abi())},
       {"apparmor", hello.apparmor_enabled() ? "enabled" : "disabled"},
       {"held", absl::StrCat(report.status().held_added_size())},
       {"replaced_stream", replaced ? "true" : "false"}});
  if (options_.insecure) {
    Log(LogLevel::kWarning,
        "INSECURE: node connected over plaintext without authentication",
        {{"node", hello.node_name()}, {"peer", r->peer()}});
  }
  Notify(info);
  return absl::OkStatus();
}

absl::Status DistributionServer::Impl::Report(SyncReactor* r,
                                              const NodeReport& report) {
  absl::Status s;
  if (report.has_hello()) {
    s = absl::InvalidArgumentError("hello is allowed in the first report only");
  } else if (report.denials_size() > 1000) {
    s = absl::InvalidArgumentError(absl::StrCat(
        "a report holds ", report.denials_size(), " denials (at most 1000)"));
  } else {
    s = ValidateStatus(report.status());
  }
  std::optional<NodeInfo> info;
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(r->node_name());
    if (it == nodes_.end() || it->second.reactor != r) {
      return absl::AbortedError("this stream was replaced");
    }
    s = ApplyStatusLocked(it->second, report.status(), absl::Now());
    if (s.ok()) info = InfoLocked(it->second);
    if (!s.ok()) ++streams_rejected_;
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    ++streams_rejected_;
  }
  if (!s.ok()) {
    Log(LogLevel::kWarning, "rejected a node's report",
        {{"node", r->node_name()},
         {"peer", r->peer()},
         {"error", std::string(s.message())}});
    return s;
  }
  Notify(info);
  if (report.denials_size() > 0 && options_.on_denials) {
    options_.on_denials(r->node_name(), report.denials());
  }
  return absl::OkStatus();
}

absl::Status DistributionServer::Impl::ApplyStatusLocked(
    NodeRecord& record, const NodeStatus& status, absl::Time now) {
  record.last_report = now;
  for (const std::string& h : status.held_removed()) {
    record.held.erase(*ParseHash(h));
  }
  for (const std::string& h : status.held_added()) {
    record.held.insert(*ParseHash(h));
  }
  if (record.held.size() > kMaxHeld) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the node reports more than ", kMaxHeld, " policies"));
  }
  for (const std::string& p : status.profiles_removed()) {
    record.profiles.erase(p);
  }
  for (const std::string& p : status.profiles_added()) {
    record.profiles.insert(p);
  }
  if (record.profiles.size() > kMaxProfiles) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the node reports more than ", kMaxProfiles, " AppArmor profiles"));
  }
  for (const std::string& h : status.in_use_removed()) {
    record.in_use.erase(*ParseHash(h));
  }
  for (const std::string& h : status.in_use_added()) {
    record.in_use.insert(*ParseHash(h));
  }
  if (record.in_use.size() > kMaxHeld) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the node reports more than ", kMaxHeld, " policies in use"));
  }
  record.errors.clear();
  for (const auto& e : status.errors()) {
    record.errors.push_back({e.hash(), e.message()});
  }
  if (!status.has_applied() || status.applied().server_id() != server_id_) {
    // Not yet applied anything from this server (or acknowledging an
    // earlier server run): no acknowledgement.
    return absl::OkStatus();
  }
  const uint64_t v = status.applied().version();
  const uint64_t current = desired_ ? desired_->version : 0;
  if (v > current) {
    return absl::InvalidArgumentError(
        absl::StrCat("the node acknowledges version ", v,
                     ", but the latest version is ", current));
  }
  if (v < record.acked) {
    return absl::InvalidArgumentError(
        absl::StrCat("the node acknowledges version ", v,
                     " after it acknowledged ", record.acked));
  }
  if (v == record.acked) return absl::OkStatus();
  // Latency of every version this acknowledgement covers that was made
  // while the node was connected.
  const uint64_t from = std::max(record.acked, record.stream_start_version);
  for (auto it = std::lower_bound(
           recent_versions_.begin(), recent_versions_.end(), from + 1,
           [](const auto&entry, uint64_t x) { return entry.first < x; });
       it != recent_versions_.end() && it->first <= v; ++it) {
    ObserveLatencyLocked(absl::ToDoubleSeconds(now - it->second));
  }
  record.acked = v;
  ++acks_;
  return absl::OkStatus();
}

void DistributionServer::Impl::ObserveLatencyLocked(double seconds) {
  if (seconds < 0) seconds = 0;
  for (size_t i = 0; i < LatencyHistogram::kBounds.size(); ++i) {
    if (seconds <= LatencyHistogram::kBounds[i]) ++latency_.counts[i];
  }
  ++latency_.count;
  latency_.sum_seconds += seconds;
  latency_.max_seconds = std::max(latency_.max_seconds, seconds);
}

std::unique_ptr<PartSource> DistributionServer::Impl::SnapshotForLocked(
    const NodeRecord& record) const {
  absl::flat_hash_set<std::string> held;
  for (const auto& [hash, policy] : desired_->policies) {
    auto key = ParseHash(hash);
    if (key.has_value() && record.held.contains(*key)) held.insert(hash);
  }
  return SnapshotParts(desired_, std::move(held), server_id_,
                       options_.part_bytes);
}

void DistributionServer::Impl::CountSent(const PolicyUpdate& part,
                                         size_t policies) {
  updates_sent_.fetch_add(1, std::memory_order_relaxed);
  update_bytes_sent_.fetch_add(part.ByteSizeLong(), std::memory_order_relaxed);
  policies_sent_.fetch_add(policies, std::memory_order_relaxed);
  if (part.last_part()) {
    (part.kind() == PolicyUpdate::SNAPSHOT ? snapshots_sent_ : deltas_sent_)
        .fetch_add(1, std::memory_order_relaxed);
  }
}

absl::Status DistributionServer::Impl::SetDesired(
    std::vector<PolicyPtr> policies, const std::vector<IndexEntry>& index) {
  auto state = MakeDesiredState(std::move(policies), index);
  if (!state.ok()) return state.status();
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(mu_);
  static const DesiredState* const kEmpty = new DesiredState;
  const DesiredState& previous = desired_ ? *desired_ : *kEmpty;
  state->version = previous.version + 1;
  state->created = now;
  auto delta = std::make_shared<const Delta>(ComputeDelta(previous, *state));
  if (desired_ != nullptr && delta->empty()) return absl::OkStatus();
  const bool first = desired_ == nullptr;
  desired_ = std::make_shared<const DesiredState>(*std::move(state));
  recent_versions_.emplace_back(desired_->version, now);
  while (recent_versions_.size() > kRecentVersions) {
    recent_versions_.pop_front();
  }
  size_t streams = 0;
  for (auto& [name, record] : nodes_) {
    if (record.reactor == nullptr) continue;
    ++streams;
    if (first) {
      record.reactor->Enqueue(SnapshotForLocked(record));
    } else if (record.reactor->QueuedVersions() >=
               options_.max_queued_versions) {
      record.reactor->ReplaceQueued(SnapshotForLocked(record));
    } else {
      record.reactor->Enqueue(
          DeltaParts(delta, server_id_, options_.part_bytes));
    }
  }
  Log(LogLevel::kInfo, "desired state changed",
      {{"version", absl::StrCat(desired_->version)},
       {"policies", absl::StrCat(desired_->policies.size())},
       {"index", absl::StrCat(desired_->index.size())},
       {"upserted", absl::StrCat(delta->upserts.size())},
       {"dropped", absl::StrCat(delta->dropped.size())},
       {"index_set", absl::StrCat(delta->index_set.size())},
       {"index_removed", absl::StrCat(delta->index_removed.size())},
       {"streams", absl::StrCat(streams)}});
  return absl::OkStatus();
}

uint64_t DistributionServer::Impl::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return desired_ ? desired_->version : 0;
}

NodeInfo DistributionServer::Impl::InfoLocked(const NodeRecord& record) const {
  NodeInfo info;
  info.name = record.name;
  info.connected = record.reactor != nullptr;
  info.peer = record.peer;
  info.peer_subject = record.peer_subject;
  info.agent_version = record.agent_version;
  info.landlock_abi = record.landlock_abi;
  info.apparmor_enabled = record.apparmor_enabled;
  info.held.reserve(record.held.size());
  for (const HashKey& h : record.held) info.held.push_back(HashHex(h));
  std::sort(info.held.begin(), info.held.end());
  for (const HashKey& h : record.in_use) info.in_use.push_back(HashHex(h));
  std::sort(info.in_use.begin(), info.in_use.end());
  info.profiles_loaded.assign(record.profiles.begin(), record.profiles.end());
  std::sort(info.profiles_loaded.begin(), info.profiles_loaded.end());
  info.errors = record.errors;
  info.acked_version = record.acked;
  info.connected_at = record.connected_at;
  info.last_report = record.last_report;
  info.disconnected_at = record.disconnected_at;
  return info;
}

void DistributionServer::Impl::ForgetOldLocked(absl::Time now) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (it->second.reactor == nullptr &&
        now - it->second.disconnected_at > options_.forget_disconnected_after) {
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<NodeInfo> DistributionServer::Impl::Nodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<NodeInfo> out;
  const absl::Time now = absl::Now();
  for (const auto& [name, record] : nodes_) {
    if (record.reactor == nullptr &&
        now - record.disconnected_at > options_.forget_disconnected_after) {
      continue;
    }
    out.push_back(InfoLocked(record));
  }
  return out;
}

std::optional<NodeInfo> DistributionServer::Impl::Node(
    std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(std::string(name));
  if (it == nodes_.end()) return std::nullopt;
  return InfoLocked(it->second);
}

HoldingCount DistributionServer::Impl::NodesHolding(
    std::string_view hash) const {
  const std::optional<HashKey> key = ParseHash(hash);
  std::lock_guard<std::mutex> lock(mu_);
  std::string profile;
  if (desired_ != nullptr) {
    auto it = desired_->policies.find(std::string(hash));
    if (it != desired_->policies.end()) {
      profile = it->second.policy->apparmor_profile();
    }
  }
  HoldingCount count;
  for (const auto& [name, record] : nodes_) {
    if (record.reactor == nullptr) continue;
    ++count.total;
    if (!key.has_value() || !record.held.contains(*key)) continue;
    if (std::any_of(record.errors.begin(), record.errors.end(),
                    [&](const NodeProblem& e) { return e.hash == hash; })) {
      continue;
    }
    if (record.apparmor_enabled && !profile.empty() &&
        !record.profiles.contains(profile)) {
      continue;
    }
    ++count.ready;
  }
  return count;
}

HoldingCount DistributionServer::Impl::NodesAcked(uint64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  HoldingCount count;
  for (const auto& [name, record] : nodes_) {
    if (record.reactor == nullptr) continue;
    ++count.total;
    if (record.acked >= version) ++count.ready;
  }
  return count;
}

std::vector<std::string> DistributionServer::Impl::HashesInUse() const {
  absl::flat_hash_set<HashKey> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    for (const auto& [name, record] : nodes_) {
      if (record.reactor == nullptr &&
          now - record.disconnected_at > options_.forget_disconnected_after) {
        continue;
      }
      all.insert(record.in_use.begin(), record.in_use.end());
    }
  }
  std::vector<std::string> out;
  out.reserve(all.size());
  for (const HashKey& h : all) out.push_back(HashHex(h));
  std::sort(out.begin(), out.end());
  return out;
}

Metrics DistributionServer::Impl::GetMetrics() const {
  Metrics m;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, record] : nodes_) {
      if (record.reactor != nullptr) ++m.connected_nodes;
    }
    m.desired_version = desired_ ? desired_->version : 0;
    m.streams_started = streams_started_;
    m.streams_rejected = streams_rejected_;
    m.acks = acks_;
    m.distribution_latency = latency_;
  }
  m.snapshots_sent = snapshots_sent_.load(std::memory_order_relaxed);
  m.deltas_sent = deltas_sent_.load(std::memory_order_relaxed);
  m.updates_sent = updates_sent_.load(std::memory_order_relaxed);
  m.update_bytes_sent = update_bytes_sent_.load(std::memory_order_relaxed);
  m.policies_sent = policies_sent_.load(std::memory_order_relaxed);
  return m;
}

void DistributionServer::Impl::Notify(const std::optional<NodeInfo>& info) {
  if (!info.has_value()) return;
  NodeCallback callback;
  {
    std::lock_guard<std::mutex> lock(mu_);
    callback = callback_;
  }
  if (callback) callback(*info);
}

// ---------------------------------------------------------------------------

DistributionServer::DistributionServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

DistributionServer::~DistributionServer() { impl_->Shutdown(); }

absl::StatusOr<std::unique_ptr<DistributionServer>> DistributionServer::Start(
    ServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<DistributionServer>(
      new DistributionServer(std::move(impl)));
}

int DistributionServer::port() const { return impl_->port(); }

const std::string& DistributionServer::server_id() const {
  return impl_->server_id();
}

absl::Status DistributionServer::SetDesired(
    std::vector<stockade::v1::CompiledPolicy> policies,
    const std::vector<IndexEntry>& index) {
  std::vector<PolicyPtr> packed;
  packed.reserve(policies.size());
  for (const auto& p : policies) {
    absl::StatusOr<PolicyPtr> one = compiler::PackedPolicy::Pack(p);
    if (!one.ok()) return one.status();
    packed.push_back(*std::move(one));
  }
  return impl_->SetDesired(std::move(packed), index);
}

absl::Status DistributionServer::SetDesired(
    std::vector<PolicyPtr> policies, const std::vector<IndexEntry>& index) {
  return impl_->SetDesired(std::move(policies), index);
}

uint64_t DistributionServer::version() const { return impl_->version(); }

std::vector<NodeInfo> DistributionServer::Nodes() const {
  return impl_->Nodes();
}

std::optional<NodeInfo> DistributionServer::Node(std::string_view name) const {
  return impl_->Node(name);
}

HoldingCount DistributionServer::NodesHolding(std::string_view hash) const {
  return impl_->NodesHolding(hash);
}

HoldingCount DistributionServer::NodesAcked(uint64_t version) const {
  return impl_->NodesAcked(version);
}

std::vector<std::string> DistributionServer::HashesInUse() const {
  return impl_->HashesInUse();
}

void DistributionServer::SetNodeCallback(NodeCallback callback) {
  impl_->SetNodeCallback(std::move(callback));
}

Metrics DistributionServer::GetMetrics() const { return impl_->GetMetrics(); }

}  // namespace stockade::distribution
