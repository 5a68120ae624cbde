#include "cli/denials.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/table.h"
#include "node/denials/denial_log.h"

namespace stockade::cli {

using node::denials::Denial;

bool DenialMatches(const Denial& d, const Flags& flags) {
  const std::string ns = flags.Get("namespace");
  if (!ns.empty() && d.policy_namespace != ns && d.pod_namespace != ns) {
    return false;
  }
  const std::string policy = flags.Get("policy");
  if (!policy.empty() && d.policy_name != policy &&
      absl::StrCat(d.policy_namespace, "/", d.policy_name) != policy) {
    return false;
  }
  const std::string agent = flags.Get("agent");
  if (!agent.empty() && d.agent != agent) return false;
  const std::string container = flags.Get("container");
  if (!container.empty() && d.container_id != container &&
      d.container_name != container && d.pod_name != container) {
    return false;
  }
  const std::string layer = flags.Get("layer");
  if (!layer.empty() && d.layer != layer) return false;
  const std::string mode = flags.Get("mode");
  if (!mode.empty() && d.mode != mode) return false;
  return true;
}

std::string AttemptedText(const Denial& d) {
  if (d.suppressed > 0) {
    return absl::StrCat(d.suppressed, " more denials (rate limit)");
  }
  if (!d.destination.empty()) {
    return absl::StrCat(d.protocol.empty() ? "" : d.protocol + " ",
                        d.destination, d.port ? absl::StrCat(":", d.port) : "");
  }
  if (!d.path.empty()) {
    return absl::StrCat(d.access.empty() ? "" : d.access + " ", d.path);
  }
  if (!d.syscall.empty()) return d.syscall;
  if (!d.operation.empty()) {  // pids: "fork (pids.max 32)"
    return d.access.empty() ? d.operation
                            : absl::StrCat(d.operation, " (", d.access, ")");
  }
  return d.access;
}

std::string DenialTable(const std::vector<Denial>& denials) {
  std::vector<TableRow> rows;
  for (const Denial& d : denials) {
    std::string process =
        d.pid == 0 ? "" : absl::StrCat(d.comm, "[", d.pid, "]");
    rows.push_back(
        {absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", d.time, absl::UTCTimeZone()),
         d.policy_namespace.empty()
             ? d.policy_name
             : absl::StrCat(d.policy_namespace, "/", d.policy_name),
         d.pod_name.empty() ? d.container_id
                            : absl::StrCat(d.pod_name, "/", d.container_name),
         d.agent, d.layer, d.mode, AttemptedText(d), process});
  }
  return FormatTable({"TIME", "POLICY", "CONTAINER", "AGENT", "LAYER", "MODE",
                      "ATTEMPTED", "PROCESS"},
                     rows);
}

int DenialsCommand(const Flags& flags, std::ostream& out, std::ostream& err) {
  const std::string store = flags.Get("store");
  const std::string output = flags.Get("output", "table");
  if (store.empty()) {
    err << "stockade denials: want --store DIR (the node store the node "
           "agent collects denials into, e.g. /var/lib/stockade)\n";
    return 2;
  }
  if (output != "table" && output != "json") {
    err << "stockade denials: -o " << output << ": want table or json\n";
    return 2;
  }
  const std::string dir = node::denials::DenialDir(store);
  int skipped = 0;
  absl::StatusOr<std::vector<Denial>> all =
      node::denials::ReadDenials(dir, &skipped);
  if (!all.ok()) {
    err << "stockade denials: " << all.status().message() << "\n";
    return 3;
  }
  std::vector<Denial> shown;
  for (Denial& d : *all) {
    if (DenialMatches(d, flags)) shown.push_back(std::move(d));
  }
  auto print = [&](const std::vector<Denial>& batch, bool header) {
    if (output == "json") {
      for (const Denial& d : batch) out << d.ToLine() << "\n";
    } else if (!batch.empty()) {
      std::string table = DenialTable(batch);
      if (!header) table = table.substr(table.find('\n') + 1);
      out << table;
    }
    out.flush();
  };
  if (shown.empty() && output == "table" && !flags.Has("follow")) {
    out << "No denials.\n";
  }
  print(shown, true);
  if (skipped > 0) {
    err << "stockade denials: skipped " << skipped
        << " lines that are not denials\n";
  }
  if (!flags.Has("follow")) return 0;
  // Follow the log as it grows (and when it rotates).
  const std::string path = dir + "/denials.jsonl";
  std::ifstream in(path);
  in.seekg(0, std::ios::end);
  struct stat st {};
  stat(path.c_str(), &st);
  ino_t inode = st.st_ino;
  bool header = shown.empty();
  std::string line;
  while (out) {
    std::vector<Denial> batch;
    while (std::getline(in, line)) {
      absl::StatusOr<Denial> d = Denial::FromLine(line);
      if (d.ok() && DenialMatches(*d, flags)) batch.push_back(*std::move(d));
    }
    in.clear();
    if (!batch.empty()) {
      print(batch, header);
      header = false;
    }
    absl::SleepFor(absl::Milliseconds(250));
    if (stat(path.c_str(), &st) == 0 && st.st_ino != inode) {
      inode = st.st_ino;
      in = std::ifstream(path);
    }
  }
  return 0;
}

}  // namespace stockade::cli
