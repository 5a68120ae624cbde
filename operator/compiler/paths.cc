#include "operator/compiler/paths.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stockade::compiler {

absl::StatusOr<std::string> CleanAbsolutePath(absl::string_view path,
                                              bool keep_trailing_slash) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", path, "\" is not an absolute path (must start with /)"));
  }
  if (path.size() > 4096) {
    return absl::InvalidArgumentError("path longer than 4096 bytes");
  }
  for (char c : path) {
    if (c == '\0' || c == '\n' || c == '\r') {
      return absl::InvalidArgumentError(
          "path contains a control character (NUL or newline)");
    }
  }
  std::string out;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", path, "\" contains a \"", part,
                       "\" component; write the path without it"));
    }
    absl::StrAppend(&out, "/", part);
  }
  if (out.empty()) return std::string("/");
  if (keep_trailing_slash && path.back() == '/') out.push_back('/');
  return out;
}

bool IsBeneath(absl::string_view path, absl::string_view dir) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir == "/") return true;
  if (path.substr(0, dir.size()) != dir) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

}  // namespace stockade::compiler
