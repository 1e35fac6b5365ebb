// Data parallelism over c10d Gloo on the CPU: two real worker processes, placed by torchrun-style
// variables, each train their shard of a batch; their summed gradients and their updated
// parameters equal one process's on the whole batch, for the GRPO-family update in every loss
// aggregation mode (also with one shard empty), the SFT update and the DPO update. Malformed
// variables, a peer that never starts and a backend this build lacks are errors, not hangs.
#include "learner/data_parallel.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "apps/run_config.h"
#include "core/endpoints.h"
#include "learner/rank_messages.h"
#include "tests/learner/data_parallel_case.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;

// Sets environment variables for one scope and restores them after.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k);
      saved_.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
      if (v)
        setenv(k, v, 1);
      else
        unsetenv(k);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v)
        setenv(k.c_str(), v->c_str(), 1);
      else
        unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(DataParallel, EnvironmentVariablesAreReadLikeTorchrunsAndErrorsNameThem) {
  {
    ScopedEnv e({{"WORLD_SIZE", nullptr}});
    auto w = RankInfoFromEnvironment();
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->world_size, 1);
  }
  {
    ScopedEnv e({{"WORLD_SIZE", "2"},
                 {"RANK", "1"},
                 {"MASTER_ADDR", "10.0.0.7"},
                 {"MASTER_PORT", "29500"}});
    auto w = RankInfoFromEnvironment();
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ(w->rank, 1);
    EXPECT_EQ(w->world_size, 2);
    EXPECT_EQ(w->master_addr, "10.0.0.7");
    EXPECT_EQ(w->master_port, 29500);
  }
  struct Bad {
    const char *world, *rank, *addr, *port, *names;
  };
  for (const Bad& b : {Bad{"two", "0", "h", "1", "WORLD_SIZE='two'"},
                       Bad{"2", "2", "h", "1", "RANK='2' is not an integer in [0, 1]"},
                       Bad{"2", nullptr, "h", "1", "RANK is not set"},
                       Bad{"2", "0", nullptr, "1", "MASTER_ADDR is not set"},
                       Bad{"2", "0", "h", "http", "MASTER_PORT='http'"},
                       Bad{"2", "0", "h", "70000", "MASTER_PORT='70000'"}}) {
    ScopedEnv e({{"WORLD_SIZE", b.world},
                 {"RANK", b.rank},
                 {"MASTER_ADDR", b.addr},
                 {"MASTER_PORT", b.port}});
    auto w = RankInfoFromEnvironment();
    ASSERT_FALSE(w.ok()) << b.names;
    EXPECT_NE(w.status().message().find(b.names), std::string::npos) << w.status().ToString();
  }
}

TEST(DataParallel, APeerThatNeverStartsIsAnErrorWithinTheTimeoutAndNcclIsRefused) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  RankInfo who;
  who.rank = 0;
  who.world_size = 2;
  who.master_addr = "127.0.0.1";
  who.master_port = *port;
  DataParallelOptions o;
  o.timeout_seconds = 1.0;
  const auto t0 = std::chrono::steady_clock::now();
  auto dp = DataParallel::Join(who, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(dp.status().message().find("127.0.0.1:" + std::to_string(*port)), std::string::npos)
      << dp.status().ToString();
  EXPECT_NE(dp.status().message().find("rank 0 of 2"), std::string::npos);
  EXPECT_LT(s, 30.0) << "gave up after " << s << " s";

  o.backend = "nccl";
  auto nccl = DataParallel::Join(who, o);
  ASSERT_FALSE(nccl.ok());
  EXPECT_NE(nccl.status().message().find("no NCCL"), std::string::npos);
  o.backend = "mpi";
  EXPECT_FALSE(DataParallel::Join(who, o).ok());
}

