#include "operator/crdgen/structural.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace stockade::crdgen {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> Check(const std::string& schema) {
  return CheckStructuralSchema(YAML::Load(schema));
}

constexpr char kGood[] = R"(
type: object
properties:
  apiVersion: {type: string}
  kind: {type: string}
  metadata: {type: object}
  spec:
    type: object
    required: [name]
    properties:
      name: {type: string, minLength: 1}
      port: {type: integer, format: int32, minimum: 1, maximum: 65535}
      mode: {type: string, enum: [Enforce, "True"]}
      items:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [path]
        items:
          type: object
          required: [path]
          properties:
            path: {type: string}
      labels:
        type: object
        additionalProperties: {type: string}
  status:
    type: object
    properties:
      observedGeneration: {type: integer, format: int64}
)";

TEST(CheckStructuralSchemaTest, AcceptsAStructuralSchema) {
  EXPECT_THAT(Check(kGood), IsEmpty());
}

TEST(CheckStructuralSchemaTest, EveryNodeNeedsAType) {
  EXPECT_THAT(Check("type: object\nproperties:\n  spec:\n    properties: {}\n"),
              ElementsAre(HasSubstr(".spec: has no type")));
  EXPECT_THAT(Check("type: object\nproperties:\n  x:\n"
                    "    x-kubernetes-preserve-unknown-fields: true\n"),
              IsEmpty());
}

TEST(CheckStructuralSchemaTest, RejectsRef) {
  EXPECT_THAT(Check("type: object\nproperties:\n  spec:\n"
                    "    $ref: '#/definitions/Spec'\n    type: object\n"),
              ElementsAre(HasSubstr("$ref is not allowed")));
}

TEST(CheckStructuralSchemaTest, RejectsInt64UnderSpecOnly) {
  EXPECT_THAT(
      Check("type: object\nproperties:\n  spec:\n    type: object\n"
            "    properties:\n      n: {type: integer, format: int64}\n"),
      ElementsAre(HasSubstr(".spec.n: integer with format \"int64\" under "
                            "spec")));
  EXPECT_THAT(
      Check(
          "type: object\nproperties:\n  spec:\n    type: object\n"
          "    properties:\n      l: {type: array, items: {type: integer}}\n"),
      ElementsAre(HasSubstr(".spec.l[]: integer")));
  EXPECT_THAT(
      Check("type: object\nproperties:\n  status:\n    type: object\n"
            "    properties:\n      n: {type: integer, format: int64}\n"),
      IsEmpty());
}

TEST(CheckStructuralSchemaTest, ListMapKeysMustBeRequired) {
  EXPECT_THAT(Check(R"(
type: object
properties:
  l:
    type: array
    x-kubernetes-list-type: map
    x-kubernetes-list-map-keys: [name]
    items: {type: object, properties: {name: {type: string}}}
)"),
              ElementsAre(HasSubstr("must be required or have a default")));
}

TEST(CheckStructuralSchemaTest, SetsNeedScalarItems) {
  EXPECT_THAT(Check("type: object\nproperties:\n  l:\n    type: array\n"
                    "    x-kubernetes-list-type: set\n"
                    "    items: {type: object}\n"),
              ElementsAre(HasSubstr("set needs scalar items")));
}

TEST(CheckStructuralSchemaTest, RejectsMisplacedKeywords) {
  EXPECT_THAT(Check("type: object\nproperties:\n  s:\n    type: string\n"
                    "    minimum: 1\n"),
              ElementsAre(HasSubstr("minimum applies only to numbers")));
  EXPECT_THAT(Check("type: object\nproperties:\n  o:\n    type: object\n"
                    "    properties: {a: {type: string}}\n"
                    "    additionalProperties: {type: string}\n"),
              ElementsAre(HasSubstr("mutually exclusive")));
  EXPECT_THAT(Check("type: object\nproperties:\n  a:\n    type: array\n"),
              ElementsAre(HasSubstr("an array needs items")));
  EXPECT_THAT(Check("type: object\nrequired: [nope]\nproperties: {}\n"),
              ElementsAre(HasSubstr("required field nope")));
  EXPECT_THAT(Check("type: object\nproperties:\n  a: {type: string, "
                    "patern: x}\n"),
              ElementsAre(HasSubstr("unknown schema keyword \"patern\"")));
}

TEST(CheckStructuralSchemaTest, EnumStringsMustReadBackAsStrings) {
  EXPECT_THAT(
      Check("type: object\nproperties:\n  s:\n    type: string\n"
            "    enum: [True, False]\n"),
      ElementsAre(HasSubstr("enum value True"), HasSubstr("enum value False")));
}

TEST(CheckStructuralSchemaTest, RootMetadataIsOnlyAnObject) {
  EXPECT_THAT(Check("type: object\nproperties:\n  metadata:\n"
                    "    type: object\n"
                    "    properties: {name: {type: string}}\n"),
              ElementsAre(HasSubstr(".metadata: may only declare type")));
}

constexpr char kCrd[] = R"(
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.dev}
spec:
  group: example.dev
  names: {kind: Widget, listKind: WidgetList, plural: widgets,
          singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties: {size: {type: integer, format: int32}}
)";

TEST(CheckCrdTest, AcceptsAGoodCrd) {
  EXPECT_THAT(CheckCrd(YAML::Load(kCrd)), IsEmpty());
}

TEST(CheckCrdTest, PrinterColumnsMustResolve) {
  YAML::Node crd = YAML::Load(kCrd);
  crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] =
      ".spec.sise";
  EXPECT_THAT(CheckCrd(crd),
              ElementsAre(HasSubstr("jsonPath \".spec.sise\" names no field")));
}

TEST(CheckCrdTest, NamesAndVersions) {
  YAML::Node crd = YAML::Load(kCrd);
  crd["metadata"]["name"] = "widget.example.dev";
  crd["spec"]["scope"] = "Global";
  crd["spec"]["versions"][0]["storage"] = false;
  EXPECT_THAT(
      CheckCrd(crd),
      ElementsAre(HasSubstr("metadata.name must be <plural>.<group>"),
                  HasSubstr("spec.scope"), HasSubstr("exactly one version")));
}

}  // namespace
}  // namespace stockade::crdgen
