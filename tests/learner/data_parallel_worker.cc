// One rank of the data-parallel test (data_parallel_test.cc): joins the group from torchrun-style
// variables, trains its shard of the test batch in every loss aggregation mode, and writes what it
// got to <out>/rank<R>-<mode>.bin (gradients, then parameters after a step, as float64).
#include <cstdio>
#include <fstream>
#include <string>

#include "tests/learner/data_parallel_case.h"

int main(int argc, char** argv) {
  using namespace chainrl::learner;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)\n",
                 argv[0]);
    return 2;
  }
  auto who = RankInfoFromEnvironment();
  if (!who.ok()) {
    std::fprintf(stderr, "%s\n", who.status().ToString().c_str());
    return 1;
  }
  DataParallelOptions o;
  o.timeout_seconds = 60;
  auto dp = DataParallel::Join(*who, o);
  if (!dp.ok()) {
    std::fprintf(stderr, "%s\n", dp.status().ToString().c_str());
    return 1;
  }
  for (const std::string& mode : dp_case::kModes) {
    dp_case::Case c = dp_case::MakeCase(mode);
    auto shard = dp_case::Shard(c.groups, who->rank, who->world_size, mode);
    dp_case::Outcome out = dp_case::Run(c, shard, dp->get());
    if (!out.status.ok()) {
      std::fprintf(stderr, "%s: %s\n", mode.c_str(), out.status.ToString().c_str());
      return 1;
    }
    auto both = torch::cat({out.grads, out.params}).contiguous();
    std::ofstream f(
        std::string(argv[1]) + "/rank" + std::to_string(who->rank) + "-" + mode + ".bin",
        std::ios::binary);
    f.write(reinterpret_cast<const char*>(both.data_ptr<double>()),
            static_cast<std::streamsize>(both.numel() * sizeof(double)));
    if (!f) return 1;
  }
  return 0;
}
