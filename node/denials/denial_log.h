// The node's denial log: JSON lines in <store>/denials/denials.jsonl, bounded
// in size (rotated to denials.jsonl.1 when it would pass max_bytes, so the
// log never holds more than twice that), and read back by `stockade denials`.
#ifndef STOCKADE_NODE_DENIALS_DENIAL_LOG_H_
#define STOCKADE_NODE_DENIALS_DENIAL_LOG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/denials/denial.h"

namespace stockade::node::denials {

// <store>/denials
std::string DenialDir(const std::string& store_root);

class DenialLog {
 public:
  // Opens (creating) <dir>/denials.jsonl for appending.
  static absl::StatusOr<DenialLog> Open(const std::string& dir,
                                        int64_t max_bytes = 16 << 20);
  DenialLog(DenialLog&& other) noexcept;
  DenialLog& operator=(DenialLog&& other) noexcept;
  ~DenialLog();

  // Appends one line (one write(2): readers never see half a line).
  absl::Status Append(const Denial& denial);

 private:
  DenialLog(std::string dir, int64_t max_bytes, int fd, int64_t size);
  absl::Status Rotate();

  std::string dir_;
  int64_t max_bytes_ = 0;
  int fd_ = -1;
  int64_t size_ = 0;
};

// Every denial in <dir> (the rotated file first), oldest first; lines that do
// not parse are skipped and counted in *skipped when given.
absl::StatusOr<std::vector<Denial>> ReadDenials(const std::string& dir,
                                                int* skipped = nullptr);

}  // namespace stockade::node::denials

#endif  // STOCKADE_NODE_DENIALS_DENIAL_LOG_H_
