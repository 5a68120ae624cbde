#include "shim/spec/apply_spec.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace stockade::shim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

// What `runc spec` (runc 1.1) writes, plus a few fields containerd adds.
constexpr char kRuncSpec[] = R"json({
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": true,
    "user": {"uid": 1000, "gid": 1000},
    "args": ["python3", "agent.py"],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [
      {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
      {"type": "RLIMIT_NPROC", "hard": 100000, "soft": 100000}
    ],
    "noNewPrivileges": false,
    "apparmorProfile": "cri-containerd.apparmor.d",
    "oomScoreAdj": 1000
  },
  "root": {"path": "rootfs", "readonly": false},
  "hostname": "runc",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                 "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/tmp/agent/", "type": "bind", "source": "/host/scratch",
     "options": ["rbind", "rw"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "resources": {
      "devices": [{"allow": false, "access": "rwm"}],
      "pids": {"limit": 4096},
      "memory": {"limit": 536870912}
    },
    "namespaces": [
      {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
      {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
    ],
    "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
      "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
    ],
    "readonlyPaths": [
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
  },
  "annotations": {"io.kubernetes.cri.container-type": "container"},
  "x-unknown-extension": {"kept": [1, 2.5, null, "three"]}
})json";

stockade::v1::CompiledPolicy Policy() {
  stockade::v1::CompiledPolicy p;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        hash: "3f1a2b"
        apparmor { name: "stockade.team.research.3f1a2b" }
        seccomp_json: '{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,'
                      '"architectures":["SCMP_ARCH_X86_64"],'
                      '"syscalls":[{"names":["read","write"],'
                      '"action":"SCMP_ACT_ALLOW"}]}'
        oci {
          readonly_root: true
          mounts {
            destination: "/tmp/agent"
            type: "tmpfs"
            source: "tmpfs"
            options: [
              "nosuid",
              "nodev",
              "noexec",
              "size=67108864",
              "mode=1777"
            ]
          }
          mounts {
            destination: "/var/cache/agent"
            type: "tmpfs"
            source: "tmpfs"
            options: [
              "nosuid",
              "nodev",
              "noexec",
              "size=1048576",
              "mode=1777"
            ]
          }
          masked_paths: [
            "/etc/shadow",
            "/proc/kallsyms",
            "/proc/kcore",
            "/sys"
          ]
          readonly_paths: [ "/etc", "/proc/sys" ]
          capabilities: [ "CAP_CHOWN", "CAP_NET_BIND_SERVICE" ]
          no_new_privileges: true
          rlimits { type: "RLIMIT_CORE" hard: 0 soft: 0 }
          rlimits { type: "RLIMIT_NPROC" hard: 64 soft: 64 }
          pids_limit: 64
        }
      )pb",
      &p));
  return p;
}

Json Apply(const std::string& spec,
           const stockade::v1::CompiledPolicy& policy = Policy(),
           ApplySpecOptions options = {}) {
  auto out = ApplySpec(spec, policy, options);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return Json();
  return Json::parse(*out);
}

std::vector<std::string> Strings(const Json& j) {
  return j.get<std::vector<std::string>>();
}

TEST(ApplySpecTest, RootBecomesReadOnly) {
  Json out = Apply(kRuncSpec);
  EXPECT_EQ(out["root"]["readonly"], true);
  EXPECT_EQ(out["root"]["path"], "rootfs");
}

TEST(ApplySpecTest, ReadOnlyRootNeverLoosened) {
  auto policy = Policy();
  policy.mutable_oci()->set_readonly_root(false);
  Json spec = Json::parse(kRuncSpec);
  spec["root"]["readonly"] = true;
  EXPECT_EQ(Apply(spec.dump(), policy)["root"]["readonly"], true);
}

TEST(ApplySpecTest, MountsReplacedInPlaceOrAppended) {
  Json out = Apply(kRuncSpec);
  std::vector<std::string> dests;
  for (const Json& m : out["mounts"]) dests.push_back(m["destination"]);
  // /tmp/agent/ (a bind) became our tmpfs in the same place; the new mount
  // was appended after every existing one.
  EXPECT_THAT(dests, ElementsAre("/proc", "/dev", "/dev/pts", "/dev/shm",
                                 "/tmp/agent", "/dev/mqueue", "/sys",
                                 "/sys/fs/cgroup", "/var/cache/agent"));
  const Json& agent = out["mounts"][4];
  EXPECT_EQ(agent["type"], "tmpfs");
  EXPECT_EQ(agent["source"], "tmpfs");
  EXPECT_THAT(
      Strings(agent["options"]),
      ElementsAre("nosuid", "nodev", "noexec", "size=67108864", "mode=1777"));
  // Untouched mounts are kept exactly.
  EXPECT_EQ(out["mounts"][2], Json::parse(kRuncSpec)["mounts"][2]);
}

