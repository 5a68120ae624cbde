#include "operator/kube/client.h"

#include <curl/curl.h>
#include <unistd.h>

#include <exception>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace stockade::kube {
namespace {

using json = nlohmann::json;

// The payload that carries the HTTP code and the Status reason of an error:
// "<code> <reason>".
constexpr char kHttpPayload[] = "stockade.dev/kube/http";
// Handles kept for reuse (each keeps its connection alive).
constexpr size_t kMaxPooledHandles = 8;

absl::once_flag curl_init_once;

void GlobalInit() {
  absl::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_ALL); });
}

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string Escape(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Appends "?k=v" or "&k=v" when v is not empty.
void AddQuery(std::string* path, absl::string_view key,
              absl::string_view value) {
  if (value.empty()) return;
  absl::StrAppend(path, path->find('?') == std::string::npos ? "?" : "&", key,
                  "=", Escape(value));
}

absl::StatusCode CurlCode(CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::StatusCode::kFailedPrecondition;
    case CURLE_ABORTED_BY_CALLBACK:
      return absl::StatusCode::kCancelled;
    case CURLE_OUT_OF_MEMORY:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kUnavailable;
  }
}

absl::string_view ContentTypeOf(PatchType type) {
  switch (type) {
    case PatchType::kMerge:
      return "application/merge-patch+json";
    case PatchType::kJson:
      return "application/json-patch+json";
    case PatchType::kStrategic:
      return "application/strategic-merge-patch+json";
    case PatchType::kApply:
      return "application/apply-patch+yaml";
  }
  return "application/merge-patch+json";
}

// object with apiVersion and kind filled in from r when absent (custom
// resources need them; the apiserver checks them when present).
json WithTypeMeta(const Resource& r, const json& object) {
  json out = object;
  if (!out.is_object()) return out;
  if (!out.contains("apiVersion")) out["apiVersion"] = r.ApiVersion();
  if (!out.contains("kind")) out["kind"] = std::string(r.kind);
  return out;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The write callback's state.
struct Sink {
  CURL* curl;
  absl::FunctionRef<bool(long, absl::string_view)>* fn;
  bool stopped = false;
  bool threw = false;
};

size_t WriteCallback(char* data, size_t size, size_t n, void* user) {
  Sink* sink = static_cast<Sink*>(user);
  long code = 0;
  curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &code);
  bool keep_going = false;
  try {
    keep_going = (*sink->fn)(code, absl::string_view(data, size * n));
  } catch (...) {  // never let an exception cross curl's C frames
    sink->threw = true;
  }
  if (!keep_going) {
    sink->stopped = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  return size * n;
}

}  // namespace

// ---------------------------------------------------------------------------
// Resource, CancelToken

std::string Resource::ApiVersion() const {
  if (group.empty()) return std::string(version);
  return absl::StrCat(group, "/", version);
}

void CancelToken::Cancel() {
  cancelled_.store(true);
  absl::MutexLock lock(&mu_);
  for (void* m : multis_) curl_multi_wakeup(static_cast<CURLM*>(m));
}

bool CancelToken::Register(void* multi) const {
  absl::MutexLock lock(&mu_);
  if (cancelled_.load()) return false;
  multis_.insert(multi);
  return true;
}

void CancelToken::Unregister(void* multi) const {
  absl::MutexLock lock(&mu_);
  multis_.erase(multi);
}

absl::string_view WatchEventTypeName(WatchEventType type) {
  switch (type) {
    case WatchEventType::kAdded:
      return "ADDED";
    case WatchEventType::kModified:
      return "MODIFIED";
    case WatchEventType::kDeleted:
      return "DELETED";
    case WatchEventType::kBookmark:
      return "BOOKMARK";
    case WatchEventType::kError:
      return "ERROR";
  }
  return "ERROR";
}

// ---------------------------------------------------------------------------
// Errors

