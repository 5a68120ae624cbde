// stockade-node: the node agent's command line (flags, signals, logging
// setup) around NodeAgent (node/agent.h).
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "node/agent.h"
#include "node/denials/collector.h"
#include "node/denials/denial_log.h"
#include "operator/distribution/log.h"

#ifndef STOCKADE_VERSION
#define STOCKADE_VERSION "unknown"
#endif

namespace {

using stockade::distribution::LogLevel;

constexpr char kUsage[] =
    R"(stockade-node: keeps this node's policy store in step with the Stockade operator

Usage: stockade-node --server HOST:PORT [flags]

Connects to the operator's policy distribution service, writes the compiled
policies it streams into the node store (where the containerd shim reads
them), loads their AppArmor profiles where the kernel has AppArmor, removes
policies nothing uses any more, and reports what the node holds. Reconnects
forever; while the operator is away the store keeps serving the shim.

Connection:
  --server HOST:PORT        the operator's distribution service (required)
  --node-name NAME          this node's name (default: $NODE_NAME, else the
                            host name)
  --tls-cert FILE           client certificate (PEM) for mTLS
  --tls-key FILE            its private key (PEM)
  --tls-ca FILE             CA that signed the operator's certificate (PEM)
  --tls-server-name NAME    name to verify the operator's certificate
                            against, when not the HOST of --server
  --insecure                plaintext without authentication, for local
                            development only (logged as a warning)
  --backoff-initial DUR     first wait before reconnecting (default 200ms)
  --backoff-max DUR         longest wait (default 30s); waits double, with
                            jitter

Store and enforcement:
  --store DIR               node store root (default /var/lib/stockade)
  --apparmor auto|on|off    load AppArmor profiles: where the kernel has
                            AppArmor enabled (auto, default), always, never
  --apparmor-parser PATH    apparmor_parser to compile profiles with
                            (default: apparmor_parser in PATH)
  --gc-interval DUR         how often to collect unused policies
                            (default 1m; also after every update)
  --stale-ref-age DUR       references of containers whose shim process is
                            gone are removed after this long (default 10m)
  --report-interval DUR     how often to report news between updates
                            (containers started or deleted; default 10s)

Denials (docs/denials.md):
  --denials on|off          collect the kernel's reports of denials in this
                            node's containers into <store>/denials (default
                            on; needs CAP_AUDIT_READ or CAP_SYSLOG)
  --denials-only            collect denials and nothing else (a single host
                            without an operator: no --server)
  --enable-audit            turn the kernel's audit on while collecting
                            (off again at exit): Landlock reports denials
                            only then; costs each syscall a little
  --log-all-netns           set net.netfilter.nf_log_all_netns=1 while
                            collecting (0 again at exit): the egress rules'
                            log lines of pods reach the kernel log only then
  --denial-burst N          per container, at most N denials at once
                            (default 20) ...
  --denial-rate R           ... refilled at R per second (default 5); the
                            rest are counted in a summary record

Other:
  --log-level LEVEL         debug, info (default), warning, error
  --version                 print the version and exit
  --help                    this text

Durations: 300ms, 5s, 2m, 1h. Logs: one JSON object per line on stderr.
Signals: SIGTERM and SIGINT stop the agent (the store stays as it is).
)";

struct Flag {
  bool takes_value;
  std::string value;
  bool set = false;
};

int Usage(const std::string& problem) {
  std::cerr << "stockade-node: " << problem
            << "\nRun stockade-node --help for usage.\n";
  return 2;
}

bool ParseDuration(const std::string& text, absl::Duration* out) {
  return absl::ParseDuration(text, out) && *out > absl::ZeroDuration();
}

