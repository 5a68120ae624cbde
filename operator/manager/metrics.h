// The operator's Prometheus metrics: reconciles and their errors and
// duration, status writes, queue depth, policies, Agent reconciles and
// applies, and what the distribution
// server counts (connected nodes, desired version, distribution latency),
// read from it at scrape time.
#ifndef STOCKADE_OPERATOR_MANAGER_METRICS_H_
#define STOCKADE_OPERATOR_MANAGER_METRICS_H_

#include <memory>

#include "operator/distribution/server.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace stockade::manager {

class OperatorMetrics {
 public:
  explicit OperatorMetrics(prometheus::Registry& registry);
  // Adds the server's metrics to what Collectable() collects (the server
  // must outlive the scrapes; the operator stops HTTP first).
  void WatchServer(const distribution::DistributionServer* server);
  // Everything: the registry's metrics and the server's.
  std::shared_ptr<prometheus::Collectable> Collectable() const;

  prometheus::Counter* reconciles;
  prometheus::Counter* reconcile_errors;
  prometheus::Counter* status_writes;
  prometheus::Gauge* queue_depth;
  prometheus::Gauge* policies;
  // malloc's bytes in use after the last reconcile (RSS minus this is
  // memory freed but not returned, and code).
  prometheus::Gauge* heap_bytes;
  prometheus::Histogram* reconcile_seconds;
  // The Agent controller: reconciles of one Agent, failed ones, and server-
  // side applies of the objects it owns.
  prometheus::Counter* agent_reconciles;
  prometheus::Counter* agent_reconcile_errors;
  prometheus::Counter* agent_applies;
  // Denials the nodes reported, by namespace, policy, layer and mode
  // (stockade_denials_total).
  prometheus::Family<prometheus::Counter>* denials;

 private:
  prometheus::Registry& registry_;
  std::shared_ptr<prometheus::Collectable> server_collector_;
};

}  // namespace stockade::manager

#endif  // STOCKADE_OPERATOR_MANAGER_METRICS_H_