absl::StatusCode CodeForHttp(long http_code, absl::string_view reason) {
  switch (http_code) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 405:
      return absl::StatusCode::kUnimplemented;
    case 409:
      return reason == "AlreadyExists" ? absl::StatusCode::kAlreadyExists
                                       : absl::StatusCode::kAborted;
    case 410:
      return absl::StatusCode::kOutOfRange;
    case 413:
    case 415:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 500:
      return absl::StatusCode::kInternal;
    case 503:
      return absl::StatusCode::kUnavailable;
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return absl::StatusCode::kUnknown;
  }
}

namespace {

absl::Status MakeApiError(absl::string_view context, long http_code,
                          absl::string_view reason, absl::string_view message) {
  absl::Status s(
      CodeForHttp(http_code, reason),
      absl::StrCat(context, http_code, " ",
                   reason.empty() ? "" : absl::StrCat(reason, ": "), message));
  s.SetPayload(kHttpPayload, absl::Cord(absl::StrCat(http_code, " ", reason)));
  return s;
}

}  // namespace

absl::Status ErrorFromResponse(absl::string_view method, absl::string_view path,
                               long http_code, absl::string_view body) {
  std::string reason, message;
  absl::StatusOr<json> status = ParseJson(body);
  if (status.ok() && status->is_object()) {
    reason = StringAt(*status, {"reason"});
    message = StringAt(*status, {"message"});
  }
  if (message.empty()) {
    message = std::string(absl::StripAsciiWhitespace(body.substr(0, 512)));
  }
  return MakeApiError(absl::StrCat(method, " ", path, ": "), http_code, reason,
                      message);
}

absl::Status StatusFromWatchError(const json& status_object) {
  long code = 500;
  if (status_object.is_object()) {
    auto it = status_object.find("code");
    if (it != status_object.end() && it->is_number_integer()) {
      code = it->get<long>();
    }
  }
  return MakeApiError("watch: ", code, StringAt(status_object, {"reason"}),
                      StringAt(status_object, {"message"}));
}

int HttpCode(const absl::Status& status) {
  auto p = status.GetPayload(kHttpPayload);
  if (!p.has_value()) return 0;
  std::string s(*p);
  int code = 0;
  if (!absl::SimpleAtoi(s.substr(0, s.find(' ')), &code)) return 0;
  return code;
}

std::string ApiReason(const absl::Status& status) {
  auto p = status.GetPayload(kHttpPayload);
  if (!p.has_value()) return "";
  std::string s(*p);
  size_t space = s.find(' ');
  return space == std::string::npos ? "" : s.substr(space + 1);
}

bool IsGone(const absl::Status& status) { return HttpCode(status) == 410; }

bool IsConflict(const absl::Status& status) {
  return HttpCode(status) == 409 && status.code() == absl::StatusCode::kAborted;
}

// ---------------------------------------------------------------------------
// JSON helpers

const json* Find(const json& object,
                 std::initializer_list<absl::string_view> path) {
  const json* cur = &object;
  for (absl::string_view key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(std::string(key));
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string StringAt(const json& object,
                     std::initializer_list<absl::string_view> path) {
  const json* found = Find(object, path);
  return found != nullptr && found->is_string() ? found->get<std::string>()
                                                : "";
}

std::string NameOf(const json& o) { return StringAt(o, {"metadata", "name"}); }
std::string NamespaceOf(const json& o) {
  return StringAt(o, {"metadata", "namespace"});
}
std::string ResourceVersionOf(const json& o) {
  return StringAt(o, {"metadata", "resourceVersion"});
}
std::string UidOf(const json& o) { return StringAt(o, {"metadata", "uid"}); }

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<json> ParseJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not valid JSON: ", text.substr(0, 200),
                     text.size() > 200 ? "..." : ""));
  }
  return j;
}

// ---------------------------------------------------------------------------
// Client

struct Client::Handle {
  Handle() : curl(curl_easy_init()) {}
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
  CURL* curl;
};

Client::Client(ClusterConfig config, ClientOptions options)
    : config_(std::move(config)), options_(std::move(options)) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::FromConfig(
    ClusterConfig config, ClientOptions options) {
  GlobalInit();
  std::unique_ptr<Client> c(new Client(std::move(config), std::move(options)));
  if (absl::Status s = c->Init(); !s.ok()) return s;
  return c;
}

