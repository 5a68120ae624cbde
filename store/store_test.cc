#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace stockade::store {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good()) << path;
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

stockade::v1::CompiledPolicy MakePolicy(const std::string& ns,
                                        const std::string& name,
                                        const std::string& seed) {
  stockade::v1::CompiledPolicy p;
  p.set_hash(Sha256Hex(ns + "/" + name + "/" + seed));
  p.mutable_source()->set_kind("AgentPolicy");
  p.mutable_source()->set_namespace_(ns);
  p.mutable_source()->set_name(name);
  p.mutable_source()->set_generation(3);
  p.mutable_apparmor()->set_name("stockade." + ns + "." + name);
  p.set_seccomp_json(R"({"defaultAction":"SCMP_ACT_ERRNO"})");
  p.mutable_oci()->set_pids_limit(64);
  p.mutable_effective()->mutable_processes()->set_max(64);
  p.set_nftables("table inet stockade {}\n" + seed);
  p.set_compiler_version("0.1.0");
  return p;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/store_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/store";
    auto store = Store::Open(root_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_.emplace(*std::move(store));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Store& store() { return *store_; }

  std::string dir_;
  std::string root_;
  std::optional<Store> store_;
};

void ExpectSame(const stockade::v1::CompiledPolicy& a,
                const stockade::v1::CompiledPolicy& b) {
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(a, b))
      << a.DebugString() << "\nvs\n"
      << b.DebugString();
}

TEST_F(StoreTest, OpenCreatesLayoutWithModes) {
  const mode_t old = umask(077);
  auto store = Store::Open(dir_ + "/other/deeper");
  umask(old);
  ASSERT_TRUE(store.ok()) << store.status();
  for (const char* d : {"/v1", "/v1/policies", "/v1/index", "/v1/refs"}) {
    EXPECT_TRUE(fs::is_directory(dir_ + "/other/deeper" + d)) << d;
    EXPECT_EQ(Mode(dir_ + "/other/deeper" + d), 0755u) << d;
  }
  // Opening again is fine; a file as root is not.
  EXPECT_TRUE(Store::Open(dir_ + "/other/deeper").ok());
  WriteAll(dir_ + "/file", "x");
  auto bad = Store::Open(dir_ + "/file");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(dir_ + "/file"));
}

TEST_F(StoreTest, InstallResolveRoundTrip) {
  const auto p = MakePolicy("team-a", "research", "1");
  const mode_t old = umask(077);
  const absl::Status installed = store().Install(p);
  umask(old);
  ASSERT_TRUE(installed.ok()) << installed;
  auto got = store().Resolve("team-a", "research");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, p);

  const std::string policy_path = root_ + "/v1/policies/" + p.hash() + ".binpb";
  const std::string index_path = root_ + "/v1/index/team-a/research.json";
  EXPECT_EQ(store().PolicyPath(p.hash()), policy_path);
  EXPECT_EQ(store().IndexPath("team-a", "research"), index_path);
  EXPECT_EQ(Mode(policy_path), 0644u);
  EXPECT_EQ(Mode(index_path), 0644u);
  EXPECT_EQ(Mode(root_ + "/v1/index/team-a"), 0755u);
  const std::string bytes = ReadAll(policy_path);
  EXPECT_EQ(ReadAll(index_path), "{\"hash\":\"" + p.hash() +
                                     "\",\"sha256\":\"" + Sha256Hex(bytes) +
                                     "\",\"source\":\"AgentPolicy\"}\n");
  // No temporary files left behind.
  for (const auto& e : fs::recursive_directory_iterator(root_)) {
    EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".tmp.")));
  }
}

TEST_F(StoreTest, InstallIsDeterministic) {
  const auto p = MakePolicy("team-a", "research", "1");
  ASSERT_TRUE(store().Install(p).ok());
  const std::string first = ReadAll(store().PolicyPath(p.hash())) +
                            ReadAll(store().IndexPath("team-a", "research"));
  ASSERT_TRUE(store().Install(p).ok());
  EXPECT_EQ(ReadAll(store().PolicyPath(p.hash())) +
                ReadAll(store().IndexPath("team-a", "research")),
            first);
}

