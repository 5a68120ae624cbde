#include "shim/policy/policy.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "shim/policy/egress.h"
#include "shim/policy/seccomp_cache.h"
#include "shim/spec/apply_spec.h"
#include "store/store.h"

namespace stockade::shim {
namespace {

namespace v1 = ::stockade::v1;
// Keeps the spec's key order (as ApplySpec does).
using Json = nlohmann::ordered_json;

constexpr char kSandboxPolicyName[] = "sandbox";
constexpr int kSandboxMaxProcesses = 8;

std::string BaseName(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Errno(int err) { return strerror(err); }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", Errno(errno)));
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read ", path, ": ", Errno(err)));
    }
    if (n == 0) break;
    data.append(buf, n);
  }
  close(fd);
  return data;
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(n);
  }
  return true;
}

// Writes `data` to `path` atomically: a temporary file in the same
// directory renamed over it. No fsync: a bundle lives in containerd's state
// directory (tmpfs on a node) and does not outlive a reboot, and an fsync
// there costs every container start milliseconds on a busy disk.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data,
                             mode_t mode) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  std::string tmp =
      absl::StrCat(dir, "/.", path.substr(slash + 1), ".tmp.XXXXXX");
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create a file in ", dir, ": ", Errno(errno)));
  }
  bool ok = fchmod(fd, mode) == 0 && WriteAll(fd, data);
  int err = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot write ", path, ": ", Errno(err)));
  }
  return absl::OkStatus();
}

// A policy named for a container: the store's (namespace, name) pair.
struct PolicyRef {
  std::string namespace_;  // "" for a cluster-scoped policy
  std::string name;
};

std::string Display(const PolicyRef& ref) {
  return absl::StrCat(
      ref.namespace_.empty() ? store::kClusterNamespace : ref.namespace_, "/",
      ref.name);
}

// "NAMESPACE/NAME" or "NAME" (in `namespace_`); "_cluster/NAME" names a
// cluster-scoped policy.
absl::StatusOr<PolicyRef> ParseDefaultPolicy(const std::string& value,
                                             const std::string& namespace_) {
  const size_t slash = value.find('/');
  if (slash == std::string::npos) return PolicyRef{namespace_, value};
  PolicyRef ref{value.substr(0, slash), value.substr(slash + 1)};
  if (ref.namespace_.empty() || ref.name.empty() ||
      absl::StrContains(ref.name, '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat("the shim's default policy \"", value,
                     "\" is not NAMESPACE/NAME or NAME"));
  }
  if (ref.namespace_ == store::kClusterNamespace) ref.namespace_.clear();
  return ref;
}

// The string annotation `key`, nullopt when absent.
absl::StatusOr<std::optional<std::string>> Annotation(const Json& doc,
                                                      const char* key) {
  auto it = doc.find("annotations");
  if (it == doc.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) {
    return absl::InvalidArgumentError(
        "config.json: annotations: want an object");
  }
  auto value = it->find(key);
  if (value == it->end()) return std::nullopt;
  if (!value->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: annotations[\"", key, "\"]: want a string"));
  }
  return value->get<std::string>();
}

// The args of an OCI Process object.
absl::StatusOr<std::vector<std::string>> ProcessArgs(const Json& process,
                                                     absl::string_view field) {
  if (!process.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": want an object"));
  }
  auto it = process.find("args");
  if (it == process.end() || !it->is_array() || it->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".args: no program to run"));
  }
  std::vector<std::string> args;
  for (const Json& a : *it) {
    if (!a.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".args: want strings"));
    }
    args.push_back(a.get<std::string>());
  }
  return args;
}

absl::Status WrapProcess(Json& process, absl::string_view field, bool seccomp) {
  absl::StatusOr<std::vector<std::string>> args = ProcessArgs(process, field);
  if (!args.ok()) return args.status();
  process["args"] = WrapArgs(*args, seccomp);
  return absl::OkStatus();
}

bool IsAtOrBeneath(absl::string_view path, absl::string_view dir) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path == dir || (absl::StartsWith(path, dir) &&
                         path.size() > dir.size() && path[dir.size()] == '/');
}

