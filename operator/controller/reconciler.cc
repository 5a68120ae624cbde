#include "operator/controller/reconciler.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "operator/compiler/compile.h"
#include "operator/compiler/packed_policy.h"
#include "operator/compiler/validate.h"
#include "operator/controller/conditions.h"

namespace stockade::controller {

namespace v1 = ::stockade::v1;
using compiler::Problem;

struct PolicyReconciler::CompileEntry {
  enum class Outcome { kCompiled, kInvalidSpec, kGuardrailViolation, kError };
  Outcome outcome = Outcome::kCompiled;
  compiler::PackedPolicyPtr compiled;
  std::vector<Problem> problems;
  // Guardrails (ClusterAgentPolicy names) that a violation names.
  std::vector<std::string> rejected_by;
};

struct PolicyReconciler::PolicyMemory {
  uint64_t round = 0;  // the last call that saw the object
  // The status this reconciler last computed.
  v1::AgentPolicyStatus status;
  // The last version that compiled, and the fingerprint of the guardrails
  // it was checked against.
  compiler::PackedPolicyPtr last_good;
  std::string last_good_guardrails;
  // The hash of the last "Distributed" event.
  std::string announced;
};

struct PolicyReconciler::ClusterMemory {
  uint64_t round = 0;
  v1::ClusterAgentPolicyStatus status;
};

namespace {

constexpr int kMaxProblemsShown = 20;
constexpr int kMaxNodesNamed = 5;
constexpr char kNormal[] = "Normal";
constexpr char kWarning[] = "Warning";

std::string Short(absl::string_view hash) {
  return std::string(hash.substr(0, 12));
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// "1 namespace", "2 namespaces".
std::string Count(int n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

// `text` ending in exactly one period.
std::string Sentence(std::string text) {
  if (text.empty() || text.back() != '.') text.push_back('.');
  return text;
}

// Serializes `m` deterministically into `buffer` (replacing its contents,
// keeping its capacity: no allocation once warm).
const std::string& SerializeInto(const google::protobuf::Message& m,
                                 std::string* buffer) {
  buffer->clear();
  {
    google::protobuf::io::StringOutputStream stream(buffer);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return *buffer;
}

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  SerializeInto(m, &out);
  return out;
}

// Equal messages, compared by their deterministic serialization (much
// cheaper than MessageDifferencer); the buffers are reused.
bool SameMessage(const google::protobuf::Message& a,
                 const google::protobuf::Message& b, std::string* buffer_a,
                 std::string* buffer_b) {
  return SerializeInto(a, buffer_a) == SerializeInto(b, buffer_b);
}

// "spec.a: message; spec.b: message; and 3 more".
std::string ProblemList(const std::vector<Problem>& problems) {
  std::string out;
  int shown = 0;
  for (const Problem& p : problems) {
    if (shown == kMaxProblemsShown) {
      absl::StrAppend(&out, "; and ", problems.size() - shown, " more");
      break;
    }
    if (shown++ > 0) out += "; ";
    if (!p.path.empty()) absl::StrAppend(&out, p.path, ": ");
    out += p.message;
  }
  return out;
}

// What the schema cannot say about a label selector (as metav1 validates
// it): In and NotIn need values, Exists and DoesNotExist take none.
std::vector<Problem> SelectorProblems(const v1::LabelSelector& selector,
                                      absl::string_view prefix) {
  std::vector<Problem> out;
  for (int i = 0; i < selector.match_expressions_size(); ++i) {
    const auto& req = selector.match_expressions(i);
    const std::string path = absl::StrCat(prefix, ".matchExpressions[", i, "]");
    switch (req.operator_()) {
      case v1::SELECTOR_OPERATOR_IN:
      case v1::SELECTOR_OPERATOR_NOT_IN:
        if (req.values().empty()) {
          out.push_back(Problem{"", 0, path + ".values",
                                "must not be empty for In and NotIn"});
        }
        break;
      case v1::SELECTOR_OPERATOR_EXISTS:
      case v1::SELECTOR_OPERATOR_DOES_NOT_EXIST:
        if (!req.values().empty()) {
          out.push_back(Problem{"", 0, path + ".values",
                                "must be empty for Exists and DoesNotExist"});
        }
        break;
      default:
        out.push_back(Problem{"", 0, path + ".operator",
                              "required: In, NotIn, Exists or DoesNotExist"});
    }
  }
  return out;
}

// One ClusterAgentPolicy, checked once per reconcile.
struct Guardrail {
  const ClusterAgentPolicyObject* in = nullptr;
  std::vector<Problem> problems;
  // An invalid selector cannot say which namespaces it means: the guardrail
  // then selects every namespace (fail closed).
  bool selector_valid = true;
  std::string bytes;  // the spec, serialized deterministically
  int namespaces = 0;
  int selected = 0;
  int rejected = 0;

  const std::string& name() const { return in->object.metadata().name(); }
  bool valid() const { return problems.empty(); }
  bool Selects(const compiler::NamespaceLabels& labels) const {
    return !selector_valid ||
           compiler::SelectorMatches(in->object.spec().namespace_selector(),
                                     labels);
  }
};

// The guardrails of one namespace.
struct Namespace {
  bool known = false;
  const compiler::NamespaceLabels* labels = nullptr;
  std::vector<Guardrail*> selecting;  // sorted by name
  std::vector<v1::ClusterAgentPolicy> valid;
  std::vector<const Guardrail*> invalid;
  // sha256 over every selecting guardrail: changes with any of them.
  std::string fingerprint;
};

std::string GuardrailText(const Namespace& ns, absl::string_view name) {
  if (ns.valid.empty()) {
    return absl::StrCat("; no ClusterAgentPolicy selects namespace ",
                        Quote(name));
  }
  std::vector<std::string> names;
  for (const auto& g : ns.valid) names.push_back(Quote(g.metadata().name()));
  return absl::StrCat(" with the guardrails of ClusterAgentPolicy ",
                      absl::StrJoin(names, ", "));
}

ObjectRef RefOf(const v1::ObjectMeta& meta, absl::string_view kind) {
  return ObjectRef{compiler::kApiVersion, std::string(kind), meta.namespace_(),
                   meta.name(),           meta.uid(),        meta.generation()};
}

bool SameStatusReason(const v1::Condition* a, const v1::Condition& b) {
  return a != nullptr && a->status() == b.status() && a->reason() == b.reason();
}

}  // namespace

PolicyReconciler::PolicyReconciler(Clock clock) : clock_(std::move(clock)) {}
PolicyReconciler::~PolicyReconciler() = default;

ReconcileResult PolicyReconciler::Reconcile(const Snapshot& snapshot) {
  using Outcome = CompileEntry::Outcome;
  const std::string now = Rfc3339(clock_());
  const uint64_t round = ++round_;
  ReconcileResult out;

  // Guardrails, sorted by name, each validated once.
  std::vector<Guardrail> guards(snapshot.cluster_policies.size());
  for (size_t i = 0; i < guards.size(); ++i) {
    Guardrail& g = guards[i];
    g.in = &snapshot.cluster_policies[i];
    const v1::ClusterAgentPolicySpec& spec = g.in->object.spec();
    g.problems = g.in->problems;
    std::vector<Problem> selector =
        SelectorProblems(spec.namespace_selector(), "spec.namespaceSelector");
    g.selector_valid = selector.empty() && g.in->problems.empty();
    if (g.in->problems.empty()) {
      g.problems = compiler::ValidateClusterPolicySpec(spec, "spec");
      g.problems.insert(g.problems.end(), selector.begin(), selector.end());
    }
    g.bytes = DeterministicBytes(spec);
  }
  std::sort(guards.begin(), guards.end(),
            [](const Guardrail& a, const Guardrail& b) {
              return std::tie(a.name(), a.in->object.metadata().uid()) <
                     std::tie(b.name(), b.in->object.metadata().uid());
            });
  for (const auto& [name, labels] : snapshot.namespaces) {
    for (Guardrail& g : guards) g.namespaces += g.Selects(labels);
  }

  // Namespaces, resolved when a policy needs one.
  std::map<std::string, Namespace> namespaces;
  auto lookup = [&](const std::string& name) -> Namespace& {
    auto [it, inserted] = namespaces.try_emplace(name);
    Namespace& ns = it->second;
    if (!inserted) return ns;
    auto labels = snapshot.namespaces.find(name);
    if (labels == snapshot.namespaces.end()) return ns;
    ns.known = true;
    ns.labels = &labels->second;
    std::string fingerprint;
    for (Guardrail& g : guards) {
      if (!g.Selects(labels->second)) continue;
      ns.selecting.push_back(&g);
      absl::StrAppend(&fingerprint, g.name(), "\n",
                      g.valid() ? "valid" : "invalid", "\n", g.bytes.size(),
                      "\n", g.bytes);
      if (g.valid()) {
        ns.valid.push_back(g.in->object);
      } else {
        ns.invalid.push_back(&g);
      }
    }
    ns.fingerprint = Sha256Hex(fingerprint);
    return ns;
  };

  std::vector<const NodeState*> nodes;
  nodes.reserve(snapshot.nodes.size());
  absl::flat_hash_set<absl::string_view> in_use;
  for (const NodeState& n : snapshot.nodes) {
    nodes.push_back(&n);
    for (const std::string& h : n.in_use) in_use.insert(h);
  }
  std::sort(
      nodes.begin(), nodes.end(),
      [](const NodeState* a, const NodeState* b) { return a->name < b->name; });
  const int total = static_cast<int>(nodes.size());

  std::vector<const AgentPolicyObject*> order;
  order.reserve(snapshot.policies.size());
  out.policies.reserve(snapshot.policies.size());
  for (const AgentPolicyObject& p : snapshot.policies) order.push_back(&p);
  std::sort(order.begin(), order.end(),
            [](const AgentPolicyObject* a, const AgentPolicyObject* b) {
              const auto& ma = a->object.metadata();
              const auto& mb = b->object.metadata();
              return std::tie(ma.namespace_(), ma.name(), ma.uid()) <
                     std::tie(mb.namespace_(), mb.name(), mb.uid());
            });

  std::vector<Event> policy_events;
  // Reused buffers: no allocation per policy once warm.
  std::string buffer_a;
  std::string buffer_b;
  std::string key;

  for (const AgentPolicyObject* p : order) {
    const v1::ObjectMeta& meta = p->object.metadata();
    const int64_t generation = meta.generation();
    key.clear();
    absl::StrAppend(&key, meta.namespace_(), "/", meta.name(), "/", meta.uid());
    auto memory_it = memory_.find(key);
    const bool fresh = memory_it == memory_.end();
    if (fresh) {
      memory_it = memory_.emplace(key, std::make_unique<PolicyMemory>()).first;
    }
    PolicyMemory& mem = *memory_it->second;
    mem.round = round;
    // What the object showed before: this reconciler's last status, or (on
    // first sight, e.g. after an operator restart) the status in the object.
    const v1::AgentPolicyStatus& before =
        fresh ? p->object.status() : mem.status;
    if (fresh) {
      const v1::Condition* d = FindCondition(before.conditions(), kDistributed);
      if (d != nullptr && d->status() == v1::CONDITION_STATUS_TRUE) {
        mem.announced = before.policy_hash();
      }
    }

    Namespace& ns = lookup(meta.namespace_());
    v1::ConditionStatus compiled_status = v1::CONDITION_STATUS_FALSE;
    std::string reason;
    std::string what;  // why it did not compile
    std::shared_ptr<const CompileEntry> entry;
    if (!p->problems.empty()) {
      reason = kReasonInvalidSpec;
      what = absl::StrCat("Generation ", generation,
                          " is invalid: ", ProblemList(p->problems));
    } else if (!ns.known) {
      compiled_status = v1::CONDITION_STATUS_UNKNOWN;
      reason = kReasonNamespaceUnknown;
      what = absl::StrCat("Namespace ", Quote(meta.namespace_()),
                          " is not known to the operator yet; the policy is "
                          "compiled once it is");
    } else if (!ns.invalid.empty()) {
      reason = kReasonInvalidGuardrail;
      std::vector<std::string> parts;
      for (const Guardrail* g : ns.invalid) {
        parts.push_back(absl::StrCat("ClusterAgentPolicy ", Quote(g->name()),
                                     " (", ProblemList(g->problems), ")"));
      }
      what = absl::StrCat("A guardrail selecting namespace ",
                          Quote(meta.namespace_()),
                          " is invalid: ", absl::StrJoin(parts, "; "));
    } else {
      // The spec enters the key as a 64-bit hash of its bytes: a collision
      // would need the same object and generation with another spec.
      key.clear();
      absl::StrAppend(&key, meta.namespace_(), "\n", meta.name(), "\n",
                      meta.uid(), "\n", generation, "\n", ns.fingerprint, "\n",
                      absl::Hex(absl::Hash<absl::string_view>{}(
                          SerializeInto(p->object.spec(), &buffer_a))));
      if (auto it = cache_.find(key); it != cache_.end()) {
        entry = it->second.entry;
        it->second.round = round;
        ++out.stats.cache_hits;
      } else {
        auto e = std::make_shared<CompileEntry>();
        e->problems = compiler::ValidatePolicySpec(p->object.spec(), "spec");
        if (!e->problems.empty()) {
          e->outcome = Outcome::kInvalidSpec;
        } else {
          compiler::MergeResult merged =
              compiler::Merge(p->object.spec(), ns.valid, *ns.labels);
          if (!merged.violations.empty()) {
            e->outcome = Outcome::kGuardrailViolation;
            e->problems = std::move(merged.violations);
            for (const auto& g : ns.valid) {
              const std::string named = absl::StrCat(
                  "ClusterAgentPolicy ", Quote(g.metadata().name()));
              for (const Problem& v : e->problems) {
                if (absl::StrContains(v.message, named)) {
                  e->rejected_by.push_back(g.metadata().name());
                  break;
                }
              }
            }
          } else {
            v1::PolicySource source;
            source.set_kind("AgentPolicy");
            source.set_namespace_(meta.namespace_());
            source.set_name(meta.name());
            source.set_generation(generation);
            for (const std::string& g : merged.guardrails) {
              source.add_guardrails(g);
            }
            auto compiled =
                compiler::CompileEffective(merged.effective, source);
            absl::StatusOr<compiler::PackedPolicyPtr> packed =
                compiled.ok() ? compiler::PackedPolicy::Pack(*compiled)
                              : compiled.status();
            if (packed.ok()) {
              e->compiled = *std::move(packed);
            } else {
              e->outcome = Outcome::kError;
              e->problems.push_back(Problem{
                  "", 0, "spec", std::string(packed.status().message())});
            }
          }
        }
        entry = std::move(e);
        cache_.emplace(key, CacheSlot{entry, round});
        ++out.stats.compiled;
      }
      switch (entry->outcome) {
        case Outcome::kCompiled:
          compiled_status = v1::CONDITION_STATUS_TRUE;
          reason = kReasonCompiled;
          break;
        case Outcome::kInvalidSpec:
          reason = kReasonInvalidSpec;
          what = absl::StrCat("Generation ", generation,
                              " is invalid: ", ProblemList(entry->problems));
          break;
        case Outcome::kGuardrailViolation:
          reason = kReasonGuardrailViolation;
          what = absl::StrCat("Generation ", generation,
                              " asks for more than the guardrails allow: ",
                              ProblemList(entry->problems));
          break;
        case Outcome::kError:
          reason = kReasonCompileError;
          what = absl::StrCat(
              "Generation ", generation,
              " could not be compiled: ", ProblemList(entry->problems));
          break;
      }
    }

    // The compiled policy in force: this generation's, else the last good
    // one while the guardrails it was checked against are still those in
    // force (a guardrail is never loosened by keeping an old version).
    compiler::PackedPolicyPtr current;
    bool kept = false;
    if (entry != nullptr && entry->compiled != nullptr) {
      current = entry->compiled;
      mem.last_good = current;
      mem.last_good_guardrails = ns.fingerprint;
    } else if (mem.last_good != nullptr &&
               (!ns.known || mem.last_good_guardrails == ns.fingerprint)) {
      current = mem.last_good;
      kept = true;
      ++out.stats.kept_last_good;
    } else {
      mem.last_good.reset();
      mem.last_good_guardrails.clear();
    }
    const std::string hash = current ? current->hash() : "";

    // Compiled.
    std::string compiled_message;
    if (compiled_status == v1::CONDITION_STATUS_TRUE) {
      compiled_message =
          absl::StrCat("Generation ", generation, " compiled to policy ",
                       Short(hash), GuardrailText(ns, meta.namespace_()), ".");
    } else {
      ++out.stats.failed;
      const std::string consequence =
          kept ? absl::StrCat("The nodes keep policy ", Short(hash),
                              " (generation ", current->source().generation(),
                              "), the last version that compiled.")
          : compiled_status == v1::CONDITION_STATUS_UNKNOWN
              ? std::string()
              : std::string(
                    "Nothing of this policy is distributed: "
                    "containers that name it do not start until it "
                    "compiles.");
      compiled_message = Sentence(what);
      if (!consequence.empty()) {
        absl::StrAppend(&compiled_message, " ", consequence);
      }
    }

    // Distributed.
    v1::ConditionStatus dist_status;
    std::string dist_reason;
    std::string dist_message;
    int ready = 0;
    if (current == nullptr) {
      dist_status = v1::CONDITION_STATUS_FALSE;
      dist_reason = kReasonNotCompiled;
      dist_message =
          "Nothing to distribute: no version of this policy has "
          "compiled.";
    } else if (total == 0) {
      dist_status = v1::CONDITION_STATUS_UNKNOWN;
      dist_reason = kReasonNoNodes;
      dist_message = absl::StrCat("No node agent is connected; policy ",
                                  Short(hash), " is distributed when one is.");
    } else {
      std::vector<std::string> missing;
      int more = 0;
      for (const NodeState* n : nodes) {
        if (n->held.contains(hash)) {
          ++ready;
        } else if (missing.size() < kMaxNodesNamed) {
          missing.push_back(n->name);
        } else {
          ++more;
        }
      }
      if (ready == total) {
        dist_status = v1::CONDITION_STATUS_TRUE;
        dist_reason = kReasonDistributed;
        dist_message = absl::StrCat(ready, "/", total, " nodes hold policy ",
                                    Short(hash), ".");
      } else {
        dist_status = v1::CONDITION_STATUS_FALSE;
        dist_reason = kReasonDistributing;
        dist_message =
            absl::StrCat(ready, "/", total, " nodes hold policy ", Short(hash),
                         "; waiting for ", absl::StrJoin(missing, ", "));
        if (more > 0) absl::StrAppend(&dist_message, " and ", more, " more");
        dist_message += ".";
      }
    }

    // Ready.
    v1::ConditionStatus ready_status;
    std::string ready_reason;
    std::string ready_message;
    if (compiled_status != v1::CONDITION_STATUS_TRUE) {
      ready_status = compiled_status;
      ready_reason = reason;
      ready_message = absl::StrCat(
          "Generation ", generation,
          " is not in force (see the Compiled condition)",
          kept ? absl::StrCat("; the nodes keep policy ", Short(hash), ".")
               : std::string("."));
    } else if (dist_status != v1::CONDITION_STATUS_TRUE) {
      ready_status = dist_status;
      ready_reason = dist_reason;
      ready_message = dist_message;
    } else {
      ready_status = v1::CONDITION_STATUS_TRUE;
      ready_reason = kReasonReady;
      ready_message =
          absl::StrCat("Policy ", Short(hash), " is compiled and held by all ",
                       total, total == 1 ? " node." : " nodes.");
    }

    const Conditions& prev = before.conditions();
    v1::AgentPolicyStatus status;
    status.set_observed_generation(generation);
    status.set_policy_hash(hash);
    *status.add_conditions() =
        MakeCondition(prev, kCompiled, compiled_status, reason,
                      compiled_message, generation, now);
    *status.add_conditions() =
        MakeCondition(prev, kDistributed, dist_status, dist_reason,
                      dist_message, generation, now);
    *status.add_conditions() =
        MakeCondition(prev, kReady, ready_status, ready_reason, ready_message,
                      generation, now);
    status.mutable_nodes()->set_ready(ready);
    status.mutable_nodes()->set_total(total);
    status.mutable_nodes()->set_summary(absl::StrCat(ready, "/", total));
    // Denial counts and active layers come from node reports, not from
    // here: kept as they are.
    if (p->object.status().has_denials()) {
      *status.mutable_denials() = p->object.status().denials();
    }
    *status.mutable_active_layers() = p->object.status().active_layers();

    // Events: on a change of what compiled (or did not), and once per hash
    // when it reaches every node.
    const ObjectRef ref = RefOf(meta, "AgentPolicy");
    const v1::Condition& compiled_now = status.conditions(0);
    const v1::Condition* compiled_before = FindCondition(prev, kCompiled);
    if (compiled_status == v1::CONDITION_STATUS_TRUE) {
      if (!SameStatusReason(compiled_before, compiled_now) ||
          before.policy_hash() != hash) {
        policy_events.push_back(
            Event{ref, kNormal, kReasonCompiled, compiled_message});
      }
    } else if (compiled_status == v1::CONDITION_STATUS_FALSE) {
      if (!SameStatusReason(compiled_before, compiled_now) ||
          compiled_before->message() != compiled_now.message()) {
        policy_events.push_back(
            Event{ref, kWarning, reason, compiled_now.message()});
      }
    }
    if (dist_status == v1::CONDITION_STATUS_TRUE && mem.announced != hash) {
      policy_events.push_back(
          Event{ref, kNormal, kReasonDistributed, dist_message});
      mem.announced = hash;
    }

    // Guardrail counts.
    for (Guardrail* g : ns.selecting) {
      ++g->selected;
      if (entry != nullptr && entry->outcome == Outcome::kGuardrailViolation &&
          std::find(entry->rejected_by.begin(), entry->rejected_by.end(),
                    g->name()) != entry->rejected_by.end()) {
        ++g->rejected;
      }
    }

    if (current != nullptr) {
      out.desired.policies.emplace(hash, current);
      out.desired.index[{meta.namespace_(), meta.name()}] = hash;
    }
    AgentPolicyResult result;
    result.object = ref;
    result.status_changed =
        !SameMessage(status, p->object.status(), &buffer_a, &buffer_b);
    if (fresh || !SameMessage(status, mem.status, &buffer_a, &buffer_b)) {
      mem.status = status;
    }
    result.status = std::move(status);
    out.policies.push_back(std::move(result));
  }

  // Forget what is gone.
  for (auto it = memory_.begin(); it != memory_.end();) {
    if (it->second->round != round) {
      memory_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (it->second.round != round) {
      cache_.erase(it++);
    } else {
      ++it;
    }
  }

  // Garbage collection by hash: an earlier desired policy no longer in force
  // stays while a container on some node uses it.
  for (const auto& [hash, policy] : previous_desired_) {
    if (!out.desired.policies.contains(hash) && in_use.contains(hash)) {
      out.desired.policies.emplace(hash, policy);
      ++out.stats.retained_in_use;
    }
  }
  previous_desired_ = out.desired.policies;
  std::string listing;
  listing.reserve(out.desired.policies.size() * 70 +
                  out.desired.index.size() * 100);
  for (const auto& [hash, policy] : out.desired.policies) {
    absl::StrAppend(&listing, "p ", hash, "\n");
  }
  for (const auto& [key, hash] : out.desired.index) {
    absl::StrAppend(&listing, "i ", key.first, "/", key.second, " ", hash,
                    "\n");
  }
  out.desired.fingerprint = Sha256Hex(listing);

  // ClusterAgentPolicies.
  absl::flat_hash_set<std::string> cluster_seen;
  for (const Guardrail& g : guards) {
    const v1::ObjectMeta& meta = g.in->object.metadata();
    const std::string mkey = absl::StrCat(meta.name(), "/", meta.uid());
    cluster_seen.insert(mkey);
    std::unique_ptr<ClusterMemory>& slot = cluster_memory_[mkey];
    const bool fresh = slot == nullptr;
    if (fresh) slot = std::make_unique<ClusterMemory>();
    const v1::ClusterAgentPolicyStatus& before =
        fresh ? g.in->object.status() : slot->status;

    v1::ClusterAgentPolicyStatus status;
    status.set_observed_generation(meta.generation());
    status.set_selected_policies(g.selected);
    status.set_rejected_policies(g.rejected);
    v1::Condition ready;
    if (g.valid()) {
      ready = MakeCondition(
          before.conditions(), kReady, v1::CONDITION_STATUS_TRUE,
          kReasonApplied,
          absl::StrCat("Guardrails apply to ",
                       Count(g.selected, "AgentPolicy", "AgentPolicies"),
                       " in ", Count(g.namespaces, "namespace", "namespaces"),
                       "; ", g.rejected, " rejected for asking for more."),
          meta.generation(), now);
    } else {
      ready = MakeCondition(
          before.conditions(), kReady, v1::CONDITION_STATUS_FALSE,
          kReasonInvalidGuardrails,
          absl::StrCat(
              Sentence(absl::StrCat("Invalid: ", ProblemList(g.problems))),
              " No AgentPolicy in the namespaces it selects",
              g.selector_valid ? ""
                               : " (every namespace, while its "
                                 "selector is invalid)",
              " is compiled until it is fixed."),
          meta.generation(), now);
    }
    const v1::Condition* ready_before =
        FindCondition(before.conditions(), kReady);
    const ObjectRef ref = RefOf(meta, "ClusterAgentPolicy");
    if (!SameStatusReason(ready_before, ready) ||
        (!g.valid() && ready_before->message() != ready.message())) {
      out.events.push_back(Event{ref, g.valid() ? kNormal : kWarning,
                                 ready.reason(), ready.message()});
    }
    *status.add_conditions() = std::move(ready);
    ClusterAgentPolicyResult result;
    result.object = ref;
    result.status_changed =
        !SameMessage(status, g.in->object.status(), &buffer_a, &buffer_b);
    slot->status = status;
    result.status = std::move(status);
    out.cluster_policies.push_back(std::move(result));
  }
  for (auto it = cluster_memory_.begin(); it != cluster_memory_.end();) {
    if (!cluster_seen.contains(it->first)) {
      cluster_memory_.erase(it++);
    } else {
      ++it;
    }
  }
  out.events.insert(out.events.end(),
                    std::make_move_iterator(policy_events.begin()),
                    std::make_move_iterator(policy_events.end()));
  return out;
}

}  // namespace stockade::controller
