#include "operator/kube/testing/kube_testing.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "operator/kube/kubeconfig.h"

namespace stockade::kube::testing {

using stockade::testing::ApiserverFixture;

std::unique_ptr<ApiserverFixture> StartApiserver() {
  absl::StatusOr<std::unique_ptr<ApiserverFixture>> f =
      ApiserverFixture::Start();
  if (!f.ok()) {
    ADD_FAILURE() << f.status();
    return nullptr;
  }
  return *std::move(f);
}

namespace {

std::unique_ptr<Client> ClientFrom(const std::string& kubeconfig,
                                   ClientOptions options,
                                   const std::string& server) {
  absl::StatusOr<ClusterConfig> config = LoadKubeconfig(kubeconfig);
  if (!config.ok()) {
    ADD_FAILURE() << config.status();
    return nullptr;
  }
  if (!server.empty()) config->server = server;
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::FromConfig(*config, options);
  if (!client.ok()) {
    ADD_FAILURE() << client.status();
    return nullptr;
  }
  return *std::move(client);
}

}  // namespace

std::unique_ptr<Client> AdminClient(const ApiserverFixture& f,
                                    ClientOptions options,
                                    const std::string& server) {
  return ClientFrom(f.kubeconfig(), options, server);
}

std::unique_ptr<Client> OperatorClient(const ApiserverFixture& f,
                                       ClientOptions options) {
  return ClientFrom(f.operator_kubeconfig(), options, "");
}

bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (cond()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void CreateNamespace(Client* client, const std::string& ns) {
  absl::StatusOr<nlohmann::json> r =
      client->Create(kNamespace, "", {{"metadata", {{"name", ns}}}});
  EXPECT_TRUE(r.ok()) << r.status();
}

}  // namespace stockade::kube::testing
