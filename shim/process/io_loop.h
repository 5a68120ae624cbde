// One epoll thread for the whole shim that moves bytes between descriptors
// (container pipes, FIFOs, pty masters) without blocking on any of them, and
// watches descriptors (OOM eventfds) for readiness.
#ifndef STOCKADE_SHIM_PROCESS_IO_LOOP_H_
#define STOCKADE_SHIM_PROCESS_IO_LOOP_H_

#include <cstdint>
#include <functional>
#include <vector>

namespace stockade::shim {

class IoLoop {
 public:
  using Id = uint64_t;

  // The shim's loop; its thread starts on first use.
  static IoLoop& Get();

  // Copies from `src` to `dst` (both taken over, made non-blocking) until
  // EOF or an error on `src`, or an error writing `dst`. Then closes both and
  // `keep_open` (descriptors that must live as long as the copy), and calls
  // `done` on the loop thread (it must not block).
  Id Copy(int src, int dst, std::vector<int> keep_open,
          std::function<void()> done);
  // Ends a copy now, as if `src` had hit EOF (data in flight is dropped).
  // No-op once the copy has finished.
  void Cancel(Id id);

  // Ends a copy once everything `src` holds right now has been written (for
  // closing stdin without losing what the client already sent).
  void FinishWhenDrained(Id id);

  // Calls `callback` on the loop thread whenever `fd` (still owned by the
  // caller) reports one of `events` (EPOLLIN, EPOLLPRI, ...). Level
  // triggered: the callback must consume the event.
  Id Watch(int fd, uint32_t events, std::function<void()> callback);
  // When this returns the callback is not running and never runs again
  // (unless called from the callback itself).
  void Unwatch(Id id);

 private:
  IoLoop();
  struct Impl;
  Impl* impl_;
};

}  // namespace stockade::shim

#endif  // STOCKADE_SHIM_PROCESS_IO_LOOP_H_
