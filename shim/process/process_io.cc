#include "shim/process/process_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "shim/runc/reaper.h"

namespace stockade::shim {
namespace {

constexpr int kConsoleTimeoutMs = 10'000;
constexpr int kLoggerReadyTimeoutMs = 10'000;

struct Uri {
  std::string scheme;  // "" for a plain path
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Unescape(absl::string_view in, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 &&
        HexValue(in[i + 2]) >= 0) {
      out.push_back(
          static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else if (plus_is_space && in[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

Uri ParseUri(const std::string& text) {
  Uri uri;
  const size_t sep = text.find("://");
  if (sep == std::string::npos) {
    uri.path = text;
    return uri;
  }
  uri.scheme = text.substr(0, sep);
  absl::string_view rest = absl::string_view(text).substr(sep + 3);
  absl::string_view query;
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  // "binary:///path": empty host. A host part is ignored, as Go's url.Path.
  const size_t slash = rest.find('/');
  uri.path = slash == absl::string_view::npos
                 ? ""
                 : Unescape(rest.substr(slash), /*plus_is_space=*/false);
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    uri.query.emplace_back(Unescape(kv.first, true), Unescape(kv.second, true));
  }
  return uri;
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

absl::Status MkdirAll(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  std::string partial;
  for (absl::string_view part : absl::StrSplit(dir, '/', absl::SkipEmpty())) {
    absl::StrAppend(&partial, "/", part);
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return Errno("mkdir", partial);
    }
  }
  return absl::OkStatus();
}

// Where one output stream's bytes are to be written.
struct Sink {
  int fd = -1;
  int keep_open = -1;  // a FIFO's read end, held so writes never fail
  bool fifo = false;   // needs a copy through a pipe
};

absl::StatusOr<Sink> OpenSink(const std::string& text) {
  Sink sink;
  if (text.empty()) return sink;
  Uri uri = ParseUri(text);
  if (uri.scheme.empty() || uri.scheme == "fifo") {
    // Opening the read end first makes the write open return at once, and
    // holding it means a missing reader never blocks or breaks the copy.
    sink.keep_open = open(uri.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (sink.keep_open < 0) return Errno("open", uri.path);
    sink.fd = open(uri.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (sink.fd < 0) {
      absl::Status status = Errno("open", uri.path);
      close(sink.keep_open);
      return status;
    }
    sink.fifo = true;
    return sink;
  }
  if (uri.scheme == "file") {
    if (uri.path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("no path in ", text));
    }
    const size_t slash = uri.path.rfind('/');
    if (absl::Status s = MkdirAll(uri.path.substr(0, slash)); !s.ok()) {
      return s;
    }
    sink.fd =
        open(uri.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (sink.fd < 0) return Errno("open", uri.path);
    return sink;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported stdio URI scheme in ", text));
}

}  // namespace

struct ProcessIo::Shared {
  std::mutex mu;
  std::condition_variable cv;
  int outputs_pending = 0;
  std::vector<IoLoop::Id> copies;
};

ProcessIo::ProcessIo() : shared_(std::make_shared<Shared>()) {}

absl::StatusOr<std::unique_ptr<ProcessIo>> ProcessIo::Create(
    const Stdio& stdio, const std::string& container_id,
    const std::string& ns) {
  std::unique_ptr<ProcessIo> io(new ProcessIo());
  io->terminal_ = stdio.terminal;
  if (!stdio.stdin_path.empty()) {
    Uri uri = ParseUri(stdio.stdin_path);
    if (!uri.scheme.empty() && uri.scheme != "fifo") {
      return absl::InvalidArgumentError(
          absl::StrCat("stdin must be a FIFO: ", stdio.stdin_path));
    }
    io->stdin_src_ = open(uri.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (io->stdin_src_ < 0) return Errno("open stdin", uri.path);
    if (!io->terminal_) {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return Errno("pipe for", "stdin");
      io->child_stdin_ = p[0];
      io->stdin_dst_ = p[1];
    }
  }
  if (absl::Status s = io->OpenOutputs(stdio, container_id, ns); !s.ok()) {
    return s;
  }
  if (io->terminal_) {
    char dir[] = "/tmp/stockade-pty-XXXXXX";
    if (mkdtemp(dir) == nullptr) return Errno("mkdtemp", dir);
    io->console_dir_ = dir;
    io->console_socket_ = absl::StrCat(dir, "/pty.sock");
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (io->console_socket_.size() >= sizeof(addr.sun_path)) {
      return absl::InternalError("console socket path too long");
    }
    strcpy(addr.sun_path, io->console_socket_.c_str());
    io->console_listen_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (io->console_listen_ < 0 ||
        bind(io->console_listen_, reinterpret_cast<sockaddr*>(&addr),
             sizeof(addr)) != 0 ||
        listen(io->console_listen_, 1) != 0) {
      return Errno("console socket", io->console_socket_);
    }
  }
  return io;
}

absl::Status ProcessIo::OpenOutputs(const Stdio& stdio, const std::string& id,
                                    const std::string& ns) {
  Uri out_uri = ParseUri(stdio.stdout_path);
  Sink out_sink, err_sink;
  if (out_uri.scheme == "binary") {
    // One logger takes both streams: fd 3 stdout, fd 4 stderr, and closes
    // (or writes to) fd 5 once it is ready.
    int out[2], err[2], ready[2];
    if (pipe2(out, O_CLOEXEC) != 0) return Errno("pipe for", "logger");
    if (pipe2(err, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return Errno("pipe for", "logger");
    }
    if (pipe2(ready, O_CLOEXEC) != 0) {
      for (int fd : {out[0], out[1], err[0], err[1]}) close(fd);
      return Errno("pipe for", "logger");
    }
    SpawnOptions spawn;
    spawn.argv = {out_uri.path};
    for (const auto& [key, value] : out_uri.query) {
      spawn.argv.push_back(key);
      if (!value.empty()) spawn.argv.push_back(value);
    }
    spawn.env =
        std::vector<std::string>{absl::StrCat("CONTAINER_ID=", id),
                                 absl::StrCat("CONTAINER_NAMESPACE=", ns)};
    spawn.fds = {{3, out[0]}, {4, err[0]}, {5, ready[1]}};
    spawn.kill_with_parent = false;  // It outlives the calling thread.
    const uint64_t since = Reaper::Get().Sequence();
    absl::StatusOr<pid_t> pid = Spawn(spawn);
    close(out[0]);
    close(err[0]);
    close(ready[1]);
    if (pid.ok()) {
      Reaper::Get().Watch(*pid, since, [](int, int, absl::Time) {});
    }
    stdout_.dst = out[1];
    stderr_.dst = err[1];
    if (!pid.ok()) {
      close(ready[0]);
      return absl::InternalError(absl::StrCat(
          "cannot start logger ", out_uri.path, ": ", pid.status().message()));
    }
    pollfd p = {ready[0], POLLIN, 0};
    int n;
    do {
      n = poll(&p, 1, kLoggerReadyTimeoutMs);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      char byte;
      [[maybe_unused]] ssize_t r = read(ready[0], &byte, 1);
    }
    close(ready[0]);
    if (n == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("logger ", out_uri.path, " did not get ready"));
    }
  } else {
    absl::StatusOr<Sink> sink = OpenSink(stdio.stdout_path);
    if (!sink.ok()) return sink.status();
    out_sink = *sink;
    if (!terminal_) {
      sink = OpenSink(stdio.stderr_path);
      if (!sink.ok()) {
        CloseFd(out_sink.fd);
        CloseFd(out_sink.keep_open);
        return sink.status();
      }
      err_sink = *sink;
    }
    stdout_.dst = out_sink.fd;
    stderr_.dst = err_sink.fd;
    if (out_sink.keep_open >= 0)
      stdout_.keep_open.push_back(out_sink.keep_open);
    if (err_sink.keep_open >= 0)
      stderr_.keep_open.push_back(err_sink.keep_open);
  }
  if (terminal_) return absl::OkStatus();  // Output comes from the master.
  // FIFOs are fed through a pipe; files and logger pipes go to the process.
  struct Stream {
    Output& output;
    bool fifo;
    int& child;
  };
  for (Stream s : {Stream{stdout_, out_sink.fifo, child_stdout_},
                   Stream{stderr_, err_sink.fifo, child_stderr_}}) {
    if (s.output.dst < 0) continue;
    if (!s.fifo) {
      s.child = s.output.dst;
      s.output.dst = -1;
      continue;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return Errno("pipe for", "output");
    s.child = p[1];
    s.output.src = p[0];
  }
  return absl::OkStatus();
}

ProcessIo::~ProcessIo() {
  std::vector<IoLoop::Id> copies;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    copies = shared_->copies;
  }
  for (IoLoop::Id id : copies) IoLoop::Get().Cancel(id);
  for (int* fd : {&child_stdin_, &child_stdout_, &child_stderr_, &stdin_src_,
                  &stdin_dst_, &stdout_.src, &stdout_.dst, &stderr_.src,
                  &stderr_.dst, &console_listen_, &console_master_}) {
    CloseFd(*fd);
  }
  for (Output* out : {&stdout_, &stderr_}) {
    for (int fd : out->keep_open) close(fd);
  }
  if (!console_dir_.empty()) {
    unlink(console_socket_.c_str());
    rmdir(console_dir_.c_str());
  }
}

RuncIo ProcessIo::runc_io() const {
  return RuncIo{child_stdin_, child_stdout_, child_stderr_};
}

void ProcessIo::StartCopy(int src, int dst, std::vector<int> keep_open,
                          bool output) {
  std::shared_ptr<Shared> shared = shared_;
  if (output) {
    std::lock_guard<std::mutex> lock(shared->mu);
    ++shared->outputs_pending;
  }
  IoLoop::Id id =
      IoLoop::Get().Copy(src, dst, std::move(keep_open), [shared, output] {
        if (!output) return;
        std::lock_guard<std::mutex> lock(shared->mu);
        --shared->outputs_pending;
        shared->cv.notify_all();
      });
  std::lock_guard<std::mutex> lock(shared->mu);
  shared->copies.push_back(id);
  if (!output) stdin_copy_ = id;
}

absl::Status ProcessIo::ReceiveConsole() {
  pollfd p = {console_listen_, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, kConsoleTimeoutMs);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    return absl::DeadlineExceededError(
        "runc sent no pty master to the console socket");
  }
  int conn = accept4(console_listen_, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return Errno("accept on", console_socket_);
  char data[4096];
  iovec iov = {data, sizeof(data)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t r;
  do {
    r = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  close(conn);
  CloseFd(console_listen_);
  unlink(console_socket_.c_str());
  rmdir(console_dir_.c_str());
  console_dir_.clear();
  if (r < 0) return Errno("recvmsg on", console_socket_);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      memcpy(&console_master_, CMSG_DATA(c), sizeof(int));
      return absl::OkStatus();
    }
  }
  return absl::InternalError("the console socket message held no descriptor");
}

absl::Status ProcessIo::Started() {
  std::lock_guard<std::mutex> lock(mu_);
  CloseFd(child_stdin_);
  CloseFd(child_stdout_);
  CloseFd(child_stderr_);
  if (terminal_) {
    if (absl::Status s = ReceiveConsole(); !s.ok()) return s;
    if (stdout_.dst >= 0) {
      int src = fcntl(console_master_, F_DUPFD_CLOEXEC, 0);
      if (src < 0) return Errno("dup", "pty master");
      StartCopy(src, stdout_.dst, std::move(stdout_.keep_open), true);
      stdout_.dst = -1;
      stdout_.keep_open.clear();
    }
    if (stdin_src_ >= 0) {
      stdin_dst_ = fcntl(console_master_, F_DUPFD_CLOEXEC, 0);
      if (stdin_dst_ < 0) return Errno("dup", "pty master");
    }
  } else {
    for (Output* out : {&stdout_, &stderr_}) {
      if (out->src < 0) continue;
      StartCopy(out->src, out->dst, std::move(out->keep_open), true);
      out->src = out->dst = -1;
      out->keep_open.clear();
    }
  }
  if (stdin_src_ >= 0 && stdin_dst_ >= 0) {
    StartCopy(stdin_src_, stdin_dst_, {}, false);
    stdin_src_ = stdin_dst_ = -1;
    if (stdin_closed_) IoLoop::Get().FinishWhenDrained(stdin_copy_);
  }
  return absl::OkStatus();
}

void ProcessIo::CloseStdin() {
  std::lock_guard<std::mutex> lock(mu_);
  stdin_closed_ = true;
  if (stdin_copy_ != 0) {
    IoLoop::Get().FinishWhenDrained(stdin_copy_);
  }
}

absl::Status ProcessIo::Resize(uint32_t width, uint32_t height) {
  std::lock_guard<std::mutex> lock(mu_);
  if (console_master_ < 0) return absl::OkStatus();
  winsize size = {};
  size.ws_col = static_cast<unsigned short>(width);
  size.ws_row = static_cast<unsigned short>(height);
  if (ioctl(console_master_, TIOCSWINSZ, &size) != 0) {
    return Errno("TIOCSWINSZ on", "pty master");
  }
  return absl::OkStatus();
}

bool ProcessIo::WaitOutput(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(shared_->mu);
  return shared_->cv.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                              [&] { return shared_->outputs_pending == 0; });
}

}  // namespace stockade::shim