TEST(ApplySpecTest, DuplicateDestinationsCollapse) {
  Json spec = Json::parse(kRuncSpec);
  spec["mounts"].push_back(
      {{"destination", "/tmp/agent"}, {"type", "bind"}, {"source", "/x"}});
  Json out = Apply(spec.dump());
  int count = 0;
  for (const Json& m : out["mounts"]) {
    if (m["destination"] == "/tmp/agent") {
      ++count;
      EXPECT_EQ(m["type"], "tmpfs");
    }
  }
  EXPECT_EQ(count, 1);
}

TEST(ApplySpecTest, MaskedAndReadonlyPathsUnion) {
  Json out = Apply(kRuncSpec);
  EXPECT_THAT(
      Strings(out["linux"]["maskedPaths"]),
      ElementsAre("/etc/shadow", "/proc/acpi", "/proc/asound", "/proc/kallsyms",
                  "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
                  "/proc/timer_stats", "/sys", "/sys/firmware"));
  EXPECT_THAT(Strings(out["linux"]["readonlyPaths"]),
              ElementsAre("/etc", "/proc/bus", "/proc/fs", "/proc/irq",
                          "/proc/sys", "/proc/sysrq-trigger"));
}

TEST(ApplySpecTest, CapabilitiesOnlyIntersect) {
  Json caps = Apply(kRuncSpec)["process"]["capabilities"];
  // CAP_CHOWN is allowed by the policy but the spec did not grant it: not
  // added. CAP_KILL and CAP_AUDIT_WRITE were granted but not allowed: gone.
  for (const char* set : {"bounding", "effective", "permitted", "ambient"}) {
    EXPECT_THAT(Strings(caps[set]), ElementsAre("CAP_NET_BIND_SERVICE")) << set;
  }
  EXPECT_TRUE(caps["inheritable"].empty());
}

TEST(ApplySpecTest, NoCapabilitiesAllowedEmptiesEverySet) {
  auto policy = Policy();
  policy.mutable_oci()->clear_capabilities();
  Json caps = Apply(kRuncSpec, policy)["process"]["capabilities"];
  for (const char* set :
       {"bounding", "effective", "permitted", "inheritable", "ambient"}) {
    ASSERT_TRUE(caps[set].is_array()) << set;
    EXPECT_TRUE(caps[set].empty()) << set;
  }
}

TEST(ApplySpecTest, MissingCapabilitiesObjectMeansAllowedSet) {
  Json spec = Json::parse(kRuncSpec);
  spec["process"].erase("capabilities");
  Json caps = Apply(spec.dump())["process"]["capabilities"];
  EXPECT_THAT(Strings(caps["bounding"]),
              ElementsAre("CAP_CHOWN", "CAP_NET_BIND_SERVICE"));
  EXPECT_THAT(Strings(caps["permitted"]),
              ElementsAre("CAP_CHOWN", "CAP_NET_BIND_SERVICE"));
  EXPECT_TRUE(caps["ambient"].empty());
  EXPECT_TRUE(caps["inheritable"].empty());
}

TEST(ApplySpecTest, NoNewPrivileges) {
  EXPECT_EQ(Apply(kRuncSpec)["process"]["noNewPrivileges"], true);
}

TEST(ApplySpecTest, RlimitsReplacedByTheLower) {
  Json out = Apply(kRuncSpec);
  const Json r = out["process"]["rlimits"];
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0],
            Json::parse(R"({"type":"RLIMIT_NOFILE","hard":1024,"soft":1024})"));
  EXPECT_EQ(r[1],
            Json::parse(R"({"type":"RLIMIT_NPROC","hard":64,"soft":64})"));
  EXPECT_EQ(r[2], Json::parse(R"({"type":"RLIMIT_CORE","hard":0,"soft":0})"));

  Json spec = Json::parse(kRuncSpec);
  spec["process"]["rlimits"][1] =
      Json::parse(R"({"type":"RLIMIT_NPROC","hard":32,"soft":16})");
  spec["process"]["rlimits"].push_back(
      Json::parse(R"({"type":"RLIMIT_NPROC","hard":500,"soft":500})"));
  const Json tight = Apply(spec.dump())["process"]["rlimits"];
  ASSERT_EQ(tight.size(), 3u);
  EXPECT_EQ(tight[1],
            Json::parse(R"({"type":"RLIMIT_NPROC","hard":32,"soft":16})"));
}

