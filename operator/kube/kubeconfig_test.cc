#include "operator/kube/kubeconfig.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stockade::kube {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stockade-kubeconfig-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* v :
         {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}) {
      unsetenv(v);
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::filesystem::create_directories(
        std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

constexpr char kTwoContexts[] = R"(apiVersion: v1
kind: Config
clusters:
  - name: prod
    cluster:
      server: https://10.1.2.3:6443/
      certificate-authority: pki/ca.crt
  - name: dev
    cluster:
      server: https://127.0.0.1:8443
      insecure-skip-tls-verify: true
users:
  - name: admin
    user:
      client-certificate: /abs/admin.crt
      client-key: pki/admin.key
  - name: bot
    user:
      token: s3cret
contexts:
  - name: prod-admin
    context: {cluster: prod, user: admin, namespace: agents}
  - name: dev-bot
    context: {cluster: dev, user: bot}
current-context: prod-admin
)";

TEST_F(KubeconfigTest, CurrentContextWithFilesRelativeToTheKubeconfig) {
  const std::string path = Write("conf/config", kTwoContexts);
  absl::StatusOr<ClusterConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.1.2.3:6443");  // trailing slash dropped
  EXPECT_EQ(c->ca_file, dir_ + "/conf/pki/ca.crt");
  EXPECT_EQ(c->client_cert_file, "/abs/admin.crt");
  EXPECT_EQ(c->client_key_file, dir_ + "/conf/pki/admin.key");
  EXPECT_EQ(c->token, "");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->namespace_, "agents");
  EXPECT_THAT(c->source, AllOf(HasSubstr(path), HasSubstr("prod-admin")));
}

TEST_F(KubeconfigTest, ExplicitContext) {
  const std::string path = Write("config", kTwoContexts);
  absl::StatusOr<ClusterConfig> c = LoadKubeconfig(path, "dev-bot");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://127.0.0.1:8443");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->token, "s3cret");
  EXPECT_EQ(c->client_cert_file, "");
  EXPECT_EQ(c->namespace_, "");
}

TEST_F(KubeconfigTest, DataFieldsAreDecoded) {
  const std::string ca = "-----BEGIN CERTIFICATE-----\nCA\n";
  const std::string cert = "-----BEGIN CERTIFICATE-----\nCERT\n";
  const std::string key = "-----BEGIN EC PRIVATE KEY-----\nKEY\n";
  const std::string path =
      Write("config",
            absl::StrCat(
                "clusters:\n- name: c\n  cluster:\n    server: "
                "https://k:1\n    certificate-authority-data: ",
                absl::Base64Escape(ca),
                "\nusers:\n- name: u\n  user:\n    client-certificate-data: ",
                absl::Base64Escape(cert),
                "\n    client-key-data: ", absl::Base64Escape(key),
                "\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                "current-context: x\n"));
  absl::StatusOr<ClusterConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca_data, ca);
  EXPECT_EQ(c->client_cert_data, cert);
  EXPECT_EQ(c->client_key_data, key);
  EXPECT_EQ(c->ca_file, "");
}

TEST_F(KubeconfigTest, TokenFileIsReadAndKeptForRotation) {
  Write("token", "tok-1\n");
  const std::string path =
      Write("config",
            "clusters: [{name: c, cluster: {server: 'https://k:1'}}]\n"
            "users: [{name: u, user: {tokenFile: token}}]\n"
            "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
            "current-context: x\n");
  absl::StatusOr<ClusterConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "tok-1");
  EXPECT_EQ(c->token_file, dir_ + "/token");
}

