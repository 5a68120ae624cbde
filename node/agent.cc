#include "node/agent.h"

#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/pem.h"
#include "grpcpp/grpcpp.h"
#include "stockade/v1/distribution.grpc.pb.h"
#include "stockade/v1/distribution.pb.h"

namespace stockade::node {
namespace {

using distribution::LogLevel;
using stockade::v1::NodeReport;
using stockade::v1::PolicyUpdate;

// Largest PolicyUpdate accepted (the server sends parts of about 1 MiB, at
// most one policy more).
constexpr int kMaxUpdateBytes = 64 << 20;

bool IsDnsSubdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const AgentOptions& options) {
  if (options.insecure) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadPemFile(options.ca_file, "CA");
  if (!ca.ok()) return ca.status();
  auto cert = ReadPemFile(options.cert_file, "client certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(options.key_file, "client key");
  if (!key.ok()) return key.status();
  ssl.pem_root_certs = *std::move(ca);
  ssl.pem_cert_chain = *std::move(cert);
  ssl.pem_private_key = *std::move(key);
  return grpc::SslCredentials(ssl);
}

std::string StatusName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : absl::StrCat(i);
}

}  // namespace

class NodeAgent::Writer {
 public:
  explicit Writer(grpc::ClientReaderWriter<NodeReport, PolicyUpdate>* rw)
      : rw_(rw) {}
  bool Write(const NodeReport& report) { return rw_->Write(report); }

 private:
  grpc::ClientReaderWriter<NodeReport, PolicyUpdate>* rw_;
};

int LandlockAbi() {
  const long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0,
                           LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

Backoff::Backoff(absl::Duration initial, absl::Duration max)
    : initial_(initial),
      max_(std::max(max, initial)),
      current_(initial),
      rng_(std::random_device{}()) {}

absl::Duration Backoff::Next() {
  const absl::Duration d = current_;
  current_ = std::min(current_ * 2, max_);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return d * jitter(rng_);
}

void Backoff::Reset() { current_ = initial_; }

absl::StatusOr<std::unique_ptr<NodeAgent>> NodeAgent::Create(
    AgentOptions options) {
  if (!options.log) options.log = distribution::StderrJsonLog("node");
  if (options.server.empty()) {
    return absl::InvalidArgumentError(
        "the operator's address (--server HOST:PORT) is required");
  }
  if (!IsDnsSubdomain(options.node_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node name \"", options.node_name,
                     "\" is not a Kubernetes node name (lowercase letters, "
                     "digits, '-', '.'; at most 253)"));
  }
  if (!options.insecure) {
    // Fail now on missing files rather than at every connection attempt.
    if (auto c = Credentials(options); !c.ok()) return c.status();
  }
  if (options.backoff_initial <= absl::ZeroDuration() ||
      options.gc_interval <= absl::ZeroDuration() ||
      options.report_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "back-off, garbage collection and report intervals must be positive");
  }
  const bool kernel_apparmor = AppArmorKernelEnabled();
  const int landlock_abi = LandlockAbi();
  SyncOptions sync_options;
  sync_options.store_root = options.store_root;
  sync_options.apparmor =
      options.apparmor == AppArmorMode::kOn ||
      (options.apparmor == AppArmorMode::kAuto && kernel_apparmor);
  sync_options.apparmor_options = options.apparmor_options;
  sync_options.stale_ref_age = options.stale_ref_age;
  sync_options.log = options.log;
  auto sync = StoreSync::Open(std::move(sync_options));
  if (!sync.ok()) return sync.status();
  return std::unique_ptr<NodeAgent>(new NodeAgent(
      std::move(options), *std::move(sync), kernel_apparmor, landlock_abi));
}

NodeAgent::NodeAgent(AgentOptions options, std::unique_ptr<StoreSync> sync,
                     bool apparmor_enabled, int landlock_abi)
    : options_(std::move(options)),
      sync_(std::move(sync)),
      apparmor_enabled_(apparmor_enabled),
      landlock_abi_(landlock_abi) {}

NodeAgent::~NodeAgent() { Stop(); }

void NodeAgent::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  if (context_ != nullptr) context_->TryCancel();
  wake_.notify_all();
}

NodeAgent::State NodeAgent::state() const {
  State s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.connected = connected_;
    s.streams = streams_;
  }
  s.applied = sync_->last_applied();
  s.landlock_abi = landlock_abi_;
  s.apparmor_enabled = apparmor_enabled_;
  return s;
}