TEST(ApplySpecTest, PidsLimitTightensOnly) {
  EXPECT_EQ(Apply(kRuncSpec)["linux"]["resources"]["pids"]["limit"], 64);
  Json spec = Json::parse(kRuncSpec);
  spec["linux"]["resources"]["pids"]["limit"] = 10;
  EXPECT_EQ(Apply(spec.dump())["linux"]["resources"]["pids"]["limit"], 10);
  for (int unlimited : {0, -1}) {
    spec["linux"]["resources"]["pids"]["limit"] = unlimited;
    EXPECT_EQ(Apply(spec.dump())["linux"]["resources"]["pids"]["limit"], 64);
  }
  spec["linux"].erase("resources");
  Json out = Apply(spec.dump());
  EXPECT_EQ(out["linux"]["resources"]["pids"]["limit"], 64);
  // Other resources are kept.
  EXPECT_EQ(Apply(kRuncSpec)["linux"]["resources"]["memory"]["limit"],
            536870912);
}

TEST(ApplySpecTest, SeccompReplaced) {
  Json out = Apply(kRuncSpec);
  EXPECT_EQ(out["linux"]["seccomp"], Json::parse(Policy().seccomp_json()));
}

TEST(ApplySpecTest, ApparmorProfileOnlyWhenAsked) {
  EXPECT_EQ(Apply(kRuncSpec)["process"]["apparmorProfile"],
            "cri-containerd.apparmor.d");
  ApplySpecOptions options;
  options.set_apparmor_profile = true;
  EXPECT_EQ(Apply(kRuncSpec, Policy(), options)["process"]["apparmorProfile"],
            "stockade.team.research.3f1a2b");
}

TEST(ApplySpecTest, HashAnnotationAndUnknownFieldsKept) {
  Json out = Apply(kRuncSpec);
  EXPECT_EQ(out["annotations"][kPolicyHashAnnotation], "3f1a2b");
  EXPECT_EQ(out["annotations"]["io.kubernetes.cri.container-type"],
            "container");
  Json in = Json::parse(kRuncSpec);
  EXPECT_EQ(out["x-unknown-extension"], in["x-unknown-extension"]);
  EXPECT_EQ(out["process"]["oomScoreAdj"], 1000);
  EXPECT_EQ(out["process"]["user"], in["process"]["user"]);
  EXPECT_EQ(out["linux"]["namespaces"], in["linux"]["namespaces"]);
  EXPECT_EQ(out["linux"]["resources"]["devices"],
            in["linux"]["resources"]["devices"]);
  // Key order of the input is kept.
  std::vector<std::string> keys;
  for (auto it = out.begin(); it != out.end(); ++it) keys.push_back(it.key());
  EXPECT_THAT(keys,
              ElementsAre("ociVersion", "process", "root", "hostname", "mounts",
                          "linux", "annotations", "x-unknown-extension"));
}

TEST(ApplySpecTest, MinimalSpecGetsEverything) {
  Json out = Apply(R"({"ociVersion":"1.0.2"})");
  EXPECT_EQ(out["root"]["readonly"], true);
  EXPECT_EQ(out["mounts"].size(), 2u);
  EXPECT_EQ(out["process"]["noNewPrivileges"], true);
  EXPECT_EQ(out["linux"]["resources"]["pids"]["limit"], 64);
  EXPECT_EQ(out["annotations"][kPolicyHashAnnotation], "3f1a2b");
}

TEST(ApplySpecTest, IdempotentAndDeterministic) {
  ApplySpecOptions options;
  options.set_apparmor_profile = true;
  auto once = ApplySpec(kRuncSpec, Policy(), options);
  ASSERT_TRUE(once.ok()) << once.status();
  auto again = ApplySpec(kRuncSpec, Policy(), options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*once, *again);
  auto twice = ApplySpec(*once, Policy(), options);
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(*once, *twice);
  EXPECT_EQ(once->back(), '\n');
}

void ExpectError(const std::string& spec, const std::string& message) {
  auto out = ApplySpec(spec, Policy(), {});
  ASSERT_FALSE(out.ok()) << "accepted: " << spec;
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr(message));
}

// Replaces one field of the realistic spec (path: JSON pointer).
std::string With(const std::string& pointer, const Json& value) {
  Json spec = Json::parse(kRuncSpec);
  spec[Json::json_pointer(pointer)] = value;
  return spec.dump();
}

