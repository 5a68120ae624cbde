#include "node/denials/collector.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "node/denials/attribution.h"
#include "node/denials/denial_log.h"
#include "node/denials/kernel_log.h"
#include "store/store.h"

#ifndef AUDIT_NLGRP_READLOG
#define AUDIT_NLGRP_READLOG 1
#endif

namespace stockade::node::denials {

namespace {

// One request on a unicast audit socket; the kernel's answer (ACK errno, or
// for AUDIT_GET the status) in *status. Returns the errno (0 on success).
int AuditRequest(uint16_t type, const audit_status* set, audit_status* got) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
  if (fd < 0) return errno;
  struct {
    nlmsghdr h;
    audit_status s;
  } req{};
  req.h.nlmsg_len = NLMSG_LENGTH(set != nullptr ? sizeof(audit_status) : 0);
  req.h.nlmsg_type = type;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.h.nlmsg_seq = 1;
  if (set != nullptr) req.s = *set;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int error = 0;
  if (sendto(fd, &req, req.h.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof kernel) < 0) {
    error = errno;
  }
  char buf[8192];
  timeval timeout{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  bool acked = false;
  while (error == 0 && !acked) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      error = errno;
      break;
    }
    size_t left = static_cast<size_t>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        error = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        acked = true;
        if (error != 0 || type != AUDIT_GET) break;
        acked = false;  // AUDIT_GET: the status follows the ACK
      } else if (h->nlmsg_type == AUDIT_GET && got != nullptr) {
        memcpy(got, NLMSG_DATA(h),
               std::min<size_t>(sizeof *got, h->nlmsg_len - NLMSG_HDRLEN));
        acked = true;
      }
    }
  }
  close(fd);
  return error;
}

// The pids.max of a cgroup ("" when unreadable): cgroup v2, then v1.
std::string PidsMax(const std::string& cgroup) {
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/pids"}) {
    std::ifstream in(absl::StrCat(root, cgroup, "/pids.max"));
    std::string max;
    if (in >> max) return max;
  }
  return "";
}

// A denial naming who: the container, its pod and Agent, and its policy.
Denial DenialBy(const Attribution& who, const std::string& node,
                absl::Time time) {
  Denial d;
  d.time = time;
  d.node = node;
  d.container_id = who.container_id;
  d.pod_namespace = who.pod.namespace_;
  d.pod_name = who.pod.name;
  d.container_name = who.pod.container;
  d.agent = who.pod.agent;
  d.policy_namespace = who.policy_namespace;
  d.policy_name = who.policy_name;
  d.policy_hash = who.policy_hash;
  return d;
}

}  // namespace

struct Collector::State {
  explicit State(store::Store s) : store(std::move(s)), attributor(&store) {}
  store::Store store;
  Attributor attributor;
  std::unique_ptr<DenialLog> log;
  struct Bucket {
    double tokens = 0;
    absl::Time last;
    int64_t suppressed = 0;
    Attribution who;  // the container's: what a summary names
  };
  absl::flat_hash_map<std::string, Bucket> buckets;
  // Landlock: a denial waits for the records of the same event that name
  // its process (LANDLOCK_DOMAIN, SYSCALL).
  std::map<uint64_t, KernelRecord> pending;
  struct Process {
    int64_t pid;
    std::string comm, exe;
  };
  absl::flat_hash_map<std::string, Process> domains;
  // Network denials logged lately (retransmissions are not new denials).
  absl::flat_hash_map<std::string, absl::Time> recent_packets;
  // Landlock domains already attributed (their processes may be gone).
  absl::flat_hash_map<std::string, Attribution> domain_owner;
};

