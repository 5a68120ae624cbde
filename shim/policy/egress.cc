#include "shim/policy/egress.h"

#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

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

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(n);
  }
}

// In the forked child: enter the namespace, load the rules, report, exit.
[[noreturn]] void LoadInChild(int netns_fd, const std::string& ruleset,
                              int report_fd) {
  if (setns(netns_fd, CLONE_NEWNET) != 0) {
    WriteAll(report_fd, absl::StrCat(kError, "setns: ", strerror(errno)));
    _exit(1);
  }
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    WriteAll(report_fd, absl::StrCat(kError, "nft_ctx_new failed"));
    _exit(1);
  }
  nft_ctx_clear_include_paths(ctx);
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  const int rc = nft_run_cmd_from_buffer(ctx, ruleset.c_str());
  if (rc != 0) {
    const char* err = nft_ctx_get_error_buffer(ctx);
    WriteAll(report_fd,
             absl::StrCat(kError, err != nullptr && err[0] != '\0'
                                      ? err
                                      : "nft_run_cmd_from_buffer failed"));
    _exit(1);
  }
  WriteAll(report_fd, kOk);
  _exit(0);
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

absl::Status InstallEgress(int pid, const std::string& nft_ruleset) {
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
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    const int err = errno;
    close(netns_fd);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(err)));
  }
  const pid_t child = fork();
  if (child < 0) {
    const int err = errno;
    close(netns_fd);
    close(report[0]);
    close(report[1]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(err)));
  }
  if (child == 0) {
    close(report[0]);
    LoadInChild(netns_fd, nft_ruleset, report[1]);
  }
  close(netns_fd);
  close(report[1]);
  std::string answer;
  char buf[4096];
  for (;;) {
    ssize_t n = read(report[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, n);
  }
  close(report[0]);
  int status = 0;
  pid_t waited;
  do {
    waited = waitpid(child, &status, 0);
  } while (waited < 0 && errno == EINTR);
  // ECHILD: a process-wide reaper took it; the answer is what counts.
  if (answer == kOk) return absl::OkStatus();
  if (absl::StartsWith(answer, kError)) {
    absl::string_view message(answer);
    message.remove_prefix(strlen(kError));
    message = absl::StripTrailingAsciiWhitespace(message);
    return absl::FailedPreconditionError(absl::StrCat(
        "loading the nftables rules into the network namespace of process ",
        pid, ": ", message));
  }
  std::string how = "without an answer";
  if (waited == child && WIFSIGNALED(status)) {
    how = absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  return absl::InternalError(
      absl::StrCat("the child loading the nftables rules for process ", pid,
                   " ended ", how));
}

}  // namespace stockade::shim
