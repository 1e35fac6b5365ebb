// One rank of the data-parallel test (data_parallel_test.cc): joins the group from torchrun-style
// variables, trains its shard of the test batch in every loss aggregation mode, and writes what it
// got to <out>/rank<R>-<mode>.bin (gradients, then parameters after a step, as float64).
#include <cstdio>
#include <fstream>
#include <string>

#include "learner/rank_messages.h"
#include "tests/learner/data_parallel_case.h"

namespace {

using namespace chainrl::learner;

// The messages rank 0 sends rank 1 in the "messages" mode: empty, short, 4 MiB, and a rank
// message of the learner process.
std::vector<std::string> TestMessages() {
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  RankMessage m;
  m.kind = RankMessageKind::kPolicyStep;
  m.step = 7;
  m.groups = dp_case::MakeCase("token-mean").groups;
  return {"", "hello", big, EncodeRankMessage(m)};
}

// "messages": rank 0 sends TestMessages() and broadcasts tensors; rank 1 checks what arrives.
// "vanish": rank 0 leaves at once; rank 1's Receive must fail naming rank 0, not wait forever.
int RunMessages(DataParallel& dp, const std::string& mode) {
  if (mode == "vanish") {
    if (dp.rank() == 0) _exit(0);
    auto got = dp.Receive();
    if (got.ok()) return 3;
    std::fprintf(stderr, "%s\n", got.status().ToString().c_str());
    return got.status().message().find("lost rank 0") != std::string::npos ? 0 : 4;
  }
  const std::vector<std::string> msgs = TestMessages();
  std::vector<torch::Tensor> t = {torch::zeros({3}, torch::kBFloat16), torch::zeros({2, 2})};
  if (dp.rank() == 0) {
    for (const auto& m : msgs)
      if (!dp.Send(1, m).ok()) return 5;
    if (dp.Send(0, "x").ok() || dp.Receive().ok()) return 6;  // rank 0 only sends, to others
    t[0] = torch::tensor({1.5, -2.25, 3.0}).to(torch::kBFloat16);
    t[1] = torch::arange(4, torch::kFloat).reshape({2, 2}) / 3.0;
  }
  if (!dp.Broadcast(t).ok()) return 7;
  if (!torch::equal(t[0], torch::tensor({1.5, -2.25, 3.0}).to(torch::kBFloat16)) ||
      !torch::equal(t[1], torch::arange(4, torch::kFloat).reshape({2, 2}) / 3.0))
    return 8;
  if (dp.rank() == 1) {
    if (dp.Send(0, "x").ok()) return 9;
    for (const auto& m : msgs) {
      auto got = dp.Receive();
      if (!got.ok()) {
        std::fprintf(stderr, "%s\n", got.status().ToString().c_str());
        return 10;
      }
      if (*got != m) return 11;
    }
    auto decoded = DecodeRankMessage(msgs.back());
    if (!decoded.ok() || decoded->step != 7 || decoded->groups.size() != 5) return 12;
  }
  std::vector<double> barrier = {1};  // rank 0's store lives until rank 1 has read everything
  return dp.AllReduce(&barrier).ok() && barrier[0] == 2 ? 0 : 13;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr,
                 "usage: %s OUT_DIR [messages|vanish] (with RANK, WORLD_SIZE, MASTER_ADDR, "
                 "MASTER_PORT)\n",
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
  if (argc == 3) return RunMessages(**dp, argv[2]);
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
