// The client against a real kube-apiserver: authentication, CRUD on
// ConfigMaps and on the project's custom resources (status subresource,
// server-side apply), pagination, the error mapping, timeouts and
// cancellation.
#include "operator/kube/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/kubeconfig.h"
#include "operator/kube/testing/kube_testing.h"

namespace stockade::kube {
namespace {

using json = nlohmann::json;
using ::stockade::testing::ApiserverFixture;
using testing::AdminClient;
using ::testing::AllOf;
using testing::CreateNamespace;
using ::testing::HasSubstr;
using testing::OperatorClient;
using testing::StartApiserver;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json ConfigMap(const std::string& name, json data = json::object()) {
  return {{"metadata", {{"name", name}}}, {"data", std::move(data)}};
}

// A valid AgentPolicy (the CRD requires .spec).
json Policy(const std::string& name, const std::string& mode = "Enforce") {
  return {{"apiVersion", "stockade.dev/v1alpha1"},
          {"kind", "AgentPolicy"},
          {"metadata", {{"name", name}}},
          {"spec", {{"mode", mode}}}};
}

TEST(KubeClientTest, AuthenticatesWithCertificateFilesDataAndTokens) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);

  // Client certificate from files (the kubeconfig).
  std::unique_ptr<Client> admin = AdminClient(*f);
  ASSERT_NE(admin, nullptr);
  absl::StatusOr<json> ns = admin->Get(kNamespace, "", "default");
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ(StringAt(*ns, {"kind"}), "Namespace");
  EXPECT_EQ(NameOf(*ns), "default");

  // The same from inline data (kubeconfig *-data fields).
  ClusterConfig data;
  data.server = f->server();
  data.ca_data = ReadAll(f->ca_file());
  data.client_cert_data = ReadAll(f->admin_cert_file());
  data.client_key_data = ReadAll(f->admin_key_file());
  absl::StatusOr<std::unique_ptr<Client>> inline_client =
      Client::FromConfig(data);
  ASSERT_TRUE(inline_client.ok()) << inline_client.status();
  EXPECT_TRUE((*inline_client)->Get(kNamespace, "", "default").ok());

  // Bearer token: the apiserver says who we are.
  const json review = {{"apiVersion", "authentication.k8s.io/v1"},
                       {"kind", "SelfSubjectReview"}};
  auto WhoAmI = [&](Client* c) -> std::string {
    absl::StatusOr<Response> r =
        c->Request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                   Dump(review));
    if (!r.ok()) return r.status().ToString();
    absl::StatusOr<json> j = ParseJson(r->body);
    if (!j.ok()) return r->body;
    return StringAt(*j, {"status", "userInfo", "username"});
  };
  std::unique_ptr<Client> op = OperatorClient(*f);
  ASSERT_NE(op, nullptr);
  EXPECT_EQ(WhoAmI(op.get()), "stockade-operator");
  EXPECT_EQ(WhoAmI(admin.get()), "stockade-admin");

  // A token file is read again (rotation), here on every request.
  char tmpl[] = "/tmp/stockade-token-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string token_file = std::string(tmpl) + "/token";
  std::ofstream(token_file) << f->operator_token() << "\n";
  ClusterConfig rotating;
  rotating.server = f->server();
  rotating.ca_file = f->ca_file();
  rotating.token = f->operator_token();
  rotating.token_file = token_file;
  absl::StatusOr<std::unique_ptr<Client>> rc = Client::FromConfig(
      rotating, ClientOptions{.token_reload_period = absl::ZeroDuration()});
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(WhoAmI(rc->get()), "stockade-operator");
  std::ofstream(token_file, std::ios::trunc) << "not-a-valid-token\n";
  absl::StatusOr<json> unauth = (*rc)->Get(kNamespace, "", "default");
  EXPECT_EQ(unauth.status().code(), absl::StatusCode::kUnauthenticated)
      << unauth.status();
  EXPECT_EQ(HttpCode(unauth.status()), 401);
  unlink(token_file.c_str());
  rmdir(tmpl);

  // The server's certificate is checked: without the cluster's CA (system
  // roots only) the handshake fails; insecure-skip-tls-verify accepts it.
  ClusterConfig no_ca;
  no_ca.server = f->server();
  no_ca.token = f->operator_token();
  absl::StatusOr<std::unique_ptr<Client>> nc = Client::FromConfig(no_ca);
  ASSERT_TRUE(nc.ok());
  absl::StatusOr<Response> untrusted = (*nc)->Request("GET", "/version");
  EXPECT_EQ(untrusted.status().code(), absl::StatusCode::kFailedPrecondition)
      << untrusted.status();
  EXPECT_THAT(untrusted.status().message(), HasSubstr("certificate"));
  no_ca.insecure_skip_tls_verify = true;
  nc = Client::FromConfig(no_ca);
  ASSERT_TRUE(nc.ok());
  absl::StatusOr<Response> version = (*nc)->Request("GET", "/version");
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->http_code, 200);
  EXPECT_THAT(version->body, HasSubstr("v1.34"));

  // Files that cannot be read fail at once, naming them.
  ClusterConfig missing;
  missing.server = f->server();
  missing.ca_file = "/nonexistent/ca.crt";
  EXPECT_THAT(Client::FromConfig(missing).status().message(),
              HasSubstr("/nonexistent/ca.crt"));
}

