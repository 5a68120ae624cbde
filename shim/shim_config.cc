#include "shim/shim_config.h"

#include <sys/apparmor.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "operator/compiler/manifest/manifest.h"
#include "stockade/v1/shim_config.pb.h"

namespace stockade::shim {

absl::StatusOr<TaskServiceConfig> LoadShimConfig(
    const std::string& path, const std::string& self_dir,
    const std::string& containerd_ns) {
  v1::ShimConfig file;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat("stockade: cannot read shim config ", path));
    }
    std::stringstream text;
    text << in.rdbuf();
    std::vector<compiler::Problem> problems =
        compiler::DecodeInto(text.str(), path, &file);
    if (!problems.empty()) {
      std::vector<std::string> lines;
      for (const auto& p : problems) lines.push_back(p.ToString());
      return absl::InvalidArgumentError(absl::StrCat(
          "stockade: bad shim config: ", absl::StrJoin(lines, "; ")));
    }
  }
  TaskServiceConfig config;
  config.containerd_namespace = containerd_ns;
  config.policy.store_root =
      file.store().empty() ? "/var/lib/stockade" : file.store();
  config.policy.init_binary = file.init().empty()
                                  ? absl::StrCat(self_dir, "/stockade-init")
                                  : file.init();
  config.policy.nft_helper = file.nft_helper().empty()
                                 ? absl::StrCat(self_dir, "/stockade-nft")
                                 : file.nft_helper();
  if (!file.seccomp_cache().empty()) {
    config.policy.seccomp_cache_dir = file.seccomp_cache();
  }
  config.policy.default_policy = file.default_policy();
  config.policy.apparmor_enabled = aa_is_enabled() == 1;
  config.runtime.runc_binary =
      file.runc_binary().empty() ? "runc" : file.runc_binary();
  config.runtime.runc_root =
      file.runc_root().empty() ? "/run/containerd/runc" : file.runc_root();
  config.runtime.systemd_cgroup = file.systemd_cgroup();
  return config;
}

}  // namespace stockade::shim
