// protoc-gen-stockade-crd: the protoc plugin that writes crds/ from
// proto/stockade/v1 (see generator.h).
#include "google/protobuf/compiler/plugin.h"
#include "operator/crdgen/generator.h"

int main(int argc, char** argv) {
  stockade::crdgen::CrdGenerator generator;
  return google::protobuf::compiler::PluginMain(argc, argv, &generator);
}