void NodeAgent::Run() {
  const char* apparmor_mode = options_.apparmor == AppArmorMode::kOn ? "on"
                              : options_.apparmor == AppArmorMode::kOff
                                  ? "off"
                                  : "auto";
  Log(LogLevel::kInfo, "stockade-node starting",
      {{"node", options_.node_name},
       {"server", options_.server},
       {"store", options_.store_root},
       {"version", options_.agent_version},
       {"landlock_abi", absl::StrCat(landlock_abi_)},
       {"apparmor_kernel", apparmor_enabled_ ? "enabled" : "not enabled"},
       {"apparmor_mode", apparmor_mode}});
  if (!apparmor_enabled_) {
    Log(LogLevel::kInfo,
        "the kernel has no AppArmor enabled: no profiles are loaded here; "
        "seccomp, Landlock and the OCI changes still hold every rule",
        {});
  }
  if (options_.insecure) {
    Log(LogLevel::kWarning,
        "INSECURE: connecting to the operator over plaintext without "
        "authentication; anyone on the path can feed this node policies. "
        "For local development only: give --tls-cert, --tls-key and --tls-ca",
        {{"server", options_.server}});
  }
  std::thread gc([this] { GcLoop(); });
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    const absl::Time started = absl::Now();
    RunStream();
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) break;
    // A stream that applied its snapshot was healthy: start over.
    if (connected_reset_) backoff.Reset();
    connected_reset_ = false;
    const absl::Duration wait = backoff.Next();
    Log(LogLevel::kInfo, "reconnecting",
        {{"in", absl::FormatDuration(wait)},
         {"stream_lasted", absl::FormatDuration(absl::Now() - started)}});
    wake_.wait_for(lock, absl::ToChronoNanoseconds(wait),
                   [&] { return stopping_; });
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    wake_.notify_all();
  }
  gc.join();
  Log(LogLevel::kInfo, "stockade-node stopped", {});
}

void NodeAgent::RunStream() {
  auto credentials = Credentials(options_);
  if (!credentials.ok()) {
    Log(LogLevel::kError, "cannot connect",
        {{"error", std::string(credentials.status().message())}});
    return;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxUpdateBytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (!options_.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options_.tls_server_name);
  }
  // A fresh channel per attempt: this loop's back-off alone paces
  // reconnection.
  auto channel = grpc::CreateCustomChannel(options_.server, *credentials, args);
  auto stub = stockade::v1::PolicyDistribution::NewStub(channel);
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    context_ = &context;
    ++streams_;
  }
  auto rw = stub->Sync(&context);
  Writer writer(rw.get());

  NodeReport hello;
  hello.mutable_hello()->set_node_name(options_.node_name);
  hello.mutable_hello()->set_agent_version(options_.agent_version);
  hello.mutable_hello()->set_landlock_abi(landlock_abi_);
  hello.mutable_hello()->set_apparmor_enabled(apparmor_enabled_);
  if (auto applied = sync_->last_applied(); applied.has_value()) {
    *hello.mutable_hello()->mutable_last_applied() = *applied;
  }
  bool ok;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    *hello.mutable_status() = sync_->BeginStream();
    ok = writer.Write(hello);
    if (ok) {
      writer_ = &writer;
      SendDenialsLocked();
    }
  }
  std::string failure;
  if (ok) {
    PolicyUpdate update;
    while (rw->Read(&update)) {
      auto result = sync_->Apply(update);
      if (!result.ok()) {
        failure = std::string(result.status().message());
        Log(LogLevel::kError, "cannot apply an update; resynchronizing",
            {{"version", absl::StrCat(update.version())}, {"error", failure}});
        break;
      }
      if (*result != StoreSync::PartResult::kApplied) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!connected_) {
          connected_ = true;
          connected_reset_ = true;
          Log(LogLevel::kInfo, "in sync with the operator",
              {{"server", options_.server},
               {"server_id", update.server_id()},
               {"version", absl::StrCat(update.version())}});
        }
      }
      std::lock_guard<std::mutex> lock(write_mu_);
      NodeReport ack;
      *ack.mutable_status() = sync_->Report();
      if (!writer.Write(ack)) break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    writer_ = nullptr;
  }
  context.TryCancel();  // Ends the call whatever the server does.
  const grpc::Status status = rw->Finish();
  sync_->EndStream();
  {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = nullptr;
    connected_ = false;
  }
  Log(failure.empty() ? LogLevel::kWarning : LogLevel::kError,
      "disconnected from the operator; the node store keeps serving",
      {{"server", options_.server},
       {"code",
        failure.empty() ? StatusName(status.error_code()) : "APPLY_FAILED"},
       {"error", failure.empty() ? status.error_message() : failure}});
}

void NodeAgent::GcLoop() {
  const absl::Duration tick =
      std::min(options_.gc_interval, options_.report_interval);
  absl::Time next_gc = absl::Now() + options_.gc_interval;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, absl::ToChronoNanoseconds(tick),
                   [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (absl::Now() >= next_gc) {
      next_gc = absl::Now() + options_.gc_interval;
      if (absl::Status s = sync_->CollectGarbage(); !s.ok()) {
        Log(LogLevel::kWarning, "garbage collection failed",
            {{"error", std::string(s.message())}});
      }
    }
    SendReportIfConnected();
    lock.lock();
  }
}

void NodeAgent::ReportDenial(stockade::v1::NodeDenial denial) {
  std::lock_guard<std::mutex> lock(write_mu_);
  pending_denials_.push_back(std::move(denial));
  if (pending_denials_.size() > 1000) pending_denials_.pop_front();
  SendDenialsLocked();
}

void NodeAgent::SendDenialsLocked() {
  if (writer_ == nullptr || pending_denials_.empty()) return;
  NodeReport report;
  for (auto& d : pending_denials_) *report.add_denials() = std::move(d);
  pending_denials_.clear();
  writer_->Write(report);
}

void NodeAgent::SendReportIfConnected() {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (writer_ == nullptr || !sync_->HasNews()) return;
  NodeReport report;
  *report.mutable_status() = sync_->Report();
  writer_->Write(report);
}

}  // namespace stockade::node
