// containerd-shim-stockade-v1: a containerd runtime v2 shim that confines
// every container with its compiled Stockade policy.
//
//   <shim> -namespace NS -address A -publish-binary B -id ID start
//       starts (or finds) the pod's shim server and prints its address
//   <shim> -namespace NS -address A -id ID -bundle DIR delete
//       cleans up after a task whose shim is gone; prints a DeleteResponse
//   <shim> -namespace NS -address A -id ID [-config PATH]
//       the server itself (started by `start`, listening socket on fd 3)
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/sha256.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/shim_config.h"
#include "shim/start/start_input.h"
#include "shim/task/task_service.h"
#include "shim/ttrpc/server.h"

namespace stockade::shim {
namespace {

constexpr char kVersion[] = "0.1.0";
constexpr char kSocketDir[] = "/run/containerd/s";
// Where `start` records the config path for the server and `delete`.
constexpr char kConfigPathFile[] = "stockade-shim-config";

struct Flags {
  std::string ns;
  std::string address;
  std::string publish_binary;
  std::string id;
  std::string bundle;
  std::string config;
  bool debug = false;
  bool info = false;   // -info: print RuntimeInfo and exit
  std::string action;  // start, delete, or "" (serve)
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (absl::StartsWith(a, "--")) a = a.substr(1);
    if (a == "-namespace") {
      if (!value(&f->ns)) return false;
    } else if (a == "-address") {
      if (!value(&f->address)) return false;
    } else if (a == "-publish-binary") {
      if (!value(&f->publish_binary)) return false;
    } else if (a == "-id") {
      if (!value(&f->id)) return false;
    } else if (a == "-bundle") {
      if (!value(&f->bundle)) return false;
    } else if (a == "-config") {
      if (!value(&f->config)) return false;
    } else if (a == "-debug") {
      f->debug = true;
    } else if (a == "-info") {
      f->info = true;
    } else if (a == "start" || a == "delete") {
      f->action = a;
    } else if (a == "-v" || a == "-version") {
      std::cout << "containerd-shim-stockade-v1 " << kVersion << "\n";
      std::exit(0);
    } else {
      return false;
    }
  }
  return f->info || (!f->ns.empty() && !f->id.empty());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WriteFileAtomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok =
      write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.find_last_of('/'));
}

// The pod's grouping id: one shim serves every container of a pod.
std::string GroupingId(const std::string& id) {
  nlohmann::json spec =
      nlohmann::json::parse(ReadFile("config.json"), nullptr, false);
  if (spec.is_object() && spec["annotations"].is_object()) {
    for (const char* key :
         {"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"}) {
      if (spec["annotations"].contains(key) &&
          spec["annotations"][key].is_string()) {
        return spec["annotations"][key].get<std::string>();
      }
    }
  }
  return id;
}

std::string SocketPath(const Flags& f, const std::string& group) {
  const std::string input = absl::StrCat(f.address, "/", f.ns, "/", group);
  return absl::StrCat(kSocketDir, "/", Sha256Hex(input));
}

int BindUnix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  chmod(path.c_str(), 0600);
  if (listen(fd, 128) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool Answers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// All of stdin: the runtime options (or BootstrapParams) containerd writes.
std::string ReadStdin() {
  std::string input;
  char buf[4096];
  ssize_t n;
  while ((n = read(0, buf, sizeof(buf))) > 0) input.append(buf, n);
  return input;
}

// stdout of `argv` (empty when it fails), with stderr discarded.
std::string OutputOf(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return "";
  std::vector<char*> cargs;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(out[1], 1);
    dup2(null, 2);
    execvp(cargs[0], cargs.data());
    _exit(127);
  }
  close(out[1]);
  std::string output;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) output.append(buf, n);
  close(out[0]);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    return "";
  }
  return output;
}

// -info (containerd 2.x introspection): RuntimeInfo on stdout, with the OCI
// features of the runc the shim's config names.
int Info() {
  const std::string input = ReadStdin();
  auto config =
      LoadShimConfig(ConfigPathFromStartInput(input), SelfDir(), "default");
  const std::string runc =
      config.ok() ? config->runtime.runc_binary : std::string("runc");
  std::cout << RuntimeInfoBytes(input, kVersion, OutputOf({runc, "features"}));
  return 0;
}

