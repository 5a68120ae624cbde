// stockade-node-install: installs the stockade runtime onto a node and
// removes it (node/install/installer.h); `watch` waits in the node
// DaemonSet and removes it when the DaemonSet is deleted.
#include <signal.h>

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "node/install/installer.h"
#include "operator/kube/client.h"
#include "operator/kube/kubeconfig.h"

namespace {

using stockade::node::install::InstallOptions;

constexpr char kUsage[] =
    R"(stockade-node-install: puts the stockade runtime onto a node, or takes it off

Usage: stockade-node-install install|uninstall|watch [flags]

  install    copies containerd-shim-stockade-v1, stockade-init and stockade-nft
             to <prefix>/bin, links the shim into --link-dir, writes the shim's
             configuration, and adds the runtime handler to containerd's
             configuration (a marked block in the file for containerd 1.x; a
             drop-in for containerd 2.x when the file imports one). Idempotent.
  uninstall  removes all of that; containerd's configuration is as it was.
  watch      waits for SIGTERM; then uninstalls if the DaemonSet named by
             --daemonset is gone or being deleted (helm uninstall), and leaves
             everything in place otherwise (an update, a node drain).

Flags (host paths; defaults in brackets):
  --host-root DIR          where the host's / is mounted [/]
  --payload DIR            the binaries to install [/opt/stockade/payload]
  --prefix DIR             binaries go to DIR/bin [/opt/stockade]
  --link-dir DIR           link the shim here, "" for none [/usr/local/bin]
  --containerd-config FILE containerd's configuration
                           [/etc/containerd/config.toml]
  --shim-config FILE       the shim's settings [/etc/stockade/shim.yaml]
  --store DIR              the node store [/var/lib/stockade]
  --runtime-handler NAME   the RuntimeClass handler [stockade]
  --restart-containerd[=BOOL]
                           restart containerd (systemctl, in the host's
                           namespaces: needs hostPID and privilege) when its
                           configuration changed [false]
  --purge-store[=BOOL]     uninstall also deletes the node store [false]
  --daemonset NS/NAME      watch: the DaemonSet this pod belongs to
  --kubeconfig FILE        watch: instead of the in-cluster configuration
)";

int Usage(const std::string& error) {
  std::cerr << "stockade-node-install: " << error << "\n\n" << kUsage;
  return 2;
}

bool ParseBool(const std::string& v, bool* out) {
  if (v.empty() || v == "true") {
    *out = true;
  } else if (v == "false") {
    *out = false;
  } else {
    return false;
  }
  return true;
}

int Report(const char* verb, const absl::Status& status,
           const std::vector<std::string>& log) {
  for (const std::string& line : log) {
    std::cout << "stockade-node-install: " << line << "\n";
  }
  if (!status.ok()) {
    std::cerr << "stockade-node-install: " << verb
              << " failed: " << status.message() << "\n";
    return 1;
  }
  std::cout << "stockade-node-install: " << verb << " done\n" << std::flush;
  return 0;
}

constexpr stockade::kube::Resource kDaemonSet{"apps", "v1", "daemonsets",
                                              "DaemonSet", true};

// Whether the DaemonSet is being removed: gone, being deleted, or our own
// access to it revoked (helm deletes the release's RBAC with it). Any other
// failure (the apiserver unreachable) answers false: the runtime stays.
bool DaemonSetGoing(const std::string& kubeconfig, const std::string& ns,
                    const std::string& name, std::string* why) {
  auto config = stockade::kube::LoadConfig(kubeconfig);
  if (!config.ok()) {
    *why = absl::StrCat("no Kubernetes configuration: ",
                        config.status().message());
    return false;
  }
  auto client = stockade::kube::Client::FromConfig(*std::move(config));
  if (!client.ok()) {
    *why = std::string(client.status().message());
    return false;
  }
  auto ds = (*client)->Get(kDaemonSet, ns, name);
  if (ds.ok()) {
    if (ds->contains("metadata") &&
        (*ds)["metadata"].contains("deletionTimestamp")) {
      *why = "the DaemonSet is being deleted";
      return true;
    }
    *why = "the DaemonSet is still there (an update or a drain)";
    return false;
  }
  switch (ds.status().code()) {
    case absl::StatusCode::kNotFound:
      *why = "the DaemonSet is gone";
      return true;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      *why = absl::StrCat("access to the DaemonSet was revoked with it (",
                          ds.status().message(), ")");
      return true;
    default:
      *why = absl::StrCat("cannot tell whether the DaemonSet is going (",
                          ds.status().message(), ")");
      return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("name a command: install, uninstall or watch");
  std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command != "install" && command != "uninstall" && command != "watch") {
    return Usage(absl::StrCat("unknown command \"", command,
                              "\" (install, uninstall or watch)"));
  }
  InstallOptions options;
  std::string daemonset, kubeconfig;
  std::map<std::string, std::string*> strings = {
      {"host-root", &options.host_root},
      {"payload", &options.payload},
      {"prefix", &options.prefix},
      {"link-dir", &options.link_dir},
      {"containerd-config", &options.containerd_config},
      {"shim-config", &options.shim_config},
      {"store", &options.store},
      {"runtime-handler", &options.handler},
      {"daemonset", &daemonset},
      {"kubeconfig", &kubeconfig}};
  std::map<std::string, bool*> bools = {
      {"restart-containerd", &options.restart_containerd},
      {"purge-store", &options.purge_store}};
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (!absl::StartsWith(arg, "--")) {
      return Usage(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (auto it = strings.find(name); it != strings.end()) {
      if (!has_value) {
        if (i + 1 >= argc) return Usage("--" + name + " needs a value");
        value = argv[++i];
      }
      *it->second = value;
    } else if (auto b = bools.find(name); b != bools.end()) {
      if (!ParseBool(value, b->second)) {
        return Usage(
            absl::StrCat("--", name, "=", value, ": give true or false"));
      }
    } else {
      return Usage("unknown flag --" + name);
    }
  }

  std::vector<std::string> log;
  if (command == "install") {
    absl::Status s = stockade::node::install::Install(options, &log);
    return Report("install", s, log);
  }
  if (command == "uninstall") {
    absl::Status s = stockade::node::install::Uninstall(options, &log);
    return Report("uninstall", s, log);
  }

  std::vector<std::string> ds = absl::StrSplit(daemonset, '/');
  if (ds.size() != 2 || ds[0].empty() || ds[1].empty()) {
    return Usage("watch needs --daemonset NAMESPACE/NAME");
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::cout << "stockade-node-install: watching; on SIGTERM the runtime is "
               "removed if DaemonSet "
            << daemonset << " is being deleted\n"
            << std::flush;
  int sig = 0;
  sigwait(&signals, &sig);
  std::string why;
  if (!DaemonSetGoing(kubeconfig, ds[0], ds[1], &why)) {
    std::cout << "stockade-node-install: stopping and leaving the runtime "
                 "installed: "
              << why << "\n";
    return 0;
  }
  std::cout << "stockade-node-install: uninstalling: " << why << "\n";
  absl::Status s = stockade::node::install::Uninstall(options, &log);
  return Report("uninstall", s, log);
}
