// stockade-nft: loads an nftables ruleset (nft -f syntax, read from stdin)
// into the network namespace open on descriptor 3, with libnftables, in one
// transaction. The shim runs it once per pod (InstallEgress in egress.h), so
// libnftables is loaded only here and never in the long-lived shim.
//
// Answers on stdout: "ok\n", or "error\n" followed by nft's error text.
// Exit status 0 on success, 1 otherwise.
#include <nftables/libnftables.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

constexpr int kNetnsFd = 3;

void WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

int Fail(const std::string& message) {
  WriteAll(1, "error\n" + message);
  return 1;
}

bool ReadAll(int fd, std::string* out) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  (void)argv;
  if (argc != 1) {
    return Fail(
        "usage: stockade-nft < RULESET (network namespace on descriptor 3)");
  }
  std::string ruleset;
  if (!ReadAll(0, &ruleset)) {
    return Fail(std::string("read ruleset: ") + strerror(errno));
  }
  // Never the namespace this helper started in: that is the host's (or the
  // shim's) and a container's rules must not land there.
  struct stat target, own;
  if (fstat(kNetnsFd, &target) != 0 || stat("/proc/self/ns/net", &own) != 0) {
    return Fail(std::string("network namespace on descriptor 3: ") +
                strerror(errno));
  }
  if (target.st_dev == own.st_dev && target.st_ino == own.st_ino) {
    return Fail("refusing to load rules into the caller's network namespace");
  }
  if (setns(kNetnsFd, CLONE_NEWNET) != 0) {
    return Fail(std::string("setns: ") + strerror(errno));
  }
  close(kNetnsFd);
  if (ruleset.empty()) {
    WriteAll(1, "ok\n");
    return 0;
  }
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return Fail("nft_ctx_new failed");
  nft_ctx_clear_include_paths(ctx);
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  if (nft_run_cmd_from_buffer(ctx, ruleset.c_str()) != 0) {
    const char* err = nft_ctx_get_error_buffer(ctx);
    return Fail(err != nullptr && err[0] != '\0'
                    ? err
                    : "nft_run_cmd_from_buffer failed");
  }
  // The rules are committed: answer first, then release the context. Closing
  // the nftables netlink socket takes the kernel ~10 ms, which the shim (and
  // the container's start) need not wait for.
  WriteAll(1, "ok\n");
  close(1);
  close(2);
  nft_ctx_free(ctx);
  return 0;
}