// distributed.backend: auto is gloo on the CPU and nccl on CUDA; nccl, named or resolved, is
// refused naming the key (this build has no NCCL process group), as is an unknown name.
TEST(DataParallel, BackendResolvesFromTheDevice) {
  EXPECT_EQ(*DataParallelBackend("auto", "cpu"), "gloo");
  EXPECT_EQ(*DataParallelBackend("gloo", "cpu"), "gloo");
  EXPECT_EQ(*DataParallelBackend("gloo", "cuda:1"), "gloo");
  for (const char* device : {"cuda", "cuda:0", "cuda:3"}) {
    auto a = DataParallelBackend("auto", device);
    ASSERT_FALSE(a.ok()) << device;
    EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(
        a.status().message().find("distributed.backend = 'auto' means 'nccl' on run.device = '" +
                                  std::string(device) + "'"),
        std::string::npos)
        << a.status().message();
    EXPECT_NE(a.status().message().find("no NCCL"), std::string::npos);
    EXPECT_NE(a.status().message().find("set distributed.backend = 'gloo'"), std::string::npos);
  }
  auto nccl = DataParallelBackend("nccl", "cpu");
  ASSERT_FALSE(nccl.ok());
  EXPECT_NE(nccl.status().message().find("distributed.backend = 'nccl'"), std::string::npos);
  auto mpi = DataParallelBackend("mpi", "cpu");
  ASSERT_FALSE(mpi.ok());
  EXPECT_NE(mpi.status().message().find("distributed.backend = 'mpi': expected auto, gloo or nccl"),
            std::string::npos);

  // From the config: the same check, with run.device.
  auto cfg = ParseConfig("[model]\npath = \"m\"\n", "test.toml",
                         {"run.device=\"cuda:1\"", "distributed.timeout_seconds=30"});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto refused = DataParallelOptionsFromConfig(*cfg);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("distributed.backend"), std::string::npos);
  auto gloo = cfg->WithOverrides({"distributed.backend=gloo"});
  ASSERT_TRUE(gloo.ok());
  auto o = DataParallelOptionsFromConfig(*gloo);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->backend, "gloo");
  EXPECT_EQ(o->device, "cuda:1");
  EXPECT_EQ(o->timeout_seconds, 30.0);
}