TEST(KubeClientTest, ConfigMapCrudConflictsAndServerSideApply) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "crud");

  absl::StatusOr<json> created =
      c->Create(kConfigMap, "crud", ConfigMap("cm", {{"a", "1"}}));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(NamespaceOf(*created), "crud");
  const std::string rv1 = ResourceVersionOf(*created);
  EXPECT_FALSE(rv1.empty());
  EXPECT_FALSE(UidOf(*created).empty());

  absl::StatusOr<json> got = c->Get(kConfigMap, "crud", "cm");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)["data"]["a"], "1");

  // Create again: AlreadyExists.
  absl::StatusOr<json> again = c->Create(kConfigMap, "crud", ConfigMap("cm"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists)
      << again.status();
  EXPECT_EQ(HttpCode(again.status()), 409);
  EXPECT_EQ(ApiReason(again.status()), "AlreadyExists");
  EXPECT_FALSE(IsConflict(again.status()));

  // Update (PUT) with the current resourceVersion, then with a stale one.
  json update = *got;
  update["data"]["a"] = "2";
  absl::StatusOr<json> updated = c->Update(kConfigMap, "crud", update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_NE(ResourceVersionOf(*updated), rv1);
  update["data"]["a"] = "3";  // still carries rv1
  absl::StatusOr<json> stale = c->Update(kConfigMap, "crud", update);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted)
      << stale.status();
  EXPECT_TRUE(IsConflict(stale.status()));
  EXPECT_THAT(stale.status().message(),
              AllOf(HasSubstr("PUT /api/v1/namespaces/crud/configmaps/cm"),
                    HasSubstr("409 Conflict"),
                    HasSubstr("the object has been modified")));

  // JSON merge patch: set one key, delete another.
  absl::StatusOr<json> patched =
      c->Patch(kConfigMap, "crud", "cm", PatchType::kMerge,
               {{"data", {{"b", "x"}, {"a", nullptr}}}});
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ((*patched)["data"], json({{"b", "x"}}));

  // JSON patch (RFC 6902).
  patched = c->Patch(
      kConfigMap, "crud", "cm", PatchType::kJson,
      json::array({{{"op", "add"}, {"path", "/data/c"}, {"value", "y"}}}));
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ((*patched)["data"]["c"], "y");

  // Server-side apply: manager "one" owns data.owned; "two" applying a
  // different value conflicts unless it forces.
  json applied = {{"apiVersion", "v1"},
                  {"kind", "ConfigMap"},
                  {"metadata", {{"name", "ssa"}, {"namespace", "crud"}}},
                  {"data", {{"owned", "by-one"}}}};
  absl::StatusOr<json> a1 = c->Apply(kConfigMap, "crud", applied, "one");
  ASSERT_TRUE(a1.ok()) << a1.status();
  EXPECT_EQ((*a1)["data"]["owned"], "by-one");
  applied["data"]["owned"] = "by-two";
  absl::StatusOr<json> a2 = c->Apply(kConfigMap, "crud", applied, "two");
  EXPECT_EQ(a2.status().code(), absl::StatusCode::kAborted) << a2.status();
  EXPECT_TRUE(IsConflict(a2.status()));
  EXPECT_THAT(a2.status().message(),
              AllOf(HasSubstr("conflict"), HasSubstr(".data.owned"),
                    HasSubstr("\"one\"")));
  absl::StatusOr<json> a3 =
      c->Apply(kConfigMap, "crud", applied, "two", /*force=*/true);
  ASSERT_TRUE(a3.ok()) << a3.status();
  EXPECT_EQ((*a3)["data"]["owned"], "by-two");
  bool two_manages = false;
  for (const json& m : (*a3)["metadata"]["managedFields"]) {
    if (StringAt(m, {"manager"}) == "two" &&
        StringAt(m, {"operation"}) == "Apply") {
      two_manages = true;
    }
  }
  EXPECT_TRUE(two_manages) << Dump((*a3)["metadata"]["managedFields"]);
  // Apply needs a field manager.
  EXPECT_EQ(c->Apply(kConfigMap, "crud", applied, "").status().code(),
            absl::StatusCode::kInvalidArgument);

  // Delete with a wrong uid precondition: a conflict; then for real.
  absl::Status wrong_uid =
      c->Delete(kConfigMap, "crud", "cm", DeleteOptions{.uid = "nope"});
  EXPECT_EQ(wrong_uid.code(), absl::StatusCode::kAborted) << wrong_uid;
  EXPECT_TRUE(
      c->Delete(kConfigMap, "crud", "cm", DeleteOptions{.uid = UidOf(*created)})
          .ok());
  absl::StatusOr<json> gone = c->Get(kConfigMap, "crud", "cm");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpCode(gone.status()), 404);
  EXPECT_EQ(ApiReason(gone.status()), "NotFound");
  EXPECT_THAT(gone.status().message(),
              HasSubstr("configmaps \"cm\" not found"));
  EXPECT_EQ(c->Delete(kConfigMap, "crud", "cm").code(),
            absl::StatusCode::kNotFound);

  // A namespaced resource needs a namespace.
  EXPECT_EQ(c->Get(kConfigMap, "", "cm").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KubeClientTest, AgentPolicyWithStatusSubresource) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "agents");

  absl::StatusOr<json> p = c->Create(kAgentPolicy, "agents", Policy("p"));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["metadata"]["generation"], 1);
  EXPECT_EQ(StringAt(*p, {"kind"}), "AgentPolicy");

  // The status subresource: PUT .../status changes only .status (and not
  // the generation).
  json with_status = *p;
  with_status["status"] = {{"policyHash", "aaaa"}, {"observedGeneration", 1}};
  with_status["spec"]["mode"] = "Complain";  // ignored by .../status
  absl::StatusOr<json> s1 =
      c->UpdateStatus(kAgentPolicy, "agents", with_status);
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_EQ((*s1)["status"]["policyHash"], "aaaa");
  EXPECT_EQ((*s1)["spec"]["mode"], "Enforce");
  EXPECT_EQ((*s1)["metadata"]["generation"], 1);

  // A main-resource update ignores .status and bumps the generation.
  json spec_change = *s1;
  spec_change["spec"]["mode"] = "Complain";
  spec_change["status"]["policyHash"] = "ignored";
  absl::StatusOr<json> u = c->Update(kAgentPolicy, "agents", spec_change);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ((*u)["spec"]["mode"], "Complain");
  EXPECT_EQ((*u)["status"]["policyHash"], "aaaa");
  EXPECT_EQ((*u)["metadata"]["generation"], 2);

  // Merge patch of the status.
  absl::StatusOr<json> s2 = c->PatchStatus(
      kAgentPolicy, "agents", "p", PatchType::kMerge,
      {{"status",
        {{"nodes", {{"ready", 1}, {"total", 2}, {"summary", "1/2"}}}}}});
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ((*s2)["status"]["nodes"]["summary"], "1/2");
  EXPECT_EQ((*s2)["status"]["policyHash"], "aaaa");

  // Server-side apply of the status by the operator's field manager: the
  // conditions list is a map keyed by type.
  json status_apply = {
      {"apiVersion", "stockade.dev/v1alpha1"},
      {"kind", "AgentPolicy"},
      {"metadata", {{"name", "p"}, {"namespace", "agents"}}},
      {"status",
       {{"observedGeneration", 2},
        {"policyHash", "bbbb"},
        {"conditions",
         json::array({{{"type", "Compiled"},
                       {"status", "True"},
                       {"reason", "Compiled"},
                       {"message", "ok"},
                       {"lastTransitionTime", "2025-01-01T00:00:00Z"}}})}}}};
  absl::StatusOr<json> s3 =
      c->ApplyStatus(kAgentPolicy, "agents", status_apply, "stockade-operator",
                     /*force=*/true);
  ASSERT_TRUE(s3.ok()) << s3.status();
  EXPECT_EQ((*s3)["status"]["policyHash"], "bbbb");
  EXPECT_EQ((*s3)["status"]["conditions"][0]["type"], "Compiled");
  EXPECT_EQ((*s3)["metadata"]["generation"], 2);
  bool status_manager = false;
  for (const json& m : (*s3)["metadata"]["managedFields"]) {
    if (StringAt(m, {"manager"}) == "stockade-operator" &&
        StringAt(m, {"subresource"}) == "status") {
      status_manager = true;
    }
  }
  EXPECT_TRUE(status_manager) << Dump((*s3)["metadata"]["managedFields"]);

  // Server-side apply of the spec creates objects too.
  json applied = Policy("applied", "Complain");
  applied["metadata"]["namespace"] = "agents";
  absl::StatusOr<json> a = c->Apply(kAgentPolicy, "", applied, "tests");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)["spec"]["mode"], "Complain");

  // Cluster-scoped: ClusterAgentPolicy (the namespace argument is ignored).
  json cap = {{"metadata", {{"name", "guard"}}},
              {"spec", {{"guardrails", {{"forbidComplainMode", true}}}}}};
  absl::StatusOr<json> g = c->Create(kClusterAgentPolicy, "", cap);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->at("metadata").contains("namespace"));
  absl::StatusOr<ObjectList> all = c->List(kClusterAgentPolicy, "");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->items.size(), 1u);
  EXPECT_EQ(StringAt(all->items[0], {"kind"}), "ClusterAgentPolicy");
  EXPECT_TRUE(c->Delete(kClusterAgentPolicy, "", "guard").ok());

  // Lists across namespaces.
  absl::StatusOr<ObjectList> policies = c->List(kAgentPolicy, "");
  ASSERT_TRUE(policies.ok()) << policies.status();
  EXPECT_EQ(policies->items.size(), 2u);
  EXPECT_FALSE(policies->resource_version.empty());
}

