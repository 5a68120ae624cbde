#include "operator/compiler/packed_policy.h"

#include <zstd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/merge.h"

namespace stockade::compiler {
namespace {

namespace v1 = ::stockade::v1;

// Speed over the last few percent: the operator packs every policy it
// compiles, 10,000 of them on a cold start.
constexpr int kLevel = 3;

std::string Serialize(const v1::CompiledPolicy& policy) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  policy.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// The dictionary, digested once for each direction. Its content is the wire
// form of the policy every policy resembles most, Stockade's defaults
// compiled, used as raw content (zstd finds matches in it as in earlier
// input). Packed bytes never leave the process, so it only has to be the
// same within one.
struct Dictionary {
  ZSTD_CDict* compress = nullptr;
  ZSTD_DDict* decompress = nullptr;
};

const Dictionary& Dict() {
  static const Dictionary* const dictionary = [] {
    MergeResult merged = Merge(v1::AgentPolicySpec(), {}, {});
    v1::PolicySource source;
    source.set_kind("AgentPolicy");
    source.set_namespace_("default");
    source.set_name("reference");
    absl::StatusOr<v1::CompiledPolicy> compiled =
        CompileEffective(merged.effective, source);
    const std::string content = compiled.ok() ? Serialize(*compiled) : "";
    auto* d = new Dictionary();
    // Without zstd's dictionary magic number, content is taken raw.
    d->compress = ZSTD_createCDict(content.data(), content.size(), kLevel);
    d->decompress = ZSTD_createDDict(content.data(), content.size());
    return d;
  }();
  return *dictionary;
}

// One context per thread, reused: creating one costs more than packing.
ZSTD_CCtx* CompressContext() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> context(
      ZSTD_createCCtx(), &ZSTD_freeCCtx);
  return context.get();
}

ZSTD_DCtx* DecompressContext() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> context(
      ZSTD_createDCtx(), &ZSTD_freeDCtx);
  return context.get();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const PackedPolicy>> PackedPolicy::Pack(
    const v1::CompiledPolicy& policy) {
  const std::string wire = Serialize(policy);
  const Dictionary& dictionary = Dict();
  ZSTD_CCtx* context = CompressContext();
  if (dictionary.compress == nullptr || context == nullptr) {
    return absl::ResourceExhaustedError("packing a policy: out of memory");
  }
  std::string packed(ZSTD_compressBound(wire.size()), '\0');
  const size_t n =
      ZSTD_compress_usingCDict(context, packed.data(), packed.size(),
                               wire.data(), wire.size(), dictionary.compress);
  if (ZSTD_isError(n)) {
    return absl::InternalError(
        absl::StrCat("packing a policy: ", ZSTD_getErrorName(n)));
  }
  packed.resize(n);
  packed.shrink_to_fit();
  std::shared_ptr<PackedPolicy> out(new PackedPolicy());
  out->hash_ = policy.hash();
  out->source_ = policy.source();
  out->apparmor_profile_ = policy.apparmor().name();
  out->serialized_size_ = wire.size();
  out->packed_ = std::move(packed);
  return out;
}

absl::Status PackedPolicy::UnpackTo(v1::CompiledPolicy* out) const {
  const Dictionary& dictionary = Dict();
  ZSTD_DCtx* context = DecompressContext();
  if (dictionary.decompress == nullptr || context == nullptr) {
    return absl::ResourceExhaustedError("unpacking a policy: out of memory");
  }
  std::string wire(serialized_size_, '\0');
  const size_t n = ZSTD_decompress_usingDDict(context, wire.data(), wire.size(),
                                              packed_.data(), packed_.size(),
                                              dictionary.decompress);
  if (ZSTD_isError(n) || n != wire.size() || !out->ParseFromString(wire)) {
    return absl::InternalError(
        absl::StrCat("unpacking policy ", hash_, ": corrupt in memory"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CompiledPolicy> PackedPolicy::Unpack() const {
  v1::CompiledPolicy out;
  if (absl::Status s = UnpackTo(&out); !s.ok()) return s;
  return out;
}

}  // namespace stockade::compiler
