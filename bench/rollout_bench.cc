// `chainrl bench rollout`: the rollout engine's speed-ups measured side by side in one run on a
// small random Qwen2-style model: KV cache vs recomputing the prefix, group prefix sharing vs
// separate prefills, continuous vs static batching on a long-tailed length distribution, segment
// rollout vs synchronous full rollouts, and decode tokens/s against the memory-bandwidth limit.
// The last line is one JSON object.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "core/stopwatch.h"
#include "model/model_io.h"
#include "rollout/engine.h"

namespace chainrl::app {
namespace {

using Clock = std::chrono::steady_clock;
using rollout::EngineOptions;
using rollout::FinishReason;
using rollout::GenerationRequest;
using rollout::RolloutEngine;

struct BenchConfig {
  int64_t layers = 4, hidden = 256, heads = 8, kv_heads = 4, intermediate = 768, vocab = 4096;
  int64_t kv_new_tokens = 512, kv_prompt = 128;
  int64_t group = 8, prompt = 1024, group_new = 64;
  int64_t requests = 256, slots = 16, median_len = 24;
  int64_t steps = 8, warmup_steps = 8, segment = 64, call_factor = 4, kv_stash_mb = 256;
  int64_t segment_group = 8;   // samples per prompt in the segment comparison (a GRPO group)
  double min_occupancy = 1.0;  // segmented calls end once a slot would idle with nothing waiting
  int64_t repeats = 5;  // prefix and segment comparisons: alternate runs, best time of each kept
  uint64_t seed = 1;
  std::string dtype = "float32";
};

std::shared_ptr<model::DecoderModel> MakeModel(const BenchConfig& c) {
  model::ModelConfig m;
  m.arch = model::Architecture::kQwen2;
  m.vocab_size = c.vocab;
  m.hidden_size = c.hidden;
  m.intermediate_size = c.intermediate;
  m.num_hidden_layers = c.layers;
  m.num_attention_heads = c.heads;
  m.num_key_value_heads = c.kv_heads;
  m.head_dim = c.hidden / c.heads;
  m.max_position_embeddings = 8192;
  m.tie_word_embeddings = true;
  auto dtype = model::ParseTorchDtype(c.dtype);
  auto model = std::make_shared<model::DecoderModel>(
      m, model::ModelOptions().set_dtype(dtype.ok() ? *dtype : torch::kFloat));
  model->InitWeights(c.seed);
  return model;
}

GenerationRequest Request(std::string id, std::vector<int32_t> prompt, int64_t n, uint64_t seed) {
  GenerationRequest r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.max_new_tokens = n;
  r.sampling.seed = seed;
  return r;
}

std::vector<int32_t> Prompt(int64_t len, int64_t vocab, uint64_t salt) {
  std::vector<int32_t> p(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i)
    p[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + salt * 104729) % vocab);
  return p;
}

EngineOptions Engine(int64_t slots, int64_t max_len) {
  EngineOptions o;
  o.max_batch = slots;
  o.max_seq_len = max_len;
  o.repetition_detection = false;
  return o;
}

// 1. KV cache vs recomputing the whole prefix for every new token (greedy, one sequence).
nlohmann::json KvCacheBench(const std::shared_ptr<model::DecoderModel>& m, const BenchConfig& c) {
  torch::NoGradGuard g;
  auto prompt = Prompt(c.kv_prompt, c.vocab, 1);
  auto req = Request("kv", prompt, c.kv_new_tokens, 0);
  req.sampling.temperature = 0;
  RolloutEngine engine(m, Engine(1, c.kv_prompt + c.kv_new_tokens));
  auto t0 = Clock::now();
  auto cached = engine.Generate({req});
  double cached_s = SecondsSince(t0);
  std::vector<int64_t> seq(prompt.begin(), prompt.end());
  std::vector<int32_t> recomputed;
  t0 = Clock::now();
  for (int64_t i = 0; i < c.kv_new_tokens; ++i) {
    auto ids = torch::tensor(seq, torch::kLong).unsqueeze(0);
    auto h = m->Forward(ids);
    auto tok = m->Logits(h.select(1, h.size(1) - 1)).argmax(-1).item<int64_t>();
    seq.push_back(tok);
    recomputed.push_back(static_cast<int32_t>(tok));
  }
  double recompute_s = SecondsSince(t0);
  bool same = cached.ok() && (*cached)[0].tokens == recomputed;
  std::printf(
      "kv cache: %lld tokens cached %.3f s, recomputed %.3f s, speed-up %.1fx, same tokens %s\n",
      static_cast<long long>(c.kv_new_tokens), cached_s, recompute_s, recompute_s / cached_s,
      same ? "yes" : "NO");
  return {{"cached_seconds", cached_s},
          {"recompute_seconds", recompute_s},
          {"speedup", recompute_s / cached_s},
          {"same_tokens", same}};
}

// 2. One group of G samples: prompt prefilled once (KV copied) vs once per sample.
nlohmann::json PrefixBench(const std::shared_ptr<model::DecoderModel>& m, const BenchConfig& c) {
  auto prompt = Prompt(c.prompt, c.vocab, 2);
  std::vector<GenerationRequest> group;
  for (int64_t g = 0; g < c.group; ++g)
    group.push_back(Request("g" + std::to_string(g), prompt, c.group_new, 100 + g));
  // Shared and separate alternate, `repeats` times each; the best time of each is kept (a run is
  // deterministic, so only the machine's noise differs between repeats).
  double secs[2] = {1e30, 1e30};
  for (int64_t rep = 0; rep < std::max<int64_t>(1, c.repeats); ++rep) {
    for (int shared = 1; shared >= 0; --shared) {
      auto o = Engine(c.group, c.prompt + c.group_new);
      o.share_prefix = shared;
      RolloutEngine engine(m, o);
      auto t0 = Clock::now();
      auto r = engine.Generate(group);
      secs[shared] = std::min(secs[shared], SecondsSince(t0));
      if (!r.ok()) std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    }
  }
  std::printf(
      "prefix sharing: G=%lld, %lld-token prompt, %lld new: shared %.3f s, separate %.3f s, "
      "speed-up %.2fx\n",
      static_cast<long long>(c.group), static_cast<long long>(c.prompt),
      static_cast<long long>(c.group_new), secs[1], secs[0], secs[0] / secs[1]);
  return {
      {"shared_seconds", secs[1]}, {"separate_seconds", secs[0]}, {"speedup", secs[0] / secs[1]}};
}

// Lognormal lengths with the given median, capped at 16x the median.
std::vector<int64_t> TailLengths(int64_t n, int64_t median, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> d(std::log(static_cast<double>(median)), 1.0);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back(std::clamp<int64_t>(static_cast<int64_t>(d(rng)), 1, 16 * median));
  return out;
}

// Decode slots that sampled a token, per slot and decode step.
double Occupancy(const rollout::EngineStats& st) {
  return static_cast<double>(st.generated_tokens - st.prefill_sampled) /
         static_cast<double>(std::max<int64_t>(1, st.slot_steps));
}

// 3. Continuous vs static batching on long-tailed lengths: useful tokens per second.
nlohmann::json BatchingBench(const std::shared_ptr<model::DecoderModel>& m, const BenchConfig& c) {
  auto lens = TailLengths(c.requests, c.median_len, c.seed);
  std::vector<GenerationRequest> reqs;
  int64_t total = 0;
  for (int64_t i = 0; i < c.requests; ++i) {
    reqs.push_back(Request("b" + std::to_string(i), Prompt(32, c.vocab, 3 + i),
                           lens[static_cast<size_t>(i)], i));
    total += lens[static_cast<size_t>(i)];
  }
  double tps[2];
  for (int cont = 1; cont >= 0; --cont) {
    auto o = Engine(c.slots, 32 + 16 * c.median_len + 1);
    o.continuous_batching = cont;
    RolloutEngine engine(m, o);
    auto t0 = Clock::now();
    auto r = engine.Generate(reqs);
    double s = SecondsSince(t0);
    tps[cont] = total / s;
    std::printf("  %s batching: %lld tokens in %.3f s (%.0f tokens/s, slot occupancy %.2f)\n",
                cont ? "continuous" : "static", static_cast<long long>(total), s, tps[cont],
                Occupancy(engine.stats()));
  }
  std::printf(
      "continuous batching: %.2fx useful tokens/s over static (%lld requests, median %lld, "
      "max %lld tokens)\n",
      tps[1] / tps[0], static_cast<long long>(c.requests), static_cast<long long>(c.median_len),
      static_cast<long long>(*std::max_element(lens.begin(), lens.end())));
  return {{"continuous_tokens_per_second", tps[1]},
          {"static_tokens_per_second", tps[0]},
          {"speedup", tps[1] / tps[0]}};
}

// 4. Segment rollout vs synchronous full rollouts on an RL workload: groups of `segment_group`
// samples per prompt (GRPO), long-tailed response lengths. Each training step needs `slots`
// finished samples. Synchronous: every step generates its samples to the end, so the slots idle
// while the longest sample finishes. Segment: every step decodes at most `segment` tokens per
// sequence over carried-over unfinished samples plus new ones, delivering whatever finished; a step
// also ends once nothing waits and fewer than `min_occupancy` of the slots are busy (the busy
// samples carry over with their KV kept), instead of idling the other slots while they finish
// their segments. Both run until the same number of samples has been delivered; tokens delivered
// per second are compared (best of `repeats` alternating runs of each).
//
// A run of many steps is what segmenting is for, so the headline figure is its steady state: the
// segmented run first takes `warmup_steps` untimed steps that fill the carry-over pool (what a run
// that has been going for a while holds), then is timed while it delivers the samples. Delivered
// tokens then include tokens generated before the window for samples carried into it, balanced by
// the tokens of samples still carried at its end (both printed). The cold start (an empty pool,
// samples still in flight at the end counted as nothing) is printed beside it.
nlohmann::json SegmentBench(const std::shared_ptr<model::DecoderModel>& m, const BenchConfig& c) {
  const int64_t per_step = c.slots, needed = c.steps * per_step;
  auto lens = TailLengths((c.steps + c.warmup_steps) * per_step * 4, c.median_len, c.seed + 7);
  auto make = [&](int64_t i) {
    return Request("s" + std::to_string(i), Prompt(32, c.vocab, 50 + i / c.segment_group),
                   lens[static_cast<size_t>(i) % lens.size()], 1000 + i);
  };
  const int64_t max_len = 32 + 16 * c.median_len + 1;
  struct Run {
    int64_t tokens = 0;
    double seconds = 1e30;
    rollout::EngineStats stats;
    int64_t carried_in = 0, carried_out = 0;  // tokens of carried samples at the window's ends
  };
  // Synchronous: each step's samples generated to the end.
  auto synchronous = [&]() {
    Run run;
    RolloutEngine engine(m, Engine(c.slots, max_len));
    auto t0 = Clock::now();
    for (int64_t step = 0; step < c.steps; ++step) {
      std::vector<GenerationRequest> reqs;
      for (int64_t k = 0; k < per_step; ++k) reqs.push_back(make(step * per_step + k));
      auto r = engine.Generate(reqs);
      for (const auto& x : *r) run.tokens += static_cast<int64_t>(x.tokens.size());
    }
    run.seconds = SecondsSince(t0);
    run.stats = engine.stats();
    return run;
  };
  // Segmented: carried-over samples plus new ones, several times the slots, so that slots freed
  // early are refilled within the step; finished samples are delivered. `warmup` untimed steps
  // first.
  auto segmented = [&](int64_t warmup) {
    Run run;
    auto eo = Engine(c.slots, max_len);
    eo.kv_stash_bytes = c.kv_stash_mb << 20;
    eo.segment_min_occupancy = c.min_occupancy;
    RolloutEngine engine(m, eo);
    std::vector<GenerationRequest> pool;  // unfinished, carried over
    int64_t delivered = 0, next = 0;
    auto carried = [&] {
      int64_t n = 0;
      for (const auto& r : pool) n += static_cast<int64_t>(r.carried.size());
      return n;
    };
    auto t0 = Clock::now();
    for (int64_t step = 0; delivered < needed; ++step) {
      const bool timed = step >= warmup;
      if (step == warmup) {  // the window starts: its own clock and engine statistics
        t0 = Clock::now();
        engine.ResetStats();
        run.carried_in = carried();
      }
      std::vector<GenerationRequest> reqs = pool;
      while (static_cast<int64_t>(reqs.size()) < c.call_factor * c.slots)
        reqs.push_back(make(next++));
      for (auto& r : reqs) r.segment_tokens = c.segment;
      auto res = engine.Generate(reqs);
      pool.clear();
      for (size_t i = 0; i < reqs.size(); ++i) {
        auto& x = (*res)[i];
        if (x.finish == FinishReason::kUnfinished) {
          GenerationRequest cont = reqs[i];
          cont.carried.insert(cont.carried.end(), x.tokens.begin(), x.tokens.end());
          pool.push_back(std::move(cont));
        } else if (timed) {
          ++delivered;
          run.tokens += static_cast<int64_t>(reqs[i].carried.size() + x.tokens.size());
        }
      }
    }
    run.seconds = SecondsSince(t0);
    run.stats = engine.stats();
    run.carried_out = carried();
    return run;
  };
  // Alternating repeats, the best time of each mode kept (the token counts are deterministic).
  Run sync, seg, cold;
  for (int64_t rep = 0; rep < std::max<int64_t>(1, c.repeats); ++rep) {
    Run a = synchronous();
    if (a.seconds < sync.seconds) sync = a;
    Run b = segmented(c.warmup_steps);
    if (b.seconds < seg.seconds) seg = b;
    Run z = segmented(0);
    if (z.seconds < cold.seconds) cold = z;
  }
  const double sync_tps = sync.tokens / sync.seconds, seg_tps = seg.tokens / seg.seconds,
               cold_tps = cold.tokens / cold.seconds;
  std::printf(
      "segment rollout: %lld samples delivered (groups of %lld); synchronous %lld tokens in "
      "%.3f s (%.0f/s), segmented (%lld tokens per segment, steps end below %.2f occupancy, "
      "steady state after %lld steps) %lld tokens in %.3f s (%.0f/s): %.2fx\n",
      static_cast<long long>(needed), static_cast<long long>(c.segment_group),
      static_cast<long long>(sync.tokens), sync.seconds, sync_tps,
      static_cast<long long>(c.segment), c.min_occupancy, static_cast<long long>(c.warmup_steps),
      static_cast<long long>(seg.tokens), seg.seconds, seg_tps, seg_tps / sync_tps);
  std::printf(
      "  steady state: carried samples held %lld tokens at the start, %lld at the end; "
      "generated %lld tokens in the window (%.0f/s)\n",
      static_cast<long long>(seg.carried_in), static_cast<long long>(seg.carried_out),
      static_cast<long long>(seg.stats.generated_tokens), seg.stats.generated_tokens / seg.seconds);
  std::printf(
      "  cold start (empty pool; %lld tokens still in flight at the end not counted): "
      "%lld tokens in %.3f s (%.0f/s): %.2fx\n",
      static_cast<long long>(cold.carried_out), static_cast<long long>(cold.tokens), cold.seconds,
      cold_tps, cold_tps / sync_tps);
  // Decode slots sampling a token, per slot-step: synchronous steps idle while each step's
  // longest sample finishes. Idle slots cost no attention, so a step with few busy slots is
  // cheaper: the speed-up stays below the occupancy ratio.
  std::printf(
      "  slot occupancy: synchronous %.2f, segmented %.2f; samples carried over at a step's "
      "occupancy floor %lld; paused samples resumed in place %lld, from the KV stash %lld, "
      "prefilled again %lld; group members given a held prompt KV %lld\n",
      Occupancy(sync.stats), Occupancy(seg.stats), static_cast<long long>(seg.stats.segments_cut),
      static_cast<long long>(seg.stats.resumed), static_cast<long long>(seg.stats.restored),
      static_cast<long long>(seg.stats.reprefilled),
      static_cast<long long>(seg.stats.prompt_reused));
  for (const auto* st : {&sync.stats, &seg.stats})
    std::printf(
        "  %s: %lld decode steps in %.3f s (%.2f ms each), admissions %.3f s "
        "(%lld prefill tokens)\n",
        st == &sync.stats ? "synchronous" : "segmented", static_cast<long long>(st->decode_steps),
        st->decode_seconds, 1e3 * st->decode_seconds / std::max<int64_t>(1, st->decode_steps),
        st->prefill_seconds, static_cast<long long>(st->prefill_tokens));
  return {{"sync_tokens_per_second", sync_tps},
          {"segment_tokens_per_second", seg_tps},
          {"segment_generated_tokens_per_second", seg.stats.generated_tokens / seg.seconds},
          {"carried_tokens_at_start", seg.carried_in},
          {"carried_tokens_at_end", seg.carried_out},
          {"cold_start_tokens_per_second", cold_tps},
          {"cold_start_speedup", cold_tps / sync_tps},
          {"sync_slot_occupancy", Occupancy(sync.stats)},
          {"segment_slot_occupancy", Occupancy(seg.stats)},
          {"resumed_in_place", seg.stats.resumed},
          {"restored_from_stash", seg.stats.restored},
          {"prefilled_again", seg.stats.reprefilled},
          {"segments_cut", seg.stats.segments_cut},
          {"prompt_reused", seg.stats.prompt_reused},
          {"segment_group", c.segment_group},
          {"min_occupancy", c.min_occupancy},
          {"speedup", seg_tps / sync_tps}};
}

// 5. Decode tokens/s against the memory-bandwidth bound (weights read once per decode step).
nlohmann::json DecodeBench(const std::shared_ptr<model::DecoderModel>& m, const BenchConfig& c) {
  int64_t weight_bytes = 0;
  for (const auto& p : m->parameters()) weight_bytes += p.numel() * p.element_size();
  // Memory bandwidth: copying a buffer much larger than the caches (read + write).
  auto src = torch::ones({64 << 20}, torch::kFloat32), dst = torch::empty_like(src);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    auto t0 = Clock::now();
    dst.copy_(src);
    best = std::min(best, SecondsSince(t0));
  }
  double bandwidth = 2.0 * src.numel() * 4 / best;
  nlohmann::json out = {{"weight_bytes", weight_bytes}, {"memory_bandwidth_gbps", bandwidth / 1e9}};
  for (int64_t batch : {int64_t{1}, c.slots}) {
    std::vector<GenerationRequest> reqs;
    for (int64_t b = 0; b < batch; ++b)
      reqs.push_back(Request("d" + std::to_string(b), Prompt(8, c.vocab, b), 128, b));
    RolloutEngine engine(m, Engine(batch, 8 + 128));
    auto t0 = Clock::now();
    (void)engine.Generate(reqs);
    double tps = static_cast<double>(batch * 128) / SecondsSince(t0);
    double bound = bandwidth / static_cast<double>(weight_bytes) * static_cast<double>(batch);
    std::printf("decode batch %lld: %.0f tokens/s; bandwidth bound %.0f tokens/s (%.1f%%)\n",
                static_cast<long long>(batch), tps, bound, 100.0 * tps / bound);
    out["batch" + std::to_string(batch) + "_tokens_per_second"] = tps;
    out["batch" + std::to_string(batch) + "_bandwidth_bound_tokens_per_second"] = bound;
  }
  return out;
}