absl::Status Client::Init() {
  const std::string where =
      config_.source.empty() ? "kube client" : config_.source;
  if (config_.server.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no server"));
  }
  while (absl::EndsWith(config_.server, "/")) config_.server.pop_back();
  for (const std::string* f : {&config_.ca_file, &config_.client_cert_file,
                               &config_.client_key_file}) {
    if (!f->empty() && access(f->c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(where, ": cannot read ", *f));
    }
  }
  absl::MutexLock lock(&token_mu_);
  token_ = config_.token;
  token_read_ = absl::Now();
  return absl::OkStatus();
}

std::string Client::BearerToken() {
  absl::MutexLock lock(&token_mu_);
  if (!config_.token_file.empty() &&
      absl::Now() - token_read_ >= options_.token_reload_period) {
    token_read_ = absl::Now();
    absl::StatusOr<std::string> t = ReadSmallFile(config_.token_file);
    if (t.ok() && !absl::StripAsciiWhitespace(*t).empty()) {
      token_ = std::string(absl::StripAsciiWhitespace(*t));
    }
  }
  return token_;
}

std::unique_ptr<Client::Handle> Client::Acquire() {
  {
    absl::MutexLock lock(&pool_mu_);
    if (!pool_.empty()) {
      std::unique_ptr<Handle> h = std::move(pool_.back());
      pool_.pop_back();
      return h;
    }
  }
  return std::make_unique<Handle>();
}

void Client::Release(std::unique_ptr<Handle> h) {
  absl::MutexLock lock(&pool_mu_);
  if (pool_.size() < kMaxPooledHandles) pool_.push_back(std::move(h));
}

std::string Client::Path(const Resource& r, absl::string_view ns,
                         absl::string_view name,
                         absl::string_view subresource) {
  std::string p = r.group.empty()
                      ? absl::StrCat("/api/", r.version)
                      : absl::StrCat("/apis/", r.group, "/", r.version);
  if (r.namespaced && !ns.empty()) {
    absl::StrAppend(&p, "/namespaces/", Escape(ns));
  }
  absl::StrAppend(&p, "/", r.plural);
  if (!name.empty()) absl::StrAppend(&p, "/", Escape(name));
  if (!subresource.empty()) absl::StrAppend(&p, "/", subresource);
  return p;
}

