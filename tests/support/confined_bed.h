// A bed for confined containers: a node store holding compiled policies, the
// shim's configuration naming it, a private containerd, and a busybox root
// with the attack probe (/bin/probe) and two programs no policy allows
// (/usr/bin/pip, /usr/bin/other). The attack matrix and the denial tests run
// their containers in one.
#ifndef STOCKADE_TESTS_SUPPORT_CONFINED_BED_H_
#define STOCKADE_TESTS_SUPPORT_CONFINED_BED_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/subprocess.h"

namespace stockade::testing {

class ConfinedBed {
 public:
  // name: the prefix of the private directory (/tmp/stockade-<name>-XXXXXX)
  // and of the containerd namespace (<name>-<pid>). Needs root.
  static absl::StatusOr<std::unique_ptr<ConfinedBed>> Start(
      const std::string& name);
  ~ConfinedBed();  // stops containerd, removes the directory
  ConfinedBed(const ConfinedBed&) = delete;
  ConfinedBed& operator=(const ConfinedBed&) = delete;

  // Compiles an AgentPolicy (YAML, "NS" replaced by ns()) and installs it
  // in the store: its hash.
  absl::StatusOr<std::string> Install(const std::string& policy_yaml);

  // Runs spec through the Stockade shim in the bed's root (unless spec names
  // another), with the policy annotation when `policy` is not empty.
  CommandResult Run(RunSpec spec, const std::string& policy);

  const std::string& dir() const { return dir_; }
  const std::string& ns() const { return ns_; }
  const std::string& store() const { return store_; }
  const std::string& shim_config() const { return shim_config_; }
  const std::string& rootfs() const { return rootfs_; }
  ContainerdFixture& containerd() { return *containerd_; }

 private:
  ConfinedBed() = default;

  std::string dir_, ns_, store_, shim_config_, rootfs_;
  std::unique_ptr<ContainerdFixture> containerd_;
};

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_CONFINED_BED_H_