int Start(const Flags& f, char** argv) {
  const std::string group = GroupingId(f.id);
  const std::string path = SocketPath(f, group);
  const std::string address = absl::StrCat("unix://", path);
  const std::string config = ConfigPathFromStartInput(ReadStdin());
  if (!config.empty()) WriteFileAtomic(kConfigPathFile, config);
  mkdir("/run/containerd", 0711);
  mkdir(kSocketDir, 0711);
  int fd = BindUnix(path);
  if (fd < 0 && errno == EADDRINUSE) {
    if (Answers(path)) {  // the pod's shim runs already
      if (!WriteFileAtomic("address", address)) return 1;
      std::cout << address;
      return 0;
    }
    unlink(path.c_str());
    fd = BindUnix(path);
  }
  if (fd < 0) {
    std::cout << "stockade shim: cannot listen on " << path << ": "
              << std::strerror(errno);
    return 1;
  }
  const pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    setsid();
    dup2(fd, 3);
    if (fd != 3) close(fd);
    fcntl(3, F_SETFD, 0);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
    std::vector<std::string> args = {argv[0], "-namespace", f.ns,     "-id",
                                     f.id,    "-address",   f.address};
    if (!f.publish_binary.empty()) {
      args.insert(args.end(), {"-publish-binary", f.publish_binary});
    }
    if (!config.empty()) args.insert(args.end(), {"-config", config});
    if (f.debug) args.push_back("-debug");
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    execv("/proc/self/exe", cargs.data());
    _exit(127);
  }
  close(fd);
  if (!WriteFileAtomic("address", address)) {
    kill(pid, SIGKILL);
    unlink(path.c_str());
    return 1;
  }
  std::cout << address;
  return 0;
}

int Delete(const Flags& f) {
  const std::string bundle = f.bundle.empty() ? "." : f.bundle;
  std::string config = ReadFile(bundle + "/" + kConfigPathFile);
  auto loaded = LoadShimConfig(config, SelfDir(), f.ns);
  RuntimeConfig runtime = loaded.ok() ? loaded->runtime : RuntimeConfig();
  const pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 1);
    dup2(null, 2);
    const std::string root = absl::StrCat(runtime.runc_root, "/", f.ns);
    execlp(runtime.runc_binary.c_str(), runtime.runc_binary.c_str(), "--root",
           root.c_str(), "delete", "--force", f.id.c_str(), nullptr);
    _exit(127);
  }
  if (pid > 0) waitpid(pid, nullptr, 0);
  umount2((bundle + "/rootfs").c_str(), MNT_DETACH);
  int init_pid = 0;
  std::istringstream(ReadFile(bundle + "/init.pid")) >> init_pid;
  ::containerd::task::v2::DeleteResponse response;
  response.set_pid(init_pid);
  response.set_exit_status(128 + SIGKILL);
  const absl::Time now = absl::Now();
  response.mutable_exited_at()->set_seconds(absl::ToUnixSeconds(now));
  std::cout << response.SerializeAsString();
  return 0;
}

// The shim's log: containerd reads the FIFO "log" in the bundle.
void OpenLog() {
  int fd = open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  dup2(fd, 2);
  close(fd);
}

int Serve(const Flags& f) {
  // One malloc arena for every thread: a shim runs per pod and is idle most
  // of its life, so per-thread arenas only hold freed memory (measured:
  // ~0.5 MB of a 1.5 MB PSS).
  mallopt(M_ARENA_MAX, 1);
  OpenLog();
  signal(SIGPIPE, SIG_IGN);
  auto config = LoadShimConfig(f.config, SelfDir(), f.ns);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 1;
  }
  if (!config->policy.apparmor_enabled) {
    std::cerr
        << "stockade shim: the kernel has no AppArmor; seccomp, Landlock, "
           "the OCI spec and nftables enforce every rule\n";
  }
  if (absl::Status s = StartReaper(); !s.ok()) {
    std::cerr << "stockade shim: " << s.message() << "\n";
    return 1;
  }
  const char* ttrpc_address = std::getenv("TTRPC_ADDRESS");
  // Never destroyed: handlers may still block in Wait when Serve returns, so
  // the process exits without unwinding (after the events are delivered).
  auto* events = new ForwardingPublisher(
      ttrpc_address ? ttrpc_address : f.address + ".ttrpc", f.ns);
  static ttrpc::Server& server = *new ttrpc::Server();
  std::mutex mu;
  std::condition_variable cv;
  bool shutdown = false;
  auto* service = new TaskService(*config, events, [&] {
    std::lock_guard<std::mutex> lock(mu);
    shutdown = true;
    cv.notify_all();
  });
  service->RegisterWith(&server);
  std::thread stopper([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return shutdown; });
    server.Shutdown();
  });
  absl::Status served = server.Serve(3);
  {
    std::lock_guard<std::mutex> lock(mu);
    shutdown = true;
    cv.notify_all();
  }
  stopper.join();
  if (!served.ok()) {
    std::cerr << "stockade shim: " << served.message() << "\n";
    _exit(1);
  }
  events->Flush(absl::Seconds(5));
  _exit(0);
}

}  // namespace
}  // namespace stockade::shim

int main(int argc, char** argv) {
  stockade::shim::Flags flags;
  if (!stockade::shim::ParseFlags(argc, argv, &flags)) {
    std::cerr << "usage: containerd-shim-stockade-v1 -namespace NS -id ID "
                 "-address A [-publish-binary B] [-bundle DIR] [start|delete]\n"
                 "       containerd-shim-stockade-v1 -info | -v\n";
    return 2;
  }
  if (flags.info) return stockade::shim::Info();
  if (flags.action == "start") return stockade::shim::Start(flags, argv);
  if (flags.action == "delete") return stockade::shim::Delete(flags);
  return stockade::shim::Serve(flags);
}
