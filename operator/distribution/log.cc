#include "operator/distribution/log.h"

#include <unistd.h>

#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/support/log.h"
#include "nlohmann/json.hpp"

namespace stockade::distribution {

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string FormatJsonLogLine(std::string_view component, LogLevel level,
                              std::string_view msg, const LogFields& fields) {
  // nlohmann::ordered_json keeps the keys in insertion order: time, level,
  // component and msg first, where a person reading the log expects them.
  nlohmann::ordered_json j;
  j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                               absl::UTCTimeZone());
  j["level"] = LogLevelName(level);
  j["component"] = component;
  j["msg"] = msg;
  for (const auto& [key, value] : fields) j[key] = value;
  // Invalid UTF-8 (a peer's bytes) is replaced, never thrown on.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

bool ParseLogLevel(std::string_view name, LogLevel* level) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                     LogLevel::kError}) {
    if (name == LogLevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

LogFn StderrJsonLog(std::string component, LogLevel min_level) {
  return [component = std::move(component), min_level](
             LogLevel level, std::string_view msg, const LogFields& fields) {
    if (level < min_level) return;
    const std::string line = FormatJsonLogLine(component, level, msg, fields);
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t n =
          write(STDERR_FILENO, line.data() + done, line.size() - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  };
}

namespace {

std::mutex& GrpcLogMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

LogFn& GrpcLogFn() {
  static LogFn* fn = new LogFn;
  return *fn;
}

void GrpcLogSink(gpr_log_func_args* args) {
  LogFn fn;
  {
    std::lock_guard<std::mutex> lock(GrpcLogMutex());
    fn = GrpcLogFn();
  }
  if (!fn) return;
  LogLevel level = LogLevel::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = LogLevel::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = LogLevel::kError;
  fn(level, args->message != nullptr ? args->message : "",
     {{"source", "grpc"},
      {"file", args->file != nullptr ? args->file : ""},
      {"line", absl::StrCat(args->line)}});
}

}  // namespace

void RouteGrpcLogs(LogFn log) {
  {
    std::lock_guard<std::mutex> lock(GrpcLogMutex());
    GrpcLogFn() = std::move(log);
  }
  gpr_set_log_function(GrpcLogSink);
}

}  // namespace stockade::distribution
