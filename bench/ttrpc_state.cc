// ttrpc-state: the round trip of containerd.task.v2.Task/State against a
// running shim, the call containerd makes most. Used by bench/shim_bench.sh
// for the stockade shim and containerd-shim-runc-v2 alike.
//
//   ttrpc-state SOCKET NAMESPACE ID [N]    prints the median in microseconds
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "shim/ttrpc/client.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: ttrpc-state SOCKET NAMESPACE ID [N]\n");
    return 2;
  }
  const int n = argc > 4 ? std::atoi(argv[4]) : 1000;
  auto client = stockade::ttrpc::Client::Connect(argv[1]);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n",
                 std::string(client.status().message()).c_str());
    return 1;
  }
  containerd::task::v2::StateRequest request;
  request.set_id(argv[3]);
  const std::string payload = request.SerializeAsString();
  const std::multimap<std::string, std::string> metadata = {
      {"containerd-namespace-ttrpc", argv[2]}};
  std::vector<double> micros;
  micros.reserve(n);
  for (int i = 0; i < n + 10; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto reply = (*client)->Call("containerd.task.v2.Task", "State", payload,
                                 metadata, absl::Seconds(5));
    const auto end = std::chrono::steady_clock::now();
    if (!reply.ok()) {
      std::fprintf(stderr, "State: %s\n",
                   std::string(reply.status().message()).c_str());
      return 1;
    }
    if (i >= 10) {  // the first calls warm up
      micros.push_back(
          std::chrono::duration<double, std::micro>(end - start).count());
    }
  }
  std::sort(micros.begin(), micros.end());
  std::printf("%.1f\n", micros[micros.size() / 2]);
  return 0;
}