absl::StatusOr<std::unique_ptr<Collector>> Collector::Start(
    CollectorOptions options) {
  absl::StatusOr<store::Store> store = store::Store::Open(options.store_root);
  if (!store.ok()) return store.status();
  std::unique_ptr<Collector> c(new Collector());
  c->options_ = std::move(options);
  c->state_ = std::make_unique<State>(*std::move(store));
  absl::StatusOr<DenialLog> log = DenialLog::Open(
      DenialDir(c->options_.store_root), c->options_.max_log_bytes);
  if (!log.ok()) return log.status();
  c->state_->log = std::make_unique<DenialLog>(*std::move(log));

  std::string errors;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK,
                  NETLINK_AUDIT);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1U << (AUDIT_NLGRP_READLOG - 1);
  if (fd >= 0 &&
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    // Room for a burst while the thread is busy: a looping agent is denied
    // about 100,000 times a second, each an audit event of up to three
    // records (seccomp, SYSCALL, PROCTITLE) of about 1 KB each in the
    // buffer. Beyond CAP_NET_ADMIN's SO_RCVBUFFORCE, net.core.rmem_max caps
    // it.
    int size = 16 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
      int got = 0;
      socklen_t len = sizeof got;
      getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len);
      if (got / 2 < size) {  // the kernel reports twice what it grants
        c->buffer_warning_ = absl::StrCat(
            "the audit socket's buffer is ", got / 2 / 1024,
            " KiB (net.core.rmem_max; CAP_NET_ADMIN would allow 16 MiB): a "
            "flood of denials may lose records");
      }
    }
    c->audit_fd_ = fd;
    c->sources_ = "audit-netlink";
  } else {
    errors = absl::StrCat("audit netlink: ", strerror(errno));
    if (fd >= 0) close(fd);
  }
  c->kmsg_fd_ =
      open(c->options_.kmsg.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (c->kmsg_fd_ >= 0) {
    lseek(c->kmsg_fd_, 0, SEEK_END);  // from now on
    absl::StrAppend(&c->sources_, c->sources_.empty() ? "" : ",", "kmsg");
  } else {
    absl::StrAppend(&errors, "; ", c->options_.kmsg, ": ", strerror(errno));
  }
  if (c->audit_fd_ < 0 && c->kmsg_fd_ < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read kernel denials (", errors,
                     "): the collector needs CAP_AUDIT_READ or CAP_SYSLOG"));
  }
  if (c->options_.enable_audit) {
    audit_status now{};
    int error = AuditRequest(AUDIT_GET, nullptr, &now);
    if (error == 0 && now.enabled == 0) {
      audit_status set{};
      set.mask = AUDIT_STATUS_ENABLED;
      set.enabled = 1;
      error = AuditRequest(AUDIT_SET, &set, nullptr);
      c->enabled_audit_ = error == 0;
    }
    if (error != 0) {
      // Collect what comes without it (seccomp, egress); say so.
      c->warning_ = absl::StrCat(
          "cannot turn the kernel's audit on (", strerror(error),
          "; needs CAP_AUDIT_CONTROL): Landlock denials are not reported");
    }
  }
  if (!c->buffer_warning_.empty()) {
    c->warning_ = c->warning_.empty()
                      ? c->buffer_warning_
                      : absl::StrCat(c->warning_, "; ", c->buffer_warning_);
  }
  if (c->options_.log_all_netns) {
    const char* knob = "/proc/sys/net/netfilter/nf_log_all_netns";
    char now = '1';
    int fd = open(knob, O_RDWR | O_CLOEXEC);
    if (fd < 0 || read(fd, &now, 1) != 1 ||
        (now == '0' &&
         (lseek(fd, 0, SEEK_SET) != 0 || write(fd, "1", 1) != 1))) {
      int error = errno;
      if (fd >= 0) close(fd);
      return absl::PermissionDeniedError(
          absl::StrCat("cannot set ", knob, " (", strerror(error),
                       "): needs root in the host's network namespace"));
    }
    close(fd);
    c->enabled_netns_log_ = now == '0';
  }
  c->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  c->thread_ = std::thread([raw = c.get()] { raw->Run(); });
  return c;
}

Collector::~Collector() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  for (int fd : {audit_fd_, kmsg_fd_, stop_fd_}) {
    if (fd >= 0) close(fd);
  }
  if (enabled_netns_log_) {
    int fd =
        open("/proc/sys/net/netfilter/nf_log_all_netns", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!write(fd, "0", 1);
      close(fd);
    }
  }
  if (enabled_audit_) {
    audit_status set{};
    set.mask = AUDIT_STATUS_ENABLED;
    set.enabled = 0;
    AuditRequest(AUDIT_SET, &set, nullptr);
  }
}