absl::StatusOr<long> Client::Execute(
    absl::string_view method, const std::string& path, const std::string& body,
    absl::string_view content_type, const CancelToken* cancel,
    absl::Duration timeout,
    absl::FunctionRef<bool(long, absl::string_view)> sink_fn,
    bool* stopped_by_sink) {
  *stopped_by_sink = false;
  if (cancel != nullptr && cancel->cancelled()) {
    return absl::CancelledError(absl::StrCat(method, " ", path, ": cancelled"));
  }
  std::unique_ptr<Handle> h = Acquire();
  if (h->curl == nullptr) {
    return absl::ResourceExhaustedError("curl_easy_init failed");
  }
  CURL* c = h->curl;
  curl_easy_reset(c);  // keeps the connection cache

  const std::string url = config_.server + path;
  const std::string method_str(method);
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  if (timeout > absl::ZeroDuration()) {
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  }
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip if offered

  // TLS: trust only the cluster's CA when one is given.
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config_.ca_data.empty()) {
    curl_blob blob{const_cast<char*>(config_.ca_data.data()),
                   config_.ca_data.size(), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_CAINFO, nullptr);
    curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
  } else if (!config_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(c, CURLOPT_CAINFO, config_.ca_file.c_str());
  }
  if (!config_.client_cert_data.empty()) {
    curl_blob blob{const_cast<char*>(config_.client_cert_data.data()),
                   config_.client_cert_data.size(), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &blob);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!config_.client_key_data.empty()) {
    curl_blob blob{const_cast<char*>(config_.client_key_data.data()),
                   config_.client_key_data.size(), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &blob);
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!config_.client_key_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLKEY, config_.client_key_file.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
  }

  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");
  if (!body.empty()) {
    headers = curl_slist_append(
        headers, absl::StrCat("Content-Type: ", content_type).c_str());
  }
  const std::string token = BearerToken();
  if (!token.empty()) {
    headers = curl_slist_append(
        headers, absl::StrCat("Authorization: Bearer ", token).c_str());
  } else if (!config_.username.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, config_.username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, config_.password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  if (method_str == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method_str.c_str());
    if (!body.empty() || method_str != "DELETE") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(body.size()));
    }
  }

  Sink sink{c, &sink_fn};
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteCallback);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);

  CURLcode rc = CURLE_OK;
  bool cancelled = false;
  if (cancel == nullptr) {
    rc = curl_easy_perform(c);
  } else {
    // A multi handle so that CancelToken::Cancel can wake the wait at once.
    CURLM* multi = curl_multi_init();
    curl_multi_add_handle(multi, c);
    if (!cancel->Register(multi)) {
      cancelled = true;
    } else {
      int running = 1;
      while (true) {
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
          rc = CURLE_RECV_ERROR;
          break;
        }
        if (running == 0) {
          int left = 0;
          while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
            if (msg->msg == CURLMSG_DONE) rc = msg->data.result;
          }
          break;
        }
        if (cancel->cancelled()) {
          cancelled = true;
          break;
        }
        curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
      }
      cancel->Unregister(multi);
    }
    curl_multi_remove_handle(multi, c);
    curl_multi_cleanup(multi);
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  const bool threw = sink.threw;
  *stopped_by_sink = sink.stopped && !threw;
  // A handle whose transfer failed midway may hold a broken connection;
  // curl discards those itself, so every handle goes back to the pool.
  Release(std::move(h));

  if (threw) {
    return absl::InternalError(
        absl::StrCat(method, " ", path, ": the callback threw"));
  }
  if (cancelled || (cancel != nullptr && cancel->cancelled() &&
                    rc != CURLE_OK && !*stopped_by_sink)) {
    return absl::CancelledError(absl::StrCat(method, " ", path, ": cancelled"));
  }
  if (rc == CURLE_WRITE_ERROR && *stopped_by_sink) return code;
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    while (!detail.empty() && detail.back() == '\n') detail.pop_back();
    return absl::Status(CurlCode(rc),
                        absl::StrCat(method, " ", url, ": ", detail));
  }
  return code;
}

absl::StatusOr<Response> Client::Request(absl::string_view method,
                                         absl::string_view path,
                                         absl::string_view body,
                                         absl::string_view content_type,
                                         const CancelToken* cancel) {
  Response response;
  bool stopped = false;
  absl::StatusOr<long> code = Execute(
      method, std::string(path), std::string(body), content_type, cancel,
      options_.request_timeout,
      [&](long, absl::string_view data) {
        response.body.append(data.data(), data.size());
        return true;
      },
      &stopped);
  if (!code.ok()) return code.status();
  response.http_code = *code;
  return response;
}

absl::StatusOr<json> Client::Do(absl::string_view method,
                                const std::string& path,
                                const std::string& body,
                                absl::string_view content_type,
                                const CancelToken* cancel) {
  absl::StatusOr<Response> r =
      Request(method, path, body, content_type, cancel);
  if (!r.ok()) return r.status();
  if (r->http_code < 200 || r->http_code > 299) {
    return ErrorFromResponse(method, path, r->http_code, r->body);
  }
  absl::StatusOr<json> j = ParseJson(r->body);
  if (!j.ok()) {
    return absl::InternalError(
        absl::StrCat(method, " ", path, ": ", j.status().message()));
  }
  return j;
}

namespace {

absl::Status NeedNamespace(const Resource& r, absl::string_view ns,
                           absl::string_view op) {
  if (r.namespaced && ns.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " ", r.plural, ": a namespace is required"));
  }
  return absl::OkStatus();
}

absl::Status NeedName(absl::string_view name, const Resource& r,
                      absl::string_view op) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " ", r.plural, ": metadata.name is required"));
  }
  return absl::OkStatus();
}