std::vector<double> ReadDoubles(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<double> v;
  double x;
  while (f.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}

// Starts two ranks of the worker (`mode` empty: the updates; else "messages" or "vanish") and
// waits for both (killed after 120 s). Returns each rank's exit status and its stderr.
std::vector<std::pair<int, std::string>> RunTwoWorkers(const fs::path& out,
                                                       const std::string& mode) {
  auto port = PickFreePort();
  if (!port.ok()) return {};
  const std::string worker = CHAINRL_DP_WORKER;
  const std::string port_s = std::to_string(*port);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string log = (out / ("rank" + std::to_string(rank) + mode + ".log")).string();
    pid_t pid = fork();
    if (pid == 0) {
      if (std::freopen(log.c_str(), "w", stderr) == nullptr) _exit(127);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port_s.c_str(), 1);
      if (mode.empty())
        execl(worker.c_str(), worker.c_str(), out.c_str(), static_cast<char*>(nullptr));
      else
        execl(worker.c_str(), worker.c_str(), out.c_str(), mode.c_str(),
              static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid <= 0) return {};
    pids.push_back(pid);
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<int, std::string>> result(2, {-1, ""});
  for (size_t i = 0; i < 2; ++i) {
    int status = 0;
    while (waitpid(pids[i], &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120)) {
        for (pid_t p : pids) kill(p, SIGKILL);
        waitpid(pids[i], &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    result[i].first = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream log(out / ("rank" + std::to_string(i) + mode + ".log"));
    result[i].second.assign(std::istreambuf_iterator<char>(log), std::istreambuf_iterator<char>());
  }
  return result;
}

fs::path FreshOut(const std::string& name) {
  const fs::path out = fs::temp_directory_path() / (name + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  return out;
}

TEST(DataParallel, TwoGlooRanksTakeTheStepOfOneProcessOnTheWholeBatch) {
  const fs::path out = FreshOut("chainrl_dp_");
  const auto ranks_run = RunTwoWorkers(out, "");
  ASSERT_EQ(ranks_run.size(), 2u);
  for (int rank = 0; rank < 2; ++rank)
    ASSERT_EQ(ranks_run[rank].first, 0) << "rank " << rank << " failed:\n"
                                        << ranks_run[rank].second;

  for (const std::string& mode : dp_case::kModes) {
    dp_case::Case c = dp_case::MakeCase(mode);
    dp_case::Outcome one = dp_case::Run(c, c.groups, nullptr);
    ASSERT_TRUE(one.status.ok()) << one.status.ToString();
    const int64_t n = one.grads.numel();
    std::vector<std::vector<double>> ranks;
    for (int rank = 0; rank < 2; ++rank) {
      ranks.push_back(
          ReadDoubles((out / ("rank" + std::to_string(rank) + "-" + mode + ".bin")).string()));
      ASSERT_EQ(static_cast<int64_t>(ranks.back().size()), 2 * n) << mode;
    }
    // The summed gradient equals the whole batch's.
    const double gmax = one.grads.abs().max().item<double>();
    ASSERT_GT(gmax, 1e-4) << mode << ": the update has a gradient";
    for (int rank = 0; rank < 2; ++rank) {
      double worst = 0;
      for (int64_t i = 0; i < n; ++i)
        worst = std::max(worst, std::abs(ranks[rank][i] - one.grads[i].item<double>()));
      EXPECT_LE(worst / gmax, 1e-5) << mode << " rank " << rank;
    }
    // Both ranks hold the same parameters after the step (bit for bit), those of the single
    // process where the gradient is not near zero (Adam's first step moves a parameter by about
    // lr times the sign of its gradient, so signs of near-zero gradients may differ).
    int64_t compared = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(ranks[0][n + i], ranks[1][n + i]) << mode << " parameter " << i;
      if (std::abs(one.grads[i].item<double>()) < 1e-3 * gmax) continue;
      ++compared;
      worst = std::max(worst, std::abs(ranks[0][n + i] - one.params[i].item<double>()));
    }
    EXPECT_GT(compared, n / 4) << mode;
    EXPECT_LE(worst, 1e-6) << mode;
  }
  fs::remove_all(out);
}

// Rank 0 sends rank 1 messages through the rendezvous store (empty, short, 4 MiB, a rank message
// of the learner) and broadcasts a bfloat16 and a float32 tensor: rank 1 gets them unchanged and
// in order; sending anywhere but from rank 0 to another rank is refused.
TEST(DataParallel, MessagesAndBroadcastsReachTheOtherRankUnchanged) {
  const fs::path out = FreshOut("chainrl_dp_msg_");
  const auto r = RunTwoWorkers(out, "messages");
  ASSERT_EQ(r.size(), 2u);
  for (int rank = 0; rank < 2; ++rank)
    EXPECT_EQ(r[rank].first, 0) << "rank " << rank << " (exit code names the check):\n"
                                << r[rank].second;
  fs::remove_all(out);
}

// A rank waiting for rank 0's next message learns that rank 0 has gone (its store closed) and
// fails naming it, instead of waiting forever.
TEST(DataParallel, AFollowerWhoseRankZeroVanishesFailsNamingIt) {
  const fs::path out = FreshOut("chainrl_dp_vanish_");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = RunTwoWorkers(out, "vanish");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].first, 0) << r[1].second;
  EXPECT_NE(r[1].second.find("lost rank 0 (its store at 127.0.0.1:"), std::string::npos)
      << r[1].second;
  EXPECT_LT(s, 60.0);
  fs::remove_all(out);
}

// Rank messages round-trip exactly (groups with and without given advantages, bfloat16 prompt
// embeddings, preference pairs, SFT examples), and every truncation, a foreign magic, an unknown
// kind and trailing bytes are Corrupt errors, never a crash.
TEST(RankMessages, RoundTripExactlyAndDamagedBytesAreErrors) {
  RankMessage m;
  m.kind = RankMessageKind::kStart;
  m.step = 12;
  m.sft_step = 30;
  m.sft_done = true;
  m.resume_dir = "/runs/a/checkpoints/step-000000042";
  m.groups = dp_case::MakeCase("token-mean").groups;
  m.groups[1].samples[0].advantage = -0.75;
  m.groups[0].samples[0].end = SampleEnd::kRepetition;
  m.groups[0].samples[1].end = SampleEnd::kBudget;
  m.groups[1].samples[1].end = SampleEnd::kAborted;
  m.groups[1].samples[1].correct = true;
  m.groups[2].prompt_embeddings = torch::randn({2, 8}).to(torch::kBFloat16);
  m.groups[2].placeholder_token_id = 9;
  m.policy_version = 17;
  {
    SampleData& v = m.groups[0].samples[0];
    const int64_t n = static_cast<int64_t>(v.tokens.size());
    ASSERT_GE(n, 2);
    v.versions = {{15, 1}, {17, n - 1}};
  }
  m.pairs.push_back({{1, 2, 3}, {4, 5}, {{6}, {7, 8, 9}}});
  m.sft.push_back({{10, 11}, {12, 13, 14}});
  const std::string bytes = EncodeRankMessage(m);
  auto d = DecodeRankMessage(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->kind, RankMessageKind::kStart);
  EXPECT_EQ(d->step, 12);
  EXPECT_EQ(d->sft_step, 30);
  EXPECT_TRUE(d->sft_done);
  EXPECT_EQ(d->resume_dir, m.resume_dir);
  EXPECT_EQ(d->policy_version, 17);
  ASSERT_EQ(d->groups.size(), m.groups.size());
  for (size_t g = 0; g < m.groups.size(); ++g) {
    EXPECT_EQ(d->groups[g].group_id, m.groups[g].group_id);
    EXPECT_EQ(d->groups[g].prompt, m.groups[g].prompt);
    EXPECT_EQ(d->groups[g].placeholder_token_id, m.groups[g].placeholder_token_id);
    ASSERT_EQ(d->groups[g].samples.size(), m.groups[g].samples.size());
    for (size_t i = 0; i < m.groups[g].samples.size(); ++i) {
      const SampleData &a = m.groups[g].samples[i], &b = d->groups[g].samples[i];
      EXPECT_EQ(b.tokens, a.tokens);
      EXPECT_EQ(b.behaviour_logprobs, a.behaviour_logprobs);
      EXPECT_EQ(b.reward, a.reward);
      EXPECT_EQ(b.end, a.end);
      EXPECT_EQ(b.correct, a.correct);
      EXPECT_EQ(b.advantage, a.advantage);
      ASSERT_EQ(b.versions.size(), a.versions.size());
      for (size_t k = 0; k < a.versions.size(); ++k) {
        EXPECT_EQ(b.versions[k].version, a.versions[k].version);
        EXPECT_EQ(b.versions[k].length, a.versions[k].length);
      }
    }
    EXPECT_EQ(d->groups[g].prompt_embeddings.defined(), m.groups[g].prompt_embeddings.defined());
  }
  ASSERT_TRUE(d->groups[2].prompt_embeddings.defined());
  EXPECT_EQ(d->groups[2].prompt_embeddings.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(d->groups[2].prompt_embeddings, m.groups[2].prompt_embeddings));
  ASSERT_EQ(d->pairs.size(), 1u);
  EXPECT_EQ(d->pairs[0].rejected, m.pairs[0].rejected);
  ASSERT_EQ(d->sft.size(), 1u);
  EXPECT_EQ(d->sft[0].response, m.sft[0].response);

  for (size_t n = 0; n < bytes.size(); ++n) {
    auto t = DecodeRankMessage(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(t.ok()) << "a message cut at " << n << " of " << bytes.size() << " bytes";
    EXPECT_EQ(t.status().code(), StatusCode::kCorrupt);
  }
  std::string foreign = bytes;
  foreign[0] ^= 0x5a;
  EXPECT_NE(DecodeRankMessage(foreign).status().message().find("bad magic"), std::string::npos);
  std::string kind = bytes;
  kind[4] = 99;
  EXPECT_NE(DecodeRankMessage(kind).status().message().find("unknown kind 99"), std::string::npos);
  EXPECT_NE(DecodeRankMessage(bytes + "xy").status().message().find("2 bytes left over"),
            std::string::npos);
  // Policy versions that do not cover a sample's tokens are Corrupt, naming the byte.
  {
    RankMessage bad = m;
    bad.groups[0].samples[0].versions = {{15, 1}};  // 1 of n tokens
    auto b = DecodeRankMessage(EncodeRankMessage(bad));
    ASSERT_FALSE(b.ok());
    EXPECT_NE(b.status().message().find("a sample's policy versions at byte"), std::string::npos)
        << b.status().message();
  }
  // How a sample ended travels in its flags byte: an impossible value is Corrupt, not a cast.
  RankMessage one;
  one.kind = RankMessageKind::kPolicyStep;
  one.groups.resize(1);
  one.groups[0].samples.resize(1);
  const std::string stop = EncodeRankMessage(one);
  one.groups[0].samples[0].end = SampleEnd::kAborted;
  std::string flagged = EncodeRankMessage(one);
  ASSERT_EQ(flagged.size(), stop.size());
  size_t flags_at = 0, differing = 0;
  for (size_t i = 0; i < stop.size(); ++i)
    if (stop[i] != flagged[i]) flags_at = i, ++differing;
  ASSERT_EQ(differing, 1u);
  EXPECT_EQ(static_cast<uint8_t>(flagged[flags_at]), 4u << 3);
  flagged[flags_at] = static_cast<char>(7 << 3);
  EXPECT_EQ(
      DecodeRankMessage(flagged).status().message(),
      "rank message: a sample's flags (56) at byte " + std::to_string(flags_at) + " are not valid");
  // A count far beyond what the bytes can hold is refused before anything is allocated.
  std::string huge = EncodeRankMessage(RankMessage{});
  const size_t groups_at = 4 + 1 + 8 + 8 + 1 + 8 + 8;  // after the policy version
  for (size_t i = 0; i < 8; ++i) huge[groups_at + i] = static_cast<char>(0xff);
  EXPECT_EQ(DecodeRankMessage(huge).status().code(), StatusCode::kCorrupt);
}

// What fuzz/rank_messages_fuzz runs against (learner/rank_message_codec.h): prompt embeddings of
// shape [-1, 0] passed as "0 elements" and torch::from_blob threw c10::Error through
// DecodeRankMessage; policy version runs of INT64_MAX tokens overflowed their sum. Both are
// Corrupt now, naming the byte.
TEST(RankMessages, ImpossibleShapesAndRunsAreCorruptNotExceptions) {
  rank_codec::Writer w;
  w.Put<uint32_t>(rank_codec::kMagic);
  w.Put<uint8_t>(static_cast<uint8_t>(RankMessageKind::kPolicyStep));
  w.Put<int64_t>(1);                    // step
  w.Put<int64_t>(0);                    // sft_step
  w.Put<uint8_t>(0);                    // sft_done
  w.PutString("");                      // resume_dir
  w.Put<int64_t>(3);                    // policy_version
  w.Put<uint64_t>(1);                   // one group
  w.Put<uint64_t>(7);                   // group_id
  w.PutVector(std::vector<int32_t>{});  // prompt
  w.Put<int32_t>(9);                    // placeholder_token_id
  w.Put<uint64_t>(0);                   // no samples
  w.Put<int8_t>(static_cast<int8_t>(torch::kBFloat16));
  std::string bytes = w.Take();
  const size_t shape_at = bytes.size();
  rank_codec::Writer rest;
  rest.PutVector(std::vector<int64_t>{-1, 0});
  rest.PutVector(std::vector<float>{});
  rest.Put<uint64_t>(0);  // pairs
  rest.Put<uint64_t>(0);  // sft
  bytes += rest.Take();
  auto d = DecodeRankMessage(bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(d.status().message(), "rank message: prompt embeddings at byte " +
                                      std::to_string(shape_at) +
                                      " are not a [rows, hidden] floating-point matrix");

  RankMessage m;
  m.kind = RankMessageKind::kPolicyStep;
  m.groups.resize(1);
  m.groups[0].samples.resize(1);
  m.groups[0].samples[0].tokens = {1, 2, 3};
  m.groups[0].samples[0].behaviour_logprobs = {-1, -1, -1};
  m.groups[0].samples[0].versions = {{1, INT64_MAX}, {2, INT64_MAX}};
  auto runs = DecodeRankMessage(EncodeRankMessage(m));
  ASSERT_FALSE(runs.ok());
  EXPECT_NE(runs.status().message().find("a sample's policy versions at byte"), std::string::npos)
      << runs.status().message();
  EXPECT_NE(runs.status().message().find("do not cover its 3 tokens"), std::string::npos)
      << runs.status().message();
}

}  // namespace
}  // namespace chainrl::learner
