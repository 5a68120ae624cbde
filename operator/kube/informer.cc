#include "operator/kube/informer.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace stockade::kube {

using json = nlohmann::json;

std::string MakeKey(absl::string_view ns, absl::string_view name) {
  if (ns.empty()) return std::string(name);
  return absl::StrCat(ns, "/", name);
}

std::string KeyOf(const json& object) {
  return MakeKey(NamespaceOf(object), NameOf(object));
}

void CompactObject(json& object) {
  if (!object.is_object()) return;
  json compact = json::object();
  for (const char* field : {"apiVersion", "kind"}) {
    if (auto it = object.find(field); it != object.end()) compact[field] = *it;
  }
  if (auto md = object.find("metadata");
      md != object.end() && md->is_object()) {
    json& meta = compact["metadata"] = json::object();
    for (const char* field :
         {"name", "namespace", "uid", "generation", "resourceVersion"}) {
      if (auto it = md->find(field); it != md->end()) meta[field] = *it;
    }
  }
  compact[kRawField] = object.dump();
  object = std::move(compact);
}

std::string ObjectText(const json& object) {
  if (object.is_object()) {
    auto raw = object.find(kRawField);
    if (raw != object.end() && raw->is_string()) return raw->get<std::string>();
  }
  return object.dump();
}

void SplitKey(absl::string_view key, std::string* ns, std::string* name) {
  size_t slash = key.find('/');
  if (slash == absl::string_view::npos) {
    ns->clear();
    *name = std::string(key);
  } else {
    *ns = std::string(key.substr(0, slash));
    *name = std::string(key.substr(slash + 1));
  }
}

absl::Duration Backoff::Next() {
  absl::Duration d = base_;
  for (int i = 0; i < failures_ && d < max_; ++i) d *= 2;
  d = std::min(d, max_);
  ++failures_;
  thread_local absl::BitGen gen;
  return d * absl::Uniform(gen, 0.75, 1.25);
}

Informer::Informer(Client* client, const Resource& resource,
                   InformerOptions options)
    : client_(client),
      resource_(resource),
      options_(std::move(options)),
      backoff_(options_.min_backoff, options_.max_backoff) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandlers(InformerHandlers handlers) {
  handlers_.push_back(std::move(handlers));
}

void Informer::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  cancel_.Cancel();
  // From a handler (the informer's own thread) it cannot join itself; the
  // thread ends after the handler returns and a later Stop joins it.
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

bool Informer::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool Informer::HasSynced() const {
  absl::MutexLock lock(&mu_);
  return synced_;
}

bool Informer::WaitForSync(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return synced_ || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return synced_;
}

ObjectPtr Informer::Get(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

std::vector<ObjectPtr> Informer::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<ObjectPtr> out;
  out.reserve(cache_.size());
  for (const auto& [key, obj] : cache_) out.push_back(obj);
  return out;
}

std::vector<std::string> Informer::Keys() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  out.reserve(cache_.size());
  for (const auto& [key, obj] : cache_) out.push_back(key);
  return out;
}

size_t Informer::Size() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

Informer::Stats Informer::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.resource_version = resource_version_;
  return s;
}

bool Informer::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

ObjectPtr Informer::Prepare(json object) const {
  if (options_.drop_managed_fields && object.is_object()) {
    auto md = object.find("metadata");
    if (md != object.end() && md->is_object()) md->erase("managedFields");
  }
  if (options_.transform) options_.transform(object);
  return std::make_shared<const json>(std::move(object));
}

void Informer::ReportError(const absl::Status& s) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.failures;
  }
  if (options_.on_error) options_.on_error(s);
}

namespace {

// A change to hand to the handlers once the cache has it.
struct Change {
  enum Kind { kAdd, kUpdate, kDelete } kind;
  ObjectPtr old_object, object;
};

void Deliver(const std::vector<InformerHandlers>& handlers,
             const std::vector<Change>& changes) {
  for (const Change& c : changes) {
    for (const InformerHandlers& h : handlers) {
      switch (c.kind) {
        case Change::kAdd:
          if (h.on_add) h.on_add(c.object);
          break;
        case Change::kUpdate:
          if (h.on_update) h.on_update(c.old_object, c.object);
          break;
        case Change::kDelete:
          if (h.on_delete) h.on_delete(c.object);
          break;
      }
    }
  }
}

}  // namespace

