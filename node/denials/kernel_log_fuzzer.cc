// libFuzzer: kernel log and audit records (node/denials/kernel_log.h). A
// confined process controls much of a record (its comm, the paths it tries),
// so the parser must survive any bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "node/denials/kernel_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  stockade::node::denials::ParseKernelRecord(text);
  stockade::node::denials::ParseAuditFields(text);
  return 0;
}
