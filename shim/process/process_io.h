// The stdio of one container process as containerd asks for it: FIFOs fed
// through pipes, file:// and binary:// (logger) outputs, or a terminal whose
// pty master arrives through a console socket.
#ifndef STOCKADE_SHIM_PROCESS_PROCESS_IO_H_
#define STOCKADE_SHIM_PROCESS_PROCESS_IO_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/process/container.h"
#include "shim/process/io_loop.h"
#include "shim/runc/runc.h"

namespace stockade::shim {

class ProcessIo {
 public:
  // Opens what `stdio` names and starts a binary:// logger. `container_id`
  // and `ns` go into the logger's environment.
  static absl::StatusOr<std::unique_ptr<ProcessIo>> Create(
      const Stdio& stdio, const std::string& container_id,
      const std::string& ns);

  ProcessIo(const ProcessIo&) = delete;
  ProcessIo& operator=(const ProcessIo&) = delete;
  // Stops every copy and closes everything.
  ~ProcessIo();

  // The descriptors runc passes on to the process (none with a terminal).
  RuncIo runc_io() const;
  // The --console-socket for runc; empty without a terminal.
  const std::string& console_socket() const { return console_socket_; }

  // After runc created the process: closes the process's ends here,
  // receives the pty master (terminal) and starts copying.
  absl::Status Started();

  // Ends stdin once what the client wrote so far reached the process.
  void CloseStdin();
  // TIOCSWINSZ on the pty master; nothing without a terminal.
  absl::Status Resize(uint32_t width, uint32_t height);
  // Waits until stdout/stderr copies are done (every writer of the
  // process's output is gone), at most `timeout`. True if they are.
  bool WaitOutput(absl::Duration timeout);

 private:
  struct Shared;
  ProcessIo();
  absl::Status OpenOutputs(const Stdio& stdio, const std::string& id,
                           const std::string& ns);
  absl::Status ReceiveConsole();
  void StartCopy(int src, int dst, std::vector<int> keep_open, bool output);

  std::mutex mu_;  // Started, CloseStdin and Resize may race
  bool terminal_ = false;
  // Handed to runc; closed in Started().
  int child_stdin_ = -1, child_stdout_ = -1, child_stderr_ = -1;
  // Where stdin comes from (a FIFO) and goes to (pipe or pty master).
  int stdin_src_ = -1, stdin_dst_ = -1;
  // Where the process's output is read (pipe, or -1 for direct fds) and
  // written (FIFO or file or logger pipe), plus descriptors to keep open.
  struct Output {
    int src = -1;
    int dst = -1;
    std::vector<int> keep_open;
  };
  Output stdout_, stderr_;
  std::string console_dir_, console_socket_;
  int console_listen_ = -1;
  int console_master_ = -1;
  IoLoop::Id stdin_copy_ = 0;
  bool stdin_closed_ = false;
  std::shared_ptr<Shared> shared_;
};

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_PROCESS_PROCESS_IO_H_
