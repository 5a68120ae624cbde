// The CLI's inputs: manifest files read, decoded and validated, with every
// problem printed as FILE:LINE: field.path: message.
#ifndef STOCKADE_CLI_INPUTS_H_
#define STOCKADE_CLI_INPUTS_H_

#include <string>
#include <vector>

#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"

namespace stockade::cli {

struct Inputs {
  std::vector<compiler::Document> documents;
  std::vector<compiler::Problem> problems;
  std::vector<std::string> skipped;

  std::vector<stockade::v1::ClusterAgentPolicy> ClusterPolicies() const;
};

// Reads, decodes and validates every file ("-" is stdin). Unreadable files
// become problems too.
Inputs LoadInputs(const std::vector<std::string>& files);

// One compiled policy and the document it came from.
struct Compiled {
  const compiler::Document* document;
  stockade::v1::CompiledPolicy policy;
};

// Compiles every AgentPolicy (and every Agent with an inline policy) among
// `inputs`, against `cluster_policies`. Guardrail violations are appended to
// `problems` with file and line.
std::vector<Compiled> CompileAll(
    const Inputs& inputs,
    const std::vector<stockade::v1::ClusterAgentPolicy>& cluster_policies,
    const compiler::NamespaceLabels& namespace_labels,
    std::vector<compiler::Problem>* problems);

}  // namespace stockade::cli

#endif  // STOCKADE_CLI_INPUTS_H_
