// libFuzzer target: arbitrary bytes through the ttrpc frame decoder (fed in
// pieces, with the real and a tiny size limit) and, for each request frame,
// the server's request parsing and reply encoding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "shim/ttrpc/frame.h"

namespace {

void Drain(stockade::ttrpc::FrameDecoder& decoder, uint32_t max_data) {
  using stockade::ttrpc::FrameDecoder;
  while (auto event = decoder.Next()) {
    if (event->kind == FrameDecoder::Kind::kOversized) {
      if (event->header.length <= max_data) std::abort();
      continue;
    }
    if (event->data.size() != event->header.length ||
        event->data.size() > max_data) {
      std::abort();
    }
    if (event->header.type != stockade::ttrpc::kFrameRequest) continue;
    auto request = stockade::ttrpc::ParseRequest(event->data);
    absl::Status status = request.ok()
                              ? absl::UnimplementedError(request->service())
                              : request.status();
    if (request.ok()) {
      for (const auto& kv : request->metadata()) {
        status = absl::Status(status.code(), kv.key() + kv.value());
      }
    }
    const std::string reply = stockade::ttrpc::EncodeResponseFrame(
        event->header.stream_id, status, "");
    stockade::ttrpc::wire::Response response;
    if (!response.ParseFromArray(
            reply.data() + stockade::ttrpc::kFrameHeaderSize,
            static_cast<int>(reply.size() -
                             stockade::ttrpc::kFrameHeaderSize)) ||
        stockade::ttrpc::StatusFromResponse(response).code() != status.code()) {
      std::abort();
    }
  }
  if (decoder.buffered() > max_data + stockade::ttrpc::kFrameHeaderSize) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the piece size the stream is cut into.
  const size_t piece = 1 + data[0] % 64;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  const size_t n = size - 1;
  stockade::ttrpc::FrameDecoder real;
  stockade::ttrpc::FrameDecoder tiny(/*max_data=*/32);
  for (size_t off = 0; off < n; off += piece) {
    const size_t len = off + piece <= n ? piece : n - off;
    real.Feed(bytes + off, len);
    Drain(real, stockade::ttrpc::kMaxFrameData);
    tiny.Feed(bytes + off, len);
    Drain(tiny, 32);
  }
  return 0;
}
