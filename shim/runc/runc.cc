#include "shim/runc/runc.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "shim/runc/reaper.h"

namespace stockade::shim {
namespace {

using json = nlohmann::json;

long FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<long>(st.st_size);
}

// Closes the descriptors it holds when it goes out of scope.
struct Fds {
  std::vector<int> fds;
  ~Fds() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
  void Close(int& fd) {
    if (fd < 0) return;
    for (int& held : fds) {
      if (held == fd) held = -1;
    }
    close(fd);
    fd = -1;
  }
};

// Reads `fd` into `out` until EAGAIN (false) or EOF/error (true).
bool Drain(int fd, std::string& out) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return false;
    return true;
  }
}

bool IsNotRunning(absl::string_view message) {
  return absl::StrContains(message, "not running") ||
         absl::StrContains(message, "process already finished");
}

bool IsNotExist(absl::string_view message) {
  return absl::StrContains(message, "does not exist");
}

}  // namespace

std::string LastRuncError(const std::string& log_path, long offset) {
  std::ifstream in(log_path, std::ios::binary);
  if (!in) return "";
  if (FileSize(log_path) < offset) offset = 0;  // Rotated or truncated.
  in.seekg(offset);
  std::string last;
  std::string line;
  while (std::getline(in, line)) {
    json entry = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object()) continue;
    auto level = entry.find("level");
    auto msg = entry.find("msg");
    if (level == entry.end() || msg == entry.end() || !level->is_string() ||
        !msg->is_string()) {
      continue;
    }
    if (level->get<std::string>() == "error") last = msg->get<std::string>();
  }
  return last;
}

