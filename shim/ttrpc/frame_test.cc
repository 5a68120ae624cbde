// Frame encoding and the incremental decoder: round trips, byte-at-a-time
// input, oversized frames skipped without losing sync, garbage.
#include "shim/ttrpc/frame.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::ttrpc {
namespace {

using ::testing::ElementsAre;

std::string Frame(uint32_t id, uint8_t type, const std::string& data) {
  absl::StatusOr<std::string> f = EncodeFrame(id, type, data);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : "";
}

std::vector<FrameDecoder::Event> DrainAll(FrameDecoder& d) {
  std::vector<FrameDecoder::Event> out;
  while (auto e = d.Next()) out.push_back(*std::move(e));
  return out;
}

TEST(FrameTest, HeaderIsBigEndian) {
  absl::StatusOr<std::string> f =
      EncodeFrame(0x01020304, kFrameResponse, std::string(0x0105, 'x'), 0x7f);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->size(), kFrameHeaderSize + 0x0105);
  EXPECT_EQ(f->substr(0, 10),
            std::string("\x00\x00\x01\x05\x01\x02\x03\x04\x02\x7f", 10));
  const FrameHeader h = DecodeFrameHeader(f->data());
  EXPECT_EQ(h.length, 0x0105u);
  EXPECT_EQ(h.stream_id, 0x01020304u);
  EXPECT_EQ(h.type, kFrameResponse);
  EXPECT_EQ(h.flags, 0x7f);
}

TEST(FrameTest, HeaderRoundTripsExtremes) {
  char buf[kFrameHeaderSize];
  for (uint32_t v : {0u, 1u, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    EncodeFrameHeader({v, ~v, 0xff, 0x00}, buf);
    const FrameHeader h = DecodeFrameHeader(buf);
    EXPECT_EQ(h.length, v);
    EXPECT_EQ(h.stream_id, ~v);
    EXPECT_EQ(h.type, 0xff);
  }
}

TEST(FrameTest, EncodeRejectsMoreThanFourMiB) {
  EXPECT_TRUE(
      EncodeFrame(1, kFrameRequest, std::string(kMaxFrameData, 'a')).ok());
  absl::StatusOr<std::string> f =
      EncodeFrame(1, kFrameRequest, std::string(kMaxFrameData + 1, 'a'));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(FrameTest, DecodesFramesFedWhole) {
  FrameDecoder d;
  d.Feed(Frame(1, kFrameRequest, "abc") + Frame(3, kFrameRequest, "") +
         Frame(5, kFrameData, "z"));
  std::vector<FrameDecoder::Event> events = DrainAll(d);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].header.stream_id, 1u);
  EXPECT_EQ(events[0].data, "abc");
  EXPECT_EQ(events[1].header.stream_id, 3u);
  EXPECT_EQ(events[1].data, "");
  EXPECT_EQ(events[2].header.type, kFrameData);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameTest, DecodesFramesFedOneByteAtATime) {
  const std::string stream =
      Frame(7, kFrameRequest, "hello") + Frame(9, kFrameResponse, "world!");
  FrameDecoder d;
  std::vector<std::string> got;
  for (char c : stream) {
    d.Feed(&c, 1);
    while (auto e = d.Next()) got.push_back(e->data);
  }
  EXPECT_THAT(got, ElementsAre("hello", "world!"));
}

TEST(FrameTest, IncompleteFrameWaitsForMore) {
  const std::string f = Frame(1, kFrameRequest, "payload");
  FrameDecoder d;
  d.Feed(f.substr(0, 4));
  EXPECT_FALSE(d.Next().has_value());
  d.Feed(f.substr(4, 8));
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.buffered(), 12u);
  d.Feed(f.substr(12));
  auto e = d.Next();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->data, "payload");
}

TEST(FrameTest, OversizedFrameIsReportedSkippedAndStreamStaysInSync) {
  // A header claiming 4 MiB + 1, its data in pieces, then a normal frame.
  char header[kFrameHeaderSize];
  EncodeFrameHeader({kMaxFrameData + 1, 11, kFrameRequest, 0}, header);
  FrameDecoder d;
  d.Feed(header, sizeof(header));
  std::vector<FrameDecoder::Event> events = DrainAll(d);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, FrameDecoder::Kind::kOversized);
  EXPECT_EQ(events[0].header.stream_id, 11u);
  EXPECT_EQ(events[0].header.length, kMaxFrameData + 1);

  const std::string chunk(1 << 20, 'g');
  for (int i = 0; i < 4; ++i) {
    d.Feed(chunk);
    EXPECT_TRUE(DrainAll(d).empty());
    EXPECT_EQ(d.buffered(), 0u) << "skipped bytes must not be buffered";
  }
  // The last skipped byte and the next frame arrive together.
  d.Feed("g" + Frame(13, kFrameRequest, "next"));
  events = DrainAll(d);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, FrameDecoder::Kind::kFrame);
  EXPECT_EQ(events[0].header.stream_id, 13u);
  EXPECT_EQ(events[0].data, "next");
}