void Collector::Run() {
  State& s = *state_;
  auto write = [&](const Denial& d) {
    (void)s.log->Append(d);
    if (options_.on_denial) options_.on_denial(d);
  };
  // The count of a container's denials the rate limit dropped, as one
  // record naming the container and policy (of its latest denial).
  auto write_summary = [&](State::Bucket& b, absl::Time now) {
    if (b.suppressed == 0) return;
    Denial summary = DenialBy(b.who, options_.node_name, now);
    summary.suppressed = b.suppressed;
    b.suppressed = 0;
    write(summary);
  };
  auto emit = [&](const KernelRecord& r) {
    // The process, then its parent, then the process that made its Landlock
    // domain: a denied process may be gone by the time its record arrives.
    std::optional<Attribution> who;
    int64_t pid = r.pid;
    std::string comm = r.comm, exe = r.exe;
    if (r.layer == Layer::kNetwork && !r.policy.empty()) {
      who = s.attributor.ForPolicy(r.policy);
    } else if (r.layer == Layer::kPids) {
      who = s.attributor.ForCgroupPath(r.cgroup);
    } else {
      who = s.attributor.ForPid(r.pid);
      if (!who && r.ppid != 0) who = s.attributor.ForPid(r.ppid);
      if (!who && !r.domain.empty()) {
        auto known = s.domain_owner.find(r.domain);
        if (known != s.domain_owner.end()) who = known->second;
        auto d = s.domains.find(r.domain);
        if (!who && d != s.domains.end()) {
          who = s.attributor.ForPid(d->second.pid);
          if (pid == 0) {
            pid = d->second.pid;
            comm = d->second.comm;
            exe = d->second.exe;
          }
        }
      }
      if (who && !r.domain.empty()) s.domain_owner[r.domain] = *who;
    }
    if (!who) {
      ++stats_.unattributed;
      return;
    }
    const absl::Time now = absl::Now();
    // A dropped connection attempt is logged once per packet: the SYN and
    // its retransmissions. One denial per destination and 5 s.
    if (r.layer == Layer::kNetwork) {
      std::string key =
          absl::StrCat(who->container_id, " ", who->policy_hash, " ",
                       r.protocol, " ", r.destination, " ", r.port);
      auto seen = s.recent_packets.find(key);
      if (seen != s.recent_packets.end() &&
          now - seen->second < absl::Seconds(5)) {
        ++stats_.repeated;
        return;
      }
      s.recent_packets[key] = now;
      if (s.recent_packets.size() > 4096) s.recent_packets.clear();
    }
    // The rate limit, before a denial is made of the record: in a flood
    // most records end here.
    State::Bucket& b = s.buckets[who->container_id];
    if (b.last == absl::Time()) {
      b.tokens = options_.burst;
      b.who = *who;
    } else {
      b.tokens = std::min<double>(
          options_.burst,
          b.tokens + absl::ToDoubleSeconds(now - b.last) * options_.rate);
    }
    b.last = now;
    if (b.tokens < 1) {
      ++b.suppressed;
      ++stats_.suppressed;
      return;
    }
    b.tokens -= 1;
    write_summary(b, now);

    Denial d = DenialBy(*who, options_.node_name, now);
    d.layer = LayerName(r.layer);
    d.mode = r.complained ? "complained" : "enforced";
    d.syscall = r.syscall;
    d.path = r.path;
    d.access = r.access;
    d.operation = r.operation;
    d.destination = r.destination;
    d.protocol = r.protocol;
    d.port = r.port;
    d.pid = pid;
    d.comm = comm;
    d.exe = exe;
    if (r.layer == Layer::kPids) {
      const std::string max = PidsMax(r.cgroup);
      if (!max.empty()) d.access = absl::StrCat("pids.max ", max);
    }
    write(d);
    ++stats_.logged;
  };
  auto flush_pending = [&](uint64_t keep) {
    for (auto it = s.pending.begin(); it != s.pending.end();) {
      if (it->first == keep) {
        ++it;
        continue;
      }
      emit(it->second);
      it = s.pending.erase(it);
    }
  };
  auto handle = [&](const KernelRecord& r) {
    flush_pending(r.serial);
    switch (r.kind) {
      case KernelRecord::Kind::kEndOfEvent:
        // Its records are all here: no need to wait for more.
        flush_pending(0);
        return;
      case KernelRecord::Kind::kLandlockDomain:
        s.domains[r.domain] = {r.pid, r.comm, r.exe};
        [[fallthrough]];
      case KernelRecord::Kind::kSyscall: {
        // The SYSCALL record names the process that acted; the DOMAIN
        // record the one that made the Landlock domain (stockade-init, the
        // container's first process), used when no SYSCALL record comes.
        auto p = s.pending.find(r.serial);
        if (p != s.pending.end() && r.pid != 0 &&
            (r.kind == KernelRecord::Kind::kSyscall || p->second.pid == 0)) {
          p->second.pid = r.pid;
          p->second.comm = r.comm;
          p->second.exe = r.exe;
          if (r.kind == KernelRecord::Kind::kSyscall) p->second.ppid = r.ppid;
        }
        return;
      }
      case KernelRecord::Kind::kDenial:
        // A Landlock denial names no process: the event's other records
        // (DOMAIN, SYSCALL) follow it with the same serial. A seccomp or
        // AppArmor record names its process itself and goes out at once,
        // unless that process is gone already: then it waits for a SYSCALL
        // record that names the parent, if audit sends one.
        if (r.serial != 0 && (r.layer == Layer::kLandlock ||
                              !s.attributor.ForPid(r.pid).has_value())) {
          s.pending[r.serial] = r;
        } else {
          emit(r);
        }
        return;
    }
  };

  std::string buf(1 << 16, '\0');
  absl::Time next_sweep = absl::Now();
  while (true) {
    pollfd fds[3] = {
        {stop_fd_, POLLIN, 0}, {audit_fd_, POLLIN, 0}, {kmsg_fd_, POLLIN, 0}};
    // A pending denial waits only for the rest of its event, which the
    // kernel sends right behind it.
    int n = poll(fds, 3, s.pending.empty() ? 100 : 5);
    if (n < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    if (n == 0) flush_pending(0);
    // Summaries of containers that went quiet after being limited, every
    // 100 ms however busy the node's audit stream is.
    if (const absl::Time now = absl::Now(); now >= next_sweep) {
      next_sweep = now + absl::Milliseconds(100);
      for (auto& [id, b] : s.buckets) {
        if (now - b.last > absl::Seconds(1)) write_summary(b, now);
      }
    }
    if (n <= 0) continue;
    // At most kBatch records from a source per round, so that a flood on
    // one cannot starve the other, the stop request or the summaries.
    constexpr int kBatch = 1024;
    if (audit_fd_ >= 0 && (fds[1].revents & POLLIN)) {
      for (int i = 0; i < kBatch; ++i) {
        ssize_t got = recv(audit_fd_, buf.data(), buf.size(), 0);
        if (got < 0 && errno == ENOBUFS) {
          // Records were lost; the socket goes on with what is queued.
          ++stats_.overflows;
          continue;
        }
        if (got < 0) break;  // EAGAIN
        // One record per datagram. Its nlmsg_len cannot be trusted: audit
        // has long set it to the payload's length alone on some paths, so
        // the datagram's size bounds the payload.
        if (static_cast<size_t>(got) < NLMSG_HDRLEN) continue;
        {
          const auto* h = reinterpret_cast<const nlmsghdr*>(buf.data());
          if (!IsDenialAuditType(h->nlmsg_type)) continue;
          absl::string_view payload(buf.data() + NLMSG_HDRLEN,
                                    static_cast<size_t>(got) - NLMSG_HDRLEN);
          while (!payload.empty() && payload.back() == '\0') {
            payload.remove_suffix(1);
          }
          std::optional<KernelRecord> r = ParseKernelRecord(
              absl::StrCat("audit: type=", h->nlmsg_type, " ", payload));
          if (r) handle(*r);
        }
      }
    }
    if (kmsg_fd_ >= 0 && (fds[2].revents & POLLIN)) {
      for (int i = 0; i < kBatch; ++i) {
        ssize_t got = read(kmsg_fd_, buf.data(), buf.size());
        if (got < 0) {
          if (errno == EPIPE) continue;  // overwritten records: go on
          break;
        }
        absl::string_view record(buf.data(), static_cast<size_t>(got));
        std::optional<KernelRecord> r = ParseKernelRecord(record);
        // Audit records come from the audit socket when it is read.
        if (!r || (audit_fd_ >= 0 && r->layer != Layer::kNetwork &&
                   r->layer != Layer::kPids)) {
          continue;
        }
        handle(*r);
      }
    }
  }
}

}  // namespace stockade::node::denials
