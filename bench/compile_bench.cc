// Compile time of the example policies: decode + validate + merge + every
// emitter + hash, as the operator does per reconcile and the CLI per file.
// Target: under 1 ms per typical policy.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include "operator/compiler/compile.h"
#include "operator/compiler/manifest/manifest.h"
#include "operator/compiler/packed_policy.h"
#include "shim/init/seccomp_loader.h"

namespace {

std::string Read(const std::string& name) {
  std::ifstream in(std::string(STOCKADE_SOURCE_ROOT) + "/examples/policies/" +
                   name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

stockade::v1::ClusterAgentPolicy Guardrails() {
  auto r =
      stockade::compiler::DecodeManifests(Read("cluster-guardrails.yaml"), "g");
  return std::get<stockade::v1::ClusterAgentPolicy>(r.documents.at(0).object);
}

void BM_DecodeAndCompile(benchmark::State& state, const char* file) {
  const std::string text = Read(file);
  const std::vector<stockade::v1::ClusterAgentPolicy> guards = {Guardrails()};
  const stockade::compiler::NamespaceLabels labels = {
      {"stockade.dev/enforce", "true"}};
  for (auto _ : state) {
    auto decoded = stockade::compiler::DecodeManifests(text, file);
    const auto& policy =
        std::get<stockade::v1::AgentPolicy>(decoded.documents.at(0).object);
    auto result =
        stockade::compiler::CompileAgentPolicy(policy, guards, labels);
    if (!result.compiled) state.SkipWithError("compile failed");
    benchmark::DoNotOptimize(result);
  }
}

void BM_CompileOnly(benchmark::State& state, const char* file) {
  auto decoded = stockade::compiler::DecodeManifests(Read(file), file);
  const auto policy =
      std::get<stockade::v1::AgentPolicy>(decoded.documents.at(0).object);
  const std::vector<stockade::v1::ClusterAgentPolicy> guards = {Guardrails()};
  const stockade::compiler::NamespaceLabels labels = {
      {"stockade.dev/enforce", "true"}};
  for (auto _ : state) {
    auto result =
        stockade::compiler::CompileAgentPolicy(policy, guards, labels);
    benchmark::DoNotOptimize(result);
  }
}

// What runc (or the shim) pays per container to turn the compiled seccomp
// profile into BPF with libseccomp.
void BM_SeccompToBpf(benchmark::State& state, const char* file) {
  auto decoded = stockade::compiler::DecodeManifests(Read(file), file);
  const auto policy =
      std::get<stockade::v1::AgentPolicy>(decoded.documents.at(0).object);
  auto result = stockade::compiler::CompileAgentPolicy(policy, {}, {});
  const std::string json = result.compiled->seccomp_json();
  for (auto _ : state) {
    auto filter = stockade::shim::OciSeccompFilter::Build(json);
    if (!filter.ok()) state.SkipWithError("seccomp build failed");
    auto bpf = filter->ExportBpf();
    benchmark::DoNotOptimize(bpf);
  }
}

// What the operator pays to hold a compiled policy compressed (on every
// compile) and to get it back (for every node it sends the policy to).
stockade::v1::CompiledPolicy CompiledExample(const char* file) {
  auto decoded = stockade::compiler::DecodeManifests(Read(file), file);
  const auto policy =
      std::get<stockade::v1::AgentPolicy>(decoded.documents.at(0).object);
  return *stockade::compiler::CompileAgentPolicy(policy, {}, {}).compiled;
}

void BM_Pack(benchmark::State& state, const char* file) {
  const stockade::v1::CompiledPolicy compiled = CompiledExample(file);
  size_t packed_size = 0;
  for (auto _ : state) {
    auto packed = stockade::compiler::PackedPolicy::Pack(compiled);
    packed_size = (*packed)->packed_size();
    benchmark::DoNotOptimize(packed);
  }
  state.counters["wire_bytes"] = static_cast<double>(compiled.ByteSizeLong());
  state.counters["packed_bytes"] = static_cast<double>(packed_size);
}

void BM_Unpack(benchmark::State& state, const char* file) {
  auto packed = stockade::compiler::PackedPolicy::Pack(CompiledExample(file));
  stockade::v1::CompiledPolicy out;
  for (auto _ : state) {
    if (!(*packed)->UnpackTo(&out).ok()) state.SkipWithError("unpack failed");
    benchmark::DoNotOptimize(out);
  }
}

BENCHMARK_CAPTURE(BM_Pack, research_agent, "research-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Pack, strict_agent, "strict-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Unpack, research_agent, "research-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_DecodeAndCompile, research_agent, "research-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_DecodeAndCompile, strict_agent, "strict-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CompileOnly, research_agent, "research-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CompileOnly, strict_agent, "strict-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SeccompToBpf, research_agent, "research-agent.yaml")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SeccompToBpf, strict_agent, "strict-agent.yaml")
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
