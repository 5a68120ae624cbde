#include "shim/ttrpc/frame.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace stockade::ttrpc {
namespace {

void PutU32(uint32_t v, char* out) {
  out[0] = static_cast<char>(v >> 24);
  out[1] = static_cast<char>(v >> 16);
  out[2] = static_cast<char>(v >> 8);
  out[3] = static_cast<char>(v);
}

uint32_t GetU32(const char* in) {
  const auto* p = reinterpret_cast<const unsigned char*>(in);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  size_t n;
  uint32_t min;
  uint32_t cp;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, min = 0x80, cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, min = 0x800, cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, min = 0x10000, cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

void EncodeFrameHeader(const FrameHeader& header, char out[kFrameHeaderSize]) {
  PutU32(header.length, out);
  PutU32(header.stream_id, out + 4);
  out[8] = static_cast<char>(header.type);
  out[9] = static_cast<char>(header.flags);
}

FrameHeader DecodeFrameHeader(const char in[kFrameHeaderSize]) {
  FrameHeader header;
  header.length = GetU32(in);
  header.stream_id = GetU32(in + 4);
  header.type = static_cast<uint8_t>(in[8]);
  header.flags = static_cast<uint8_t>(in[9]);
  return header;
}

absl::StatusOr<std::string> EncodeFrame(uint32_t stream_id, uint8_t type,
                                        absl::string_view data, uint8_t flags) {
  if (data.size() > kMaxFrameData) {
    return absl::ResourceExhaustedError(
        absl::StrCat("ttrpc: message length ", data.size(),
                     " exceeds maximum message size of ", kMaxFrameData));
  }
  std::string frame(kFrameHeaderSize + data.size(), '\0');
  EncodeFrameHeader(
      {static_cast<uint32_t>(data.size()), stream_id, type, flags},
      frame.data());
  if (!data.empty()) {
    std::memcpy(frame.data() + kFrameHeaderSize, data.data(), data.size());
  }
  return frame;
}

void FrameDecoder::Feed(const char* bytes, size_t size) {
  // Data of an oversized frame is dropped without being buffered.
  if (skip_ > 0 && buffered() == 0) {
    const size_t drop = static_cast<size_t>(std::min<uint64_t>(skip_, size));
    skip_ -= drop;
    bytes += drop;
    size -= drop;
  }
  if (size == 0) return;
  Compact();
  buffer_.append(bytes, size);
}

void FrameDecoder::Compact() {
  if (pos_ == 0) return;
  if (pos_ == buffer_.size()) {
    buffer_.clear();
  } else {
    buffer_.erase(0, pos_);
  }
  pos_ = 0;
}

std::optional<FrameDecoder::Event> FrameDecoder::Next() {
  if (skip_ > 0) {
    const size_t drop =
        static_cast<size_t>(std::min<uint64_t>(skip_, buffered()));
    pos_ += drop;
    skip_ -= drop;
    if (skip_ > 0) {
      Compact();
      return std::nullopt;
    }
  }
  if (buffered() < kFrameHeaderSize) {
    Compact();
    return std::nullopt;
  }
  const FrameHeader header = DecodeFrameHeader(buffer_.data() + pos_);
  if (header.length > max_data_) {
    pos_ += kFrameHeaderSize;
    skip_ = header.length;
    Event event;
    event.kind = Kind::kOversized;
    event.header = header;
    // Drop what is already here; the rest is dropped as it arrives.
    const size_t drop =
        static_cast<size_t>(std::min<uint64_t>(skip_, buffered()));
    pos_ += drop;
    skip_ -= drop;
    Compact();
    return event;
  }
  if (buffered() - kFrameHeaderSize < header.length) {
    // Wait for the rest; reserve once so a large frame is not regrown often.
    Compact();
    buffer_.reserve(kFrameHeaderSize + header.length);
    return std::nullopt;
  }
  Event event;
  event.header = header;
  event.data.assign(buffer_, pos_ + kFrameHeaderSize, header.length);
  pos_ += kFrameHeaderSize + header.length;
  return event;
}

absl::StatusOr<wire::Request> ParseRequest(absl::string_view data) {
  wire::Request request;
  if (!request.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return absl::InvalidArgumentError("ttrpc: unmarshal request error");
  }
  return request;
}

std::string EncodeResponseFrame(uint32_t stream_id, const absl::Status& status,
                                absl::string_view payload) {
  wire::Response response;
  if (status.ok()) {
    response.set_payload(std::string(payload));
  } else {
    response.mutable_status()->set_code(static_cast<int32_t>(status.code()));
    response.mutable_status()->set_message(ToValidUtf8(status.message()));
  }
  absl::StatusOr<std::string> frame =
      EncodeFrame(stream_id, kFrameResponse, response.SerializeAsString());
  if (frame.ok()) return *std::move(frame);
  // The reply itself is too large: say so instead.
  wire::Response too_large;
  too_large.mutable_status()->set_code(
      static_cast<int32_t>(absl::StatusCode::kResourceExhausted));
  too_large.mutable_status()->set_message(
      ToValidUtf8(frame.status().message()));
  return *EncodeFrame(stream_id, kFrameResponse, too_large.SerializeAsString());
}

absl::Status StatusFromResponse(const wire::Response& response) {
  if (!response.has_status() || response.status().code() == 0) {
    return absl::OkStatus();
  }
  int code = response.status().code();
  if (code < 1 || code > 16)
    code = static_cast<int>(absl::StatusCode::kUnknown);
  return absl::Status(static_cast<absl::StatusCode>(code),
                      response.status().message());
}

std::string ToValidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out.push_back('?');
      ++i;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace stockade::ttrpc
