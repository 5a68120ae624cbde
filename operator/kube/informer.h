// An informer: keeps a local cache of one resource type in step with the
// apiserver and tells handlers what changed. Its thread lists (paginated),
// then watches from the list's resourceVersion with bookmarks; when the
// watch ends it watches again from the last version seen; when that version
// is gone (410, as an HTTP status or an ERROR event) it lists again and
// reports the difference (objects that vanished meanwhile are deleted);
// failures back off exponentially with jitter. Controllers feed the keys
// from the handlers into a WorkQueue and read objects back with Get
// (level-triggered).
#ifndef STOCKADE_OPERATOR_KUBE_INFORMER_H_
#define STOCKADE_OPERATOR_KUBE_INFORMER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "operator/kube/client.h"

namespace stockade::kube {

// Objects are shared, never changed once cached.
using ObjectPtr = std::shared_ptr<const nlohmann::json>;

// "namespace/name", or "name" for cluster-scoped objects.
std::string KeyOf(const nlohmann::json& object);
std::string MakeKey(absl::string_view ns, absl::string_view name);
// Splits a key back; ns is "" for a cluster-scoped key.
void SplitKey(absl::string_view key, std::string* ns, std::string* name);

// A transform (InformerOptions::transform) for objects that are decoded
// elsewhere and only looked up by key and version in the cache: keeps
// apiVersion, kind and metadata's name, namespace, uid, generation and
// resourceVersion as JSON and the whole object as its JSON text under
// kRawField. A parsed object costs about seven times its text in memory
// (8 KB for a 1.2 KB AgentPolicy with its status); the operator caches
// 10,000s of them.
inline constexpr char kRawField[] = "@raw";
void CompactObject(nlohmann::json& object);
// The object's JSON text: the text CompactObject kept, else the object
// serialized.
std::string ObjectText(const nlohmann::json& object);

// Exponential back-off with jitter: base, 2*base, 4*base ... up to max, each
// scaled by a random factor in [0.75, 1.25).
class Backoff {
 public:
  Backoff(absl::Duration base, absl::Duration max) : base_(base), max_(max) {}
  absl::Duration Next();
  void Reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  absl::Duration base_, max_;
  int failures_ = 0;
};

struct InformerOptions {
  std::string namespace_{};  // "": every namespace
  std::string label_selector{};
  std::string field_selector{};
  int64_t page_size = 500;  // list page size
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  // Each watch asks the server to end it after a random time in [t, 2t)
  // (spreads the reconnects of many informers).
  absl::Duration watch_timeout = absl::Minutes(5);
  // Told about every failed list or watch (from the informer's thread).
  std::function<void(const absl::Status&)> on_error{};
  // metadata.managedFields is dropped from cached objects: nobody reads it
  // and it is often a third of an object.
  bool drop_managed_fields = true;
  // Applied to every object before it is cached (e.g. to drop fields).
  std::function<void(nlohmann::json& object)> transform{};
};

// Called on the informer's thread, in order, after the cache has the change
// (Get from a handler sees it). Must not block for long.
struct InformerHandlers {
  std::function<void(const ObjectPtr& object)> on_add{};
  std::function<void(const ObjectPtr& old_object, const ObjectPtr& object)>
      on_update{};
  // The last state known (after a relist, the cached one).
  std::function<void(const ObjectPtr& object)> on_delete{};
};

class Informer {
 public:
  Informer(Client* client, const Resource& resource,
           InformerOptions options = {});
  ~Informer();  // Stop()
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Before Start.
  void AddHandlers(InformerHandlers handlers);
  void Start();
  // Ends the watch at once and joins the thread. Idempotent. From a handler
  // it only stops (the thread cannot join itself).
  void Stop();

  // Whether the first list has been applied (and its adds delivered).
  bool HasSynced() const;
  bool WaitForSync(absl::Duration timeout) const;

  ObjectPtr Get(absl::string_view key) const;  // nullptr when absent
  std::vector<ObjectPtr> List() const;         // sorted by key
  std::vector<std::string> Keys() const;
  size_t Size() const;

  struct Stats {
    int64_t lists = 0;         // successful lists (the first and relists)
    int64_t relists_gone = 0;  // lists caused by 410 Gone
    int64_t watches = 0;       // watch requests made
    int64_t failures = 0;      // failed lists and watches
    int64_t events = 0;        // watch events applied (not bookmarks)
    int64_t bookmarks = 0;
    std::string resource_version;  // the last one seen
  };
  Stats stats() const;

 private:
  void Run();
  // Lists everything and replaces the cache; false when stopping or failed.
  bool ListAndReplace();
  // One watch from resource_version_; returns its result (OK: ended
  // normally).
  absl::Status WatchOnce();
  // Waits d or until Stop; false when stopping.
  bool Sleep(absl::Duration d);
  bool stopping() const;
  void ReportError(const absl::Status& s);
  ObjectPtr Prepare(nlohmann::json object) const;

  Client* const client_;
  const Resource resource_;
  const InformerOptions options_;
  std::vector<InformerHandlers> handlers_;
  CancelToken cancel_;
  std::thread thread_;
  Backoff backoff_;

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, ObjectPtr, std::less<>> cache_ ABSL_GUARDED_BY(mu_);
  std::string resource_version_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stockade::kube

#endif  // STOCKADE_OPERATOR_KUBE_INFORMER_H_