TEST(KubeClientTest, ErrorCodesCarryTheApiserversMessage) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "agents");

  // 404
  absl::StatusOr<json> missing = c->Get(kAgentPolicy, "agents", "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("agentpolicies.stockade.dev \"nope\" not found"));

  // 422 from built-in validation and from the CRD's schema, naming the field.
  absl::StatusOr<json> bad_name =
      c->Create(kConfigMap, "agents", ConfigMap("Bad_Name"));
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpCode(bad_name.status()), 422);
  EXPECT_EQ(ApiReason(bad_name.status()), "Invalid");
  EXPECT_THAT(bad_name.status().message(), HasSubstr("metadata.name"));
  absl::StatusOr<json> bad_mode =
      c->Create(kAgentPolicy, "agents", Policy("bad", "Sometimes"));
  EXPECT_EQ(bad_mode.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpCode(bad_mode.status()), 422);
  EXPECT_THAT(bad_mode.status().message(),
              AllOf(HasSubstr("spec.mode"), HasSubstr("Unsupported value"),
                    HasSubstr("Sometimes")));

  // 400: a malformed label selector.
  absl::StatusOr<ObjectList> bad_selector =
      c->List(kConfigMap, "agents", ListOptions{.label_selector = "a in (b"});
  EXPECT_EQ(bad_selector.status().code(), absl::StatusCode::kInvalidArgument)
      << bad_selector.status();
  EXPECT_EQ(HttpCode(bad_selector.status()), 400);

  // 403: the operator's user has no RBAC yet.
  std::unique_ptr<Client> op = OperatorClient(*f);
  ASSERT_NE(op, nullptr);
  absl::StatusOr<ObjectList> forbidden = op->List(kAgentPolicy, "agents");
  EXPECT_EQ(forbidden.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(HttpCode(forbidden.status()), 403);
  EXPECT_THAT(forbidden.status().message(),
              AllOf(HasSubstr("forbidden"),
                    HasSubstr("User \"stockade-operator\" cannot list")));

  // 401: a token the apiserver does not know.
  ClusterConfig bad_token = c->config();
  bad_token.client_cert_file.clear();
  bad_token.client_key_file.clear();
  bad_token.token = "wrong";
  absl::StatusOr<std::unique_ptr<Client>> bt = Client::FromConfig(bad_token);
  ASSERT_TRUE(bt.ok());
  absl::StatusOr<json> unauth = (*bt)->Get(kNamespace, "", "default");
  EXPECT_EQ(unauth.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HttpCode(unauth.status()), 401);

  // 404 for a resource type the apiserver does not serve.
  const Resource unknown{"stockade.dev", "v1alpha1", "widgets", "Widget", true};
  EXPECT_EQ(c->List(unknown, "agents").status().code(),
            absl::StatusCode::kNotFound);

  // Transport errors: nothing listening.
  ClusterConfig nowhere;
  nowhere.server = "https://127.0.0.1:1";
  nowhere.insecure_skip_tls_verify = true;
  absl::StatusOr<std::unique_ptr<Client>> nw = Client::FromConfig(nowhere);
  ASSERT_TRUE(nw.ok());
  absl::StatusOr<json> refused = (*nw)->Get(kNamespace, "", "default");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_EQ(HttpCode(refused.status()), 0);
}

