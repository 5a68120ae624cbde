// The node installer: puts the shim and its helpers onto a node, adds the
// stockade runtime handler to containerd's configuration, and takes all of it
// away again. Every path is a host path; `host_root` is where the host's
// root is mounted (/host in the DaemonSet, / when run on the host itself).
#ifndef STOCKADE_NODE_INSTALL_INSTALLER_H_
#define STOCKADE_NODE_INSTALL_INSTALLER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace stockade::node::install {

struct InstallOptions {
  std::string host_root = "/";
  // Where the binaries to install are (inside the installer's image).
  std::string payload = "/opt/stockade/payload";
  // Binaries go to <prefix>/bin.
  std::string prefix = "/opt/stockade";
  // containerd-shim-stockade-v1 is also linked here, so that runtime
  // io.containerd.stockade.v1 resolves on containerd's PATH (`ctr run
  // --runtime`). "" links nothing.
  std::string link_dir = "/usr/local/bin";
  std::string containerd_config = "/etc/containerd/config.toml";
  std::string shim_config = "/etc/stockade/shim.yaml";
  std::string store = "/var/lib/stockade";
  std::string handler = "stockade";
  // Restart containerd (systemctl, in the host's namespaces) after changing
  // its configuration; containerd reads it only when it starts.
  bool restart_containerd = false;
  // Uninstall only: also delete the node store.
  bool purge_store = false;
};

// The binaries installed (from the payload into <prefix>/bin).
inline const std::vector<std::string>& PayloadBinaries() {
  static const auto* names = new std::vector<std::string>{
      "containerd-shim-stockade-v1", "stockade-init", "stockade-nft"};
  return *names;
}

// Idempotent. Each line of `log` says what was done (written, unchanged).
// On an error nothing of containerd's configuration has changed.
absl::Status Install(const InstallOptions& options,
                     std::vector<std::string>* log);

// Removes what Install added: the runtime block or drop-in (the
// configuration as it was before), the link, the binaries, the shim
// configuration; the store only with purge_store. Idempotent.
absl::Status Uninstall(const InstallOptions& options,
                       std::vector<std::string>* log);

}  // namespace stockade::node::install

#endif  // STOCKADE_NODE_INSTALL_INSTALLER_H_
