// Checks the C++ generated at build time from Debian's containerd protos:
// every type links into one descriptor pool (no gogo.proto clash) and the
// wire shapes the shim relies on have containerd's field numbers.
#include <string>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "github.com/containerd/containerd/pkg/runtimeoptions/v1/api.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;

int FieldNumber(const Descriptor* d, const std::string& field) {
  const auto* f = d->FindFieldByName(field);
  return f == nullptr ? -1 : f->number();
}

TEST(ContainerdProtoTest, TaskServiceHasEveryMethod) {
  // Referencing a message links its file in; then the pool knows it.
  const auto* service = containerd::task::v2::CreateTaskRequest::descriptor()
                            ->file()
                            ->FindServiceByName("Task");
  ASSERT_NE(service, nullptr);
  for (const char* m :
       {"State", "Create", "Start", "Delete", "Pids", "Pause", "Resume",
        "Checkpoint", "Kill", "Exec", "ResizePty", "CloseIO", "Update", "Wait",
        "Stats", "Connect", "Shutdown"}) {
    EXPECT_NE(service->FindMethodByName(m), nullptr) << m;
  }
  const auto* events =
      containerd::services::events::ttrpc::v1::ForwardRequest::descriptor()
          ->file()
          ->FindServiceByName("Events");
  ASSERT_NE(events, nullptr);
  EXPECT_NE(events->FindMethodByName("Forward"), nullptr);
}

TEST(ContainerdProtoTest, FieldNumbersMatchContainerd) {
  EXPECT_EQ(FieldNumber(containerd::task::v2::CreateTaskRequest::descriptor(),
                        "stdin"),
            5);
  EXPECT_EQ(FieldNumber(containerd::task::v2::CreateTaskRequest::descriptor(),
                        "terminal"),
            4);
  EXPECT_EQ(FieldNumber(containerd::task::v2::ExecProcessRequest::descriptor(),
                        "stdin"),
            4);
  EXPECT_EQ(FieldNumber(containerd::task::v2::DeleteResponse::descriptor(),
                        "exited_at"),
            3);
  EXPECT_EQ(
      FieldNumber(containerd::events::TaskExit::descriptor(), "exit_status"),
      4);
  EXPECT_EQ(FieldNumber(containerd::events::TaskDelete::descriptor(), "id"), 5);
  EXPECT_EQ(FieldNumber(containerd::events::TaskCreate::descriptor(), "pid"),
            6);
  EXPECT_EQ(FieldNumber(
                containerd::services::events::ttrpc::v1::Envelope::descriptor(),
                "event"),
            4);
  EXPECT_EQ(FieldNumber(containerd::runc::v1::Options::descriptor(),
                        "systemd_cgroup"),
            9);
  EXPECT_EQ(
      FieldNumber(runtimeoptions::v1::Options::descriptor(), "config_path"), 2);
  EXPECT_EQ(FieldNumber(containerd::types::Mount::descriptor(), "options"), 4);
}

TEST(ContainerdProtoTest, EveryTypeIsInOnePool) {
  // Building each file's descriptors in the generated pool fails loudly if
  // two files define the same names (e.g. gogo.proto under two paths).
  for (const Descriptor* d :
       {containerd::task::v2::CreateTaskRequest::descriptor(),
        containerd::events::TaskExit::descriptor(),
        containerd::services::events::ttrpc::v1::Envelope::descriptor(),
        containerd::runc::v1::Options::descriptor(),
        runtimeoptions::v1::Options::descriptor(),
        containerd::types::Mount::descriptor()}) {
    EXPECT_EQ(
        DescriptorPool::generated_pool()->FindMessageTypeByName(d->full_name()),
        d);
  }
  EXPECT_NE(
      DescriptorPool::generated_pool()->FindFileByName("gogoproto/gogo.proto"),
      nullptr);
}

TEST(ContainerdProtoTest, RoundTripsACreateRequest) {
  containerd::task::v2::CreateTaskRequest request;
  request.set_id("c1");
  request.set_bundle("/run/bundle");
  auto* mount = request.add_rootfs();
  mount->set_type("overlay");
  mount->add_options("lowerdir=/a");
  request.set_terminal(true);
  request.mutable_options()->set_type_url("containerd.runc.v1.Options");

  containerd::task::v2::CreateTaskRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_EQ(parsed.id(), "c1");
  EXPECT_EQ(parsed.rootfs(0).options(0), "lowerdir=/a");
  EXPECT_TRUE(parsed.terminal());
}

TEST(ContainerdProtoTest, RuntimeOptionsDecodeFromTheirWireBytes) {
  // runtimeoptions.v1.Options{type_url: "t", config_path: "/etc/x"}, encoded
  // by hand: tag 1 len 1 "t", tag 2 len 6 "/etc/x".
  const std::string wire("\x0a\x01t\x12\x06/etc/x", 11);
  runtimeoptions::v1::Options options;
  ASSERT_TRUE(options.ParseFromString(wire));
  EXPECT_EQ(options.type_url(), "t");
  EXPECT_EQ(options.config_path(), "/etc/x");
}

}  // namespace
