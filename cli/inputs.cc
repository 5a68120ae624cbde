#include "cli/inputs.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "operator/compiler/validate.h"

namespace stockade::cli {
namespace {

bool ReadFile(const std::string& name, std::string* out) {
  std::ostringstream buf;
  if (name == "-") {
    buf << std::cin.rdbuf();
  } else {
    std::ifstream in(name, std::ios::binary);
    if (!in) return false;
    buf << in.rdbuf();
    if (in.bad()) return false;
  }
  *out = buf.str();
  return true;
}

}  // namespace

std::vector<v1::ClusterAgentPolicy> Inputs::ClusterPolicies() const {
  std::vector<v1::ClusterAgentPolicy> out;
  for (const auto& doc : documents) {
    if (const auto* c = std::get_if<v1::ClusterAgentPolicy>(&doc.object)) {
      out.push_back(*c);
    }
  }
  return out;
}

Inputs LoadInputs(const std::vector<std::string>& files) {
  Inputs inputs;
  for (const std::string& file : files) {
    std::string text;
    if (!ReadFile(file, &text)) {
      inputs.problems.push_back(compiler::Problem{
          file, 0, "", absl::StrCat("cannot read: ", std::strerror(errno))});
      continue;
    }
    compiler::DecodeResult decoded = compiler::DecodeManifests(text, file);
    inputs.problems.insert(inputs.problems.end(), decoded.problems.begin(),
                           decoded.problems.end());
    inputs.skipped.insert(inputs.skipped.end(), decoded.skipped.begin(),
                          decoded.skipped.end());
    for (auto& doc : decoded.documents) {
      auto problems = compiler::ValidateDocument(doc);
      if (!problems.empty()) {
        inputs.problems.insert(inputs.problems.end(), problems.begin(),
                               problems.end());
        continue;
      }
      inputs.documents.push_back(std::move(doc));
    }
  }
  return inputs;
}

std::vector<Compiled> CompileAll(
    const Inputs& inputs,
    const std::vector<v1::ClusterAgentPolicy>& cluster_policies,
    const compiler::NamespaceLabels& namespace_labels,
    std::vector<compiler::Problem>* problems) {
  std::vector<Compiled> out;
  for (const auto& doc : inputs.documents) {
    v1::AgentPolicy policy;
    std::string kind = "AgentPolicy";
    std::string prefix = "spec";
    if (const auto* p = std::get_if<v1::AgentPolicy>(&doc.object)) {
      policy = *p;
    } else if (const auto* a = std::get_if<v1::Agent>(&doc.object)) {
      if (!a->spec().has_policy()) continue;  // compiled from its AgentPolicy
      *policy.mutable_metadata() = a->metadata();
      *policy.mutable_spec() = a->spec().policy();
      kind = "Agent";
      prefix = "spec.policy";
    } else {
      continue;
    }
    compiler::CompileResult result = compiler::CompileAgentPolicy(
        policy, cluster_policies, namespace_labels, kind);
    for (compiler::Problem p : result.problems) {
      if (prefix != "spec" && p.path.rfind("spec", 0) == 0) {
        p.path = prefix + p.path.substr(4);
      }
      p.file = doc.file;
      p.line = doc.LineOf(p.path);
      problems->push_back(std::move(p));
    }
    if (result.compiled) {
      out.push_back(Compiled{&doc, *std::move(result.compiled)});
    }
  }
  return out;
}

}  // namespace stockade::cli
