#include "tests/support/confined_bed.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "store/store.h"

namespace stockade::testing {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<ConfinedBed>> ConfinedBed::Start(
    const std::string& name) {
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "confined containers need root (containerd, runc, cgroups)");
  }
  std::unique_ptr<ConfinedBed> bed(new ConfinedBed());
  std::string tmpl = absl::StrCat("/tmp/stockade-", name, "-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", tmpl));
  }
  bed->dir_ = tmpl;
  bed->ns_ = absl::StrCat(name, "-", getpid());
  bed->store_ = bed->dir_ + "/store";
  absl::StatusOr<store::Store> store = store::Store::Open(bed->store_);
  if (!store.ok()) return store.status();
  bed->shim_config_ = bed->dir_ + "/shim.yaml";
  std::ofstream(bed->shim_config_) << "store: " << bed->store_ << "\n";

  ContainerdOptions options;
  options.ns = bed->ns_;
  absl::StatusOr<std::unique_ptr<ContainerdFixture>> containerd =
      ContainerdFixture::Start(options);
  if (!containerd.ok()) return containerd.status();
  bed->containerd_ = *std::move(containerd);
  absl::StatusOr<std::string> rootfs = bed->containerd_->NewRootfs(name);
  if (!rootfs.ok()) return rootfs.status();
  bed->rootfs_ = *rootfs;
  std::error_code error;
  fs::copy_file(absl::StrCat(STOCKADE_BIN_DIR, "/stockade-probe"),
                bed->rootfs_ + "/bin/probe", error);
  fs::create_directories(bed->rootfs_ + "/usr/bin", error);
  for (const char* other : {"/usr/bin/pip", "/usr/bin/other"}) {
    if (error) break;
    fs::copy_file(bed->rootfs_ + "/bin/busybox", bed->rootfs_ + other,
                  fs::copy_options::overwrite_existing, error);
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("the bed's root ", bed->rootfs_, ": ", error.message()));
  }
  return bed;
}

ConfinedBed::~ConfinedBed() {
  containerd_.reset();
  if (!dir_.empty()) {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
}

absl::StatusOr<std::string> ConfinedBed::Install(
    const std::string& policy_yaml) {
  compiler::DecodeResult decoded = compiler::DecodeManifests(
      absl::StrReplaceAll(policy_yaml, {{"NS", ns_}}), "policy.yaml");
  if (!decoded.problems.empty()) {
    return absl::InvalidArgumentError(decoded.problems[0].ToString());
  }
  if (decoded.documents.size() != 1 ||
      !std::holds_alternative<v1::AgentPolicy>(decoded.documents[0].object)) {
    return absl::InvalidArgumentError("want one AgentPolicy");
  }
  compiler::CompileResult compiled = compiler::CompileAgentPolicy(
      std::get<v1::AgentPolicy>(decoded.documents[0].object), {}, {});
  if (!compiled.compiled) {
    return absl::InvalidArgumentError(compiled.problems.at(0).ToString());
  }
  absl::StatusOr<store::Store> store = store::Store::Open(store_);
  if (!store.ok()) return store.status();
  if (absl::Status s = store->Install(*compiled.compiled); !s.ok()) return s;
  return compiled.compiled->hash();
}

CommandResult ConfinedBed::Run(RunSpec spec, const std::string& policy) {
  spec.runtime = kStockadeRuntime;
  if (spec.rootfs.empty() && spec.image.empty()) spec.rootfs = rootfs_;
  if (!policy.empty()) {
    spec.annotations.insert(spec.annotations.begin(),
                            {"stockade.dev/policy", policy});
  }
  spec.extra_args.insert(spec.extra_args.begin(),
                         {"--runtime-config-path", shim_config_});
  return containerd_->Run(spec, absl::Seconds(60));
}

}  // namespace stockade::testing
