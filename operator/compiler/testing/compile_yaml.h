// Test helper: one AgentPolicy manifest (YAML) -> its CompiledPolicy, with
// every decode, validation or guardrail problem reported as a test failure.
#ifndef STOCKADE_OPERATOR_COMPILER_TESTING_COMPILE_YAML_H_
#define STOCKADE_OPERATOR_COMPILER_TESTING_COMPILE_YAML_H_

#include <string>
#include <variant>

#include "gtest/gtest.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"

namespace stockade::compiler::testing {

inline stockade::v1::CompiledPolicy CompileYaml(const std::string& yaml) {
  DecodeResult decoded = DecodeManifests(yaml, "test");
  for (const auto& p : decoded.problems) ADD_FAILURE() << p.ToString();
  EXPECT_EQ(decoded.documents.size(), 1u);
  if (decoded.documents.size() != 1) return {};
  CompileResult result = CompileAgentPolicy(
      std::get<stockade::v1::AgentPolicy>(decoded.documents[0].object), {}, {});
  for (const auto& p : result.problems) ADD_FAILURE() << p.ToString();
  EXPECT_TRUE(result.compiled.has_value());
  return result.compiled.value_or(stockade::v1::CompiledPolicy());
}

}  // namespace stockade::compiler::testing

#endif  // STOCKADE_OPERATOR_COMPILER_TESTING_COMPILE_YAML_H_