// The namespace to write to: the argument, else the object's.
std::string WriteNamespace(const Resource& r, absl::string_view ns,
                           const json& object) {
  if (!r.namespaced) return "";
  if (!ns.empty()) return std::string(ns);
  return NamespaceOf(object);
}

void AddWriteQuery(std::string* path, const std::string& field_manager,
                   bool dry_run) {
  AddQuery(path, "fieldManager", field_manager);
  if (dry_run) AddQuery(path, "dryRun", "All");
}

}  // namespace

absl::StatusOr<json> Client::Get(const Resource& r, absl::string_view ns,
                                 absl::string_view name) {
  if (absl::Status s = NeedNamespace(r, ns, "get"); !s.ok()) return s;
  if (absl::Status s = NeedName(name, r, "get"); !s.ok()) return s;
  return Do("GET", Path(r, ns, name), "", "");
}

absl::StatusOr<ObjectList> Client::List(const Resource& r, absl::string_view ns,
                                        const ListOptions& options) {
  std::string path = Path(r, ns);
  AddQuery(&path, "labelSelector", options.label_selector);
  AddQuery(&path, "fieldSelector", options.field_selector);
  if (options.limit > 0) AddQuery(&path, "limit", absl::StrCat(options.limit));
  AddQuery(&path, "continue", options.continue_token);
  AddQuery(&path, "resourceVersion", options.resource_version);
  AddQuery(&path, "resourceVersionMatch", options.resource_version_match);
  absl::StatusOr<json> j = Do("GET", path, "", "", options.cancel);
  if (!j.ok()) return j.status();
  ObjectList list;
  list.resource_version = StringAt(*j, {"metadata", "resourceVersion"});
  list.continue_token = StringAt(*j, {"metadata", "continue"});
  auto items = j->find("items");
  if (items != j->end() && items->is_array()) {
    list.items.reserve(items->size());
    for (json& item : *items) {
      // Items of a list carry no apiVersion/kind: restore them.
      if (item.is_object()) {
        if (!item.contains("apiVersion")) item["apiVersion"] = r.ApiVersion();
        if (!item.contains("kind")) item["kind"] = std::string(r.kind);
      }
      list.items.push_back(std::move(item));
    }
  }
  return list;
}

absl::StatusOr<ObjectList> Client::ListAll(const Resource& r,
                                           absl::string_view ns,
                                           const ListOptions& options) {
  for (int attempt = 0;; ++attempt) {
    ObjectList all;
    ListOptions page = options;
    page.continue_token.clear();
    absl::Status failed;
    for (bool first = true;; first = false) {
      absl::StatusOr<ObjectList> l = List(r, ns, page);
      if (!l.ok()) {
        failed = l.status();
        break;
      }
      if (first) all.resource_version = l->resource_version;
      for (json& item : l->items) all.items.push_back(std::move(item));
      if (l->continue_token.empty()) return all;
      page.continue_token = l->continue_token;
      // Later pages are of the first page's snapshot.
      page.resource_version.clear();
      page.resource_version_match.clear();
    }
    // An expired continue token (the snapshot was compacted): start over.
    if (!IsGone(failed) || page.continue_token.empty() || attempt >= 2) {
      return failed;
    }
  }
}

absl::StatusOr<json> Client::Create(const Resource& r, absl::string_view ns,
                                    const json& object,
                                    const WriteOptions& options) {
  const std::string wns = WriteNamespace(r, ns, object);
  if (absl::Status s = NeedNamespace(r, wns, "create"); !s.ok()) return s;
  std::string path = Path(r, wns);
  AddWriteQuery(&path, options.field_manager, options.dry_run);
  return Do("POST", path, Dump(WithTypeMeta(r, object)), "application/json");
}