absl::StatusOr<Runc::Output> Runc::Run(const std::vector<std::string>& args,
                                       const RuncIo& io, bool capture,
                                       absl::string_view input) {
  std::vector<std::string> argv = {
      config_.binary,   "--root",       config_.root, "--log",
      config_.log_path, "--log-format", "json"};
  if (config_.systemd_cgroup) argv.push_back("--systemd-cgroup");
  argv.insert(argv.end(), args.begin(), args.end());

  SpawnOptions spawn;
  spawn.argv = argv;
  Fds held;
  int in_w = -1, out_r = -1, err_r = -1;
  if (capture) {
    int in[2] = {-1, -1}, out[2], err[2];
    if ((!input.empty() && pipe2(in, O_CLOEXEC) != 0) ||
        pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
    }
    held.fds = {in[0], in[1], out[0], out[1], err[0], err[1]};
    in_w = in[1];
    out_r = out[0];
    err_r = err[0];
    if (in[0] >= 0) spawn.fds.emplace_back(0, in[0]);
    spawn.fds.emplace_back(1, out[1]);
    spawn.fds.emplace_back(2, err[1]);
  } else {
    if (io.stdin_fd >= 0) spawn.fds.emplace_back(0, io.stdin_fd);
    if (io.stdout_fd >= 0) spawn.fds.emplace_back(1, io.stdout_fd);
    if (io.stderr_fd >= 0) spawn.fds.emplace_back(2, io.stderr_fd);
  }

  const long log_offset = FileSize(config_.log_path);
  const uint64_t since = Reaper::Get().Sequence();
  absl::StatusOr<pid_t> pid = Spawn(spawn);
  if (!pid.ok()) return pid.status();

  Output output;
  if (capture) {
    // Only our ends stay open, so EOF comes when runc exits.
    for (int& fd : held.fds) {
      if (fd != in_w && fd != out_r && fd != err_r && fd >= 0) {
        close(fd);
        fd = -1;
      }
    }
    for (int fd : {in_w, out_r, err_r}) {
      if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
    }
    size_t written = 0;
    if (in_w >= 0 && input.empty()) held.Close(in_w);
    while (in_w >= 0 || out_r >= 0 || err_r >= 0) {
      pollfd fds[3] = {
          {in_w, POLLOUT, 0}, {out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
      if (poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (in_w >= 0 && fds[0].revents != 0) {
        ssize_t n = write(in_w, input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if ((n < 0 && errno != EAGAIN && errno != EINTR) ||
            written == input.size()) {
          held.Close(in_w);
        }
      }
      if (out_r >= 0 && fds[1].revents != 0 && Drain(out_r, output.out)) {
        held.Close(out_r);
      }
      if (err_r >= 0 && fds[2].revents != 0 && Drain(err_r, output.err)) {
        held.Close(err_r);
      }
    }
  }
  output.exit_status = Reaper::Get().Wait(*pid, since);
  if (output.exit_status != 0) {
    std::string message = LastRuncError(config_.log_path, log_offset);
    if (message.empty()) {
      message = std::string(absl::StripAsciiWhitespace(output.err));
    }
    if (message.empty()) {
      message = absl::StrCat("exit status ", output.exit_status);
    }
    const std::string& command = args.empty() ? "" : args.front();
    absl::Status error = absl::UnknownError(
        absl::StrCat("runc ", command, " failed: ", message));
    if (IsNotExist(message)) {
      error = absl::NotFoundError(error.message());
    }
    return error;
  }
  return output;
}

absl::Status Runc::Create(const std::string& id,
                          const RuncCreateOptions& options) {
  std::vector<std::string> args = {"create", "--bundle", options.bundle};
  if (!options.pid_file.empty()) {
    args.insert(args.end(), {"--pid-file", options.pid_file});
  }
  if (!options.console_socket.empty()) {
    args.insert(args.end(), {"--console-socket", options.console_socket});
  }
  if (options.no_pivot) args.push_back("--no-pivot");
  if (options.no_new_keyring) args.push_back("--no-new-keyring");
  args.push_back(id);
  return Run(args, options.io, /*capture=*/false).status();
}

absl::Status Runc::Start(const std::string& id) {
  return Run({"start", id}, {}, /*capture=*/true).status();
}

absl::Status Runc::Exec(const std::string& id, absl::string_view process_json,
                        const std::string& temp_dir,
                        const RuncExecOptions& options) {
  std::string path = absl::StrCat(temp_dir, "/.runc-process-XXXXXX");
  int fd = mkstemp(path.data());
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create ", path, ": ", strerror(errno)));
  }
  size_t written = 0;
  while (written < process_json.size()) {
    ssize_t n =
        write(fd, process_json.data() + written, process_json.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      close(fd);
      unlink(path.c_str());
      return absl::InternalError(
          absl::StrCat("cannot write ", path, ": ", strerror(e)));
    }
    written += static_cast<size_t>(n);
  }
  close(fd);
  std::vector<std::string> args = {"exec", "--process", path, "--detach"};
  if (!options.pid_file.empty()) {
    args.insert(args.end(), {"--pid-file", options.pid_file});
  }
  if (!options.console_socket.empty()) {
    args.insert(args.end(), {"--console-socket", options.console_socket});
  }
  args.push_back(id);
  absl::Status status = Run(args, options.io, /*capture=*/false).status();
  unlink(path.c_str());
  return status;
}

absl::Status Runc::Kill(const std::string& id, int signal, bool all) {
  std::vector<std::string> args = {"kill"};
  if (all) args.push_back("--all");
  args.insert(args.end(), {id, absl::StrCat(signal)});
  absl::Status status = Run(args, {}, /*capture=*/true).status();
  if (!status.ok() && IsNotRunning(status.message())) {
    return absl::NotFoundError(status.message());
  }
  return status;
}

absl::Status Runc::Delete(const std::string& id, bool force) {
  std::vector<std::string> args = {"delete"};
  if (force) args.push_back("--force");
  args.push_back(id);
  return Run(args, {}, /*capture=*/true).status();
}

absl::StatusOr<RuncState> Runc::State(const std::string& id) {
  absl::StatusOr<Output> output = Run({"state", id}, {}, /*capture=*/true);
  if (!output.ok()) return output.status();
  json state = json::parse(output->out, nullptr, /*allow_exceptions=*/false);
  if (!state.is_object()) {
    return absl::InternalError(
        absl::StrCat("runc state printed no JSON object: ", output->out));
  }
  RuncState result;
  result.id = state.value("id", "");
  result.pid = state.value("pid", 0);
  result.status = state.value("status", "");
  result.bundle = state.value("bundle", "");
  return result;
}

absl::StatusOr<std::vector<int>> Runc::Ps(const std::string& id) {
  absl::StatusOr<Output> output =
      Run({"ps", "--format", "json", id}, {}, /*capture=*/true);
  if (!output.ok()) return output.status();
  json pids = json::parse(output->out, nullptr, /*allow_exceptions=*/false);
  std::vector<int> result;
  if (pids.is_null()) return result;
  if (!pids.is_array()) {
    return absl::InternalError(
        absl::StrCat("runc ps printed no JSON array: ", output->out));
  }
  for (const json& pid : pids) {
    if (pid.is_number_integer()) result.push_back(pid.get<int>());
  }
  return result;
}

absl::Status Runc::Update(const std::string& id,
                          absl::string_view resources_json) {
  return Run({"update", "--resources=-", id}, {}, /*capture=*/true,
             resources_json)
      .status();
}

absl::Status Runc::Pause(const std::string& id) {
  return Run({"pause", id}, {}, /*capture=*/true).status();
}

absl::Status Runc::Resume(const std::string& id) {
  return Run({"resume", id}, {}, /*capture=*/true).status();
}

absl::StatusOr<std::string> Runc::Stats(const std::string& id) {
  absl::StatusOr<Output> output =
      Run({"events", "--stats", id}, {}, /*capture=*/true);
  if (!output.ok()) return output.status();
  json event = json::parse(output->out, nullptr, /*allow_exceptions=*/false);
  if (!event.is_object() || !event.contains("data")) {
    return absl::InternalError(
        absl::StrCat("runc events --stats printed no stats: ", output->out));
  }
  return event["data"].dump();
}

absl::StatusOr<int> Runc::ReadPidFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read pid file ", path, ": ", strerror(errno)));
  }
  std::stringstream content;
  content << in.rdbuf();
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(content.str()), &pid) ||
      pid <= 0) {
    return absl::InternalError(
        absl::StrCat("pid file ", path, " holds no pid: ", content.str()));
  }
  return pid;
}

}  // namespace stockade::shim