TEST(KubeClientTest, ListPaginatesAndSelects) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "pages");
  for (int i = 0; i < 25; ++i) {
    json cm = ConfigMap(absl::StrCat("cm-", i));
    cm["metadata"]["labels"] = {{"team", i < 15 ? "a" : "b"}};
    ASSERT_TRUE(c->Create(kConfigMap, "pages", cm).ok());
  }
  absl::StatusOr<ObjectList> page =
      c->List(kConfigMap, "pages", ListOptions{.limit = 10});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->items.size(), 10u);
  EXPECT_FALSE(page->continue_token.empty());
  absl::StatusOr<ObjectList> next =
      c->List(kConfigMap, "pages",
              ListOptions{.limit = 10, .continue_token = page->continue_token});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->items.size(), 10u);
  EXPECT_NE(NameOf(next->items[0]), NameOf(page->items[0]));

  absl::StatusOr<ObjectList> all =
      c->ListAll(kConfigMap, "pages", ListOptions{.limit = 4});
  ASSERT_TRUE(all.ok()) << all.status();
  // (No controller-manager runs here: no kube-root-ca.crt ConfigMap.)
  EXPECT_EQ(all->items.size(), 25u);
  EXPECT_EQ(StringAt(all->items[0], {"kind"}), "ConfigMap");
  EXPECT_TRUE(all->continue_token.empty());
  EXPECT_FALSE(all->resource_version.empty());

  absl::StatusOr<ObjectList> team_a = c->ListAll(
      kConfigMap, "pages", ListOptions{.label_selector = "team=a", .limit = 4});
  ASSERT_TRUE(team_a.ok()) << team_a.status();
  EXPECT_EQ(team_a->items.size(), 15u);
  absl::StatusOr<ObjectList> by_name = c->List(
      kConfigMap, "pages", ListOptions{.field_selector = "metadata.name=cm-3"});
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  ASSERT_EQ(by_name->items.size(), 1u);
  EXPECT_EQ(NameOf(by_name->items[0]), "cm-3");
}

