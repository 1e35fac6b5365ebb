// `chainrl bench rewards`: per-sample cost of scoring through the isolated worker pool versus a
// direct in-process call of the same plugin, measured side by side. Last line: one JSON object.
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "rewards/plugin_loader.h"
#include "rewards/reward_pool.h"

namespace chainrl::app {
namespace {

using Clock = std::chrono::steady_clock;

std::string NextToExecutable(const std::string& file) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return file;
  std::string self(exe, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + file;
}

std::vector<rewards::RewardInput> MakeSamples(int64_t n, int64_t response_bytes) {
  std::vector<rewards::RewardInput> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    rewards::RewardInput& s = out[static_cast<size_t>(i)];
    s.example_id = "bench-" + std::to_string(i);
    s.prompt = "Compute " + std::to_string(i) + " + 1.";
    std::string body(static_cast<size_t>(response_bytes), 'r');
    for (size_t k = 64; k < body.size(); k += 65) body[k] = '\n';
    s.response = body + "\nso the answer is " + std::to_string(i + (i % 3 == 0 ? 2 : 1));
    s.token_ids.assign(static_cast<size_t>(response_bytes / 4), 17);
    s.answer_json = "\"" + std::to_string(i + 1) + "\"";
  }
  return out;
}

int RunRewardsBench(const std::vector<std::string>& argv) {
  std::string plugin;
  int64_t samples = 4000, batch_size = 8, response_bytes = 512, repeats = 3;
  Args args("chainrl bench rewards", "[options]",
            "Per-sample overhead of isolated (worker process) vs in-process reward plugin calls.");
  args.Option("plugin", &plugin,
              "plugin to score with (default: last_line_answer.so next to chainrl)")
      .Option("samples", &samples, "samples per measurement (default 4000)")
      .Option("batch-size", &batch_size, "samples per plugin call (default 8)")
      .Option("response-bytes", &response_bytes, "bytes of each response (default 512)")
      .Option("repeats", &repeats, "measurements of each path; the fastest is kept (default 3)");
  return ParseAndRun(args, argv, [&]() -> int {
    if (plugin.empty()) plugin = NextToExecutable("last_line_answer.so");
    if (samples < 1 || batch_size < 1 || response_bytes < 0 || repeats < 1)
      return ReportError(InvalidArgument("--samples, --batch-size, --repeats must be >= 1"));
    std::vector<rewards::RewardInput> inputs = MakeSamples(samples, response_bytes);

    // Direct: the plugin loaded into this process, called batch by batch.
    auto direct = rewards::LoadedPlugin::Open(plugin, "");
    if (!direct.ok()) return ReportError(direct.status());
    double checksum_direct = 0, best_direct = 1e300;
    for (int64_t r = 0; r < repeats; ++r) {
      double sum = 0;
      auto t0 = Clock::now();
      for (size_t b = 0; b < inputs.size(); b += static_cast<size_t>(batch_size)) {
        std::vector<rewards::RewardInput> batch(
            inputs.begin() + static_cast<std::ptrdiff_t>(b),
            inputs.begin() + static_cast<std::ptrdiff_t>(
                                 std::min(inputs.size(), b + static_cast<size_t>(batch_size))));
        for (const auto& o : (*direct)->Score(batch).outputs) sum += o.score;
      }
      best_direct = std::min(best_direct, std::chrono::duration<double>(Clock::now() - t0).count());
      checksum_direct = sum;
    }

    // Isolated: the same plugin through a RewardPool with one worker process.
    auto pool = rewards::RewardPool::Create(
        {rewards::RewardSpec().set_name("bench").set_kind("plugin").set_path(plugin).set_batch_size(
            static_cast<int>(batch_size))},
        rewards::PoolOptions().set_workers_per_plugin(1));
    if (!pool.ok()) return ReportError(pool.status());
    double checksum_pool = 0, best_pool = 1e300;
    for (int64_t r = 0; r < repeats; ++r) {
      auto t0 = Clock::now();
      auto res = (*pool)->Score(inputs);
      best_pool = std::min(best_pool, std::chrono::duration<double>(Clock::now() - t0).count());
      if (!res.ok()) return ReportError(res.status());
      double sum = 0;
      for (const auto& x : *res) sum += x.total;
      checksum_pool = sum;
    }
    if (checksum_pool != checksum_direct) {
      std::fprintf(stderr, "chainrl bench rewards: isolated and direct scores differ (%g vs %g)\n",
                   checksum_pool, checksum_direct);
      return kExitFailure;
    }
    double n = static_cast<double>(samples);
    double direct_us = best_direct * 1e6 / n, pool_us = best_pool * 1e6 / n;
    std::printf("plugin %s, %lld samples of %lld bytes, batch %lld, best of %lld\n", plugin.c_str(),
                static_cast<long long>(samples), static_cast<long long>(response_bytes),
                static_cast<long long>(batch_size), static_cast<long long>(repeats));
    std::printf("direct in-process: %9.3f us/sample\n", direct_us);
    std::printf("isolated (worker): %9.3f us/sample\n", pool_us);
    std::printf("overhead:          %9.3f us/sample (%.2fx)\n", pool_us - direct_us,
                direct_us > 0 ? pool_us / direct_us : 0.0);
    nlohmann::json j = {{"bench", "rewards"},
                        {"samples", samples},
                        {"batch_size", batch_size},
                        {"response_bytes", response_bytes},
                        {"direct_us_per_sample", direct_us},
                        {"isolated_us_per_sample", pool_us},
                        {"isolated_overhead_us_per_sample", pool_us - direct_us},
                        {"mean_score", checksum_pool / n}};
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("rewards", "isolated vs in-process reward plugin overhead per sample",
              RunRewardsBench);

}  // namespace chainrl::app
