#include <iostream>

#include "cli/cli.h"
#include "cli/kubectl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (argc > 0 && stockade::cli::IsKubectlPlugin(argv[0])) {
    return stockade::cli::RunKubectlPlugin(args, std::cout, std::cerr);
  }
  return stockade::cli::Run(args, std::cout, std::cerr);
}
