#include "shim/start/start_input.h"

#include <string>

#include "github.com/containerd/containerd/pkg/runtimeoptions/v1/api.pb.h"
#include "google/protobuf/any.pb.h"
#include "gtest/gtest.h"
#include "shim/start/start_protocol.pb.h"

namespace stockade::shim {
namespace {

google::protobuf::Any OptionsAny(const std::string& config_path) {
  runtimeoptions::v1::Options options;
  options.set_config_path(config_path);
  google::protobuf::Any any;
  any.set_type_url("containerd.runtimeoptions.v1.Options");
  any.set_value(options.SerializeAsString());
  return any;
}

TEST(StartInputTest, BareAnyOfContainerd16) {
  EXPECT_EQ(ConfigPathFromStartInput(
                OptionsAny("/etc/stockade/shim.yaml").SerializeAsString()),
            "/etc/stockade/shim.yaml");
}

TEST(StartInputTest, BootstrapParamsOfContainerd23) {
  start::BootstrapParams params;
  params.set_instance_id("abc");
  params.set_namespace_("k8s.io");
  params.set_containerd_version("2.3.0");
  google::protobuf::Any other;
  other.set_type_url("example.com/Other");
  other.set_value("\xff\xfe");
  *params.add_extensions()->mutable_value() = other;
  *params.add_extensions()->mutable_value() = OptionsAny("/etc/s.yaml");
  EXPECT_EQ(ConfigPathFromStartInput(params.SerializeAsString()),
            "/etc/s.yaml");
}

TEST(StartInputTest, NothingUsable) {
  EXPECT_EQ(ConfigPathFromStartInput(""), "");
  EXPECT_EQ(ConfigPathFromStartInput("\xff\xff\xff garbage"), "");
  google::protobuf::Any runc_options;  // another runtime's options
  runc_options.set_type_url("containerd.runc.v1.Options");
  runc_options.set_value(std::string("\x0a\x02\xff\xfe", 4));
  EXPECT_EQ(ConfigPathFromStartInput(runc_options.SerializeAsString()), "");
}

TEST(StartInputTest, RuntimeInfoEchoesOptionsAndFeatures) {
  const std::string input = OptionsAny("/etc/s.yaml").SerializeAsString();
  start::RuntimeInfo info;
  ASSERT_TRUE(info.ParseFromString(
      RuntimeInfoBytes(input, "0.1.0", R"({"ociVersionMin":"1.0.0"})")));
  EXPECT_EQ(info.name(), "io.containerd.stockade.v1");
  EXPECT_EQ(info.version().version(), "0.1.0");
  EXPECT_EQ(info.options().SerializeAsString(), input);
  EXPECT_EQ(info.features().type_url(), kFeaturesTypeUrl);
  EXPECT_EQ(info.features().value(), R"({"ociVersionMin":"1.0.0"})");

  ASSERT_TRUE(info.ParseFromString(RuntimeInfoBytes("", "0.1.0", "")));
  EXPECT_FALSE(info.has_options());
  EXPECT_FALSE(info.has_features());
}

}  // namespace
}  // namespace stockade::shim
