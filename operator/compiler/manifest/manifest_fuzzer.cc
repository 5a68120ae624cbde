// libFuzzer target: arbitrary bytes as a policy file, through everything the
// CLI and operator do with untrusted manifests (decode, validate, merge,
// compile). Must never crash, hang or leak, whatever the input.
#include <cstddef>
#include <cstdint>

#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stockade::compiler;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  DecodeResult decoded = DecodeManifests(text, "fuzz.yaml");
  std::vector<stockade::v1::ClusterAgentPolicy> guardrails;
  for (const Document& doc : decoded.documents) {
    if (!ValidateDocument(doc).empty()) continue;
    if (const auto* c =
            std::get_if<stockade::v1::ClusterAgentPolicy>(&doc.object)) {
      guardrails.push_back(*c);
    }
  }
  for (const Document& doc : decoded.documents) {
    if (const auto* p = std::get_if<stockade::v1::AgentPolicy>(&doc.object)) {
      CompileAgentPolicy(*p, guardrails, {});
    }
  }
  return 0;
}