absl::StatusOr<json> Client::Update(const Resource& r, absl::string_view ns,
                                    const json& object,
                                    const WriteOptions& options) {
  const std::string wns = WriteNamespace(r, ns, object);
  const std::string name = NameOf(object);
  if (absl::Status s = NeedNamespace(r, wns, "update"); !s.ok()) return s;
  if (absl::Status s = NeedName(name, r, "update"); !s.ok()) return s;
  std::string path = Path(r, wns, name);
  AddWriteQuery(&path, options.field_manager, options.dry_run);
  return Do("PUT", path, Dump(WithTypeMeta(r, object)), "application/json");
}

absl::StatusOr<json> Client::UpdateStatus(const Resource& r,
                                          absl::string_view ns,
                                          const json& object,
                                          const WriteOptions& options) {
  const std::string wns = WriteNamespace(r, ns, object);
  const std::string name = NameOf(object);
  if (absl::Status s = NeedNamespace(r, wns, "update status"); !s.ok()) {
    return s;
  }
  if (absl::Status s = NeedName(name, r, "update status"); !s.ok()) return s;
  std::string path = Path(r, wns, name, "status");
  AddWriteQuery(&path, options.field_manager, options.dry_run);
  return Do("PUT", path, Dump(WithTypeMeta(r, object)), "application/json");
}

namespace {

std::string PatchPath(const std::string& base, PatchType type,
                      const PatchOptions& options) {
  std::string path = base;
  AddWriteQuery(&path, options.field_manager, options.dry_run);
  if (type == PatchType::kApply && options.force) {
    AddQuery(&path, "force", "true");
  }
  return path;
}

}  // namespace

absl::StatusOr<json> Client::Patch(const Resource& r, absl::string_view ns,
                                   absl::string_view name, PatchType type,
                                   const json& patch,
                                   const PatchOptions& options) {
  if (absl::Status s = NeedNamespace(r, ns, "patch"); !s.ok()) return s;
  if (absl::Status s = NeedName(name, r, "patch"); !s.ok()) return s;
  if (type == PatchType::kApply && options.field_manager.empty()) {
    return absl::InvalidArgumentError("apply: a field manager is required");
  }
  return Do("PATCH", PatchPath(Path(r, ns, name), type, options),
            Dump(type == PatchType::kApply ? WithTypeMeta(r, patch) : patch),
            ContentTypeOf(type));
}

absl::StatusOr<json> Client::PatchStatus(const Resource& r,
                                         absl::string_view ns,
                                         absl::string_view name, PatchType type,
                                         const json& patch,
                                         const PatchOptions& options) {
  if (absl::Status s = NeedNamespace(r, ns, "patch status"); !s.ok()) {
    return s;
  }
  if (absl::Status s = NeedName(name, r, "patch status"); !s.ok()) return s;
  if (type == PatchType::kApply && options.field_manager.empty()) {
    return absl::InvalidArgumentError("apply: a field manager is required");
  }
  return Do("PATCH", PatchPath(Path(r, ns, name, "status"), type, options),
            Dump(type == PatchType::kApply ? WithTypeMeta(r, patch) : patch),
            ContentTypeOf(type));
}

absl::StatusOr<json> Client::Apply(const Resource& r, absl::string_view ns,
                                   const json& object,
                                   absl::string_view field_manager,
                                   bool force) {
  const std::string wns = WriteNamespace(r, ns, object);
  PatchOptions options{.field_manager = std::string(field_manager),
                       .force = force};
  return Patch(r, wns, NameOf(object), PatchType::kApply, object, options);
}

absl::StatusOr<json> Client::ApplyStatus(const Resource& r,
                                         absl::string_view ns,
                                         const json& object,
                                         absl::string_view field_manager,
                                         bool force) {
  const std::string wns = WriteNamespace(r, ns, object);
  PatchOptions options{.field_manager = std::string(field_manager),
                       .force = force};
  return PatchStatus(r, wns, NameOf(object), PatchType::kApply, object,
                     options);
}

