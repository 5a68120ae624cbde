#include "node/install/containerd_config.h"

#include <fnmatch.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace stockade::node::install {
namespace {

// The part of a TOML file before its first table header: where top-level
// keys such as `version` and `imports` live.
absl::string_view TopLevel(absl::string_view config) {
  size_t at = 0;
  while (at < config.size()) {
    size_t end = config.find('\n', at);
    if (end == absl::string_view::npos) end = config.size();
    absl::string_view line =
        absl::StripLeadingAsciiWhitespace(config.substr(at, end - at));
    if (absl::StartsWith(line, "[")) return config.substr(0, at);
    at = end + 1;
  }
  return config;
}

// The value text after `key =` on a top-level line, or npos.
size_t KeyValueStart(absl::string_view top, absl::string_view key) {
  size_t at = 0;
  while (at < top.size()) {
    size_t end = top.find('\n', at);
    if (end == absl::string_view::npos) end = top.size();
    absl::string_view line = top.substr(at, end - at);
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&rest, key)) {
      rest = absl::StripLeadingAsciiWhitespace(rest);
      if (absl::ConsumePrefix(&rest, "=")) {
        return static_cast<size_t>(rest.data() - top.data());
      }
    }
    at = end + 1;
  }
  return absl::string_view::npos;
}

std::string PluginPrefix(int version) {
  switch (version) {
    case 1:
      return "plugins.cri";
    case 3:
      return "plugins.\"io.containerd.cri.v1.runtime\"";
    default:
      return "plugins.\"io.containerd.grpc.v1.cri\"";
  }
}

// Whether the text defines the table of runtime `name`.
bool DefinesRuntime(absl::string_view text, absl::string_view name) {
  return absl::StrContains(text, absl::StrCat("runtimes.", name, "]")) ||
         absl::StrContains(text, absl::StrCat("runtimes.\"", name, "\"]"));
}

// The runc runtime as containerd defines it by default. containerd decodes
// a runtimes table from the file in place of its default map, so a file
// that names only our runtime would lose the implicit runc one, which is
// the default runtime (default_runtime_name = "runc"): every pod not asking
// for stockade would fail. Added alongside ours when the file has none.
std::string DefaultRuncTable(int version) {
  return absl::StrCat(
      "# containerd's default runc runtime, which a runtimes table in this\n"
      "# file would otherwise replace:\n",
      "[", PluginPrefix(version), ".containerd.runtimes.runc]\n",
      "  runtime_type = \"io.containerd.runc.v2\"\n");
}

bool NeedsDefaultRunc(absl::string_view text) {
  size_t at = text.find("default_runtime_name");
  if (at != absl::string_view::npos) {
    absl::string_view line = text.substr(at, text.find('\n', at) - at);
    if (!absl::StrContains(line, "\"runc\"")) return false;
  }
  return !DefinesRuntime(text, "runc");
}

}  // namespace

std::string TomlString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

absl::StatusOr<int> ConfigVersion(absl::string_view config) {
  absl::string_view top = TopLevel(config);
  size_t at = KeyValueStart(top, "version");
  if (at == absl::string_view::npos) return 1;
  absl::string_view value = top.substr(at);
  value = value.substr(0, value.find('\n'));
  value = value.substr(0, value.find('#'));
  value = absl::StripAsciiWhitespace(value);
  int version = 0;
  if (!absl::SimpleAtoi(value, &version) || version < 1 || version > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("containerd configuration: version = ", value,
                     " is not one this installer knows (1, 2 or 3)"));
  }
  return version;
}

std::string RuntimeTables(int version, const RuntimeEntry& entry) {
  std::string table = absl::StrCat(PluginPrefix(version),
                                   ".containerd.runtimes.", entry.handler);
  return absl::StrCat(
      "[", table, "]\n",                                       //
      "  runtime_type = \"io.containerd.stockade.v1\"\n",      //
      "  runtime_path = ", TomlString(entry.shim_path), "\n",  //
      "  pod_annotations = [\"stockade.dev/*\"]\n",            //
      "  container_annotations = [\"stockade.dev/*\"]\n",      //
      "  [", table, ".options]\n",                             //
      "    ConfigPath = ", TomlString(entry.shim_config_path), "\n");
}

