#include "node/denials/denial.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace stockade::node::denials {
namespace {

void Put(nlohmann::json& j, const char* key, const std::string& v) {
  if (!v.empty()) j[key] = v;
}

std::string Get(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

int64_t GetInt(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

}  // namespace

nlohmann::json Denial::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  j["time"] =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone());
  Put(j, "node", node);
  Put(j, "namespace", pod_namespace);
  Put(j, "pod", pod_name);
  Put(j, "container", container_name);
  Put(j, "containerID", container_id);
  Put(j, "agent", agent);
  if (!policy_name.empty()) {
    j["policy"] = policy_namespace.empty()
                      ? policy_name
                      : absl::StrCat(policy_namespace, "/", policy_name);
  }
  Put(j, "policyHash", policy_hash);
  Put(j, "layer", layer);
  Put(j, "mode", mode);
  Put(j, "syscall", syscall);
  Put(j, "path", path);
  Put(j, "access", access);
  Put(j, "operation", operation);
  Put(j, "destination", destination);
  Put(j, "protocol", protocol);
  if (port != 0) j["port"] = port;
  if (pid != 0) j["pid"] = pid;
  Put(j, "comm", comm);
  Put(j, "exe", exe);
  if (suppressed != 0) j["suppressed"] = suppressed;
  return j;
}

absl::StatusOr<Denial> Denial::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError("a denial is a JSON object");
  }
  Denial d;
  std::string error;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", Get(j, "time"),
                       absl::UTCTimeZone(), &d.time, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("time: \"", Get(j, "time"), "\": ", error));
  }
  d.node = Get(j, "node");
  d.pod_namespace = Get(j, "namespace");
  d.pod_name = Get(j, "pod");
  d.container_name = Get(j, "container");
  d.container_id = Get(j, "containerID");
  d.agent = Get(j, "agent");
  std::string policy = Get(j, "policy");
  if (size_t slash = policy.find('/'); slash != std::string::npos) {
    d.policy_namespace = policy.substr(0, slash);
    d.policy_name = policy.substr(slash + 1);
  } else {
    d.policy_name = policy;
  }
  d.policy_hash = Get(j, "policyHash");
  d.layer = Get(j, "layer");
  d.mode = Get(j, "mode");
  d.syscall = Get(j, "syscall");
  d.path = Get(j, "path");
  d.access = Get(j, "access");
  d.operation = Get(j, "operation");
  d.destination = Get(j, "destination");
  d.protocol = Get(j, "protocol");
  d.port = static_cast<int>(GetInt(j, "port"));
  d.pid = GetInt(j, "pid");
  d.comm = Get(j, "comm");
  d.exe = Get(j, "exe");
  d.suppressed = GetInt(j, "suppressed");
  return d;
}

std::string Denial::ToLine() const { return ToJson().dump(); }

absl::StatusOr<Denial> Denial::FromLine(absl::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("not a JSON line");
  }
  return FromJson(j);
}

stockade::v1::NodeDenial Denial::ToProto() const {
  stockade::v1::NodeDenial p;
  p.set_time_unix_ms(absl::ToUnixMillis(time));
  p.set_pod_namespace(pod_namespace);
  p.set_pod_name(pod_name);
  p.set_container_name(container_name);
  p.set_container_id(container_id);
  p.set_agent(agent);
  p.set_policy_namespace(policy_namespace);
  p.set_policy_name(policy_name);
  p.set_policy_hash(policy_hash);
  p.set_layer(layer);
  p.set_mode(mode);
  p.set_syscall(syscall);
  p.set_path(path);
  p.set_access(access);
  p.set_operation(operation);
  p.set_destination(destination);
  p.set_protocol(protocol);
  p.set_port(port);
  p.set_pid(pid);
  p.set_comm(comm);
  p.set_exe(exe);
  p.set_suppressed(suppressed);
  return p;
}

Denial Denial::FromProto(const stockade::v1::NodeDenial& p) {
  Denial d;
  d.time = absl::FromUnixMillis(p.time_unix_ms());
  d.pod_namespace = p.pod_namespace();
  d.pod_name = p.pod_name();
  d.container_name = p.container_name();
  d.container_id = p.container_id();
  d.agent = p.agent();
  d.policy_namespace = p.policy_namespace();
  d.policy_name = p.policy_name();
  d.policy_hash = p.policy_hash();
  d.layer = p.layer();
  d.mode = p.mode();
  d.syscall = p.syscall();
  d.path = p.path();
  d.access = p.access();
  d.operation = p.operation();
  d.destination = p.destination();
  d.protocol = p.protocol();
  d.port = p.port();
  d.pid = p.pid();
  d.comm = p.comm();
  d.exe = p.exe();
  d.suppressed = p.suppressed();
  return d;
}

}  // namespace stockade::node::denials