absl::Status Client::Delete(const Resource& r, absl::string_view ns,
                            absl::string_view name,
                            const DeleteOptions& options) {
  if (absl::Status s = NeedNamespace(r, ns, "delete"); !s.ok()) return s;
  if (absl::Status s = NeedName(name, r, "delete"); !s.ok()) return s;
  std::string body;
  if (!options.uid.empty() || !options.resource_version.empty() ||
      !options.propagation_policy.empty() ||
      options.grace_period_seconds >= 0) {
    json d = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}};
    if (!options.uid.empty()) d["preconditions"]["uid"] = options.uid;
    if (!options.resource_version.empty()) {
      d["preconditions"]["resourceVersion"] = options.resource_version;
    }
    if (!options.propagation_policy.empty()) {
      d["propagationPolicy"] = options.propagation_policy;
    }
    if (options.grace_period_seconds >= 0) {
      d["gracePeriodSeconds"] = options.grace_period_seconds;
    }
    body = Dump(d);
  }
  absl::StatusOr<json> r2 =
      Do("DELETE", Path(r, ns, name), body, "application/json");
  return r2.status();
}

absl::Status Client::Watch(const Resource& r, absl::string_view ns,
                           const WatchOptions& options,
                           absl::FunctionRef<bool(WatchEvent&)> on_event) {
  std::string path = Path(r, ns);
  AddQuery(&path, "watch", "1");
  AddQuery(&path, "resourceVersion", options.resource_version);
  if (options.allow_bookmarks) AddQuery(&path, "allowWatchBookmarks", "true");
  if (options.timeout_seconds > 0) {
    AddQuery(&path, "timeoutSeconds", absl::StrCat(options.timeout_seconds));
  }
  AddQuery(&path, "labelSelector", options.label_selector);
  AddQuery(&path, "fieldSelector", options.field_selector);

  std::string buffer;      // an incomplete line
  std::string error_body;  // the body of a non-200 response
  absl::Status bad_event;
  auto sink = [&](long code, absl::string_view data) -> bool {
    if (code != 200) {
      if (error_body.size() < 65536)
        error_body.append(data.data(), data.size());
      return true;
    }
    buffer.append(data.data(), data.size());
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      absl::string_view line(buffer.data() + start, nl - start);
      if (absl::StripAsciiWhitespace(line).empty()) continue;
      absl::StatusOr<json> j = ParseJson(line);
      if (!j.ok() || !j->is_object()) {
        bad_event = absl::InternalError(absl::StrCat(
            "watch ", path,
            ": bad event: ", j.ok() ? "not an object" : j.status().message()));
        return false;
      }
      const std::string type = StringAt(*j, {"type"});
      WatchEvent event;
      if (type == "ADDED") {
        event.type = WatchEventType::kAdded;
      } else if (type == "MODIFIED") {
        event.type = WatchEventType::kModified;
      } else if (type == "DELETED") {
        event.type = WatchEventType::kDeleted;
      } else if (type == "BOOKMARK") {
        event.type = WatchEventType::kBookmark;
      } else if (type == "ERROR") {
        event.type = WatchEventType::kError;
      } else {
        bad_event = absl::InternalError(absl::StrCat(
            "watch ", path, ": unknown event type \"", type, "\""));
        return false;
      }
      auto obj = j->find("object");
      if (obj != j->end()) event.object = std::move(*obj);
      if (event.type != WatchEventType::kError && event.object.is_object()) {
        if (!event.object.contains("apiVersion")) {
          event.object["apiVersion"] = r.ApiVersion();
        }
        if (!event.object.contains("kind")) {
          event.object["kind"] = std::string(r.kind);
        }
      }
      if (!on_event(event)) {
        buffer.clear();
        return false;
      }
    }
    buffer.erase(0, start);
    return true;
  };
  // Past the server's own timeout, a stuck connection is ended by this.
  const absl::Duration timeout =
      options.timeout_seconds > 0
          ? absl::Seconds(options.timeout_seconds) + absl::Seconds(60)
          : absl::ZeroDuration();
  bool stopped = false;
  absl::StatusOr<long> code =
      Execute("GET", path, "", "", options.cancel, timeout, sink, &stopped);
  if (!bad_event.ok()) return bad_event;
  if (!code.ok()) return code.status();
  if (*code != 200) return ErrorFromResponse("GET", path, *code, error_body);
  return absl::OkStatus();
}

}  // namespace stockade::kube
