// ttrpc framing: the 10-byte frame header, an incremental decoder that is safe
// on arbitrary bytes, and the Request/Response messages carried in frames.
#ifndef STOCKADE_SHIM_TTRPC_FRAME_H_
#define STOCKADE_SHIM_TTRPC_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shim/ttrpc/ttrpc.pb.h"

namespace stockade::ttrpc {

inline constexpr size_t kFrameHeaderSize = 10;
// Largest frame payload ttrpc accepts (4 MiB), as in the Go implementation.
inline constexpr uint32_t kMaxFrameData = 4u << 20;

inline constexpr uint8_t kFrameRequest = 0x01;
inline constexpr uint8_t kFrameResponse = 0x02;
inline constexpr uint8_t kFrameData = 0x03;  // streaming (ttrpc >= 1.2)

struct FrameHeader {
  uint32_t length = 0;  // of the data that follows, header excluded
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
};

// Big-endian header bytes.
void EncodeFrameHeader(const FrameHeader& header, char out[kFrameHeaderSize]);
FrameHeader DecodeFrameHeader(const char in[kFrameHeaderSize]);

// Header + data. ResourceExhausted if data exceeds kMaxFrameData.
absl::StatusOr<std::string> EncodeFrame(uint32_t stream_id, uint8_t type,
                                        absl::string_view data,
                                        uint8_t flags = 0);

// Splits a byte stream into frames. Bytes may arrive in pieces of any size.
// A frame whose declared length exceeds the limit is reported once (as
// kOversized, with its header) and its data is skipped as it arrives, so the
// stream stays in sync and the peer can be answered ResourceExhausted. Never
// buffers more than one frame (limit + header).
class FrameDecoder {
 public:
  enum class Kind { kFrame, kOversized };
  struct Event {
    Kind kind = Kind::kFrame;
    FrameHeader header;
    std::string data;  // empty for kOversized
  };

  explicit FrameDecoder(uint32_t max_data = kMaxFrameData)
      : max_data_(max_data) {}

  void Feed(const char* bytes, size_t size);
  void Feed(absl::string_view bytes) { Feed(bytes.data(), bytes.size()); }

  // The next complete frame or oversized notice, or nullopt if more bytes
  // are needed.
  std::optional<Event> Next();

  // Bytes held for an incomplete frame (header included).
  size_t buffered() const { return buffer_.size() - pos_; }

 private:
  void Compact();

  uint32_t max_data_;
  std::string buffer_;
  size_t pos_ = 0;     // start of unconsumed bytes in buffer_
  uint64_t skip_ = 0;  // data bytes of an oversized frame still to drop
};

// Parses the data of a request frame. InvalidArgument if it is not a Request.
absl::StatusOr<wire::Request> ParseRequest(absl::string_view data);

// Encodes a Response frame for `stream_id`: `payload` when `status` is OK,
// otherwise its code and message (the message made valid UTF-8, which Go
// peers require).
std::string EncodeResponseFrame(uint32_t stream_id, const absl::Status& status,
                                absl::string_view payload);

// The absl::Status a Response carries: OK, or its code (unknown codes become
// kUnknown) and message.
absl::Status StatusFromResponse(const wire::Response& response);

// Replaces each byte that is not part of a valid UTF-8 sequence with '?'.
std::string ToValidUtf8(absl::string_view text);

}  // namespace stockade::ttrpc

#endif  // STOCKADE_SHIM_TTRPC_FRAME_H_
