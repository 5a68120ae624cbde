// A full reconcile of the AgentPolicy controller (operator/controller) over
// 1,000 and 10,000 policies: cold (every policy compiled, as after an
// operator start), steady (nothing changed: a node report or a resync) and
// after a guardrail change (every policy it selects recompiled). Memory is
// the heap the reconciler holds afterwards (glibc mallinfo2, in use), the
// wire size of the compiled policies it holds and what it holds of them
// (packed).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "operator/compiler/manifest/manifest.h"
#include "operator/controller/reconciler.h"

namespace {

namespace v1 = ::stockade::v1;
using stockade::controller::PolicyReconciler;
using stockade::controller::ReconcileResult;
using stockade::controller::Snapshot;

constexpr int kNamespaces = 100;
constexpr int kNodes = 20;

std::string Read(const std::string& name) {
  std::ifstream in(std::string(STOCKADE_SOURCE_ROOT) + "/examples/policies/" +
                   name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

template <typename T>
T Example(const std::string& name) {
  auto r = stockade::compiler::DecodeManifests(Read(name), name);
  return std::get<T>(r.documents.at(0).object);
}

double HeapMb() {
  return static_cast<double>(mallinfo2().uordblks) / (1 << 20);
}

// `n` policies (the two example policies, alternately, each with its own
// name and process limit) over 100 namespaces, half of them under the
// example guardrails; 20 nodes.
Snapshot MakeSnapshot(int n) {
  const auto templates = {Example<v1::AgentPolicy>("research-agent.yaml"),
                          Example<v1::AgentPolicy>("strict-agent.yaml")};
  Snapshot s;
  s.cluster_policies.push_back(
      {Example<v1::ClusterAgentPolicy>("cluster-guardrails.yaml"), {}});
  s.cluster_policies[0].object.mutable_metadata()->set_uid("baseline");
  for (int i = 0; i < kNamespaces; ++i) {
    stockade::compiler::NamespaceLabels labels;
    if (i % 2 == 0) labels["stockade.dev/enforce"] = "true";
    s.namespaces["ns-" + std::to_string(i)] = labels;
  }
  for (int i = 0; i < n; ++i) {
    v1::AgentPolicy p = *(templates.begin() + i % 2);
    auto* meta = p.mutable_metadata();
    meta->set_namespace_("ns-" + std::to_string(i % kNamespaces));
    meta->set_name("agent-" + std::to_string(i));
    meta->set_uid("uid-" + std::to_string(i));
    meta->set_generation(1);
    p.mutable_spec()->mutable_processes()->set_max(8 + i % 50);
    s.policies.push_back({std::move(p), {}});
  }
  for (int i = 0; i < kNodes; ++i) {
    s.nodes.push_back({"node-" + std::to_string(i), {}, {}});
  }
  return s;
}

void SyncNodes(const ReconcileResult& r, Snapshot* s) {
  for (auto& node : s->nodes) {
    node.held.clear();
    for (const auto& [hash, policy] : r.desired.policies)
      node.held.insert(hash);
  }
}

void Report(benchmark::State& state, const ReconcileResult& r) {
  state.counters["policies"] = static_cast<double>(r.policies.size());
  state.counters["compiled"] = r.stats.compiled;
  state.counters["failed"] = r.stats.failed;
  state.counters["time_per_policy"] =
      benchmark::Counter(static_cast<double>(r.policies.size()),
                         benchmark::Counter::kIsIterationInvariantRate |
                             benchmark::Counter::kInvert);
}

// After an operator start: every policy compiled.
void BM_ReconcileCold(benchmark::State& state) {
  Snapshot s = MakeSnapshot(static_cast<int>(state.range(0)));
  double held_mb = 0;
  double compiled_mb = 0;
  double packed_mb = 0;
  for (auto _ : state) {
    malloc_trim(0);
    const double before = HeapMb();
    auto reconciler = std::make_unique<PolicyReconciler>();
    ReconcileResult r = reconciler->Reconcile(s);
    state.PauseTiming();
    held_mb = HeapMb() - before;
    compiled_mb = 0;
    packed_mb = 0;
    for (const auto& [hash, policy] : r.desired.policies) {
      compiled_mb += static_cast<double>(policy->serialized_size()) / (1 << 20);
      packed_mb += static_cast<double>(policy->packed_size()) / (1 << 20);
    }
    Report(state, r);
    reconciler.reset();
    r = ReconcileResult();
    state.ResumeTiming();
  }
  state.counters["heap_MB"] = held_mb;
  state.counters["compiled_MB"] = compiled_mb;
  state.counters["packed_MB"] = packed_mb;
}

// Nothing changed (a node report, a periodic resync): everything from the
// compile cache, statuses and desired set recomputed.
void BM_ReconcileSteady(benchmark::State& state) {
  Snapshot s = MakeSnapshot(static_cast<int>(state.range(0)));
  PolicyReconciler reconciler;
  SyncNodes(reconciler.Reconcile(s), &s);
  ReconcileResult r = reconciler.Reconcile(s);
  for (auto _ : state) {
    r = reconciler.Reconcile(s);
    benchmark::DoNotOptimize(r);
  }
  Report(state, r);
}

// The guardrail changes every iteration: the half of the policies it
// selects are recompiled, the other half come from the cache.
void BM_ReconcileGuardrailChange(benchmark::State& state) {
  Snapshot s = MakeSnapshot(static_cast<int>(state.range(0)));
  PolicyReconciler reconciler;
  SyncNodes(reconciler.Reconcile(s), &s);
  ReconcileResult r;
  int max = 256;
  for (auto _ : state) {
    max = max == 256 ? 255 : 256;
    s.cluster_policies[0]
        .object.mutable_spec()
        ->mutable_guardrails()
        ->set_max_processes(max);
    r = reconciler.Reconcile(s);
    benchmark::DoNotOptimize(r);
  }
  Report(state, r);
}

BENCHMARK(BM_ReconcileCold)
    ->Arg(1000)
    ->Arg(10000)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReconcileSteady)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReconcileGuardrailChange)
    ->Arg(1000)
    ->Arg(10000)
    ->Iterations(4)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
