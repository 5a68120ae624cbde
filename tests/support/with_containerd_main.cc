// stockade-with-containerd: runs a command next to a private containerd (the
// test fixture), for scripts such as hack/demo. Usage:
//   stockade-with-containerd [--bin-dir DIR] [--namespace NS]
//       [--shim-config PATH] [--log-level LEVEL] -- COMMAND [ARG...]
// COMMAND runs with CONTAINERD_ADDRESS and CONTAINERD_NAMESPACE set (so a
// plain `ctr` talks to the private containerd) and STOCKADE_CONTAINERD_DIR,
// STOCKADE_ROOTFS (a busybox rootfs for `ctr run --rootfs`), STOCKADE_PATH_ENV
// (the --env ctr needs with --rootfs). Afterwards every task, container,
// mount and dir is removed; the exit status is COMMAND's.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/containerd_fixture.h"
#include "tests/support/rootfs.h"

namespace {

int Usage() {
  fprintf(stderr,
          "usage: stockade-with-containerd [--bin-dir DIR] [--namespace NS] "
          "[--shim-config PATH] [--log-level LEVEL] -- COMMAND [ARG...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using stockade::testing::ContainerdFixture;
  stockade::testing::ContainerdOptions options;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) return Usage();
    if (arg == "--bin-dir") {
      options.bin_dir = argv[++i];
    } else if (arg == "--namespace") {
      options.ns = argv[++i];
    } else if (arg == "--shim-config") {
      options.stockade_shim_config = argv[++i];
    } else if (arg == "--log-level") {
      options.log_level = argv[++i];
    } else {
      return Usage();
    }
  }
  if (i >= argc) return Usage();

  // Signals from the terminal reach COMMAND (same process group); this
  // process waits for it and cleans up either way.
  sigset_t block;
  sigemptyset(&block);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&block, sig);
  sigprocmask(SIG_BLOCK, &block, nullptr);

  absl::StatusOr<std::unique_ptr<ContainerdFixture>> fixture =
      ContainerdFixture::Start(options);
  if (!fixture.ok()) {
    fprintf(stderr, "stockade-with-containerd: %s\n",
            std::string(fixture.status().message()).c_str());
    return 1;
  }
  ContainerdFixture& f = **fixture;
  setenv("CONTAINERD_ADDRESS", f.address().c_str(), 1);
  setenv("CONTAINERD_NAMESPACE", f.ns().c_str(), 1);
  setenv("STOCKADE_CONTAINERD_DIR", f.dir().c_str(), 1);
  setenv("STOCKADE_ROOTFS", f.rootfs().c_str(), 1);
  setenv("STOCKADE_PATH_ENV", stockade::testing::kRootfsPathEnv, 1);

  pid_t child = fork();
  if (child < 0) {
    perror("stockade-with-containerd: fork");
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_UNBLOCK, &block, nullptr);
    execvp(argv[i], argv + i);
    fprintf(stderr, "stockade-with-containerd: exec %s: %s\n", argv[i],
            strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(status)     ? WEXITSTATUS(status)
             : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                   : 1;
  if (code != 0) {
    fprintf(stderr, "--- containerd log (last lines of %s)\n%s\n",
            f.log_path().c_str(), f.LogTail(40).c_str());
  }
  fixture->reset();  // kills tasks, stops containerd, removes everything
  return code;
}