bool Informer::ListAndReplace() {
  ListOptions lo;
  lo.label_selector = options_.label_selector;
  lo.field_selector = options_.field_selector;
  lo.limit = options_.page_size;
  lo.cancel = &cancel_;
  absl::StatusOr<ObjectList> list =
      client_->ListAll(resource_, options_.namespace_, lo);
  if (!list.ok()) {
    if (!stopping()) ReportError(list.status());
    return false;
  }
  std::map<std::string, ObjectPtr, std::less<>> fresh;
  for (json& item : list->items) {
    std::string key = KeyOf(item);
    fresh.emplace(std::move(key), Prepare(std::move(item)));
  }
  std::vector<Change> changes;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, obj] : fresh) {
      auto old = cache_.find(key);
      if (old == cache_.end()) {
        changes.push_back({Change::kAdd, nullptr, obj});
      } else if (ResourceVersionOf(*old->second) != ResourceVersionOf(*obj)) {
        changes.push_back({Change::kUpdate, old->second, obj});
      } else {
        obj = old->second;  // unchanged: keep the object handed out before
      }
    }
    for (const auto& [key, obj] : cache_) {
      if (fresh.find(key) == fresh.end()) {
        changes.push_back({Change::kDelete, nullptr, obj});
      }
    }
    cache_.swap(fresh);
    resource_version_ = list->resource_version;
    ++stats_.lists;
  }
  Deliver(handlers_, changes);
  absl::MutexLock lock(&mu_);
  synced_ = true;
  return true;
}

absl::Status Informer::WatchOnce() {
  WatchOptions wo;
  {
    absl::MutexLock lock(&mu_);
    wo.resource_version = resource_version_;
    ++stats_.watches;
  }
  wo.allow_bookmarks = true;
  wo.label_selector = options_.label_selector;
  wo.field_selector = options_.field_selector;
  wo.cancel = &cancel_;
  {
    thread_local absl::BitGen gen;
    const int64_t t =
        std::max<int64_t>(1, absl::ToInt64Seconds(options_.watch_timeout));
    wo.timeout_seconds = absl::Uniform<int64_t>(gen, t, 2 * t);
  }
  absl::Status event_error;
  bool got_event = false;
  absl::Status s =
      client_->Watch(resource_, options_.namespace_, wo, [&](WatchEvent& e) {
        if (e.type == WatchEventType::kError) {
          event_error = StatusFromWatchError(e.object);
          return false;
        }
        got_event = true;
        const std::string rv = ResourceVersionOf(e.object);
        if (e.type == WatchEventType::kBookmark) {
          absl::MutexLock lock(&mu_);
          if (!rv.empty()) resource_version_ = rv;
          ++stats_.bookmarks;
          return true;
        }
        ObjectPtr obj = Prepare(std::move(e.object));
        const std::string key = KeyOf(*obj);
        std::vector<Change> changes;
        {
          absl::MutexLock lock(&mu_);
          auto old = cache_.find(key);
          if (e.type == WatchEventType::kDeleted) {
            if (old != cache_.end()) {
              cache_.erase(old);
              changes.push_back({Change::kDelete, nullptr, obj});
            }
          } else if (old == cache_.end()) {
            cache_.emplace(key, obj);
            changes.push_back({Change::kAdd, nullptr, obj});
          } else {
            changes.push_back({Change::kUpdate, old->second, obj});
            old->second = obj;
          }
          if (!rv.empty()) resource_version_ = rv;
          ++stats_.events;
        }
        Deliver(handlers_, changes);
        return true;
      });
  if (got_event) backoff_.Reset();
  if (!event_error.ok()) return event_error;
  return s;
}

void Informer::Run() {
  while (!stopping()) {
    if (!ListAndReplace()) {
      if (!Sleep(backoff_.Next())) return;
      continue;
    }
    backoff_.Reset();
    while (!stopping()) {
      const absl::Time begin = absl::Now();
      absl::Status s = WatchOnce();
      if (stopping()) return;
      if (s.ok()) {
        // Ended by the server: watch on from the last version. A watch that
        // ends at once, again and again, is not a healthy one: back off.
        if (absl::Now() - begin < absl::Seconds(1)) {
          if (!Sleep(backoff_.Next())) return;
        }
        continue;
      }
      if (IsGone(s)) {  // the version is compacted away: list again
        absl::MutexLock lock(&mu_);
        ++stats_.relists_gone;
        break;
      }
      ReportError(s);
      if (!Sleep(backoff_.Next())) return;
      // The connection failed: watch again from the same version. The
      // apiserver refused the watch: list again.
      if (HttpCode(s) != 0) break;
    }
  }
}

}  // namespace stockade::kube