TEST_F(StoreTest, MissingEntryIsNotFound) {
  auto got = store().Resolve("team-a", "nothing");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(),
            "no policy \"team-a/nothing\" in store " + root_);
  got = store().Resolve("", "guard");
  EXPECT_EQ(got.status().message(), "no policy \"guard\" in store " + root_);
}

TEST_F(StoreTest, OverwriteWithNewHashThenGarbageCollect) {
  const auto v1 = MakePolicy("team-a", "research", "1");
  const auto v2 = MakePolicy("team-a", "research", "2");
  ASSERT_NE(v1.hash(), v2.hash());
  ASSERT_TRUE(store().Install(v1).ok());
  ASSERT_TRUE(store().Install(v2).ok());
  auto got = store().Resolve("team-a", "research");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, v2);
  // The old version stays for running containers until collected.
  EXPECT_TRUE(fs::exists(store().PolicyPath(v1.hash())));

  // Kept while a running container uses it.
  auto removed = store().GarbageCollect({v1.hash()});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, IsEmpty());
  EXPECT_TRUE(fs::exists(store().PolicyPath(v1.hash())));

  removed = store().GarbageCollect({});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, ElementsAre(v1.hash()));
  EXPECT_FALSE(fs::exists(store().PolicyPath(v1.hash())));
  EXPECT_TRUE(fs::exists(store().PolicyPath(v2.hash())));
  ASSERT_TRUE(store().Resolve("team-a", "research").ok());
}

TEST_F(StoreTest, GarbageCollectRemovesStaleTempFilesAndRemovedEntries) {
  const auto p = MakePolicy("team-a", "research", "1");
  ASSERT_TRUE(store().Install(p).ok());
  const std::string stale = root_ + "/v1/policies/.abc.binpb.tmp.123456";
  WriteAll(stale, "half");
  ASSERT_TRUE(store().Remove("team-a", "research").ok());
  EXPECT_EQ(store().Remove("team-a", "research").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store().Resolve("team-a", "research").status().code(),
            absl::StatusCode::kNotFound);
  auto removed = store().GarbageCollect({});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, ElementsAre(p.hash()));
  EXPECT_FALSE(fs::exists(stale));
}

TEST_F(StoreTest, GarbageCollectFailsClosedOnBadIndex) {
  const auto p = MakePolicy("team-a", "research", "1");
  ASSERT_TRUE(store().Install(p).ok());
  WriteAll(store().IndexPath("team-a", "research"), "garbage");
  auto removed = store().GarbageCollect({});
  ASSERT_FALSE(removed.ok());
  EXPECT_THAT(std::string(removed.status().message()),
              HasSubstr("nothing removed"));
  EXPECT_THAT(std::string(removed.status().message()),
              HasSubstr(store().IndexPath("team-a", "research")));
  EXPECT_TRUE(fs::exists(store().PolicyPath(p.hash())));
}

TEST_F(StoreTest, NamesWithDotsAndClusterScope) {
  const auto dotted = MakePolicy("team-a", "research.agent.v2", "1");
  const auto cluster = MakePolicy("", "baseline.guard", "1");
  ASSERT_TRUE(store().Install(dotted).ok());
  ASSERT_TRUE(store().Install(cluster).ok());
  EXPECT_TRUE(fs::exists(root_ + "/v1/index/team-a/research.agent.v2.json"));
  EXPECT_TRUE(fs::exists(root_ + "/v1/index/_cluster/baseline.guard.json"));
  auto got = store().Resolve("team-a", "research.agent.v2");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, dotted);
  got = store().Resolve("", "baseline.guard");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, cluster);
  // "research.agent" is another name, not a prefix match.
  EXPECT_EQ(store().Resolve("team-a", "research.agent").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, ListSorted) {
  ASSERT_TRUE(store().Install(MakePolicy("team-b", "x", "1")).ok());
  ASSERT_TRUE(store().Install(MakePolicy("team-a", "z", "1")).ok());
  ASSERT_TRUE(store().Install(MakePolicy("team-a", "a.b", "1")).ok());
  ASSERT_TRUE(store().Install(MakePolicy("", "guard", "1")).ok());
  WriteAll(root_ + "/v1/index/team-a/.z.json.tmp.abcdef", "ignored");
  auto list = store().List();
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> keys;
  for (const IndexEntry& e : *list) {
    keys.push_back(e.namespace_ + "/" + e.name);
    EXPECT_EQ(e.source, "AgentPolicy");
    EXPECT_EQ(e.sha256, Sha256Hex(ReadAll(store().PolicyPath(e.hash))));
  }
  EXPECT_THAT(keys,
              ElementsAre("/guard", "team-a/a.b", "team-a/z", "team-b/x"));
}

