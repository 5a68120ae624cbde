#include "operator/kube/kubeconfig.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "yaml-cpp/yaml.h"

namespace stockade::kube {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A named entry of clusters/users/contexts, with where it came from.
struct Entry {
  YAML::Node body;   // the "cluster"/"user"/"context" map (may be null)
  std::string file;  // the kubeconfig that defined it
};

// The merged view of one or more kubeconfig files.
struct Merged {
  std::map<std::string, Entry> clusters, users, contexts;
  std::string current_context;
  std::vector<std::string> files;
};

// Reads the sequence `field` (clusters, users or contexts) of one file: each
// item {name: N, <item_key>: {...}}. The first definition of a name wins.
absl::Status ReadNamed(const YAML::Node& root, const std::string& file,
                       const char* field, const char* item_key,
                       std::map<std::string, Entry>* out) {
  YAML::Node list = root[field];
  if (!list || list.IsNull()) return absl::OkStatus();
  if (!list.IsSequence()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", field, ": must be a list"));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    YAML::Node item = list[i];
    if (!item.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", field, "[", i, "]: must be a map"));
    }
    YAML::Node name = item["name"];
    if (!name || !name.IsScalar() || name.Scalar().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", field, "[", i, "].name: missing"));
    }
    YAML::Node body = item[item_key];
    if (body && !body.IsNull() && !body.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", field, "[", name.Scalar(), "].", item_key,
                       ": must be a map"));
    }
    out->emplace(name.Scalar(), Entry{body, file});  // first one wins
  }
  return absl::OkStatus();
}

absl::Status MergeFile(const std::string& file, Merged* merged) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(
        absl::StrCat("kubeconfig ", file, ": cannot be read"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig ", file, ": not valid YAML: ", e.what()));
  }
  merged->files.push_back(file);
  if (!root || root.IsNull()) return absl::OkStatus();  // empty file
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig ", file, ": the top level must be a map"));
  }
  if (absl::Status s =
          ReadNamed(root, file, "clusters", "cluster", &merged->clusters);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadNamed(root, file, "users", "user", &merged->users);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ReadNamed(root, file, "contexts", "context", &merged->contexts);
      !s.ok()) {
    return s;
  }
  YAML::Node current = root["current-context"];
  if (merged->current_context.empty() && current && current.IsScalar()) {
    merged->current_context = current.Scalar();
  }
  return absl::OkStatus();
}

// Reads field `key` of map `body` as a string ("" when absent).
absl::StatusOr<std::string> StringField(const YAML::Node& body,
                                        const std::string& where,
                                        const char* key) {
  if (!body || !body.IsMap()) return std::string();
  YAML::Node v = body[key];
  if (!v || v.IsNull()) return std::string();
  if (!v.IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, ": must be a string"));
  }
  return v.Scalar();
}

// A path field: relative paths are relative to the defining file's dir.
absl::StatusOr<std::string> PathField(const Entry& e, const std::string& where,
                                      const char* key) {
  absl::StatusOr<std::string> v = StringField(e.body, where, key);
  if (!v.ok() || v->empty() || (*v)[0] == '/') return v;
  return absl::StrCat(DirOf(e.file), "/", *v);
}

// A base64 data field, decoded.
absl::StatusOr<std::string> DataField(const Entry& e, const std::string& where,
                                      const char* key) {
  absl::StatusOr<std::string> v = StringField(e.body, where, key);
  if (!v.ok() || v->empty()) return v;
  std::string compact;
  for (char c : *v) {
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') compact.push_back(c);
  }
  std::string decoded;
  if (!absl::Base64Unescape(compact, &decoded) || decoded.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, ": not valid base64"));
  }
  return decoded;
}