// Drops every mount at or beneath kContainerDir (nothing may shadow the
// ruleset or the init) and appends the two of stockade-init, last.
absl::Status AddInitMounts(Json& doc, const std::string& bundle_dir,
                           const std::string& init_binary) {
  auto it = doc.find("mounts");
  Json mounts = Json::array();
  if (it != doc.end() && !it->is_null()) {
    if (!it->is_array()) {
      return absl::InvalidArgumentError("config.json: mounts: want an array");
    }
    for (const Json& m : *it) {
      if (m.is_object()) {
        auto dest = m.find("destination");
        if (dest != m.end() && dest->is_string() &&
            IsAtOrBeneath(dest->get<std::string>(), kContainerDir)) {
          continue;
        }
      }
      mounts.push_back(m);
    }
  }
  Json dir;
  dir["destination"] = kContainerDir;
  dir["type"] = "bind";
  dir["source"] = bundle_dir;
  dir["options"] = {"bind", "ro", "nosuid", "nodev", "noexec"};
  mounts.push_back(std::move(dir));
  Json init;
  init["destination"] = kContainerInit;
  init["type"] = "bind";
  init["source"] = init_binary;
  init["options"] = {"bind", "ro", "nosuid", "nodev"};
  mounts.push_back(std::move(init));
  doc["mounts"] = std::move(mounts);
  return absl::OkStatus();
}

