#include "shim/start/start_input.h"

#include "absl/strings/match.h"
#include "github.com/containerd/containerd/pkg/runtimeoptions/v1/api.pb.h"
#include "google/protobuf/any.pb.h"
#include "shim/start/start_protocol.pb.h"

namespace stockade::shim {
namespace {

constexpr absl::string_view kOptionsType = "runtimeoptions.v1.Options";

bool IsOptions(const google::protobuf::Any& any) {
  return absl::EndsWith(any.type_url(), kOptionsType);
}

// The runtime options Any of either input form, if any.
bool FindOptions(absl::string_view input, google::protobuf::Any* out) {
  if (input.empty()) return false;
  // A bare Any has only fields 1 (type_url) and 2 (value); BootstrapParams
  // has more, and its field 2 (namespace) is no Any value. Try the bare
  // form first: it is what 1.6 to 2.2 send.
  google::protobuf::Any any;
  if (any.ParseFromArray(input.data(), static_cast<int>(input.size())) &&
      IsOptions(any)) {
    *out = any;
    return true;
  }
  start::BootstrapParams params;
  if (!params.ParseFromArray(input.data(), static_cast<int>(input.size()))) {
    return false;
  }
  for (const start::Extension& e : params.extensions()) {
    if (IsOptions(e.value())) {
      *out = e.value();
      return true;
    }
  }
  return false;
}

}  // namespace

std::string ConfigPathFromStartInput(absl::string_view input) {
  google::protobuf::Any any;
  if (!FindOptions(input, &any)) return "";
  runtimeoptions::v1::Options options;
  if (!options.ParseFromString(any.value())) return "";
  return options.config_path();
}

std::string RuntimeInfoBytes(absl::string_view input,
                             const std::string& version,
                             const std::string& runtime_features_json) {
  start::RuntimeInfo info;
  info.set_name("io.containerd.stockade.v1");
  info.mutable_version()->set_version(version);
  google::protobuf::Any options;
  if (FindOptions(input, &options)) *info.mutable_options() = options;
  if (!runtime_features_json.empty()) {
    info.mutable_features()->set_type_url(kFeaturesTypeUrl);
    info.mutable_features()->set_value(runtime_features_json);
  }
  (*info.mutable_annotations())["stockade.dev/enforces"] =
      "seccomp,landlock,nftables,oci,apparmor-where-enabled";
  return info.SerializeAsString();
}

}  // namespace stockade::shim
