#include "shim/policy/egress.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace stockade::shim {
namespace {

using Json = nlohmann::json;

// The child's answer starts with one of these.
constexpr char kOk[] = "ok\n";
constexpr char kError[] = "error\n";

void SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(n);
  }
}

// Moves `fd` to a close-on-exec descriptor numbered 10 or above, so that the
// child's dup2 onto 0, 1 and 3 cannot overwrite another of its sources.
int HighFd(int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return high;
}

}  // namespace

absl::StatusOr<NetworkNamespace> NetworkNamespaceOf(
    absl::string_view config_json) {
  Json doc;
  try {
    doc = Json::parse(config_json.begin(), config_json.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", e.what()));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError("config.json: want an object");
  }
  auto linux_it = doc.find("linux");
  if (linux_it == doc.end() || linux_it->is_null())
    return NetworkNamespace::kHost;
  if (!linux_it->is_object()) {
    return absl::InvalidArgumentError("config.json: linux: want an object");
  }
  auto namespaces = linux_it->find("namespaces");
  if (namespaces == linux_it->end() || namespaces->is_null()) {
    return NetworkNamespace::kHost;
  }
  if (!namespaces->is_array()) {
    return absl::InvalidArgumentError(
        "config.json: linux.namespaces: want an array");
  }
  for (const Json& ns : *namespaces) {
    if (!ns.is_object()) {
      return absl::InvalidArgumentError(
          "config.json: linux.namespaces: want objects");
    }
    auto type = ns.find("type");
    if (type == ns.end() || !type->is_string() || *type != "network") {
      continue;
    }
    auto path = ns.find("path");
    if (path == ns.end() || path->is_null()) return NetworkNamespace::kOwn;
    if (!path->is_string()) {
      return absl::InvalidArgumentError(
          "config.json: linux.namespaces[network].path: want a string");
    }
    return path->get<std::string>().empty() ? NetworkNamespace::kOwn
                                            : NetworkNamespace::kJoined;
  }
  return NetworkNamespace::kHost;
}

absl::StatusOr<bool> HasOwnNetworkNamespace(absl::string_view config_json) {
  absl::StatusOr<NetworkNamespace> netns = NetworkNamespaceOf(config_json);
  if (!netns.ok()) return netns.status();
  return *netns == NetworkNamespace::kOwn;
}

bool RestrictsEgress(const stockade::v1::CompiledPolicy& policy) {
  return !policy.nftables().empty() &&
         policy.effective().mode() != stockade::v1::MODE_COMPLAIN;
}

absl::StatusOr<EgressPlan> DecideEgress(NetworkNamespace netns,
                                        const AppliedPolicy& applied) {
  const stockade::v1::CompiledPolicy& policy = applied.policy;
  if (policy.nftables().empty()) {
    return EgressPlan{false, "the policy has no egress rules"};
  }
  switch (netns) {
    case NetworkNamespace::kOwn:
      return EgressPlan{true, "the container's own network namespace"};
    case NetworkNamespace::kJoined:
      if (applied.pod_container) {
        return EgressPlan{false,
                          "the pod's network namespace: its rules were "
                          "installed with the sandbox"};
      }
      return EgressPlan{true, "the network namespace the container joins"};
    case NetworkNamespace::kHost:
      break;
  }
  if (RestrictsEgress(policy)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the container uses the host's network (no network namespace), "
        "where the egress rules of policy ",
        applied.namespace_.empty() ? "_cluster" : applied.namespace_, "/",
        applied.name,
        " cannot be installed; give it a network namespace of its own (no "
        "hostNetwork)"));
  }
  return EgressPlan{false,
                    "the host's network: a Complain-mode policy only logs, "
                    "nothing is installed"};
}

absl::Status InstallEgress(int pid, const std::string& nft_ruleset,
                           const std::string& helper) {
  if (nft_ruleset.empty()) return absl::OkStatus();
  if (pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad pid ", pid));
  }
  const std::string ns_path = absl::StrCat("/proc/", pid, "/ns/net");
  int netns_fd = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("open ", ns_path, ": ", strerror(errno)));
  }
  struct stat target, own;
  if (fstat(netns_fd, &target) != 0 || stat("/proc/self/ns/net", &own) != 0) {
    const int err = errno;
    close(netns_fd);
    return absl::InternalError(
        absl::StrCat("stat network namespaces: ", strerror(err)));
  }
  if (target.st_dev == own.st_dev && target.st_ino == own.st_ino) {
    close(netns_fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", pid,
        " is in the shim's own network namespace; refusing to install egress "
        "rules there"));
  }
  int input[2], report[2];
  // A socket, not a pipe, for the ruleset: a helper that dies unread gives
  // EPIPE (MSG_NOSIGNAL), never a SIGPIPE to the caller.
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, input) != 0) {
    const int err = errno;
    close(netns_fd);
    return absl::InternalError(absl::StrCat("socketpair: ", strerror(err)));
  }
  if (pipe2(report, O_CLOEXEC) != 0) {
    const int err = errno;
    close(netns_fd);
    close(input[0]);
    close(input[1]);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(err)));
  }
  netns_fd = HighFd(netns_fd);
  input[0] = HighFd(input[0]);
  report[1] = HighFd(report[1]);
  // Prepared before fork: the child of a threaded process only dup2s and
  // execs.
  std::string argv0 = helper;
  char* const argv[] = {argv0.data(), nullptr};
  char* const envp[] = {nullptr};
  const pid_t child = fork();
  if (child == 0) {
    if (netns_fd < 0 || input[0] < 0 || report[1] < 0 ||
        dup2(input[0], 0) < 0 || dup2(report[1], 1) < 0 ||
        dup2(report[1], 2) < 0 || dup2(netns_fd, 3) < 0) {
      _exit(126);
    }
    execve(argv0.c_str(), argv, envp);
    const char message[] = "error\ncannot execute the nftables helper";
    (void)!write(1, message, sizeof(message) - 1);
    _exit(127);
  }
  const int fork_errno = errno;
  close(netns_fd);
  close(input[0]);
  close(report[1]);
  if (child < 0) {
    close(input[1]);
    close(report[0]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  // The helper reads all of its input before it answers.
  SendAll(input[1], nft_ruleset);
  close(input[1]);
  std::string answer;
  char buf[4096];
  for (;;) {
    ssize_t n = read(report[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, n);
  }
  close(report[0]);
  if (answer == kOk) {
    // Committed. The helper still releases its netlink socket (~10 ms in the
    // kernel): reap it in the background instead of waiting. ECHILD there
    // means a process-wide reaper took it.
    std::thread([child] {
      while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
      }
    }).detach();
    return absl::OkStatus();
  }
  int status = 0;
  pid_t waited;
  do {
    waited = waitpid(child, &status, 0);
  } while (waited < 0 && errno == EINTR);
  if (absl::StartsWith(answer, kError)) {
    absl::string_view message(answer);
    message.remove_prefix(strlen(kError));
    message = absl::StripTrailingAsciiWhitespace(message);
    return absl::FailedPreconditionError(absl::StrCat(
        "loading the nftables rules into the network namespace of process ",
        pid, " (", helper, "): ", message));
  }
  std::string how = "without an answer";
  if (waited == child && WIFSIGNALED(status)) {
    how = absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  return absl::InternalError(absl::StrCat(
      "the nftables helper ", helper, " for process ", pid, " ended ", how));
}

}  // namespace stockade::shim
