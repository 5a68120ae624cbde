#include "operator/manager/metrics.h"

#include <limits>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace stockade::manager {
namespace {

prometheus::MetricFamily Family(const std::string& name,
                                const std::string& help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

class ServerCollector : public prometheus::Collectable {
 public:
  explicit ServerCollector(const distribution::DistributionServer* server)
      : server_(server) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const distribution::Metrics m = server_->GetMetrics();
    std::vector<prometheus::MetricFamily> out;
    auto gauge = [&](const char* name, const char* help, double value) {
      prometheus::MetricFamily f =
          Family(name, help, prometheus::MetricType::Gauge);
      prometheus::ClientMetric c;
      c.gauge.value = value;
      f.metric.push_back(c);
      out.push_back(std::move(f));
    };
    auto counter = [&](const char* name, const char* help, double value) {
      prometheus::MetricFamily f =
          Family(name, help, prometheus::MetricType::Counter);
      prometheus::ClientMetric c;
      c.counter.value = value;
      f.metric.push_back(c);
      out.push_back(std::move(f));
    };
    gauge("stockade_connected_nodes", "Node agents connected now.",
          static_cast<double>(m.connected_nodes));
    gauge("stockade_desired_version",
          "Version of the desired state sent to the nodes.",
          static_cast<double>(m.desired_version));
    counter("stockade_distribution_updates_total",
            "PolicyUpdate messages sent to node agents.",
            static_cast<double>(m.updates_sent));
    counter("stockade_distribution_acks_total",
            "Node reports that acknowledged a newer version.",
            static_cast<double>(m.acks));
    prometheus::MetricFamily h = Family(
        "stockade_distribution_latency_seconds",
        "From a change of the desired state to a node's acknowledgement.",
        prometheus::MetricType::Histogram);
    prometheus::ClientMetric c;
    c.histogram.sample_count = m.distribution_latency.count;
    c.histogram.sample_sum = m.distribution_latency.sum_seconds;
    for (size_t i = 0; i < m.distribution_latency.kBounds.size(); ++i) {
      prometheus::ClientMetric::Bucket b;
      b.upper_bound = m.distribution_latency.kBounds[i];
      b.cumulative_count = m.distribution_latency.counts[i];
      c.histogram.bucket.push_back(b);
    }
    prometheus::ClientMetric::Bucket inf;
    inf.upper_bound = std::numeric_limits<double>::infinity();
    inf.cumulative_count = m.distribution_latency.count;
    c.histogram.bucket.push_back(inf);
    h.metric.push_back(c);
    out.push_back(std::move(h));
    return out;
  }

 private:
  const distribution::DistributionServer* server_;
};

}  // namespace

OperatorMetrics::OperatorMetrics(prometheus::Registry& registry)
    : registry_(registry) {
  reconciles = &prometheus::BuildCounter()
                    .Name("stockade_reconciles_total")
                    .Help("Reconciles of every policy, run to completion.")
                    .Register(registry)
                    .Add({});
  reconcile_errors = &prometheus::BuildCounter()
                          .Name("stockade_reconcile_errors_total")
                          .Help("Reconciles that failed (retried).")
                          .Register(registry)
                          .Add({});
  status_writes = &prometheus::BuildCounter()
                       .Name("stockade_status_writes_total")
                       .Help("Status subresource writes.")
                       .Register(registry)
                       .Add({});
  queue_depth = &prometheus::BuildGauge()
                     .Name("stockade_queue_depth")
                     .Help("Work items waiting.")
                     .Register(registry)
                     .Add({});
  policies = &prometheus::BuildGauge()
                  .Name("stockade_policies")
                  .Help("AgentPolicies known.")
                  .Register(registry)
                  .Add({});
  heap_bytes = &prometheus::BuildGauge()
                    .Name("stockade_heap_bytes")
                    .Help("Heap in use after the last reconcile.")
                    .Register(registry)
                    .Add({});
  reconcile_seconds =
      &prometheus::BuildHistogram()
           .Name("stockade_reconcile_duration_seconds")
           .Help("Duration of one reconcile of every policy.")
           .Register(registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{
                        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5});
  agent_reconciles = &prometheus::BuildCounter()
                          .Name("stockade_agent_reconciles_total")
                          .Help("Reconciles of one Agent, run to completion.")
                          .Register(registry)
                          .Add({});
  agent_reconcile_errors = &prometheus::BuildCounter()
                                .Name("stockade_agent_reconcile_errors_total")
                                .Help("Agent reconciles that failed (retried).")
                                .Register(registry)
                                .Add({});
  agent_applies =
      &prometheus::BuildCounter()
           .Name("stockade_agent_applies_total")
           .Help(
               "Server-side applies of Deployments, NetworkPolicies and "
               "inline AgentPolicies for Agents.")
           .Register(registry)
           .Add({});
  denials = &prometheus::BuildCounter()
                 .Name("stockade_denials_total")
                 .Help(
                     "Denials the nodes reported (docs/denials.md), by "
                     "namespace, policy, layer and mode; rate-limited "
                     "ones included.")
                 .Register(registry);
}

void OperatorMetrics::WatchServer(
    const distribution::DistributionServer* server) {
  server_collector_ = std::make_shared<ServerCollector>(server);
}

namespace {
class Both : public prometheus::Collectable {
 public:
  Both(const prometheus::Registry* registry,
       std::shared_ptr<prometheus::Collectable> server)
      : registry_(registry), server_(std::move(server)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out = registry_->Collect();
    if (server_ != nullptr) {
      for (auto& f : server_->Collect()) out.push_back(std::move(f));
    }
    return out;
  }

 private:
  const prometheus::Registry* registry_;
  std::shared_ptr<prometheus::Collectable> server_;
};
}  // namespace

std::shared_ptr<prometheus::Collectable> OperatorMetrics::Collectable() const {
  return std::make_shared<Both>(&registry_, server_collector_);
}

}  // namespace stockade::manager