TEST_F(StoreTest, BadNamesAndHashesRejected) {
  for (const char* name :
       {"", ".", "..", "../x", "a/b", "Upper", "-a", "a-", "a_b"}) {
    auto p = MakePolicy("team-a", name, "1");
    const absl::Status s = store().Install(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_EQ(store().Resolve("team-a", name).status().code(),
              absl::StatusCode::kInvalidArgument)
        << name;
  }
  for (const char* ns : {"..", "a/b", "_cluster", "a.b", "UP"}) {
    EXPECT_EQ(store().Install(MakePolicy(ns, "x", "1")).code(),
              absl::StatusCode::kInvalidArgument)
        << ns;
  }
  for (const char* hash :
       {"", "abc", "../../etc/passwd",
        "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"}) {
    auto p = MakePolicy("team-a", "x", "1");
    p.set_hash(hash);
    const absl::Status s = store().Install(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << hash;
    EXPECT_THAT(std::string(s.message()), HasSubstr("hash")) << hash;
  }
  // Nothing escaped the store.
  EXPECT_EQ(
      std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

class StoreCorruptionTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    policy_ = MakePolicy("team-a", "research", "1");
    ASSERT_TRUE(store().Install(policy_).ok());
    policy_path_ = store().PolicyPath(policy_.hash());
    index_path_ = store().IndexPath("team-a", "research");
  }
  std::string ResolveError() {
    auto got = store().Resolve("team-a", "research");
    EXPECT_FALSE(got.ok());
    if (got.ok()) return "";
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
    return std::string(got.status().message());
  }
  stockade::v1::CompiledPolicy policy_;
  std::string policy_path_;
  std::string index_path_;
};

TEST_F(StoreCorruptionTest, TruncatedPolicyFile) {
  const std::string bytes = ReadAll(policy_path_);
  WriteAll(policy_path_, bytes.substr(0, bytes.size() / 2));
  const std::string msg = ResolveError();
  EXPECT_THAT(msg, HasSubstr("policy file " + policy_path_ + " is corrupt"));
  EXPECT_THAT(msg, HasSubstr("its sha256 is " +
                             Sha256Hex(bytes.substr(0, bytes.size() / 2))));
  EXPECT_THAT(msg, HasSubstr(index_path_));
}

TEST_F(StoreCorruptionTest, FlippedByte) {
  std::string bytes = ReadAll(policy_path_);
  bytes[bytes.size() / 3] ^= 0x01;
  WriteAll(policy_path_, bytes);
  EXPECT_THAT(ResolveError(),
              HasSubstr("policy file " + policy_path_ + " is corrupt"));
}

TEST_F(StoreCorruptionTest, EmptyPolicyFile) {
  WriteAll(policy_path_, "");
  EXPECT_THAT(ResolveError(), HasSubstr("is corrupt"));
}

TEST_F(StoreCorruptionTest, IndexNamesMissingPolicy) {
  const std::string other = Sha256Hex("other");
  WriteAll(index_path_, "{\"hash\":\"" + other + "\",\"sha256\":\"" +
                            Sha256Hex("x") + "\",\"source\":\"AgentPolicy\"}");
  const std::string msg = ResolveError();
  EXPECT_THAT(
      msg, HasSubstr("index entry " + index_path_ + " names policy " + other));
  EXPECT_THAT(msg, HasSubstr(store().PolicyPath(other) + " does not exist"));
}

TEST_F(StoreCorruptionTest, WrongHashInIndex) {
  // The index names hash H2 and a file of that name exists with a matching
  // sha256, but it holds the policy with hash H1.
  const std::string other = Sha256Hex("other");
  const std::string bytes = ReadAll(policy_path_);
  WriteAll(store().PolicyPath(other), bytes);
  WriteAll(index_path_, "{\"hash\":\"" + other + "\",\"sha256\":\"" +
                            Sha256Hex(bytes) +
                            "\",\"source\":\"AgentPolicy\"}");
  const std::string msg = ResolveError();
  EXPECT_THAT(msg, HasSubstr("holds policy hash \"" + policy_.hash()));
  EXPECT_THAT(msg, HasSubstr("names " + other));
}

TEST_F(StoreCorruptionTest, WrongShaInIndex) {
  WriteAll(index_path_, "{\"hash\":\"" + policy_.hash() + "\",\"sha256\":\"" +
                            Sha256Hex("nope") +
                            "\",\"source\":\"AgentPolicy\"}");
  EXPECT_THAT(ResolveError(), HasSubstr("records " + Sha256Hex("nope")));
}

TEST_F(StoreCorruptionTest, PolicyOfAnotherName) {
  // An index entry copied from another name: the policy was not compiled for
  // this one.
  ASSERT_TRUE(store().Install(MakePolicy("team-a", "other", "1")).ok());
  WriteAll(index_path_, ReadAll(store().IndexPath("team-a", "other")));
  EXPECT_THAT(ResolveError(),
              HasSubstr("was compiled for \"team-a/other\", but index entry " +
                        index_path_ + " is for \"team-a/research\""));
}

TEST_F(StoreCorruptionTest, GarbageIndex) {
  const std::pair<const char*, const char*> cases[] = {
      {"garbage", "not valid JSON"},
      {"", "not valid JSON"},
      {"[1]", "not a JSON object"},
      {"{}", "\"hash\" missing"},
      {"{\"hash\": 5}", "\"hash\" missing or not a sha256 hex string"},
      {"{\"hash\": \"../../etc/passwd\"}", "\"hash\" missing"},
  };
  for (const auto& [text, want] : cases) {
    WriteAll(index_path_, text);
    const std::string msg = ResolveError();
    EXPECT_THAT(msg, HasSubstr("index entry " + index_path_ + ": " + want))
        << text;
  }
  WriteAll(index_path_, "{\"hash\":\"" + policy_.hash() + "\"}");
  EXPECT_THAT(ResolveError(), HasSubstr("\"sha256\" missing"));
  WriteAll(index_path_, "{\"hash\":\"" + policy_.hash() + "\",\"sha256\":\"" +
                            Sha256Hex("x") + "\"}");
  EXPECT_THAT(ResolveError(), HasSubstr("\"source\" missing"));
}

TEST_F(StoreTest, ReadersNeverSeeHalfWrittenFiles) {
  // A writer switches one name between two versions and collects garbage as
  // fast as it can; readers resolve all the while: each read is whole and
  // verified, never an error.
  const auto a = MakePolicy("team-a", "research", "a");
  auto b = MakePolicy("team-a", "research", "b");
  // Large enough that a write takes more than one syscall.
  b.set_nftables(std::string(1 << 20, '#'));
  ASSERT_TRUE(store().Install(a).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<int> reads{0};
  std::string first_error;
  std::thread writer([&] {
    auto w = Store::Open(root_);
    for (int i = 0; i < 100 && w.ok(); ++i) {
      if (!w->Install(i % 2 ? a : b).ok()) ++errors;
      if (!w->GarbageCollect({}).ok()) ++errors;
    }
    stop = true;
  });
  std::vector<std::thread> readers;
  std::mutex mu;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      auto s = Store::Open(root_);
      while (!stop) {
        auto got = s->Resolve("team-a", "research");
        ++reads;
        if (!got.ok() || (got->hash() != a.hash() && got->hash() != b.hash())) {
          ++errors;
          std::lock_guard<std::mutex> l(mu);
          if (first_error.empty()) first_error = got.status().ToString();
        }
      }
    });
  }
  writer.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_GT(reads.load(), 10);
}

