// Reads kubectl-style manifests (multi-document YAML, or JSON) into the API's
// proto messages. Every problem names the file, the line and the field path,
// and the schema rules declared in proto/stockade/v1/schema.proto (required,
// pattern, minimum, maximum, maxLength, maxItems, list sets, enum spellings)
// are enforced exactly as the generated CRDs declare them.
#ifndef STOCKADE_OPERATOR_COMPILER_MANIFEST_MANIFEST_H_
#define STOCKADE_OPERATOR_COMPILER_MANIFEST_MANIFEST_H_

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "stockade/v1/policy.pb.h"

namespace stockade::compiler {

inline constexpr char kApiVersion[] = "stockade.dev/v1alpha1";
inline constexpr char kApiGroup[] = "stockade.dev";

// One thing wrong with an input, printed as "FILE:LINE: PATH: MESSAGE".
struct Problem {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
  std::string path;
  std::string message;

  std::string ToString() const;
};

// Field path ("spec.filesystem.writable[0].path") -> 1-based source line.
using SourceLines = std::map<std::string, int, std::less<>>;

using ApiObject =
    std::variant<stockade::v1::AgentPolicy, stockade::v1::ClusterAgentPolicy,
                 stockade::v1::Agent>;

// One decoded object and where each of its fields came from.
struct Document {
  std::string file;
  int line = 0;
  ApiObject object;
  SourceLines lines;

  // Line of `path`, or of its nearest ancestor that has one.
  int LineOf(absl::string_view path) const;
  absl::string_view Kind() const;
  const stockade::v1::ObjectMeta& Metadata() const;
};

struct DecodeResult {
  std::vector<Document> documents;
  std::vector<Problem> problems;
  // Documents of other API groups (Namespace, Deployment, ...), not ours to
  // check; "Kind name" each.
  std::vector<std::string> skipped;
};

// Largest manifest accepted, in bytes.
inline constexpr size_t kMaxManifestBytes = 4 << 20;

// Decodes every document of `text`. Documents with problems are not returned.
DecodeResult DecodeManifests(absl::string_view text, absl::string_view file);

// Decodes one YAML/JSON mapping into `message` (any message of the API), with
// paths starting at `path`. For tests and the fuzzer.
std::vector<Problem> DecodeInto(absl::string_view text, absl::string_view file,
                                google::protobuf::Message* message);

// The manifest spelling of an enum value ("Enforce"), or "" when it has none.
std::string EnumSpelling(const google::protobuf::EnumValueDescriptor* value);

}  // namespace stockade::compiler

#endif  // STOCKADE_OPERATOR_COMPILER_MANIFEST_MANIFEST_H_
