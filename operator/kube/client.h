// A Kubernetes API client over libcurl: get, list (paginated), create,
// update, patch (JSON merge patch and server-side apply), delete, the status
// subresource, and watch (line-delimited JSON events, cancellable). Objects
// are nlohmann::json; the project's own types go through protobuf's JSON
// mapping in the callers. HTTP errors become absl::Status codes carrying the
// apiserver's Status message (see the mapping at ErrorFromResponse).
//
// Thread-safe: one Client serves every thread (a small pool of curl handles
// keeps connections alive between requests).
#ifndef STOCKADE_OPERATOR_KUBE_CLIENT_H_
#define STOCKADE_OPERATOR_KUBE_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "operator/kube/kubeconfig.h"

namespace stockade::kube {

// A resource type, as the apiserver's REST paths name it. The strings must
// outlive the Resource (the constants below are literals).
struct Resource {
  absl::string_view group;    // "" for the core API
  absl::string_view version;  // "v1", "v1alpha1"
  absl::string_view plural;   // "configmaps": the path segment
  absl::string_view kind;     // "ConfigMap": for apiVersion/kind of objects
  bool namespaced = true;

  // "v1" (core) or "group/version".
  std::string ApiVersion() const;
};

inline constexpr Resource kConfigMap{"", "v1", "configmaps", "ConfigMap", true};
inline constexpr Resource kNamespace{"", "v1", "namespaces", "Namespace",
                                     false};
inline constexpr Resource kEvent{"", "v1", "events", "Event", true};
inline constexpr Resource kLease{"coordination.k8s.io", "v1", "leases", "Lease",
                                 true};
inline constexpr Resource kDeployment{"apps", "v1", "deployments", "Deployment",
                                      true};
inline constexpr Resource kNetworkPolicy{
    "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true};
inline constexpr Resource kAgentPolicy{"stockade.dev", "v1alpha1",
                                       "agentpolicies", "AgentPolicy", true};
inline constexpr Resource kClusterAgentPolicy{"stockade.dev", "v1alpha1",
                                              "clusteragentpolicies",
                                              "ClusterAgentPolicy", false};
inline constexpr Resource kAgent{"stockade.dev", "v1alpha1", "agents", "Agent",
                                 true};

// Cancels requests and watches from another thread: Cancel() makes every
// request that was given this token and is still running return Cancelled at
// once (a watch within milliseconds), and every later one fail at the start.
class CancelToken {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Client;
  // Running transfers (CURLM*) to wake up; registered by the client.
  bool Register(void* multi) const;
  void Unregister(void* multi) const;

  std::atomic<bool> cancelled_{false};
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_set<void*> multis_ ABSL_GUARDED_BY(mu_);
};

struct ClientOptions {
  // Whole request (not watches, which end by their timeout_seconds).
  absl::Duration request_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(10);
  std::string user_agent = "stockade-operator";
  // How long a token read from a file (in-cluster) is used before it is read
  // again (the kubelet rotates it).
  absl::Duration token_reload_period = absl::Minutes(1);
};

struct ListOptions {
  std::string label_selector{};
  std::string field_selector{};
  int64_t limit = 0;             // page size; 0: everything in one response
  std::string continue_token{};  // from the previous page
  std::string resource_version{};
  std::string resource_version_match{};  // "", "NotOlderThan", "Exact"
  const CancelToken* cancel = nullptr;
};

struct ObjectList {
  std::vector<nlohmann::json> items{};
  std::string resource_version{};  // of the list (the snapshot)
  std::string continue_token{};    // non-empty: more pages
};

struct WriteOptions {
  std::string field_manager{};  // fieldManager (required for kApply)
  bool dry_run = false;         // dryRun=All
};

enum class PatchType {
  kMerge,      // application/merge-patch+json (RFC 7386)
  kJson,       // application/json-patch+json (RFC 6902)
  kStrategic,  // application/strategic-merge-patch+json (built-in types only)
  kApply,      // application/apply-patch+yaml: server-side apply
};

struct PatchOptions {
  std::string field_manager{};  // required for kApply
  bool force = false;           // kApply: take over conflicting fields
  bool dry_run = false;
};

struct DeleteOptions {
  // Preconditions: delete only this incarnation / this version.
  std::string uid{};
  std::string resource_version{};
  std::string propagation_policy{};  // "", "Foreground", "Background", "Orphan"
  int64_t grace_period_seconds = -1;  // < 0: the default
};

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };
absl::string_view WatchEventTypeName(WatchEventType type);

struct WatchEvent {
  WatchEventType type;
  // The object; for kBookmark only apiVersion, kind and
  // metadata.resourceVersion; for kError a metav1.Status (see
  // StatusFromWatchError).
  nlohmann::json object{};
};

struct WatchOptions {
  std::string resource_version{};  // "" : from now (after the current state)
  bool allow_bookmarks = true;
  // The server ends the watch after this long (OK). 0: the server default.
  int64_t timeout_seconds = 0;
  std::string label_selector{};
  std::string field_selector{};
  const CancelToken* cancel = nullptr;
};

// What a raw request returned (Client::Request).
struct Response {
  long http_code = 0;
  std::string body{};
};

class Client {
 public:
  // Fails when the configuration cannot work (no server, unreadable
  // certificate files). Makes no request.
  static absl::StatusOr<std::unique_ptr<Client>> FromConfig(
      ClusterConfig config, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClusterConfig& config() const { return config_; }

  // `ns` is ignored (may be empty) for cluster-scoped resources and required
  // for namespaced ones, except in List and Watch where "" means every
  // namespace.
  absl::StatusOr<nlohmann::json> Get(const Resource& r, absl::string_view ns,
                                     absl::string_view name);
  // One page (or everything when limit is 0).
  absl::StatusOr<ObjectList> List(const Resource& r, absl::string_view ns,
                                  const ListOptions& options = {});
  // Every page of a paginated list (options.limit per request); restarts from
  // the first page if a continue token expires meanwhile (410).
  absl::StatusOr<ObjectList> ListAll(const Resource& r, absl::string_view ns,
                                     const ListOptions& options = {});

  // POST. AlreadyExists when the name is taken.
  absl::StatusOr<nlohmann::json> Create(const Resource& r, absl::string_view ns,
                                        const nlohmann::json& object,
                                        const WriteOptions& options = {});
  // PUT of object (named by its metadata.name). With
  // metadata.resourceVersion set, Aborted (IsConflict) when the object
  // changed since. Ignores .status where the resource has a status
  // subresource.
  absl::StatusOr<nlohmann::json> Update(const Resource& r, absl::string_view ns,
                                        const nlohmann::json& object,
                                        const WriteOptions& options = {});
  absl::StatusOr<nlohmann::json> Patch(const Resource& r, absl::string_view ns,
                                       absl::string_view name, PatchType type,
                                       const nlohmann::json& patch,
                                       const PatchOptions& options = {});
  // Server-side apply of object (its metadata.name) as field_manager.
  // Aborted (IsConflict) on a conflict with another manager unless force.
  absl::StatusOr<nlohmann::json> Apply(const Resource& r, absl::string_view ns,
                                       const nlohmann::json& object,
                                       absl::string_view field_manager,
                                       bool force = false);
  absl::Status Delete(const Resource& r, absl::string_view ns,
                      absl::string_view name,
                      const DeleteOptions& options = {});

  // The status subresource: PUT .../status (only .status changes),
  absl::StatusOr<nlohmann::json> UpdateStatus(const Resource& r,
                                              absl::string_view ns,
                                              const nlohmann::json& object,
                                              const WriteOptions& options = {});
  // PATCH .../status,
  absl::StatusOr<nlohmann::json> PatchStatus(const Resource& r,
                                             absl::string_view ns,
                                             absl::string_view name,
                                             PatchType type,
                                             const nlohmann::json& patch,
                                             const PatchOptions& options = {});
  // and server-side apply of .status (object holds apiVersion, kind,
  // metadata.name and the status fields this manager owns).
  absl::StatusOr<nlohmann::json> ApplyStatus(const Resource& r,
                                             absl::string_view ns,
                                             const nlohmann::json& object,
                                             absl::string_view field_manager,
                                             bool force = false);

  // Streams events to `on_event` until the server ends the watch
  // (timeout_seconds; returns OK), `on_event` returns false (OK), the token
  // is cancelled (Cancelled), or an error: HTTP errors as in the mapping
  // (410 Gone: IsGone), connection loss (Unavailable). ERROR events go to
  // on_event like the others (StatusFromWatchError converts them).
  absl::Status Watch(const Resource& r, absl::string_view ns,
                     const WatchOptions& options,
                     absl::FunctionRef<bool(WatchEvent&)> on_event);

  // A raw request to `path` ("/api/v1/..." with query) for what the typed
  // methods do not cover. content_type applies to a non-empty body. Only
  // transport failures are errors; any HTTP status is returned.
  absl::StatusOr<Response> Request(
      absl::string_view method, absl::string_view path,
      absl::string_view body = "",
      absl::string_view content_type = "application/json",
      const CancelToken* cancel = nullptr);

  // "/api/v1/namespaces/ns/configmaps[/name[/sub]]".
  static std::string Path(const Resource& r, absl::string_view ns,
                          absl::string_view name = "",
                          absl::string_view subresource = "");

 private:
  struct Handle;
  Client(ClusterConfig config, ClientOptions options);
  absl::Status Init();

  // A request whose 2xx body is parsed as JSON; otherwise the error of
  // ErrorFromResponse.
  absl::StatusOr<nlohmann::json> Do(absl::string_view method,
                                    const std::string& path,
                                    const std::string& body,
                                    absl::string_view content_type,
                                    const CancelToken* cancel = nullptr);
  // Runs one transfer; the response body goes to `sink` (which returns false
  // to stop the transfer) with the HTTP code. Returns the HTTP code.
  absl::StatusOr<long> Execute(
      absl::string_view method, const std::string& path,
      const std::string& body, absl::string_view content_type,
      const CancelToken* cancel, absl::Duration timeout,
      absl::FunctionRef<bool(long, absl::string_view)> sink,
      bool* stopped_by_sink);
  std::string BearerToken();

  std::unique_ptr<Handle> Acquire();
  void Release(std::unique_ptr<Handle> h);

  ClusterConfig config_;
  ClientOptions options_;

  absl::Mutex token_mu_;
  std::string token_ ABSL_GUARDED_BY(token_mu_);
  absl::Time token_read_ ABSL_GUARDED_BY(token_mu_);

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Handle>> pool_ ABSL_GUARDED_BY(pool_mu_);
};

// The absl code for an HTTP status and the apiserver's metav1.Status reason:
// 400 InvalidArgument, 401 Unauthenticated, 403 PermissionDenied,
// 404 NotFound, 405 Unimplemented, 409 AlreadyExists (reason AlreadyExists,
// a create) or Aborted (reason Conflict: a stale resourceVersion, an apply
// conflict), 410 OutOfRange (Gone / Expired: see IsGone),
// 422 InvalidArgument, 429 ResourceExhausted, 500 Internal,
// 503 Unavailable, 504 DeadlineExceeded, others Unknown.
absl::StatusCode CodeForHttp(long http_code, absl::string_view reason);

// The error for a non-2xx response: "<method> <path>: <code> <reason>:
// <message of the Status body>", with the HTTP code and reason attached as a
// payload (HttpCode, ApiReason).
absl::Status ErrorFromResponse(absl::string_view method, absl::string_view path,
                               long http_code, absl::string_view body);

// The error for a watch ERROR event's Status object.
absl::Status StatusFromWatchError(const nlohmann::json& status_object);

// The HTTP code an error came from (0: not from an HTTP response).
int HttpCode(const absl::Status& status);
// The metav1.Status reason ("NotFound", "Expired", ...) or "".
std::string ApiReason(const absl::Status& status);
// 410: the resourceVersion is too old (relist) or a continue token expired.
bool IsGone(const absl::Status& status);
// 409 Conflict: the object changed since the resourceVersion sent.
bool IsConflict(const absl::Status& status);

// Helpers on objects (never throw; "" when absent).
std::string NameOf(const nlohmann::json& object);
std::string NamespaceOf(const nlohmann::json& object);
std::string ResourceVersionOf(const nlohmann::json& object);
std::string UidOf(const nlohmann::json& object);
// object[a][b]..., nullptr when absent.
const nlohmann::json* Find(const nlohmann::json& object,
                           std::initializer_list<absl::string_view> path);
// object[a][b]... as a string, "" when absent or not a string.
std::string StringAt(const nlohmann::json& object,
                     std::initializer_list<absl::string_view> path);
// Compact JSON; invalid UTF-8 is replaced, never thrown on.
std::string Dump(const nlohmann::json& j);
// Parses JSON without throwing.
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text);

}  // namespace stockade::kube

#endif  // STOCKADE_OPERATOR_KUBE_CLIENT_H_