absl::StatusOr<ClusterConfig> Resolve(const Merged& m,
                                      absl::string_view context_arg) {
  const std::string files = absl::StrJoin(m.files, ":");
  std::string context_name(context_arg);
  if (context_name.empty()) context_name = m.current_context;
  if (context_name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig ", files,
                     ": current-context is not set and no context was given"));
  }
  auto ctx = m.contexts.find(context_name);
  if (ctx == m.contexts.end()) {
    return absl::NotFoundError(absl::StrCat("kubeconfig ", files,
                                            ": contexts: no context named \"",
                                            context_name, "\""));
  }
  const std::string ctx_where =
      absl::StrCat("kubeconfig ", ctx->second.file, ": contexts[", context_name,
                   "].context");
  absl::StatusOr<std::string> cluster_name =
      StringField(ctx->second.body, ctx_where, "cluster");
  if (!cluster_name.ok()) return cluster_name.status();
  absl::StatusOr<std::string> user_name =
      StringField(ctx->second.body, ctx_where, "user");
  if (!user_name.ok()) return user_name.status();
  absl::StatusOr<std::string> ns =
      StringField(ctx->second.body, ctx_where, "namespace");
  if (!ns.ok()) return ns.status();
  if (cluster_name->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx_where, ".cluster: missing"));
  }
  auto cluster = m.clusters.find(*cluster_name);
  if (cluster == m.clusters.end()) {
    return absl::NotFoundError(absl::StrCat(ctx_where,
                                            ".cluster: no cluster named \"",
                                            *cluster_name, "\" in ", files));
  }

  ClusterConfig c;
  c.namespace_ = *ns;
  c.source = absl::StrCat("kubeconfig ", files, ", context ", context_name);

  const Entry& ce = cluster->second;
  const std::string cw = absl::StrCat("kubeconfig ", ce.file, ": clusters[",
                                      *cluster_name, "].cluster");
  absl::StatusOr<std::string> server = StringField(ce.body, cw, "server");
  if (!server.ok()) return server.status();
  if (server->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(cw, ".server: missing"));
  }
  if (!absl::StartsWith(*server, "https://") &&
      !absl::StartsWith(*server, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        cw, ".server: \"", *server, "\" is not an http(s):// URL"));
  }
  c.server = std::string(absl::StripSuffix(*server, "/"));
  absl::StatusOr<std::string> ca_file =
      PathField(ce, cw, "certificate-authority");
  if (!ca_file.ok()) return ca_file.status();
  absl::StatusOr<std::string> ca_data =
      DataField(ce, cw, "certificate-authority-data");
  if (!ca_data.ok()) return ca_data.status();
  c.ca_file = *ca_file;
  c.ca_data = *ca_data;
  if (!c.ca_data.empty()) c.ca_file.clear();  // as kubectl: data wins
  if (YAML::Node v =
          ce.body ? ce.body["insecure-skip-tls-verify"] : YAML::Node();
      v && !v.IsNull()) {
    if (!v.IsScalar() || (v.Scalar() != "true" && v.Scalar() != "false")) {
      return absl::InvalidArgumentError(
          absl::StrCat(cw, ".insecure-skip-tls-verify: must be true or false"));
    }
    c.insecure_skip_tls_verify = v.Scalar() == "true";
  }
  if (absl::StatusOr<std::string> sni =
          StringField(ce.body, cw, "tls-server-name");
      !sni.ok() || !sni->empty()) {
    if (!sni.ok()) return sni.status();
    return absl::InvalidArgumentError(
        absl::StrCat(cw, ".tls-server-name: not supported"));
  }

  if (user_name->empty()) return c;  // anonymous
  auto user = m.users.find(*user_name);
  if (user == m.users.end()) {
    return absl::NotFoundError(absl::StrCat(
        ctx_where, ".user: no user named \"", *user_name, "\" in ", files));
  }
  const Entry& ue = user->second;
  const std::string uw =
      absl::StrCat("kubeconfig ", ue.file, ": users[", *user_name, "].user");
  for (const char* unsupported :
       {"exec", "auth-provider", "as", "as-groups", "as-uid"}) {
    if (ue.body && ue.body.IsMap() && ue.body[unsupported]) {
      return absl::InvalidArgumentError(
          absl::StrCat(uw, ".", unsupported,
                       ": not supported by stockade (use a client certificate "
                       "or a token)"));
    }
  }
  struct Pair {
    const char* file_key;
    const char* data_key;
    std::string* file;
    std::string* data;
  };
  for (const Pair& p : {Pair{"client-certificate", "client-certificate-data",
                             &c.client_cert_file, &c.client_cert_data},
                        Pair{"client-key", "client-key-data",
                             &c.client_key_file, &c.client_key_data}}) {
    absl::StatusOr<std::string> f = PathField(ue, uw, p.file_key);
    if (!f.ok()) return f.status();
    absl::StatusOr<std::string> d = DataField(ue, uw, p.data_key);
    if (!d.ok()) return d.status();
    if (!f->empty() && !d->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          uw, ": both ", p.file_key, " and ", p.data_key, " are set"));
    }
    *p.file = *f;
    *p.data = *d;
  }
  const bool has_cert =
      !c.client_cert_file.empty() || !c.client_cert_data.empty();
  const bool has_key = !c.client_key_file.empty() || !c.client_key_data.empty();
  if (has_cert != has_key) {
    return absl::InvalidArgumentError(
        absl::StrCat(uw, ": ",
                     has_cert ? "client-certificate without client-key"
                              : "client-key without client-certificate"));
  }
  absl::StatusOr<std::string> token = StringField(ue.body, uw, "token");
  if (!token.ok()) return token.status();
  c.token = *token;
  absl::StatusOr<std::string> token_file = PathField(ue, uw, "tokenFile");
  if (!token_file.ok()) return token_file.status();
  if (c.token.empty() && !token_file->empty()) {
    absl::StatusOr<std::string> t = ReadFile(*token_file);
    if (!t.ok()) {
      return absl::NotFoundError(
          absl::StrCat(uw, ".tokenFile: cannot read ", *token_file));
    }
    c.token = std::string(absl::StripAsciiWhitespace(*t));
    c.token_file = *token_file;
  }
  absl::StatusOr<std::string> username = StringField(ue.body, uw, "username");
  if (!username.ok()) return username.status();
  absl::StatusOr<std::string> password = StringField(ue.body, uw, "password");
  if (!password.ok()) return password.status();
  c.username = *username;
  c.password = *password;
  return c;
}

}  // namespace