TEST_F(KubeconfigTest, ErrorsNameTheFileAndTheField) {
  struct Case {
    std::string text;
    std::string context;
    std::string want;
  };
  const std::string b =
      "clusters: [{name: c, cluster: {server: 'https://k:1'}}]\n";
  const Case cases[] = {
      {"clusters: [oops\n", "", "not valid YAML"},
      {"- a\n- b\n", "", "top level must be a map"},
      {b, "", "current-context is not set"},
      {b + "current-context: nope\n", "", "no context named \"nope\""},
      {b + "contexts: [{name: x, context: {cluster: missing}}]\n", "x",
       "contexts[x].context.cluster: no cluster named \"missing\""},
      {b + "contexts: [{name: x, context: {user: u}}]\n", "x",
       "contexts[x].context.cluster: missing"},
      {"clusters: [{name: c, cluster: {certificate-authority: ca}}]\n"
       "contexts: [{name: x, context: {cluster: c}}]\n",
       "x", "clusters[c].cluster.server: missing"},
      {"clusters: [{name: c, cluster: {server: 'ftp://k'}}]\n"
       "contexts: [{name: x, context: {cluster: c}}]\n",
       "x", "clusters[c].cluster.server: \"ftp://k\" is not an http(s)"},
      {"clusters: [{name: c, cluster: {server: 'https://k', "
       "certificate-authority-data: '***'}}]\n"
       "contexts: [{name: x, context: {cluster: c}}]\n",
       "x", "clusters[c].cluster.certificate-authority-data: not valid base64"},
      {b + "users: [{name: u, user: {client-key-data: '%%%'}}]\n"
           "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
       "x", "users[u].user.client-key-data: not valid base64"},
      {b + "users: [{name: u, user: {client-certificate: a.crt}}]\n"
           "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
       "x", "users[u].user: client-certificate without client-key"},
      {b + "users: [{name: u, user: {exec: {command: aws}}}]\n"
           "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
       "x", "users[u].user.exec: not supported"},
      {b + "contexts: [{name: x, context: {cluster: c, user: ghost}}]\n", "x",
       "contexts[x].context.user: no user named \"ghost\""},
      {"clusters: [{cluster: {server: 'https://k'}}]\n", "x",
       "clusters[0].name: missing"},
      {"clusters: {a: b}\n", "x", "clusters: must be a list"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string path = Write(absl::StrCat("bad", i++), c.text);
    absl::StatusOr<ClusterConfig> r = LoadKubeconfig(path, c.context);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_THAT(r.status().message(), AllOf(HasSubstr(path), HasSubstr(c.want)))
        << c.text;
  }
  absl::StatusOr<ClusterConfig> missing = LoadKubeconfig(dir_ + "/none");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir_ + "/none"));
}

TEST_F(KubeconfigTest, ListsMergeFirstWins) {
  const std::string a =
      Write("a",
            "clusters: [{name: c, cluster: {server: 'https://first:1'}}]\n"
            "current-context: x\n");
  const std::string b =
      Write("b",
            "clusters: [{name: c, cluster: {server: 'https://second:1'}}]\n"
            "contexts: [{name: x, context: {cluster: c, namespace: n}}]\n"
            "current-context: y\n");
  absl::StatusOr<ClusterConfig> c =
      LoadKubeconfig(absl::StrCat(a, ":", dir_, "/absent:", b));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://first:1");
  EXPECT_EQ(c->namespace_, "n");
}

TEST_F(KubeconfigTest, InClusterFromTheServiceAccountDir) {
  const std::string sa = dir_ + "/sa";
  Write("sa/token", "sa-token\n");
  Write("sa/ca.crt", "-----BEGIN CERTIFICATE-----\n");
  Write("sa/namespace", "stockade-system");
  EXPECT_EQ(InClusterConfig(sa).status().code(),
            absl::StatusCode::kFailedPrecondition);
  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  absl::StatusOr<ClusterConfig> c = InClusterConfig(sa);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.0.0.1:443");
  EXPECT_EQ(c->token, "sa-token");
  EXPECT_EQ(c->token_file, sa + "/token");
  EXPECT_EQ(c->ca_file, sa + "/ca.crt");
  EXPECT_EQ(c->namespace_, "stockade-system");

  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  c = InClusterConfig(sa);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");

  absl::StatusOr<ClusterConfig> none = InClusterConfig(dir_ + "/nothing");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr(dir_ + "/nothing/token"));
}

TEST_F(KubeconfigTest, LoadConfigOrder) {
  const std::string flag =
      Write("flag",
            "clusters: [{name: c, cluster: {server: 'https://flag:1'}}]\n"
            "contexts: [{name: x, context: {cluster: c}}]\n"
            "current-context: x\n");
  const std::string env =
      Write("env",
            "clusters: [{name: c, cluster: {server: 'https://env:1'}}]\n"
            "contexts: [{name: x, context: {cluster: c}}]\n"
            "current-context: x\n");
  Write("home/.kube/config",
        "clusters: [{name: c, cluster: {server: 'https://home:1'}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n");
  Write("sa/token", "t");
  Write("sa/ca.crt", "c");
  setenv("HOME", (dir_ + "/home").c_str(), 1);
  setenv("KUBECONFIG", env.c_str(), 1);
  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  const std::string sa = dir_ + "/sa";

  EXPECT_EQ(LoadConfig(flag, sa)->server, "https://flag:1");
  EXPECT_EQ(LoadConfig("", sa)->server, "https://env:1");
  unsetenv("KUBECONFIG");
  EXPECT_EQ(LoadConfig("", sa)->server, "https://10.0.0.1:443");
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(LoadConfig("", sa)->server, "https://home:1");
  setenv("HOME", dir_.c_str(), 1);
  absl::StatusOr<ClusterConfig> none = LoadConfig("", sa);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("$KUBECONFIG"));
}

}  // namespace
}  // namespace stockade::kube
