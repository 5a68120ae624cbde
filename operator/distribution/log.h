// Structured logging for the policy distribution service and the node agent:
// one JSON object per line ({"time":..., "level":..., "msg":..., fields...}),
// through a function the embedding program may replace (the operator routes
// it into its own log). Also routes gRPC's own log lines into it.
#ifndef STOCKADE_OPERATOR_DISTRIBUTION_LOG_H_
#define STOCKADE_OPERATOR_DISTRIBUTION_LOG_H_

#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stockade::distribution {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

std::string_view LogLevelName(LogLevel level);
// "debug", "info", "warning" or "error" (a --log-level flag); false for
// anything else.
bool ParseLogLevel(std::string_view name, LogLevel* level);

// Extra key/value pairs of a log line, in order.
using LogFields = std::vector<std::pair<std::string, std::string>>;

// Receives every log line. Called from any thread; must be thread-safe.
using LogFn =
    std::function<void(LogLevel, std::string_view msg, const LogFields&)>;

// One JSON line: {"time":"2025-01-02T03:04:05.678Z","level":"info",
// "component":COMPONENT,"msg":MSG,FIELD:VALUE,...}, ending in '\n'.
std::string FormatJsonLogLine(std::string_view component, LogLevel level,
                              std::string_view msg, const LogFields& fields);

// Writes JSON lines to stderr (one write(2) per line, so lines from several
// threads do not interleave), skipping levels below min_level.
LogFn StderrJsonLog(std::string component,
                    LogLevel min_level = LogLevel::kInfo);

// Sends gRPC's own log lines (gpr_log) to log, as lines with
// {"component":"grpc","file":..., "line":...}. Process-wide; the last call
// wins.
void RouteGrpcLogs(LogFn log);

}  // namespace stockade::distribution

#endif  // STOCKADE_OPERATOR_DISTRIBUTION_LOG_H_
