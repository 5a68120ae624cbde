// Checks a CustomResourceDefinition the way the Kubernetes API server would
// before accepting it: a structural openAPIV3Schema (a type on every node, no
// $ref, list-type annotations that fit their items, ...), Stockade's own rule
// that no int64 appears under spec, and printer columns that resolve.
#ifndef STOCKADE_OPERATOR_CRDGEN_STRUCTURAL_H_
#define STOCKADE_OPERATOR_CRDGEN_STRUCTURAL_H_

#include <string>
#include <vector>

#include "yaml-cpp/yaml.h"

namespace stockade::crdgen {

// Problems with one openAPIV3Schema (the root of a version's schema), each
// "path: message"; empty when the schema is fine.
std::vector<std::string> CheckStructuralSchema(const YAML::Node& schema);

// Problems with a whole CRD document: apiVersion/kind, metadata.name, names,
// scope, versions (exactly one storage version), each version's schema and
// its additionalPrinterColumns. Empty when fine.
std::vector<std::string> CheckCrd(const YAML::Node& crd);

}  // namespace stockade::crdgen

#endif  // STOCKADE_OPERATOR_CRDGEN_STRUCTURAL_H_