TEST(FrameTest, OversizedFrameWithDataAlreadyBuffered) {
  char header[kFrameHeaderSize];
  EncodeFrameHeader({20, 1, kFrameRequest, 0}, header);
  FrameDecoder d(/*max_data=*/16);
  d.Feed(std::string(header, sizeof(header)) + std::string(20, 'x') +
         Frame(3, kFrameRequest, "ok"));
  std::vector<FrameDecoder::Event> events = DrainAll(d);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, FrameDecoder::Kind::kOversized);
  EXPECT_EQ(events[1].data, "ok");
}

TEST(FrameTest, MaximumLengthHeaderNeverAllocatesItsClaim) {
  char header[kFrameHeaderSize];
  EncodeFrameHeader({0xffffffffu, 1, kFrameRequest, 0}, header);
  FrameDecoder d;
  d.Feed(header, sizeof(header));
  auto e = d.Next();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, FrameDecoder::Kind::kOversized);
  d.Feed(std::string(1000, 'x'));
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameTest, RandomGarbageNeverBuffersMoreThanOneFrame) {
  std::mt19937 rng(42);
  FrameDecoder d(/*max_data=*/1024);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes(rng() % 300, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    d.Feed(bytes);
    while (auto e = d.Next()) {
      if (e->kind == FrameDecoder::Kind::kFrame) {
        EXPECT_LE(e->data.size(), 1024u);
      }
    }
    EXPECT_LE(d.buffered(), 1024u + kFrameHeaderSize);
  }
}

TEST(FrameTest, ParseRequestRoundTrip) {
  wire::Request r;
  r.set_service("containerd.task.v2.Task");
  r.set_method("State");
  r.set_payload(std::string("\x0a\x02id", 4));
  r.set_timeout_nano(5'000'000'000);
  auto* kv = r.add_metadata();
  kv->set_key("containerd-namespace-ttrpc");
  kv->set_value("k8s.io");
  absl::StatusOr<wire::Request> parsed = ParseRequest(r.SerializeAsString());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->service(), "containerd.task.v2.Task");
  EXPECT_EQ(parsed->timeout_nano(), 5'000'000'000);
  EXPECT_EQ(parsed->metadata(0).value(), "k8s.io");
}

TEST(FrameTest, ParseRequestAcceptsNonUtf8AndRejectsGarbage) {
  wire::Request r;
  r.set_service("\xff\xfe");
  EXPECT_TRUE(ParseRequest(r.SerializeAsString()).ok());
  EXPECT_EQ(ParseRequest("\xff\xff\xff").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FrameTest, ResponseFrameCarriesStatusOrPayload) {
  FrameDecoder d;
  d.Feed(EncodeResponseFrame(5, absl::NotFoundError("no such task \xff"), ""));
  d.Feed(EncodeResponseFrame(7, absl::OkStatus(), "data"));
  std::vector<FrameDecoder::Event> events = DrainAll(d);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].header.type, kFrameResponse);
  EXPECT_EQ(events[0].header.stream_id, 5u);
  wire::Response r;
  ASSERT_TRUE(r.ParseFromString(events[0].data));
  EXPECT_EQ(r.status().code(), 5);
  EXPECT_EQ(r.status().message(), "no such task ?");
  absl::Status s = StatusFromResponse(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(r.ParseFromString(events[1].data));
  EXPECT_TRUE(StatusFromResponse(r).ok());
  EXPECT_EQ(r.payload(), "data");
}

TEST(FrameTest, TooLargeReplyBecomesResourceExhausted) {
  FrameDecoder d;
  d.Feed(EncodeResponseFrame(9, absl::OkStatus(),
                             std::string(kMaxFrameData, 'p')));
  auto e = d.Next();
  ASSERT_TRUE(e.has_value());
  wire::Response r;
  ASSERT_TRUE(r.ParseFromString(e->data));
  EXPECT_EQ(StatusFromResponse(r).code(), absl::StatusCode::kResourceExhausted);
}

TEST(FrameTest, StatusFromResponseMapsUnknownCodes) {
  wire::Response r;
  r.mutable_status()->set_code(99);
  EXPECT_EQ(StatusFromResponse(r).code(), absl::StatusCode::kUnknown);
  r.mutable_status()->set_code(-3);
  EXPECT_EQ(StatusFromResponse(r).code(), absl::StatusCode::kUnknown);
  r.mutable_status()->set_code(0);
  EXPECT_TRUE(StatusFromResponse(r).ok());
}

TEST(FrameTest, ToValidUtf8) {
  EXPECT_EQ(ToValidUtf8("plain"), "plain");
  EXPECT_EQ(ToValidUtf8("\xc3\xa9t\xc3\xa9"), "\xc3\xa9t\xc3\xa9");
  EXPECT_EQ(ToValidUtf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(ToValidUtf8("a\xff"
                        "b"),
            "a?b");
  EXPECT_EQ(ToValidUtf8("\xc0\xaf"), "??");       // overlong
  EXPECT_EQ(ToValidUtf8("\xed\xa0\x80"), "???");  // surrogate
  EXPECT_EQ(ToValidUtf8("\xe2\x82"), "??");       // truncated
}

}  // namespace
}  // namespace stockade::ttrpc
