#include "shim/init/seccomp_loader.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace stockade::shim {
namespace {

using ::nlohmann::json;

constexpr int kMaxArgs = 6;

absl::Status Errno(std::string_view what, int rc) {
  return absl::InternalError(
      absl::StrCat("seccomp: ", std::string(what), ": ", std::strerror(-rc)));
}

// The action named `name`, with `errno_ret` for ERRNO and TRACE.
absl::StatusOr<uint32_t> ParseAction(const std::string& name,
                                     std::optional<uint32_t> errno_ret) {
  const bool takes_ret = name == "SCMP_ACT_ERRNO" || name == "SCMP_ACT_TRACE";
  if (errno_ret.has_value() && !takes_ret) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: errnoRet is only valid with SCMP_ACT_ERRNO or "
                     "SCMP_ACT_TRACE, not ",
                     name));
  }
  if (errno_ret.has_value() && *errno_ret > 0xffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: errnoRet ", *errno_ret, " is out of range"));
  }
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") {
    return SCMP_ACT_KILL_THREAD;
  }
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_ERRNO")
    return SCMP_ACT_ERRNO(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_TRACE")
    return SCMP_ACT_TRACE(errno_ret.value_or(EPERM));
  return absl::InvalidArgumentError(
      absl::StrCat("seccomp: unsupported action \"", name, "\""));
}

absl::StatusOr<scmp_compare> ParseOp(const std::string& op) {
  static constexpr std::pair<std::string_view, scmp_compare> kOps[] = {
      {"SCMP_CMP_NE", SCMP_CMP_NE},
      {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE},
      {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
  };
  for (const auto& [name, value] : kOps) {
    if (op == name) return value;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("seccomp: unsupported operator \"", op, "\""));
}

absl::StatusOr<uint32_t> ParseArch(const std::string& name) {
  if (name == "SCMP_ARCH_NATIVE") return seccomp_arch_native();
  if (!absl::StartsWith(name, "SCMP_ARCH_")) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: unknown architecture \"", name, "\""));
  }
  std::string lower = absl::AsciiStrToLower(name.substr(10));
  uint32_t arch = seccomp_arch_resolve_name(lower.c_str());
  if (arch == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: unknown architecture \"", name, "\""));
  }
  return arch;
}

std::optional<uint32_t> OptionalErrno(const json& obj, const char* key) {
  if (!obj.contains(key) || obj.at(key).is_null()) return std::nullopt;
  return obj.at(key).get<uint32_t>();
}

}  // namespace

OciSeccompFilter::OciSeccompFilter(OciSeccompFilter&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)),
      skipped_(std::move(other.skipped_)) {}

