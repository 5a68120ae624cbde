#include "node/denials/kernel_log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::node::denials {
namespace {

using Kind = KernelRecord::Kind;

TEST(KernelLogTest, SeccompErrnoFromKmsg) {
  // As /dev/kmsg hands it out (a record seen on this project's machines).
  auto r = ParseKernelRecord(
      "5,1234,11399440430,-;audit: type=1326 audit(1796564358.894:94): "
      "auid=4294967295 uid=0 gid=0 ses=4294967295 pid=7654 "
      "comm=\"probe\" exe=\"/bin/probe\" sig=0 arch=c000003e syscall=272 "
      "compat=0 ip=0x7f0df8b1f829 code=0x50001\n SUBSYSTEM=x\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Kind::kDenial);
  EXPECT_EQ(r->layer, Layer::kSeccomp);
  EXPECT_EQ(r->serial, 94u);
  EXPECT_EQ(r->pid, 7654);
  EXPECT_EQ(r->comm, "probe");
  EXPECT_EQ(r->exe, "/bin/probe");
  EXPECT_EQ(r->syscall, "unshare");  // 272 on x86_64
  EXPECT_EQ(r->action, "errno");
  EXPECT_FALSE(r->complained);
}

TEST(KernelLogTest, SeccompLogIsComplained) {
  auto r = ParseKernelRecord(
      "audit: type=1326 audit(1.2:3): pid=1 comm=\"a\" exe=\"/a\" sig=0 "
      "arch=c000003e syscall=101 code=0x7ffc0000");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->complained);
  EXPECT_EQ(r->action, "log");
  EXPECT_EQ(r->syscall, "ptrace");
}

TEST(KernelLogTest, AppArmorDeniedAndAllowed) {
  auto r = ParseKernelRecord(
      "audit: type=1400 audit(1.2:7): apparmor=\"DENIED\" operation=\"open\" "
      "profile=\"stockade-agents-research\" name=\"/etc/shadow\" pid=42 "
      "comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->layer, Layer::kAppArmor);
  EXPECT_FALSE(r->complained);
  EXPECT_EQ(r->path, "/etc/shadow");
  EXPECT_EQ(r->access, "r");
  EXPECT_EQ(r->operation, "open");
  auto allowed = ParseKernelRecord(
      "audit: type=1400 audit(1.2:8): apparmor=\"ALLOWED\" operation=\"exec\" "
      "profile=\"p\" name=\"/usr/bin/pip\" pid=43 comm=\"sh\" "
      "requested_mask=\"x\"");
  ASSERT_TRUE(allowed);
  EXPECT_TRUE(allowed->complained);
  EXPECT_EQ(allowed->access, "x");
  // STATUS records (profile loads) are not denials.
  EXPECT_FALSE(
      ParseKernelRecord("audit: type=1400 audit(1.2:9): apparmor=\"STATUS\" "
                        "operation=\"profile_load\" name=\"p\""));
}

TEST(KernelLogTest, LandlockAccessDomainAndSyscall) {
  auto access = ParseKernelRecord(
      "audit: type=1423 audit(1729738800.268:30): domain=1a6fdc66f "
      "blockers=fs.write_file path=\"/etc/passwd\" dev=\"vda\" ino=9");
  ASSERT_TRUE(access);
  EXPECT_EQ(access->layer, Layer::kLandlock);
  EXPECT_EQ(access->domain, "1a6fdc66f");
  EXPECT_EQ(access->access, "fs.write_file");
  EXPECT_EQ(access->path, "/etc/passwd");
  EXPECT_EQ(access->serial, 30u);
  auto domain = ParseKernelRecord(
      "audit: type=1424 audit(1729738800.268:30): domain=1a6fdc66f "
      "status=allocated mode=enforcing pid=286 uid=0 exe=\"/bin/probe\" "
      "comm=\"probe\"");
  ASSERT_TRUE(domain);
  EXPECT_EQ(domain->kind, Kind::kLandlockDomain);
  EXPECT_EQ(domain->pid, 286);
  auto net = ParseKernelRecord(
      "audit: type=1423 audit(1.2:31): domain=1a6fdc66f "
      "blockers=net.connect_tcp daddr=203.0.113.9 dest=25");
  ASSERT_TRUE(net);
  EXPECT_EQ(net->destination, "203.0.113.9");
  EXPECT_EQ(net->port, 25);
  auto syscall = ParseKernelRecord(
      "audit: type=1300 audit(1.2:31): arch=c000003e syscall=42 success=no "
      "exit=-13 ppid=299 pid=300 comm=\"curl\" exe=\"/usr/bin/curl\"");
  ASSERT_TRUE(syscall);
  EXPECT_EQ(syscall->kind, Kind::kSyscall);
  EXPECT_EQ(syscall->syscall, "connect");
  EXPECT_EQ(syscall->pid, 300);
  EXPECT_EQ(syscall->ppid, 299);
}

TEST(KernelLogTest, EgressLogLines) {
  auto r = ParseKernelRecord(
      "4,99,123,-;stockade-egress-drop IN= OUT=eth0 SRC=10.0.0.2 "
      "DST=203.0.113.9 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP "
      "SPT=40000 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->layer, Layer::kNetwork);
  EXPECT_FALSE(r->complained);
  EXPECT_EQ(r->destination, "203.0.113.9");
  EXPECT_EQ(r->protocol, "tcp");
  EXPECT_EQ(r->port, 443);
  EXPECT_TRUE(r->policy.empty());
  auto named = ParseKernelRecord(
      "stockade-egress-complain agents/research IN= OUT=eth0 SRC=10.0.0.2 "
      "DST=2001:db8::1 PROTO=UDP SPT=5 DPT=53");
  ASSERT_TRUE(named);
  EXPECT_TRUE(named->complained);
  EXPECT_EQ(named->policy, "agents/research");
  EXPECT_EQ(named->port, 53);
}

TEST(KernelLogTest, LinesWrittenByProcessesAreNotTheKernels) {
  // echo "stockade-egress-drop ..." > /dev/kmsg comes out as facility user
  // (PRI 8 and up): not a record.
  EXPECT_FALSE(ParseKernelRecord(
      "12,99,123,-;stockade-egress-drop IN= OUT=eth0 DST=203.0.113.9 "
      "PROTO=TCP DPT=443"));
  EXPECT_FALSE(ParseKernelRecord(
      "14,2040,1,-;cgroup: fork rejected by pids controller in /k8s.io/x"));
  EXPECT_TRUE(ParseKernelRecord(
      "4,99,123,-;stockade-egress-drop IN= OUT=eth0 DST=203.0.113.9 "
      "PROTO=TCP DPT=443"));
}

TEST(KernelLogTest, EndOfEvent) {
  auto r = ParseKernelRecord("audit: type=1320 audit(1796577186.527:27342): ");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, KernelRecord::Kind::kEndOfEvent);
  EXPECT_EQ(r->serial, 27342u);
  // PROCTITLE and the like are passed over.
  EXPECT_FALSE(ParseKernelRecord(
      "audit: type=1327 audit(1796577186.527:27342): proctitle=2F62696E"));
}

TEST(KernelLogTest, PidsRefusalLines) {
  // As this kernel writes it (cgroup v1 here; v2 names the unified path).
  auto r = ParseKernelRecord(
      "6,2040,20341389726,-;cgroup: fork rejected by pids controller in "
      "/attack-6237/forkbomb\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->layer, Layer::kPids);
  EXPECT_EQ(r->cgroup, "/attack-6237/forkbomb");
  EXPECT_EQ(r->operation, "fork");
  EXPECT_FALSE(r->complained);
  EXPECT_FALSE(ParseKernelRecord(
      "cgroup: fork rejected by pids controller in relative/path"));
}

TEST(KernelLogTest, HexEncodedValuesAreDecoded) {
  // audit hex-encodes strings holding spaces.
  auto f = ParseAuditFields("comm=612062 exe=\"/x y\" pid=5");
  EXPECT_EQ(f["comm"], "a b");
  EXPECT_EQ(f["exe"], "/x y");
  EXPECT_EQ(f["pid"], "5");
}

TEST(KernelLogTest, OtherLinesAndGarbageAreNotRecords) {
  for (const char* line :
       {"", "6,1,2,-;eth0: link up", "audit: type=1326", "audit: type=x y",
        "audit: type=1326 audit(1.2:3): code=zz", "stockade-egress-drop IN=",
        "audit: type=1423 audit(1.2:3): domain=", "audit: type=1130 audit(: x",
        "audit: type=1326 audit(1.2:3): code=0x50000 syscall=-1 arch=zz"}) {
    auto r = ParseKernelRecord(line);
    if (r) {
      // Only a seccomp record with an unknown number may parse; it keeps it.
      EXPECT_EQ(r->layer, Layer::kSeccomp) << line;
    }
  }
}

}  // namespace
}  // namespace stockade::node::denials