absl::StatusOr<ClusterConfig> LoadKubeconfig(absl::string_view path,
                                             absl::string_view context) {
  std::vector<std::string> paths;
  for (absl::string_view p : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    paths.emplace_back(p);
  }
  if (paths.empty()) {
    return absl::InvalidArgumentError("kubeconfig: empty path");
  }
  Merged merged;
  for (const std::string& p : paths) {
    // As kubectl: files of a list that do not exist are skipped.
    if (paths.size() > 1 && !FileExists(p)) continue;
    if (absl::Status s = MergeFile(p, &merged); !s.ok()) return s;
  }
  if (merged.files.empty()) {
    return absl::NotFoundError(
        absl::StrCat("kubeconfig ", path, ": no such file"));
  }
  try {
    return Resolve(merged, context);
  } catch (const YAML::Exception& e) {  // defensive: a node of a bad type
    return absl::InvalidArgumentError(absl::StrCat(
        "kubeconfig ", absl::StrJoin(merged.files, ":"), ": ", e.what()));
  }
}

absl::StatusOr<ClusterConfig> InClusterConfig(
    absl::string_view service_account_dir) {
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  const char* port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "in-cluster config: KUBERNETES_SERVICE_HOST and "
        "KUBERNETES_SERVICE_PORT are not set (not running in a pod)");
  }
  const std::string dir(service_account_dir);
  ClusterConfig c;
  const std::string h = host;
  c.server = h.find(':') != std::string::npos
                 ? absl::StrCat("https://[", h, "]:", port)
                 : absl::StrCat("https://", h, ":", port);
  c.token_file = dir + "/token";
  absl::StatusOr<std::string> token = ReadFile(c.token_file);
  if (!token.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "in-cluster config: cannot read the service account token ",
        c.token_file));
  }
  c.token = std::string(absl::StripAsciiWhitespace(*token));
  if (c.token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("in-cluster config: ", c.token_file, " is empty"));
  }
  c.ca_file = dir + "/ca.crt";
  if (!FileExists(c.ca_file)) {
    return absl::NotFoundError(
        absl::StrCat("in-cluster config: no CA certificate at ", c.ca_file));
  }
  if (absl::StatusOr<std::string> ns = ReadFile(dir + "/namespace"); ns.ok()) {
    c.namespace_ = std::string(absl::StripAsciiWhitespace(*ns));
  }
  c.source = absl::StrCat("in-cluster (", dir, ")");
  return c;
}

absl::StatusOr<ClusterConfig> LoadConfig(
    absl::string_view flag_path, absl::string_view service_account_dir) {
  if (!flag_path.empty()) return LoadKubeconfig(flag_path);
  if (const char* env = getenv("KUBECONFIG"); env != nullptr && *env) {
    return LoadKubeconfig(env);
  }
  if (const char* host = getenv("KUBERNETES_SERVICE_HOST");
      host != nullptr && *host) {
    return InClusterConfig(service_account_dir);
  }
  const char* home = getenv("HOME");
  if (home != nullptr && *home) {
    const std::string path = absl::StrCat(home, "/.kube/config");
    if (FileExists(path)) return LoadKubeconfig(path);
  }
  return absl::FailedPreconditionError(
      "no Kubernetes configuration: no --kubeconfig, $KUBECONFIG is not set, "
      "not in a pod ($KUBERNETES_SERVICE_HOST is not set) and no "
      "$HOME/.kube/config");
}

}  // namespace stockade::kube
