#include "operator/compiler/packed_policy.h"

#include <fstream>
#include <sstream>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"

namespace stockade::compiler {
namespace {

using ::google::protobuf::util::MessageDifferencer;

v1::CompiledPolicy CompileExample(const std::string& name) {
  const char* root = std::getenv("STOCKADE_SOURCE_DIR");
  std::ifstream in(std::string(root ? root : ".") + "/examples/policies/" +
                   name);
  std::ostringstream text;
  text << in.rdbuf();
  DecodeResult decoded = DecodeManifests(text.str(), name);
  EXPECT_TRUE(decoded.problems.empty());
  CompileResult result = CompileAgentPolicy(
      std::get<v1::AgentPolicy>(decoded.documents.at(0).object), {}, {});
  EXPECT_TRUE(result.problems.empty());
  return result.compiled.value_or(v1::CompiledPolicy());
}

TEST(PackedPolicyTest, UnpacksToThePolicyPacked) {
  for (const char* name : {"research-agent.yaml", "strict-agent.yaml"}) {
    const v1::CompiledPolicy policy = CompileExample(name);
    ASSERT_FALSE(policy.hash().empty()) << name;
    auto packed = PackedPolicy::Pack(policy);
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ((*packed)->hash(), policy.hash());
    EXPECT_EQ((*packed)->source().name(), policy.source().name());
    EXPECT_EQ((*packed)->serialized_size(), policy.ByteSizeLong());
    auto unpacked = (*packed)->Unpack();
    ASSERT_TRUE(unpacked.ok()) << unpacked.status();
    EXPECT_TRUE(MessageDifferencer::Equals(*unpacked, policy)) << name;
  }
}

// What the operator's memory target rests on: 10,000 policies must fit in
// well under 200 MB, so each is held in a small fraction of its wire size.
TEST(PackedPolicyTest, HoldsAFractionOfTheWireSize) {
  for (const char* name : {"research-agent.yaml", "strict-agent.yaml"}) {
    const v1::CompiledPolicy policy = CompileExample(name);
    auto packed = PackedPolicy::Pack(policy);
    ASSERT_TRUE(packed.ok());
    EXPECT_LT((*packed)->packed_size() * 6, (*packed)->serialized_size())
        << name << ": " << (*packed)->packed_size() << " of "
        << (*packed)->serialized_size() << " bytes";
  }
}

TEST(PackedPolicyTest, SameContentComparesTheBodies) {
  const v1::CompiledPolicy a = CompileExample("research-agent.yaml");
  v1::CompiledPolicy b = a;
  b.add_notes("one more note");
  auto pa = PackedPolicy::Pack(a);
  auto pa2 = PackedPolicy::Pack(a);
  auto pb = PackedPolicy::Pack(b);
  ASSERT_TRUE(pa.ok() && pa2.ok() && pb.ok());
  EXPECT_TRUE((*pa)->SameContent(**pa2));
  EXPECT_FALSE((*pa)->SameContent(**pb));
}

TEST(PackedPolicyTest, EmptyPolicyRoundTrips) {
  auto packed = PackedPolicy::Pack(v1::CompiledPolicy());
  ASSERT_TRUE(packed.ok());
  EXPECT_EQ((*packed)->serialized_size(), 0u);
  auto unpacked = (*packed)->Unpack();
  ASSERT_TRUE(unpacked.ok()) << unpacked.status();
  EXPECT_EQ(unpacked->ByteSizeLong(), 0u);
}

}  // namespace
}  // namespace stockade::compiler
