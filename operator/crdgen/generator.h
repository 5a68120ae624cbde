// The generator behind protoc-gen-stockade-crd: every message of a .proto file
// that carries the (stockade.v1.resource) option becomes a Kubernetes
// CustomResourceDefinition with a structural openAPIV3Schema.
#ifndef STOCKADE_OPERATOR_CRDGEN_GENERATOR_H_
#define STOCKADE_OPERATOR_CRDGEN_GENERATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/compiler/code_generator.h"
#include "google/protobuf/descriptor.h"

namespace stockade::crdgen {

inline constexpr char kGroup[] = "stockade.dev";
inline constexpr char kVersion[] = "v1alpha1";

// One generated file: "stockade.dev_agentpolicies.yaml" and its YAML.
struct CrdFile {
  std::string name;
  std::string content;
};

// The CRDs for the resources declared in `file`, sorted by name. Fails, naming
// the field, on anything a CRD cannot express or Stockade forbids (an int64
// under spec, a recursive message, an enum value without a spelling, a schema
// option that does not fit the field's type, ...).
absl::StatusOr<std::vector<CrdFile>> GenerateCrds(
    const google::protobuf::FileDescriptor* file);

// The protoc plugin: writes GenerateCrds(file) into --stockade-crd_out.
class CrdGenerator : public google::protobuf::compiler::CodeGenerator {
 public:
  bool Generate(const google::protobuf::FileDescriptor* file,
                const std::string& parameter,
                google::protobuf::compiler::GeneratorContext* context,
                std::string* error) const override;
  uint64_t GetSupportedFeatures() const override {
    return FEATURE_PROTO3_OPTIONAL;
  }
};

}  // namespace stockade::crdgen

#endif  // STOCKADE_OPERATOR_CRDGEN_GENERATOR_H_