// 1,000 objects: how long creating and listing them takes (the operator's
// initial sync of that many policies).
TEST(KubeClientTest, ListOfAThousandObjects) {
  std::unique_ptr<ApiserverFixture> f = StartApiserver();
  ASSERT_NE(f, nullptr);
  std::unique_ptr<Client> c = AdminClient(*f);
  ASSERT_NE(c, nullptr);
  CreateNamespace(c.get(), "many");
  constexpr int kObjects = 1000, kThreads = 4;
  std::atomic<int> failures{0};
  const absl::Time begin = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kObjects; i += kThreads) {
        json p = Policy(absl::StrCat("policy-", i));
        p["spec"]["filesystem"] = {{"readOnlyRoot", true}};
        if (!c->Create(kAgentPolicy, "many", p).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  const absl::Duration create = absl::Now() - begin;
  ASSERT_EQ(failures.load(), 0);

  absl::Time t0 = absl::Now();
  absl::StatusOr<ObjectList> paged =
      c->ListAll(kAgentPolicy, "many", ListOptions{.limit = 500});
  const absl::Duration list_paged = absl::Now() - t0;
  ASSERT_TRUE(paged.ok()) << paged.status();
  EXPECT_EQ(paged->items.size(), static_cast<size_t>(kObjects));
  t0 = absl::Now();
  absl::StatusOr<ObjectList> whole = c->List(kAgentPolicy, "many");
  const absl::Duration list_whole = absl::Now() - t0;
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->items.size(), static_cast<size_t>(kObjects));
  fprintf(stderr,
          "1000 AgentPolicies: create (4 threads) %s (%.0f/s); list in pages "
          "of 500 %s; list at once %s\n",
          absl::FormatDuration(create).c_str(),
          kObjects / absl::ToDoubleSeconds(create),
          absl::FormatDuration(list_paged).c_str(),
          absl::FormatDuration(list_whole).c_str());
  EXPECT_LT(list_paged, absl::Seconds(10));
}

