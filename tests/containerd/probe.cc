// stockade-probe: a static binary copied into test containers that attempts
// one attack per argument and prints "NAME: OK" or "NAME: ERRNO_NAME", so a
// test can check which layer stopped what. Attacks:
//   unshare mount ptrace keyctl add_key bpf io_uring raw_socket packet_socket
//   connect:HOST:PORT  read:PATH  write:PATH  exec:PATH
// and, for benchmarks (bench/denials_bench.sh):
//   now              prints "now: NS" (CLOCK_REALTIME, nanoseconds)
//   repeat:N:ATTACK  attempts ATTACK N times quietly, then prints
//                    "repeat:N:ATTACK: NS ns/call ERRNO_NAME" (the last one)
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

const char* ErrnoName(int e) {
  switch (e) {
    case EPERM:
      return "EPERM";
    case EACCES:
      return "EACCES";
    case ENOENT:
      return "ENOENT";
    case ENOSYS:
      return "ENOSYS";
    case EROFS:
      return "EROFS";
    case ENOSPC:
      return "ENOSPC";
    case ECONNREFUSED:
      return "ECONNREFUSED";
    case ETIMEDOUT:
      return "ETIMEDOUT";
    case ENETUNREACH:
      return "ENETUNREACH";
    case EAGAIN:
      return "EAGAIN";
    case EINVAL:
      return "EINVAL";
    default:
      return strerrorname_np(e) ? strerrorname_np(e) : "E?";
  }
}

bool quiet = false;  // inside repeat:N:ATTACK
long last_rc = 0;
int last_errno = 0;

int64_t NowNanos() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void Report(const std::string& name, long rc) {
  last_rc = rc;
  last_errno = errno;
  if (quiet) return;
  if (rc >= 0) {
    std::printf("%s: OK\n", name.c_str());
  } else {
    std::printf("%s: %s\n", name.c_str(), ErrnoName(errno));
  }
  std::fflush(stdout);
}

void Attempt(const std::string& arg) {
  if (arg == "unshare")
    return Report(arg, unshare(CLONE_NEWUSER | CLONE_NEWNS));
  if (arg == "mount")
    return Report(arg, mount("none", "/tmp", "tmpfs", 0, nullptr));
  if (arg == "ptrace")
    return Report(arg, ptrace(PTRACE_ATTACH, 1, nullptr, nullptr));
  if (arg == "keyctl") {
    return Report(arg, syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "x"));
  }
  if (arg == "add_key") {
    return Report(arg, syscall(SYS_add_key, "user", "k", "v", 1,
                               KEY_SPEC_PROCESS_KEYRING));
  }
  if (arg == "bpf") return Report(arg, syscall(SYS_bpf, 0, nullptr, 0));
  if (arg == "io_uring")
    return Report(arg, syscall(SYS_io_uring_setup, 1, nullptr));
  if (arg == "raw_socket")
    return Report(arg, socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  if (arg == "packet_socket")
    return Report(arg, socket(AF_PACKET, SOCK_RAW, 0));
  const size_t colon = arg.find(':');
  const std::string kind = arg.substr(0, colon);
  if (arg == "now") {
    std::printf("now: %lld\n", static_cast<long long>(NowNanos()));
    std::fflush(stdout);
    return;
  }
  if (kind == "repeat") {  // repeat:N:ATTACK
    const size_t second = arg.find(':', colon + 1);
    if (second == std::string::npos) return;
    const long n = std::atol(arg.substr(colon + 1, second - colon - 1).c_str());
    const std::string attack = arg.substr(second + 1);
    quiet = true;
    const int64_t start = NowNanos();
    for (long i = 0; i < n; ++i) Attempt(attack);
    const int64_t elapsed = NowNanos() - start;
    quiet = false;
    std::printf("%s: %lld ns/call %s\n", arg.c_str(),
                static_cast<long long>(n > 0 ? elapsed / n : 0),
                last_rc >= 0 ? "OK" : ErrnoName(last_errno));
    std::fflush(stdout);
    return;
  }
  if (kind == "wait") {  // wait:MS, e.g. to outlive a denial's report
    usleep(static_cast<useconds_t>(std::atoi(arg.c_str() + colon + 1)) * 1000);
    return;
  }
  const std::string rest =
      colon == std::string::npos ? "" : arg.substr(colon + 1);
  if (kind == "read") {
    int fd = open(rest.c_str(), O_RDONLY);
    if (fd < 0) return Report(arg, -1);
    char buf[16];
    long n = read(fd, buf, sizeof(buf));
    close(fd);
    return Report(arg, n < 0 ? -1 : 0);
  }
  if (kind == "write") {
    int fd = open(rest.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return Report(arg, -1);
    long n = write(fd, "x", 1);
    close(fd);
    return Report(arg, n < 0 ? -1 : 0);
  }
  if (kind == "exec") {
    pid_t pid = fork();
    if (pid == 0) {
      execl(rest.c_str(), rest.c_str(), "true", nullptr);
      _exit(errno == EACCES ? 13 : errno == EPERM ? 1 : 2);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
    errno = code == 13 ? EACCES : code == 1 ? EPERM : EINVAL;
    return Report(arg, code == 0 ? 0 : -1);
  }
  if (kind == "connect") {
    const size_t c2 = rest.find(':');
    const std::string host = rest.substr(0, c2);
    const int port = std::atoi(rest.substr(c2 + 1).c_str());
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return Report(arg, -1);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    long rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    if (rc < 0 && errno == EINPROGRESS) errno = ETIMEDOUT;
    const int saved = errno;
    close(fd);
    errno = saved;
    return Report(arg, rc);
  }
  std::printf("%s: UNKNOWN\n", arg.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) Attempt(argv[i]);
  return 0;
}