std::string DefaultNodeName() {
  if (const char* env = std::getenv("NODE_NAME"); env != nullptr && *env) {
    return env;
  }
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "";
  return absl::AsciiStrToLower(host);
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, Flag> flags = {
      {"server", {true, ""}},
      {"node-name", {true, ""}},
      {"tls-cert", {true, ""}},
      {"tls-key", {true, ""}},
      {"tls-ca", {true, ""}},
      {"tls-server-name", {true, ""}},
      {"insecure", {false, ""}},
      {"backoff-initial", {true, "200ms"}},
      {"backoff-max", {true, "30s"}},
      {"store", {true, "/var/lib/stockade"}},
      {"apparmor", {true, "auto"}},
      {"apparmor-parser", {true, ""}},
      {"gc-interval", {true, "1m"}},
      {"stale-ref-age", {true, "10m"}},
      {"report-interval", {true, "10s"}},
      {"log-level", {true, "info"}},
      {"denials", {true, "on"}},
      {"denials-only", {false, ""}},
      {"denial-burst", {true, "20"}},
      {"denial-rate", {true, "5"}},
      {"enable-audit", {false, ""}},
      {"log-all-netns", {false, ""}},
      {"version", {false, ""}},
      {"help", {false, ""}},
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h") arg = "--help";
    if (arg.rfind("--", 0) != 0) return Usage("unexpected argument " + arg);
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = flags.find(name);
    if (it == flags.end()) return Usage("unknown flag --" + name);
    Flag& flag = it->second;
    if (flag.takes_value && !has_value) {
      if (i + 1 >= argc) return Usage("--" + name + " needs a value");
      value = argv[++i];
    } else if (!flag.takes_value && has_value) {
      return Usage("--" + name + " takes no value");
    }
    flag.value = value;
    flag.set = true;
  }
  if (flags["help"].set) {
    std::cout << kUsage;
    return 0;
  }
  if (flags["version"].set) {
    std::cout << "stockade-node " << STOCKADE_VERSION << "\n";
    return 0;
  }

  LogLevel level;
  if (!stockade::distribution::ParseLogLevel(flags["log-level"].value,
                                             &level)) {
    return Usage("--log-level must be debug, info, warning or error");
  }

  const bool denials_only = flags["denials-only"].set;
  const std::string& denials = flags["denials"].value;
  if (denials != "on" && denials != "off") {
    return Usage("--denials must be on or off");
  }
  stockade::node::denials::CollectorOptions collect;
  collect.store_root = flags["store"].value;
  collect.node_name =
      flags["node-name"].set ? flags["node-name"].value : DefaultNodeName();
  if (!absl::SimpleAtoi(flags["denial-burst"].value, &collect.burst) ||
      collect.burst < 1 ||
      !absl::SimpleAtod(flags["denial-rate"].value, &collect.rate) ||
      collect.rate <= 0) {
    return Usage(
        "--denial-burst wants a whole number >= 1, --denial-rate a "
        "number > 0");
  }
  collect.enable_audit = flags["enable-audit"].set;
  collect.log_all_netns = flags["log-all-netns"].set;
  auto log = stockade::distribution::StderrJsonLog("node", level);
  // SIGTERM/SIGINT are taken by sigwait below; block them before any
  // thread (the collector's) starts, so that none of them gets one.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::unique_ptr<stockade::node::denials::Collector> collector;
  // Collecting denials is best effort beside the agent (logged when it
  // cannot), the whole job with --denials-only.
  auto start_collector = [&]() -> bool {
    auto started = stockade::node::denials::Collector::Start(collect);
    if (!started.ok()) {
      log(LogLevel::kError, "cannot collect denials",
          {{"error", std::string(started.status().message())}});
      return false;
    }
    collector = *std::move(started);
    log(LogLevel::kInfo, "collecting denials",
        {{"sources", collector->sources()},
         {"audit", collector->enabled_audit() ? "turned on" : "as it was"},
         {"log", stockade::node::denials::DenialDir(collect.store_root)}});
    if (!collector->warning().empty()) {
      log(LogLevel::kWarning, collector->warning(), {});
    }
    return true;
  };
  if (denials_only) {
    if (!start_collector()) return 1;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log(LogLevel::kInfo, "stopping",
        {{"signal", strsignal(sig)},
         {"logged", absl::StrCat(collector->stats().logged.load())},
         {"suppressed", absl::StrCat(collector->stats().suppressed.load())},
         {"unattributed", absl::StrCat(collector->stats().unattributed.load())},
         {"overflows", absl::StrCat(collector->stats().overflows.load())}});
    return 0;
  }

  stockade::node::AgentOptions options;
  options.server = flags["server"].value;
  if (options.server.empty()) return Usage("--server HOST:PORT is required");
  options.node_name =
      flags["node-name"].set ? flags["node-name"].value : DefaultNodeName();
  options.insecure = flags["insecure"].set;
  options.cert_file = flags["tls-cert"].value;
  options.key_file = flags["tls-key"].value;
  options.ca_file = flags["tls-ca"].value;
  options.tls_server_name = flags["tls-server-name"].value;
  if (options.insecure &&
      (flags["tls-cert"].set || flags["tls-key"].set || flags["tls-ca"].set)) {
    return Usage("--insecure and --tls-* exclude each other");
  }
  if (!options.insecure &&
      (options.cert_file.empty() || options.key_file.empty() ||
       options.ca_file.empty())) {
    return Usage(
        "mTLS needs --tls-cert, --tls-key and --tls-ca (or --insecure for "
        "local development)");
  }
  options.store_root = flags["store"].value;
  const std::string& apparmor = flags["apparmor"].value;
  if (apparmor == "auto") {
    options.apparmor = stockade::node::AppArmorMode::kAuto;
  } else if (apparmor == "on") {
    options.apparmor = stockade::node::AppArmorMode::kOn;
  } else if (apparmor == "off") {
    options.apparmor = stockade::node::AppArmorMode::kOff;
  } else {
    return Usage("--apparmor must be auto, on or off");
  }
  if (flags["apparmor-parser"].set) {
    options.apparmor_options.parser = flags["apparmor-parser"].value;
  }
  options.apparmor_options.work_dir = options.store_root;
  struct DurationFlag {
    const char* name;
    absl::Duration* out;
  };
  for (const DurationFlag& d :
       {DurationFlag{"backoff-initial", &options.backoff_initial},
        DurationFlag{"backoff-max", &options.backoff_max},
        DurationFlag{"gc-interval", &options.gc_interval},
        DurationFlag{"report-interval", &options.report_interval},
        DurationFlag{"stale-ref-age", &options.stale_ref_age}}) {
    if (!ParseDuration(flags[d.name].value, d.out)) {
      return Usage(absl::StrCat("--", d.name, ": \"", flags[d.name].value,
                                "\" is not a positive duration (e.g. 5s)"));
    }
  }
  options.agent_version = STOCKADE_VERSION;
  options.log = stockade::distribution::StderrJsonLog("node", level);
  stockade::distribution::RouteGrpcLogs(options.log);

  // Signals are taken by a thread of their own (sigwait), never by a
  // handler: Stop() takes locks.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto agent = stockade::node::NodeAgent::Create(options);
  if (!agent.ok()) {
    options.log(LogLevel::kError, "cannot start",
                {{"error", std::string(agent.status().message())}});
    return 1;
  }
  if (denials == "on") {
    // Each denial logged also goes to the operator (Events, status counts,
    // metrics).
    collect.on_denial =
        [agent = agent->get()](const stockade::node::denials::Denial& d) {
          agent->ReportDenial(d.ToProto());
        };
    start_collector();
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    options.log(LogLevel::kInfo, "stopping", {{"signal", strsignal(sig)}});
    (*agent)->Stop();
  });
  (*agent)->Run();
  // Run returned: Stop was called by the signal thread.
  waiter.join();
  collector.reset();  // its thread reports to the agent: stop it first
  return 0;
}