int RunRolloutBench(const std::vector<std::string>& argv) {
  BenchConfig c;
  bool quick = false;
  Args a(
      "chainrl bench rollout", "[options]",
      "Rollout engine speed-ups, measured side by side in one run on a random Qwen2-style model.");
  a.Option("layers", &c.layers, "decoder layers (4)");
  a.Option("hidden", &c.hidden, "hidden size (256)");
  a.Option("intermediate", &c.intermediate, "MLP intermediate size (768)");
  a.Option("vocab", &c.vocab, "vocabulary size (4096)");
  a.Option("kv-new-tokens", &c.kv_new_tokens, "new tokens of the KV-cache comparison (512)");
  a.Option("kv-prompt", &c.kv_prompt, "prompt tokens of the KV-cache comparison (128)");
  a.Option("prompt", &c.prompt, "prompt tokens of the prefix-sharing comparison (1024)");
  a.Option("group", &c.group, "group size G (8)");
  a.Option("requests", &c.requests, "requests of the batching comparison (256)");
  a.Option("slots", &c.slots, "decode slots (16)");
  a.Option("median", &c.median_len, "median response length of the long-tail workloads (24)");
  a.Option("steps", &c.steps, "training steps of the segment comparison (8)");
  a.Option(
      "warmup-steps", &c.warmup_steps,
      "untimed segment steps that fill the carry-over pool before the steady-state window (8)");
  a.Option("segment", &c.segment, "tokens per segment (64)");
  a.Option("kv-stash-mb", &c.kv_stash_mb,
           "KV stash of the segmented engine in MiB (256; 0: paused samples are prefilled again)");
  a.Option("repeats", &c.repeats,
           "alternating runs of the prefix and segment comparisons; best time of each kept (5)");
  a.Option("segment-group", &c.segment_group,
           "samples per prompt in the segment comparison (8, a GRPO group; 1: distinct prompts)");
  a.Option("min-occupancy", &c.min_occupancy,
           "segment steps end once nothing waits and fewer than this fraction of the slots are "
           "busy (1: once any slot would idle; 0: every sample runs to its segment end)");
  a.Option("call-factor", &c.call_factor,
           "segment steps take this many times the slots in requests (4)");
  a.Option("dtype", &c.dtype, "weights, compute and KV cache dtype (float32; bfloat16 as actors)");
  a.Flag("quick", &quick, "small sizes, for a smoke test");
  std::string only;
  a.Option("only", &only, "run one comparison: kv, prefix, batching, segment or decode (all)");
  return ParseAndRun(a, argv, [&] {
    if (quick) {
      c.layers = 2, c.hidden = 64, c.heads = 4, c.kv_heads = 2, c.intermediate = 128, c.vocab = 256;
      c.kv_new_tokens = 64, c.kv_prompt = 16, c.prompt = 128, c.group_new = 8, c.requests = 16,
      c.slots = 4;
      c.median_len = 6, c.steps = 2, c.warmup_steps = 2, c.segment = 8, c.repeats = 1;
    }
    // Each comparison: --only name, its details key, the headline key and the field it comes from.
    struct Comparison {
      std::string name, detail, headline, field;
      nlohmann::json (*run)(const std::shared_ptr<model::DecoderModel>&, const BenchConfig&);
    };
    const std::vector<Comparison> comparisons = {
        {"kv", "kv_cache", "kv_cache_speedup", "speedup", KvCacheBench},
        {"prefix", "prefix_sharing", "prefix_sharing_speedup", "speedup", PrefixBench},
        {"batching", "batching", "continuous_batching_speedup", "speedup", BatchingBench},
        {"segment", "segments", "segment_rollout_speedup", "speedup", SegmentBench},
        {"decode", "decode", "decode_tokens_per_second",
         "batch" + std::to_string(c.slots) + "_tokens_per_second", DecodeBench}};
    if (!only.empty() && std::none_of(comparisons.begin(), comparisons.end(),
                                      [&](const Comparison& x) { return x.name == only; }))
      return ReportError(InvalidArgument("--only '" + only +
                                         "': expected kv, prefix, batching, segment or decode"));
    if (c.segment_group < 1)
      return ReportError(InvalidArgument("--segment-group " + std::to_string(c.segment_group) +
                                         ": expected at least 1"));
    if (!(c.min_occupancy >= 0 && c.min_occupancy <= 1))
      return ReportError(InvalidArgument("--min-occupancy " + std::to_string(c.min_occupancy) +
                                         ": expected a fraction in [0, 1]"));
    if (auto d = model::ParseTorchDtype(c.dtype); !d.ok())
      return ReportError(d.status().WithPrefix("--dtype"));
    std::printf("model: qwen2, %s, %lld layers, hidden %lld, vocab %lld, %d threads\n",
                c.dtype.c_str(), static_cast<long long>(c.layers), static_cast<long long>(c.hidden),
                static_cast<long long>(c.vocab), at::get_num_threads());
    auto m = MakeModel(c);
    nlohmann::json j, details;
    j["bench"] = "rollout";
    for (const Comparison& x : comparisons) {
      if (!only.empty() && only != x.name) continue;
      details[x.detail] = x.run(m, c);
      j[x.headline] = details[x.detail][x.field];
    }
    j["details"] = details;
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("rollout", "rollout engine: KV cache, prefix sharing, batching, segments",
              RunRolloutBench);

}  // namespace chainrl::app