TEST(ApplySpecErrorTest, MalformedShapesNameTheField) {
  ExpectError("", "config.json: not valid JSON");
  ExpectError("{\"process\": ", "config.json: not valid JSON");
  ExpectError("[1, 2]", "want a JSON object at the top level, got array");
  ExpectError("\"text\"", "at the top level, got string");
  ExpectError(With("/root", "rootfs"), "config.json: root: want an object");
  ExpectError(With("/root/readonly", "yes"),
              "root.readonly: want a boolean, got string");
  ExpectError(With("/process", Json::array()),
              "config.json: process: want an object, got array");
  ExpectError(With("/mounts", Json::object()),
              "config.json: mounts: want an array, got object");
  ExpectError(With("/mounts/1", "tmpfs"),
              "mounts[1]: want an object, got string");
  ExpectError(With("/mounts/2/destination", 5),
              "mounts[2].destination: want a string, got number");
  Json no_dest = Json::parse(kRuncSpec);
  no_dest["mounts"][3].erase("destination");
  ExpectError(no_dest.dump(), "mounts[3].destination: missing");
  ExpectError(With("/linux", "x"), "config.json: linux: want an object");
  ExpectError(With("/linux/maskedPaths", "/proc"),
              "linux.maskedPaths: want an array, got string");
  ExpectError(With("/linux/readonlyPaths/2", 7),
              "linux.readonlyPaths[2]: want a string, got number");
  ExpectError(With("/linux/resources", Json::array()),
              "linux.resources: want an object");
  ExpectError(With("/linux/resources/pids/limit", "100"),
              "linux.resources.pids.limit: want an integer, got string");
  ExpectError(With("/process/capabilities", "ALL"),
              "process.capabilities: want an object, got string");
  ExpectError(With("/process/capabilities/bounding", "CAP_KILL"),
              "process.capabilities.bounding: want an array, got string");
  ExpectError(With("/process/capabilities/ambient/0", true),
              "process.capabilities.ambient[0]: want a string, got boolean");
  ExpectError(With("/process/noNewPrivileges", 1),
              "process.noNewPrivileges: want a boolean, got number");
  ExpectError(With("/process/rlimits", Json::object()),
              "process.rlimits: want an array, got object");
  ExpectError(With("/process/rlimits/0", 3),
              "process.rlimits[0]: want an object, got number");
  Json no_type = Json::parse(kRuncSpec);
  no_type["process"]["rlimits"][1].erase("type");
  ExpectError(no_type.dump(), "process.rlimits[1].type: missing");
  ExpectError(With("/process/rlimits/0/hard", -1),
              "process.rlimits[0].hard: want a non-negative integer");
  ExpectError(With("/process/rlimits/0/soft", "1024"),
              "process.rlimits[0].soft: want a non-negative integer");
  ExpectError(With("/annotations", Json::array()),
              "config.json: annotations: want an object, got array");
}

TEST(ApplySpecErrorTest, NullMeansAbsent) {
  EXPECT_TRUE(ApplySpec(With("/mounts", nullptr), Policy(), {}).ok());
  EXPECT_TRUE(
      ApplySpec(With("/linux/maskedPaths", nullptr), Policy(), {}).ok());
}

TEST(ApplySpecErrorTest, ApparmorProfileMustBeAString) {
  ApplySpecOptions options;
  options.set_apparmor_profile = true;
  auto out = ApplySpec(With("/process/apparmorProfile", 3), Policy(), options);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("process.apparmorProfile: want a string"));
}

TEST(ApplySpecErrorTest, BadPolicyFailsClosed) {
  auto policy = Policy();
  policy.clear_seccomp_json();
  auto out = ApplySpec(kRuncSpec, policy, {});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("seccomp_json is empty"));

  policy = Policy();
  policy.set_seccomp_json("{not json");
  out = ApplySpec(kRuncSpec, policy, {});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("seccomp_json is not valid JSON"));

  policy = Policy();
  policy.set_seccomp_json("[]");
  out = ApplySpec(kRuncSpec, policy, {});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("seccomp_json: want an object"));

  policy = Policy();
  policy.clear_hash();
  EXPECT_FALSE(ApplySpec(kRuncSpec, policy, {}).ok());

  policy = Policy();
  policy.mutable_apparmor()->clear_name();
  ApplySpecOptions options;
  options.set_apparmor_profile = true;
  out = ApplySpec(kRuncSpec, policy, options);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("apparmor.name is empty"));
  // Without AppArmor the missing name does not matter.
  EXPECT_TRUE(ApplySpec(kRuncSpec, policy, {}).ok());
}

}  // namespace
}  // namespace stockade::shim