TEST_F(StoreTest, WritePoliciesTouchesNoIndex) {
  const auto a = MakePolicy("team-a", "one", "a");
  const auto b = MakePolicy("", "two", "b");
  const std::vector<const stockade::v1::CompiledPolicy*> both = {&a, &b};
  ASSERT_TRUE(store().WritePolicies(both).ok());
  EXPECT_TRUE(fs::exists(store().PolicyPath(a.hash())));
  EXPECT_TRUE(fs::exists(store().PolicyPath(b.hash())));
  auto list = store().List();
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(*list, IsEmpty());
  auto held = store().ListPolicies();
  ASSERT_TRUE(held.ok());
  std::vector<std::string> want = {a.hash(), b.hash()};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*held, want);
  auto read = store().ReadPolicy(a.hash());
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSame(*read, a);
  // Identical content: not rewritten (same inode).
  struct stat before, after;
  ASSERT_EQ(stat(store().PolicyPath(a.hash()).c_str(), &before), 0);
  ASSERT_TRUE(store().WritePolicies(both).ok());
  ASSERT_EQ(stat(store().PolicyPath(a.hash()).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

TEST_F(StoreTest, WritePoliciesValidatesAllFirst) {
  const auto a = MakePolicy("team-a", "one", "a");
  auto bad = MakePolicy("team-a", "two", "b");
  bad.set_hash("NOTHEX");
  const std::vector<const stockade::v1::CompiledPolicy*> both = {&a, &bad};
  auto s = store().WritePolicies(both);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_FALSE(fs::exists(store().PolicyPath(a.hash())));
}

TEST_F(StoreTest, ReadPolicyVerifies) {
  const auto a = MakePolicy("team-a", "one", "a");
  EXPECT_EQ(store().ReadPolicy(a.hash()).status().code(),
            absl::StatusCode::kNotFound);
  const std::vector<const stockade::v1::CompiledPolicy*> one = {&a};
  ASSERT_TRUE(store().WritePolicies(one).ok());
  WriteAll(store().PolicyPath(a.hash()), "garbage\xff");
  EXPECT_EQ(store().ReadPolicy(a.hash()).status().code(),
            absl::StatusCode::kDataLoss);
  const auto b = MakePolicy("team-a", "one", "b");
  WriteAll(store().PolicyPath(a.hash()), SerializePolicy(b));
  EXPECT_THAT(store().ReadPolicy(a.hash()).status().message(),
              HasSubstr("holds policy hash"));
  EXPECT_EQ(store().ReadPolicy("../x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, UpdateIndexSetsAndRemoves) {
  const auto a1 = MakePolicy("team-a", "one", "1");
  const auto a2 = MakePolicy("team-a", "one", "2");
  const auto c = MakePolicy("", "cluster", "c");
  const std::vector<const stockade::v1::CompiledPolicy*> all = {&a1, &a2, &c};
  ASSERT_TRUE(store().WritePolicies(all).ok());
  ASSERT_TRUE(store()
                  .UpdateIndex(
                      {{"team-a", "one", a1.hash()}, {"", "cluster", c.hash()}})
                  .ok());
  auto got = store().Resolve("team-a", "one");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, a1);
  got = store().Resolve("", "cluster");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, c);
  // The same bytes as Install writes.
  const std::string via_update = ReadAll(store().IndexPath("team-a", "one"));
  ASSERT_TRUE(store().Install(a1).ok());
  EXPECT_EQ(ReadAll(store().IndexPath("team-a", "one")), via_update);

  ASSERT_TRUE(store()
                  .UpdateIndex({{"team-a", "one", a2.hash()},
                                {"", "cluster", ""},
                                {"team-b", "absent", ""}})
                  .ok());
  got = store().Resolve("team-a", "one");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, a2);
  EXPECT_EQ(store().Resolve("", "cluster").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, UpdateIndexChangesNothingWhenOneChangeIsBad) {
  const auto a = MakePolicy("team-a", "one", "1");
  const auto b = MakePolicy("team-a", "two", "2");
  const std::vector<const stockade::v1::CompiledPolicy*> both = {&a, &b};
  ASSERT_TRUE(store().WritePolicies(both).ok());
  ASSERT_TRUE(store().UpdateIndex({{"team-a", "two", b.hash()}}).ok());
  const auto missing = MakePolicy("team-a", "three", "3");
  // A policy that is not in the store.
  auto s = store().UpdateIndex({{"team-a", "one", a.hash()},
                                {"team-a", "two", ""},
                                {"team-a", "three", missing.hash()}});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("not in store"));
  // A policy compiled for another name.
  s = store().UpdateIndex(
      {{"team-a", "one", a.hash()}, {"team-a", "four", b.hash()}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("compiled for \"team-a/two\""));
  // A bad key.
  s = store().UpdateIndex({{"team-a", "one", a.hash()}, {"Bad", "x", ""}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  auto list = store().List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "two");
}

TEST_F(StoreTest, RefsKeepPoliciesFromGarbageCollection) {
  const auto a = MakePolicy("team-a", "one", "1");
  const auto b = MakePolicy("team-a", "one", "2");
  const std::vector<const stockade::v1::CompiledPolicy*> both = {&a, &b};
  ASSERT_TRUE(store().WritePolicies(both).ok());
  ASSERT_TRUE(store().UpdateIndex({{"team-a", "one", b.hash()}}).ok());
  ASSERT_TRUE(store().AddRef(a.hash(), "k8s.io@c1").ok());
  ASSERT_TRUE(store().AddRef(a.hash(), "k8s.io@c2").ok());
  // Unindexed but referenced: kept.
  auto removed = store().GarbageCollect({});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, IsEmpty());
  auto refs = store().ListRefs();
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].hash, a.hash());
  EXPECT_EQ((*refs)[0].container_id, "k8s.io@c1");
  ASSERT_TRUE((*refs)[0].owner.ok()) << (*refs)[0].owner.status();
  EXPECT_EQ((*refs)[0].owner->pid, getpid());
  EXPECT_GT((*refs)[0].owner->start_time, 0u);
  EXPECT_THAT((*refs)[0].owner->pid_ns, HasSubstr("pid:["));
  EXPECT_LE((*refs)[0].modified, absl::Now());

  auto referenced = store().ReferencedHashes();
  ASSERT_TRUE(referenced.ok()) << referenced.status();
  EXPECT_THAT(*referenced, ElementsAre(a.hash()));

  ASSERT_TRUE(store().RemoveRef(a.hash(), "k8s.io@c1").ok());
  removed = store().GarbageCollect({});
  ASSERT_TRUE(removed.ok());
  EXPECT_THAT(*removed, IsEmpty());
  ASSERT_TRUE(store().RemoveRef(a.hash(), "k8s.io@c2").ok());
  // Removing twice is fine (a Delete retried).
  ASSERT_TRUE(store().RemoveRef(a.hash(), "k8s.io@c2").ok());
  EXPECT_FALSE(fs::exists(root_ + "/v1/refs/" + a.hash()));
  referenced = store().ReferencedHashes();
  ASSERT_TRUE(referenced.ok());
  EXPECT_THAT(*referenced, IsEmpty());
  removed = store().GarbageCollect({});
  ASSERT_TRUE(removed.ok());
  EXPECT_THAT(*removed, ElementsAre(a.hash()));
  EXPECT_TRUE(fs::exists(store().PolicyPath(b.hash())));
}

