// Test support for the Kubernetes client's tests: a control plane
// (tests/support/apiserver_fixture.h) and clients of it as the admin or as the
// RBAC-less operator user, and polling until a condition holds.
#ifndef STOCKADE_OPERATOR_KUBE_TESTING_KUBE_TESTING_H_
#define STOCKADE_OPERATOR_KUBE_TESTING_KUBE_TESTING_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "operator/kube/client.h"
#include "tests/support/apiserver_fixture.h"

namespace stockade::kube::testing {

// Starts a control plane; nullptr (and a test failure saying why) when it
// cannot.
std::unique_ptr<stockade::testing::ApiserverFixture> StartApiserver();

// A client from the fixture's admin kubeconfig (client certificate) or the
// operator's (bearer token, no RBAC until a test grants some). server, when
// not empty, replaces the kubeconfig's (e.g. a TcpProxy in front).
std::unique_ptr<Client> AdminClient(
    const stockade::testing::ApiserverFixture& f, ClientOptions options = {},
    const std::string& server = "");
std::unique_ptr<Client> OperatorClient(
    const stockade::testing::ApiserverFixture& f, ClientOptions options = {});

// Polls cond every 10 ms until it holds (true) or timeout passes (false).
bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout);

// Creates namespace ns (a test failure when it cannot).
void CreateNamespace(Client* client, const std::string& ns);

}  // namespace stockade::kube::testing

#endif  // STOCKADE_OPERATOR_KUBE_TESTING_KUBE_TESTING_H_
