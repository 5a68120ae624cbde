// libFuzzer target: arbitrary bytes as a container's config.json, rewritten
// with a real compiled policy, as the shim does at Create. The OCI spec comes
// from the container runtime's caller and is untrusted: it must never crash
// the shim, and a rewrite that succeeds must parse again as JSON.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "operator/compiler/compile.h"
#include "shim/spec/apply_spec.h"

namespace {

const stockade::v1::CompiledPolicy& Policy() {
  static const auto* policy = [] {
    stockade::v1::AgentPolicy p;
    p.mutable_metadata()->set_name("fuzz");
    p.mutable_metadata()->set_namespace_("default");
    auto* w = p.mutable_spec()->mutable_filesystem()->add_writable();
    w->set_path("/tmp/agent");
    p.mutable_spec()->mutable_exec()->add_allow("/usr/bin/python3");
    p.mutable_spec()->mutable_capabilities()->add_add("NET_BIND_SERVICE");
    auto result = stockade::compiler::CompileAgentPolicy(p, {}, {});
    return new stockade::v1::CompiledPolicy(*result.compiled);
  }();
  return *policy;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string config(reinterpret_cast<const char*>(data), size);
  stockade::shim::ApplySpecOptions options;
  options.set_apparmor_profile = size % 2 == 0;
  auto out = stockade::shim::ApplySpec(config, Policy(), options);
  if (out.ok() && !nlohmann::json::accept(*out)) __builtin_trap();
  return 0;
}