TEST_F(StoreTest, RefsCarryTheirPod) {
  const auto a = MakePolicy("team-a", "one", "1");
  const std::vector<const stockade::v1::CompiledPolicy*> one = {&a};
  ASSERT_TRUE(store().WritePolicies(one).ok());
  ASSERT_TRUE(store()
                  .AddRef(a.hash(), "c1",
                          RefPod{"team-a", "agent-0", "main", "researcher"})
                  .ok());
  ASSERT_TRUE(store().AddRef(a.hash(), "c2").ok());
  // Outside Kubernetes a container may still name its Agent.
  ASSERT_TRUE(store().AddRef(a.hash(), "c3", RefPod{"", "", "", "solo"}).ok());
  auto refs = store().ListRefs();
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), 3u);
  EXPECT_EQ((*refs)[0].pod.namespace_, "team-a");
  EXPECT_EQ((*refs)[0].pod.name, "agent-0");
  EXPECT_EQ((*refs)[0].pod.container, "main");
  EXPECT_EQ((*refs)[0].pod.agent, "researcher");
  EXPECT_TRUE((*refs)[0].owner.ok());
  EXPECT_TRUE((*refs)[1].pod.name.empty());
  EXPECT_TRUE((*refs)[1].pod.agent.empty());
  EXPECT_TRUE((*refs)[2].pod.name.empty());
  EXPECT_EQ((*refs)[2].pod.agent, "solo");
}