std::string RemoveRuntimeBlock(absl::string_view config) {
  // The block was appended as "\n" BEGIN ... END "\n".
  std::string begin = absl::StrCat("\n", kBlockBegin, "\n");
  size_t start = config.find(begin);
  if (start == absl::string_view::npos) return std::string(config);
  std::string end = absl::StrCat("\n", kBlockEnd, "\n");
  size_t stop = config.find(end, start + 1);
  if (stop == absl::string_view::npos) {
    // A block someone cut short: drop from its start to the end.
    return std::string(config.substr(0, start));
  }
  return absl::StrCat(config.substr(0, start),
                      config.substr(stop + end.size()));
}

absl::StatusOr<std::string> AddRuntimeBlock(absl::string_view config,
                                            const RuntimeEntry& entry) {
  std::string base = RemoveRuntimeBlock(config);
  absl::StatusOr<int> version = ConfigVersion(base);
  if (!version.ok()) return version.status();
  if (DefinesRuntime(base, entry.handler) ||
      absl::StrContains(
          base, absl::StrCat("runtimes.", entry.handler, ".options]"))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "containerd configuration already defines a runtime \"", entry.handler,
        "\" that this installer did not add; remove it or choose another "
        "handler (--runtime-handler)"));
  }
  return absl::StrCat(base, "\n", kBlockBegin, "\n",
                      RuntimeTables(*version, entry),
                      NeedsDefaultRunc(base) ? DefaultRuncTable(*version) : "",
                      kBlockEnd, "\n");
}

std::string NewConfigFile(const RuntimeEntry& entry) {
  return absl::StrCat(kCreatedMarker, "\nversion = 2\n\n", kBlockBegin, "\n",
                      RuntimeTables(2, entry), DefaultRuncTable(2), kBlockEnd,
                      "\n");
}

std::string DropInFile(absl::string_view main_config,
                       const RuntimeEntry& entry) {
  return absl::StrCat(
      "# The stockade runtime, added by stockade-node-install; its uninstall "
      "deletes this file.\nversion = 3\n\n",
      RuntimeTables(3, entry),
      NeedsDefaultRunc(main_config) ? DefaultRuncTable(3) : "");
}

std::vector<std::string> Imports(absl::string_view config,
                                 absl::string_view config_dir) {
  std::vector<std::string> out;
  absl::string_view top = TopLevel(config);
  size_t at = KeyValueStart(top, "imports");
  if (at == absl::string_view::npos) return out;
  absl::string_view value = top.substr(at);
  size_t open = value.find('[');
  if (open == absl::string_view::npos) return out;
  size_t i = open + 1;
  while (i < value.size() && value[i] != ']') {
    char c = value[i];
    if (c == '#') {  // comment to the end of the line
      while (i < value.size() && value[i] != '\n') ++i;
      continue;
    }
    if (c == '"' || c == '\'') {
      size_t close = value.find(c, i + 1);
      if (close == absl::string_view::npos) break;
      std::string path(value.substr(i + 1, close - i - 1));
      if (!absl::StartsWith(path, "/")) {
        path = absl::StrCat(config_dir, "/", path);
      }
      out.push_back(std::move(path));
      i = close + 1;
      continue;
    }
    ++i;
  }
  return out;
}

bool ImportsCover(const std::vector<std::string>& imports,
                  absl::string_view path) {
  std::string p(path);
  for (const std::string& pattern : imports) {
    if (fnmatch(pattern.c_str(), p.c_str(), FNM_PATHNAME) == 0) return true;
  }
  return false;
}

}  // namespace stockade::node::install