// Writes the ruleset and the init placeholder into <bundle>/stockade.
// Returns whether the directory was created (for the undo).
absl::StatusOr<bool> WriteBundleFiles(const std::string& dir,
                                      const v1::LandlockRuleset& ruleset,
                                      const std::string& seccomp_bpf) {
  bool created = false;
  if (mkdir(dir.c_str(), 0755) == 0) {
    created = true;
  } else if (errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", Errno(errno)));
  }
  chmod(dir.c_str(), 0755);
  absl::Status st = WriteFileAtomic(absl::StrCat(dir, "/landlock.binpb"),
                                    ruleset.SerializeAsString(), 0644);
  if (st.ok() && !seccomp_bpf.empty()) {
    st = WriteFileAtomic(absl::StrCat(dir, "/seccomp.bpf"), seccomp_bpf, 0644);
  }
  if (st.ok()) {
    // The mountpoint of the init binary inside the read-only directory mount.
    const std::string placeholder = absl::StrCat(dir, "/init");
    int fd = open(placeholder.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    if (fd < 0) {
      st = absl::InternalError(
          absl::StrCat("cannot create ", placeholder, ": ", Errno(errno)));
    } else {
      close(fd);
    }
  }
  if (!st.ok()) {
    if (created) {
      unlink(absl::StrCat(dir, "/landlock.binpb").c_str());
      unlink(absl::StrCat(dir, "/seccomp.bpf").c_str());
      unlink(absl::StrCat(dir, "/init").c_str());
      rmdir(dir.c_str());
    }
    return st;
  }
  return created;
}

absl::Status CheckInitBinary(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("stockade-init not found at ", path,
                     " (shim config `init`): ", Errno(errno)));
  }
  if (!S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("stockade-init at ", path, " is not an executable file"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> WrapArgs(const std::vector<std::string>& args,
                                  bool seccomp) {
  std::vector<std::string> out = {kContainerInit, "--ruleset",
                                  kContainerRuleset};
  if (seccomp) out.insert(out.end(), {"--seccomp", kContainerSeccomp});
  out.push_back("--");
  if (args.size() >= out.size() &&
      std::equal(out.begin(), out.end(), args.begin())) {
    return args;
  }
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

absl::StatusOr<v1::CompiledPolicy> SandboxPolicy(
    absl::string_view pause_path, const v1::CompiledPolicy& pod_policy,
    absl::string_view namespace_) {
  v1::AgentPolicy policy;
  policy.set_api_version(compiler::kApiVersion);
  policy.set_kind("AgentPolicy");
  policy.mutable_metadata()->set_name(kSandboxPolicyName);
  policy.mutable_metadata()->set_namespace_(std::string(namespace_));
  v1::AgentPolicySpec* spec = policy.mutable_spec();
  spec->set_mode(pod_policy.effective().mode());
  spec->mutable_filesystem()->set_read_only_root(true);
  spec->mutable_exec()->add_allow(std::string(pause_path));
  spec->set_procfs(v1::PROCFS_EXPOSURE_NONE);
  spec->set_sysfs(v1::SYSFS_EXPOSURE_NONE);
  *spec->mutable_network() = pod_policy.effective().network();
  spec->mutable_syscalls()->set_baseline(v1::SYSCALL_BASELINE_STRICT);
  spec->mutable_syscalls()->set_default_action(v1::SYSCALL_ACTION_ERRNO);
  spec->mutable_processes()->set_max(kSandboxMaxProcesses);
  compiler::CompileResult result =
      compiler::CompileAgentPolicy(policy, {}, {}, "Sandbox");
  if (!result.problems.empty() || !result.compiled.has_value()) {
    std::vector<std::string> problems;
    for (const compiler::Problem& p : result.problems) {
      problems.push_back(absl::StrCat(p.path, ": ", p.message));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("the sandbox policy (entrypoint ", pause_path,
                     ") does not compile: ", absl::StrJoin(problems, "; ")));
  }
  v1::CompiledPolicy compiled = *std::move(result.compiled);
  // The sandbox holds the pod's network namespace: the pod policy's egress
  // rules exactly, their log prefix naming the pod's policy (node/denials
  // attributes the logged drops by it).
  compiled.set_nftables(pod_policy.nftables());
  // RLIMIT_NPROC counts every process of the real uid on the node (without a
  // user namespace), and pause runs as the same uid (65535) in every pod: a
  // node with more pods than the limit could not start another sandbox. The
  // pids cgroup limit alone bounds the sandbox.
  auto* rlimits = compiled.mutable_oci()->mutable_rlimits();
  for (int i = rlimits->size() - 1; i >= 0; --i) {
    if (rlimits->Get(i).type() == "RLIMIT_NPROC") rlimits->DeleteSubrange(i, 1);
  }
  return compiled;
}

absl::StatusOr<AppliedPolicy> ApplyPolicyToBundle(
    const PolicyConfig& config, const std::string& bundle,
    const std::string& containerd_ns) {
  const std::string id = BaseName(bundle);
  auto fail = [&id](absl::StatusCode code, absl::string_view message) {
    return absl::Status(
        code, absl::StrCat("stockade: container ", id, ": ", message));
  };
  const std::string config_path = absl::StrCat(bundle, "/config.json");
  absl::StatusOr<std::string> text = ReadFile(config_path);
  if (!text.ok()) return fail(text.status().code(), text.status().message());
  Json doc;
  try {
    doc = Json::parse(*text);
  } catch (const Json::exception& e) {
    return fail(absl::StatusCode::kInvalidArgument,
                absl::StrCat("config.json: ", e.what()));
  }
  if (!doc.is_object()) {
    return fail(absl::StatusCode::kInvalidArgument,
                "config.json: want an object");
  }

  absl::StatusOr<std::optional<std::string>> type =
      Annotation(doc, kCriContainerTypeAnnotation);
  absl::StatusOr<std::optional<std::string>> k8s_ns =
      Annotation(doc, kCriSandboxNamespaceAnnotation);
  absl::StatusOr<std::optional<std::string>> named =
      Annotation(doc, kPolicyAnnotation);
  absl::StatusOr<std::optional<std::string>> pod_name =
      Annotation(doc, kCriSandboxNameAnnotation);
  absl::StatusOr<std::optional<std::string>> container_name =
      Annotation(doc, kCriContainerNameAnnotation);
  absl::StatusOr<std::optional<std::string>> agent =
      Annotation(doc, kAgentAnnotation);
  for (const auto* a :
       {&type, &k8s_ns, &named, &pod_name, &container_name, &agent}) {
    if (!a->ok()) return fail(a->status().code(), a->status().message());
  }
  if (agent->has_value() && !store::CheckIndexKey("", **agent).ok()) {
    return fail(absl::StatusCode::kInvalidArgument,
                absl::StrCat("annotation ", kAgentAnnotation, " \"", **agent,
                             "\" is not an Agent name: want a Kubernetes "
                             "object name (lowercase letters, digits, '-', "
                             "'.'; at most 253)"));
  }
  AppliedPolicy applied;
  applied.sandbox = type->has_value() && **type == "sandbox";
  applied.pod_container = type->has_value() && **type == "container";
  applied.set_apparmor_profile = config.apparmor_enabled;
  const std::string namespace_ =
      k8s_ns->has_value() && !(*k8s_ns)->empty() ? **k8s_ns : containerd_ns;

  PolicyRef ref;
  if (named->has_value()) {
    const std::string& name = **named;
    if (name.empty() || absl::StrContains(name, '/')) {
      return fail(absl::StatusCode::kInvalidArgument,
                  absl::StrCat("annotation ", kPolicyAnnotation, " \"", name,
                               "\" is not a policy name (policies of other "
                               "namespaces cannot be named)"));
    }
    ref = PolicyRef{namespace_, name};
  } else if (!config.default_policy.empty()) {
    absl::StatusOr<PolicyRef> def =
        ParseDefaultPolicy(config.default_policy, namespace_);
    if (!def.ok()) return fail(def.status().code(), def.status().message());
    ref = *def;
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "stockade: container ", id, " names no policy (annotation ",
        kPolicyAnnotation, ") and the shim has no default policy"));
  }
  applied.namespace_ = ref.namespace_;
  applied.name = ref.name;

  absl::StatusOr<store::Store> store = store::Store::Open(config.store_root);
  if (!store.ok()) {
    return fail(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("policy \"", Display(ref),
                     "\": cannot open the store: ", store.status().message()));
  }
  absl::StatusOr<v1::CompiledPolicy> resolved =
      store->Resolve(ref.namespace_, ref.name);
  if (!resolved.ok()) {
    // NotFound would tell containerd the container does not exist.
    const absl::StatusCode code = absl::IsNotFound(resolved.status())
                                      ? absl::StatusCode::kFailedPrecondition
                                      : resolved.status().code();
    return fail(code, absl::StrCat("policy \"", Display(ref),
                                   "\": ", resolved.status().message()));
  }
  // The container uses this compiled policy: the node agent keeps it while
  // the reference exists. NotFound: collected since Resolve read it (the
  // policy was just replaced): resolve the new version once more.
  // The pod and Agent it belongs to, for denial reports (node/denials).
  store::RefPod pod;
  if (pod_name->has_value()) {
    pod.namespace_ = k8s_ns->value_or("");
    pod.name = **pod_name;
    pod.container = container_name->value_or("");
  }
  pod.agent = agent->value_or("");
  absl::Status ref_added = store->AddRef(resolved->hash(), id, pod);
  if (absl::IsNotFound(ref_added)) {
    resolved = store->Resolve(ref.namespace_, ref.name);
    ref_added = resolved.ok() ? store->AddRef(resolved->hash(), id, pod)
                              : resolved.status();
  }
  if (!ref_added.ok()) {
    return fail(absl::StatusCode::kFailedPrecondition,
                absl::StrCat("policy \"", Display(ref),
                             "\": cannot record its use in the store: ",
                             ref_added.message()));
  }
  // Undone on every failure below.
  struct RefGuard {
    store::Store* store;
    std::string hash, id;
    bool keep = false;
    ~RefGuard() {
      if (!keep) (void)store->RemoveRef(hash, id);
    }
  } ref_guard{&*store, resolved->hash(), id};
  applied.ref_hash = resolved->hash();
  if (applied.sandbox) {
    auto process = doc.find("process");
    if (process == doc.end()) {
      return fail(absl::StatusCode::kInvalidArgument,
                  "config.json: process: missing");
    }
    absl::StatusOr<std::vector<std::string>> args =
        ProcessArgs(*process, "config.json: process");
    if (!args.ok()) return fail(args.status().code(), args.status().message());
    absl::StatusOr<v1::CompiledPolicy> sandbox =
        SandboxPolicy(args->front(), *resolved, namespace_);
    if (!sandbox.ok()) {
      return fail(sandbox.status().code(), sandbox.status().message());
    }
    applied.policy = *std::move(sandbox);
  } else {
    applied.policy = *std::move(resolved);
  }

  // A container on the host's network cannot get egress rules.
  absl::StatusOr<NetworkNamespace> netns = NetworkNamespaceOf(*text);
  if (!netns.ok()) return fail(netns.status().code(), netns.status().message());
  absl::StatusOr<EgressPlan> egress = DecideEgress(*netns, applied);
  if (!egress.ok()) {
    return fail(egress.status().code(), egress.status().message());
  }
  applied.egress = *std::move(egress);

  absl::Status init_ok = CheckInitBinary(config.init_binary);
  if (!init_ok.ok()) return fail(init_ok.code(), init_ok.message());

  // The spec will name the policy's AppArmor profile: it must be loaded.
  if (config.apparmor_enabled && !applied.policy.apparmor().name().empty()) {
    absl::Status loaded =
        EnsureAppArmorProfile(config.apparmor, applied.policy.apparmor().name(),
                              applied.policy.apparmor().text());
    if (!loaded.ok()) return fail(loaded.code(), loaded.message());
  }
  ApplySpecOptions options;
  options.set_apparmor_profile = config.apparmor_enabled;
  absl::StatusOr<std::string> rewritten =
      ApplySpec(*text, applied.policy, options);
  if (!rewritten.ok()) {
    return fail(rewritten.status().code(), rewritten.status().message());
  }
  Json out;
  try {
    out = Json::parse(*rewritten);
  } catch (const Json::exception& e) {
    return fail(absl::StatusCode::kInternal,
                absl::StrCat("rewritten config.json: ", e.what()));
  }
  auto process = out.find("process");
  if (process == out.end()) {
    return fail(absl::StatusCode::kInvalidArgument,
                "config.json: process: missing");
  }
  // The seccomp filter goes to stockade-init as a ready BPF program.
  std::string seccomp_bpf;
  auto linux_it = out.find("linux");
  if (linux_it != out.end() && linux_it->is_object()) {
    auto seccomp = linux_it->find("seccomp");
    if (seccomp != linux_it->end() && !seccomp->is_null()) {
      absl::StatusOr<std::string> bpf =
          SeccompBpf(seccomp->dump(), config.seccomp_cache_dir);
      if (!bpf.ok()) {
        return fail(bpf.status().code(),
                    absl::StrCat("seccomp filter: ", bpf.status().message()));
      }
      seccomp_bpf = *std::move(bpf);
      linux_it->erase(seccomp);
      applied.seccomp_in_init = true;
    }
  }
  absl::Status wrapped =
      WrapProcess(*process, "config.json: process", applied.seccomp_in_init);
  if (!wrapped.ok()) return fail(wrapped.code(), wrapped.message());
  const std::string dir = absl::StrCat(bundle, "/", kBundleDir);
  absl::Status mounted = AddInitMounts(out, dir, config.init_binary);
  if (!mounted.ok()) return fail(mounted.code(), mounted.message());

  absl::StatusOr<bool> created =
      WriteBundleFiles(dir, applied.policy.landlock(), seccomp_bpf);
  if (!created.ok()) {
    return fail(created.status().code(), created.status().message());
  }
  struct stat st;
  const mode_t mode =
      stat(config_path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
  absl::Status written = WriteFileAtomic(config_path, out.dump(2) + "\n", mode);
  if (!written.ok()) {
    if (*created) {
      unlink(absl::StrCat(dir, "/landlock.binpb").c_str());
      unlink(absl::StrCat(dir, "/seccomp.bpf").c_str());
      unlink(absl::StrCat(dir, "/init").c_str());
      rmdir(dir.c_str());
    }
    return fail(written.code(), written.message());
  }
  applied.ruleset_path = absl::StrCat(dir, "/landlock.binpb");
  ref_guard.keep = true;
  return applied;
}

absl::StatusOr<std::string> ApplyPolicyToExec(const AppliedPolicy& applied,
                                              absl::string_view process_json) {
  Json process;
  try {
    process = Json::parse(process_json);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("stockade: exec process: ", e.what()));
  }
  if (!process.is_object()) {
    return absl::InvalidArgumentError("stockade: exec process: want an object");
  }
  // The process-level rules of ApplySpec (capabilities, noNewPrivileges,
  // rlimits, AppArmor profile), applied to a spec holding only the process.
  Json wrapper = Json::object();
  wrapper["process"] = std::move(process);
  ApplySpecOptions options;
  options.set_apparmor_profile = applied.set_apparmor_profile;
  absl::StatusOr<std::string> rewritten =
      ApplySpec(wrapper.dump(), applied.policy, options);
  if (!rewritten.ok()) {
    return absl::Status(
        rewritten.status().code(),
        absl::StrCat("stockade: exec process: ", rewritten.status().message()));
  }
  Json out;
  try {
    out = Json::parse(*rewritten);
  } catch (const Json::exception& e) {
    return absl::InternalError(
        absl::StrCat("stockade: exec process: ", e.what()));
  }
  Json result = std::move(out["process"]);
  absl::Status wrapped =
      WrapProcess(result, "process", applied.seccomp_in_init);
  if (!wrapped.ok()) {
    return absl::Status(wrapped.code(),
                        absl::StrCat("stockade: exec ", wrapped.message()));
  }
  return result.dump();
}

}  // namespace stockade::shim