TEST_F(StoreTest, AddRefNeedsThePolicyAndValidNames) {
  const auto a = MakePolicy("team-a", "one", "1");
  auto s = store().AddRef(a.hash(), "c1");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("resolve the policy again"));
  ASSERT_TRUE(store().Install(a).ok());
  for (const char* bad : {"", ".hidden", "a/b", "..", "x y", "c\n"}) {
    EXPECT_EQ(store().AddRef(a.hash(), bad).code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_EQ(store().RemoveRef(a.hash(), bad).code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(store().AddRef("../../etc", "c1").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store().AddRef(a.hash(), std::string(200, 'x')).ok());
  EXPECT_EQ(store().AddRef(a.hash(), std::string(201, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
}

// Writes a reference file by hand, as another process would have.
void WriteRef(Store& store, const std::string& hash, const std::string& id,
              const std::string& json, absl::Duration age) {
  const std::string path = store.RefPath(hash, id);
  fs::create_directories(fs::path(path).parent_path());
  WriteAll(path, json);
  const absl::Time when = absl::Now() - age;
  struct timespec times[2] = {absl::ToTimespec(when), absl::ToTimespec(when)};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

std::string OwnerJson(int64_t pid, uint64_t start, const std::string& boot,
                      const std::string& ns) {
  return "{\"boot_id\":\"" + boot + "\",\"pid\":" + std::to_string(pid) +
         ",\"pid_ns\":\"" + ns + "\",\"start_time\":" + std::to_string(start) +
         "}\n";
}

TEST_F(StoreTest, RemoveStaleRefsOnlyWhenTheOwnerIsCertainlyGone) {
  const auto a = MakePolicy("team-a", "one", "1");
  ASSERT_TRUE(store().Install(a).ok());
  auto me = CurrentRefOwner();
  ASSERT_TRUE(me.ok()) << me.status();

  // A real process that recorded a reference and exited.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto s = Store::Open(root_);
    _exit(s.ok() && s->AddRef(a.hash(), "exited").ok() ? 0 : 1);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);

  const absl::Duration old = absl::Minutes(30);
  // Live: this process.
  ASSERT_TRUE(store().AddRef(a.hash(), "live").ok());
  WriteRef(store(), a.hash(), "live-old",
           OwnerJson(me->pid, me->start_time, me->boot_id, me->pid_ns), old);
  // A reused pid: this process's pid, another start time.
  WriteRef(store(), a.hash(), "reused",
           OwnerJson(me->pid, me->start_time + 1, me->boot_id, me->pid_ns),
           old);
  // Another boot.
  WriteRef(store(), a.hash(), "rebooted",
           OwnerJson(me->pid, me->start_time, "another-boot", me->pid_ns), old);
  // Another pid namespace: cannot tell, kept.
  WriteRef(store(), a.hash(), "other-ns",
           OwnerJson(999999, 1, me->boot_id, "pid:[1]"), old);
  // Unreadable: kept.
  WriteRef(store(), a.hash(), "garbage", "not json", old);
  // Gone but young: kept until min_age.
  WriteRef(store(), a.hash(), "young",
           OwnerJson(me->pid, me->start_time + 1, me->boot_id, me->pid_ns),
           absl::Seconds(1));
  // A temporary file of an AddRef that died.
  WriteRef(store(), a.hash(), ".x.tmp.abcdef", "", old);
  // The exited child's reference is recent: age it.
  {
    const std::string path = store().RefPath(a.hash(), "exited");
    const absl::Time when = absl::Now() - old;
    struct timespec times[2] = {absl::ToTimespec(when), absl::ToTimespec(when)};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }

  auto removed = store().RemoveStaleRefs(absl::Minutes(10));
  ASSERT_TRUE(removed.ok()) << removed.status();
  std::vector<std::string> ids;
  for (const Ref& r : *removed) ids.push_back(r.container_id);
  std::sort(ids.begin(), ids.end());
  EXPECT_THAT(ids, ElementsAre("exited", "rebooted", "reused"));
  EXPECT_FALSE(fs::exists(root_ + "/v1/refs/" + a.hash() + "/.x.tmp.abcdef"));
  auto left = store().ListRefs();
  ASSERT_TRUE(left.ok());
  ids.clear();
  for (const Ref& r : *left) ids.push_back(r.container_id);
  EXPECT_THAT(ids,
              ElementsAre("garbage", "live", "live-old", "other-ns", "young"));
  for (const Ref& r : *left) {
    EXPECT_EQ(r.owner.ok(), r.container_id != "garbage") << r.container_id;
  }
}

TEST_F(StoreTest, AddRefNeverReferencesACollectedPolicy) {
  // The shim's sequence (Resolve, AddRef; on NotFound resolve again) against
  // a writer that switches the index between two versions and collects as
  // fast as it can: once AddRef succeeded, the policy file stays.
  const auto a = MakePolicy("team-a", "research", "a");
  const auto b = MakePolicy("team-a", "research", "b");
  ASSERT_TRUE(store().Install(a).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<int> refs{0};
  std::atomic<int> retries{0};
  std::thread writer([&] {
    auto w = Store::Open(root_);
    for (int i = 0; i < 60 && w.ok(); ++i) {
      if (!w->Install(i % 2 ? a : b).ok()) ++errors;
      if (!w->GarbageCollect({}).ok()) ++errors;
    }
    stop = true;
  });
  std::thread shim([&] {
    auto s = Store::Open(root_);
    for (int i = 0; !stop; ++i) {
      auto got = s->Resolve("team-a", "research");
      if (!got.ok()) {
        ++errors;
        continue;
      }
      const std::string id = "c" + std::to_string(i);
      // Give the writer a chance to switch and collect in between.
      if (i % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      absl::Status added = s->AddRef(got->hash(), id);
      if (absl::IsNotFound(added)) {
        ++retries;
        continue;
      }
      if (!added.ok()) {
        ++errors;
        continue;
      }
      ++refs;
      // Whatever the writer does now, the file stays.
      for (int k = 0; k < 3; ++k) {
        if (!fs::exists(s->PolicyPath(got->hash()))) ++errors;
        std::this_thread::yield();
      }
      if (!s->RemoveRef(got->hash(), id).ok()) ++errors;
    }
  });
  writer.join();
  shim.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(refs.load(), 10);
  std::cout << "references " << refs << ", resolved again " << retries << "\n";
}

TEST(Sha256Test, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace stockade::store
