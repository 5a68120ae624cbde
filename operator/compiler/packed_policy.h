// A compiled policy held compressed in memory. The operator keeps every
// compiled policy of the cluster (10,000s) for as long as it is desired; in
// their wire form they are 15-30 KB each, most of it a seccomp profile and
// an AppArmor profile much like every other policy's. A PackedPolicy keeps
// the wire form compressed with zstd against a dictionary (the compiled
// default policy), about a fifteenth of the size, plus the few fields read
// often (hash, source, AppArmor profile name) in the clear. Unpack() gives the
// CompiledPolicy back, for sending it.
#ifndef STOCKADE_OPERATOR_COMPILER_PACKED_POLICY_H_
#define STOCKADE_OPERATOR_COMPILER_PACKED_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "stockade/v1/compiled.pb.h"

namespace stockade::compiler {

class PackedPolicy {
 public:
  // Fails only if zstd does (out of memory).
  static absl::StatusOr<std::shared_ptr<const PackedPolicy>> Pack(
      const stockade::v1::CompiledPolicy& policy);

  const std::string& hash() const { return hash_; }
  const stockade::v1::PolicySource& source() const { return source_; }
  // apparmor.name: whether a node loaded the policy's profile.
  const std::string& apparmor_profile() const { return apparmor_profile_; }
  // Size of the policy's wire form (what a node receives).
  size_t serialized_size() const { return serialized_size_; }
  // Bytes held for the body.
  size_t packed_size() const { return packed_.size(); }

  // The policy, as packed. Fails (Internal) only on corruption in memory.
  absl::Status UnpackTo(stockade::v1::CompiledPolicy* out) const;
  absl::StatusOr<stockade::v1::CompiledPolicy> Unpack() const;

  // Same content (compares the packed bytes: equal policies pack equally).
  bool SameContent(const PackedPolicy& other) const {
    return serialized_size_ == other.serialized_size_ &&
           packed_ == other.packed_;
  }

 private:
  PackedPolicy() = default;

  std::string hash_;
  stockade::v1::PolicySource source_;
  std::string apparmor_profile_;
  size_t serialized_size_ = 0;
  std::string packed_;
};

using PackedPolicyPtr = std::shared_ptr<const PackedPolicy>;

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_PACKED_POLICY_H_