OciSeccompFilter& OciSeccompFilter::operator=(
    OciSeccompFilter&& other) noexcept {
  if (this != &other) {
    if (ctx_ != nullptr) seccomp_release(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
    skipped_ = std::move(other.skipped_);
  }
  return *this;
}

OciSeccompFilter::~OciSeccompFilter() {
  if (ctx_ != nullptr) seccomp_release(ctx_);
}

absl::StatusOr<OciSeccompFilter> OciSeccompFilter::Build(
    std::string_view text) {
  json spec;
  try {
    spec = json::parse(text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: not valid JSON: ", e.what()));
  }
  try {
    if (!spec.is_object()) {
      return absl::InvalidArgumentError("seccomp: not a JSON object");
    }
    if (spec.contains("flags") && !spec["flags"].is_null() &&
        !spec["flags"].empty()) {
      return absl::InvalidArgumentError(
          "seccomp: \"flags\" is not supported (runc 1.1 rejects it)");
    }
    if (spec.contains("listenerPath") &&
        !spec["listenerPath"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(
          "seccomp: \"listenerPath\" (SCMP_ACT_NOTIFY) is not supported");
    }
    if (!spec.contains("defaultAction")) {
      return absl::InvalidArgumentError("seccomp: defaultAction is missing");
    }
    absl::StatusOr<uint32_t> default_action =
        ParseAction(spec["defaultAction"].get<std::string>(),
                    OptionalErrno(spec, "defaultErrnoRet"));
    if (!default_action.ok()) return default_action.status();

    scmp_filter_ctx ctx = seccomp_init(*default_action);
    if (ctx == nullptr) {
      return absl::InternalError("seccomp: seccomp_init failed");
    }
    OciSeccompFilter filter(ctx);
    // As runc: the caller (or process.noNewPrivileges) decides no_new_privs.
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc < 0) return Errno("clearing SCMP_FLTATR_CTL_NNP", rc);

    if (spec.contains("architectures") && !spec["architectures"].is_null()) {
      for (const json& arch_name : spec["architectures"]) {
        absl::StatusOr<uint32_t> arch = ParseArch(arch_name.get<std::string>());
        if (!arch.ok()) return arch.status();
        rc = seccomp_arch_add(ctx, *arch);
        if (rc < 0 && rc != -EEXIST) {
          return Errno(absl::StrCat("adding ", arch_name.get<std::string>()),
                       rc);
        }
      }
    }

    std::set<std::string> skipped;
    const json no_rules = json::array();
    const json& rules = spec.contains("syscalls") && !spec["syscalls"].is_null()
                            ? spec["syscalls"]
                            : no_rules;
    for (const json& rule : rules) {
      if (!rule.contains("names") || !rule["names"].is_array() ||
          rule["names"].empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "seccomp: a syscalls entry has no names: ", rule.dump()));
      }
      absl::StatusOr<uint32_t> action =
          ParseAction(rule.at("action").get<std::string>(),
                      OptionalErrno(rule, "errnoRet"));
      if (!action.ok()) return action.status();
      if (*action == *default_action) continue;  // Redundant, as runc.

      std::vector<scmp_arg_cmp> conditions;
      std::array<int, kMaxArgs> per_arg{};
      if (rule.contains("args") && !rule["args"].is_null()) {
        for (const json& arg : rule["args"]) {
          uint32_t index = arg.at("index").get<uint32_t>();
          if (index >= kMaxArgs) {
            return absl::InvalidArgumentError(
                absl::StrCat("seccomp: argument index ", index, " > 5"));
          }
          absl::StatusOr<scmp_compare> op =
              ParseOp(arg.at("op").get<std::string>());
          if (!op.ok()) return op.status();
          uint64_t value = arg.at("value").get<uint64_t>();
          uint64_t value_two =
              arg.contains("valueTwo") ? arg["valueTwo"].get<uint64_t>() : 0;
          conditions.push_back(scmp_arg_cmp{
              .arg = index, .op = *op, .datum_a = value, .datum_b = value_two});
          ++per_arg[index];
        }
      }
      bool split = false;
      for (int count : per_arg) split = split || count > 1;

      for (const json& name_json : rule["names"]) {
        const std::string name = name_json.get<std::string>();
        int nr = seccomp_syscall_resolve_name(name.c_str());
        if (nr == __NR_SCMP_ERROR) {
          skipped.insert(name);
          continue;
        }
        if (split) {
          for (const scmp_arg_cmp& cond : conditions) {
            rc = seccomp_rule_add_array(ctx, *action, nr, 1, &cond);
            if (rc < 0) return Errno(absl::StrCat("rule for ", name), rc);
          }
        } else {
          rc = seccomp_rule_add_array(ctx, *action, nr, conditions.size(),
                                      conditions.data());
          if (rc < 0) return Errno(absl::StrCat("rule for ", name), rc);
        }
      }
    }
    filter.skipped_.assign(skipped.begin(), skipped.end());
    return filter;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: malformed linux.seccomp object: ", e.what()));
  }
}

absl::Status OciSeccompFilter::Load() const {
  int rc = seccomp_load(ctx_);
  if (rc < 0) return Errno("seccomp_load", rc);
  return absl::OkStatus();
}

absl::StatusOr<std::string> OciSeccompFilter::ExportBpf() const {
  int fd = memfd_create("stockade-seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) return Errno("memfd_create", -errno);
  int rc = seccomp_export_bpf(ctx_, fd);
  if (rc < 0) {
    close(fd);
    return Errno("seccomp_export_bpf", rc);
  }
  std::string out;
  if (lseek(fd, 0, SEEK_SET) < 0) {
    rc = -errno;
    close(fd);
    return Errno("lseek", rc);
  }
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = -errno;
      close(fd);
      return Errno("read", rc);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

absl::Status LoadOciSeccomp(std::string_view json) {
  absl::StatusOr<OciSeccompFilter> filter = OciSeccompFilter::Build(json);
  if (!filter.ok()) return filter.status();
  return filter->Load();
}

}  // namespace stockade::shim
