// stockade-operator: reconciles AgentPolicy and ClusterAgentPolicy into
// compiled policies, serves them to the node agents over gRPC and reports
// back in each policy's status. docs/operator.md.
#include <malloc.h>
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "operator/manager/operator.h"

namespace {

constexpr char kUsage[] = R"(usage: stockade-operator [flags]

Reconciles AgentPolicy and ClusterAgentPolicy objects into compiled policies,
distributes them to the stockade-node agents over gRPC, and writes each
policy's status (Compiled, Distributed, Ready; nodes ready/total) and Events.

Flags:
  --kubeconfig PATH        kubeconfig (default: $KUBECONFIG, in-cluster,
                           ~/.kube/config)
  --grpc-listen ADDR       node agents connect here (default 0.0.0.0:9443)
  --tls-cert FILE          server certificate (PEM) for mTLS
  --tls-key FILE           its key
  --tls-client-ca FILE     CA of the node agents' client certificates
  --insecure               plaintext gRPC without authentication (local
                           development only)
  --http-listen ADDR       /healthz /readyz /metrics (default 0.0.0.0:8080)
  --leader-elect=BOOL      one active replica (default true)
  --lease-namespace NS     namespace of the Lease (default stockade-system)
  --lease-name NAME        (default stockade-operator)
  --identity ID            this replica's name (default: $POD_NAME, else
                           hostname_pid)
  --lease-duration SECONDS (default 15)
  --renew-deadline SECONDS (default 10)
  --retry-period SECONDS   (default 2)
  --resync SECONDS         reconcile at least this often (default 30)
  --label-leader-pod=BOOL  label this replica's Pod ($POD_NAME in
                           $POD_NAMESPACE) stockade.dev/leader=true while it
                           leads, =false otherwise, for a Service that sends
                           node agents to the leader (default false)
  --log-level LEVEL        debug, info (default), warning, error
  --help
)";

int Fail(const std::string& message) {
  std::cerr << "stockade-operator: " << message << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Two malloc arenas instead of eight per core: the operator's memory is a
  // few long-lived structures rebuilt by one worker; per-thread arenas (gRPC,
  // informers, HTTP) would each keep freed snapshots of them.
  mallopt(M_ARENA_MAX, 2);
  stockade::manager::OperatorOptions o;
  if (const char* pod = std::getenv("POD_NAME")) o.identity = pod;
  if (const char* ns = std::getenv("POD_NAMESPACE")) o.pod_namespace = ns;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto next = [&](std::string* out) {
      if (has_value) {
        *out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    auto seconds = [&](absl::Duration* out) {
      std::string v;
      double s = 0;
      if (!next(&v) || !absl::SimpleAtod(v, &s) || s <= 0) return false;
      *out = absl::Seconds(s);
      return true;
    };
    bool ok = true;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--kubeconfig") {
      ok = next(&o.kubeconfig);
    } else if (arg == "--grpc-listen") {
      ok = next(&o.grpc_address);
    } else if (arg == "--tls-cert") {
      ok = next(&o.tls_cert);
    } else if (arg == "--tls-key") {
      ok = next(&o.tls_key);
    } else if (arg == "--tls-client-ca") {
      ok = next(&o.tls_client_ca);
    } else if (arg == "--insecure") {
      o.insecure = !has_value || value == "true";
    } else if (arg == "--http-listen") {
      ok = next(&o.http_address);
    } else if (arg == "--leader-elect") {
      o.leader_elect = !has_value || value == "true";
    } else if (arg == "--lease-namespace") {
      ok = next(&o.lease_namespace);
    } else if (arg == "--lease-name") {
      ok = next(&o.lease_name);
    } else if (arg == "--identity") {
      ok = next(&o.identity);
    } else if (arg == "--lease-duration") {
      ok = seconds(&o.lease_duration);
    } else if (arg == "--renew-deadline") {
      ok = seconds(&o.renew_deadline);
    } else if (arg == "--retry-period") {
      ok = seconds(&o.retry_period);
    } else if (arg == "--resync") {
      ok = seconds(&o.resync);
    } else if (arg == "--label-leader-pod") {
      o.label_leader_pod = !has_value || value == "true";
    } else if (arg == "--log-level") {
      std::string v;
      ok = next(&v);
      if (ok && !stockade::distribution::ParseLogLevel(v, &o.log_level)) {
        return Fail("--log-level must be debug, info, warning or error");
      }
    } else {
      return Fail("unknown flag " + arg);
    }
    if (!ok) return Fail("flag " + arg + " needs a valid value");
  }
  if (!o.insecure &&
      (o.tls_cert.empty() || o.tls_key.empty() || o.tls_client_ca.empty())) {
    return Fail(
        "--tls-cert, --tls-key and --tls-client-ca are required (or "
        "--insecure for local development)");
  }

  // SIGTERM/SIGINT end the process cleanly (the lease is released).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto op = stockade::manager::Operator::Start(o);
  if (!op.ok()) {
    std::cerr << "stockade-operator: " << op.status().message() << "\n";
    return 1;
  }
  std::thread([&signals, &op] {
    int sig = 0;
    sigwait(&signals, &sig);
    (*op)->Stop();
  }).detach();
  absl::Status why = (*op)->Wait();
  op->reset();
  if (!why.ok()) {
    std::cerr << "stockade-operator: " << why.message() << "\n";
    return 1;
  }
  return 0;
}