// A server that accepts TCP connections and never answers.
class SilentServer {
 public:
  SilentServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);  // the kernel completes handshakes; nobody reads
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { close(fd_); }
  std::string url() const { return absl::StrCat("https://127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(KubeClientTest, RequestsTimeOutAndCanBeCancelled) {
  SilentServer silent;
  ClusterConfig config;
  config.server = silent.url();
  config.insecure_skip_tls_verify = true;
  absl::StatusOr<std::unique_ptr<Client>> c = Client::FromConfig(
      config, ClientOptions{.request_timeout = absl::Milliseconds(500)});
  ASSERT_TRUE(c.ok());
  absl::Time begin = absl::Now();
  absl::StatusOr<json> timed_out = (*c)->Get(kNamespace, "", "default");
  absl::Duration took = absl::Now() - begin;
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded)
      << timed_out.status();
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Seconds(3));

  // With the default (30 s) timeout, a CancelToken ends a list at once.
  absl::StatusOr<std::unique_ptr<Client>> slow = Client::FromConfig(config);
  ASSERT_TRUE(slow.ok());
  CancelToken cancel;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(200));
    cancel.Cancel();
  });
  begin = absl::Now();
  absl::StatusOr<ObjectList> cancelled =
      (*slow)->List(kConfigMap, "x", ListOptions{.cancel = &cancel});
  took = absl::Now() - begin;
  canceller.join();
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled)
      << cancelled.status();
  EXPECT_LT(took, absl::Seconds(1));
  // A cancelled token fails later requests at once.
  EXPECT_EQ((*slow)
                ->List(kConfigMap, "x", ListOptions{.cancel = &cancel})
                .status()
                .code(),
            absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace stockade::kube
