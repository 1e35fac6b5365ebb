// `chainrl bench embeddings`: prompts carrying precomputed input embeddings (a safetensors file per
// prompt), generated as G samples over 2 segments with the weights changing in between, with the
// prompt-embedding cache (one load per prompt, shared by the samples, the re-prefill of the second
// segment and the learner's prefill) vs without (each sample loads its own copy for every prefill).
// The last line is one JSON object.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "core/stopwatch.h"
#include "model/safetensors.h"
#include "rollout/embedding_cache.h"
#include "rollout/engine.h"

namespace chainrl::app {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct EmbedBenchConfig {
  int64_t layers = 4, hidden = 256, heads = 8, kv_heads = 4, intermediate = 768, vocab = 4096;
  int64_t prompts = 4, group = 8, rows = 1024, text = 32, segment = 8;
  uint64_t seed = 1;
};

int RunEmbeddingsBench(const std::vector<std::string>& argv) {
  EmbedBenchConfig c;
  bool quick = false;
  Args a(
      "chainrl bench embeddings", "[options]",
      "Prompt-embedding cache vs a load per sample, side by side on a random Qwen2-style model.");
  a.Option("layers", &c.layers, "decoder layers (4)");
  a.Option("hidden", &c.hidden, "hidden size (256)");
  a.Option("prompts", &c.prompts, "prompts, each with its own embeddings file (4)");
  a.Option("group", &c.group, "samples per prompt G (8)");
  a.Option("rows", &c.rows, "embedding rows per prompt (placeholders) (1024)");
  a.Option("segment", &c.segment, "new tokens per segment; two segments (8)");
  a.Flag("quick", &quick, "small sizes, for a smoke test");
  return ParseAndRun(a, argv, [&]() -> int {
    if (quick) {
      c.layers = 2, c.hidden = 64, c.heads = 4, c.kv_heads = 2, c.intermediate = 128;
      c.vocab = 256, c.prompts = 2, c.group = 4, c.rows = 64, c.segment = 4;
    }
    model::ModelConfig mc;
    mc.arch = model::Architecture::kQwen2;
    mc.vocab_size = c.vocab;
    mc.hidden_size = c.hidden;
    mc.intermediate_size = c.intermediate;
    mc.num_hidden_layers = c.layers;
    mc.num_attention_heads = c.heads;
    mc.num_key_value_heads = c.kv_heads;
    mc.head_dim = c.hidden / c.heads;
    mc.max_position_embeddings = 8192;
    mc.tie_word_embeddings = true;
    auto m = std::make_shared<model::DecoderModel>(mc);
    m->InitWeights(c.seed);
    const int32_t placeholder = static_cast<int32_t>(c.vocab - 1);

    // One embeddings file per prompt (as a dataset would ship encoder outputs).
    const fs::path dir =
        fs::temp_directory_path() / ("chainrl_bench_embeddings_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::vector<rollout::EmbeddingRef> refs;
    torch::manual_seed(c.seed);
    for (int64_t p = 0; p < c.prompts; ++p) {
      const std::string file = (dir / ("prompt" + std::to_string(p) + ".safetensors")).string();
      Status st = model::SaveSafetensors(file, {{"embeds", torch::randn({c.rows, c.hidden})}});
      if (!st.ok()) return ReportError(st);
      refs.push_back({file, "embeds"});
    }
    auto request = [&](int64_t p, int64_t g) {
      rollout::GenerationRequest r;
      r.id = "p" + std::to_string(p) + "g" + std::to_string(g);
      for (int64_t t = 0; t < c.text; ++t)
        r.prompt.push_back(static_cast<int32_t>((t * 7919 + p * 104729) % (c.vocab - 1)));
      r.prompt.insert(r.prompt.begin() + c.text / 2, static_cast<size_t>(c.rows), placeholder);
      r.max_new_tokens = 2 * c.segment;
      r.segment_tokens = c.segment;
      r.sampling.seed = static_cast<uint64_t>(p * 1000 + g);
      r.embeddings = refs[static_cast<size_t>(p)];
      r.placeholder_token_id = placeholder;
      return r;
    };
    rollout::EngineOptions eo;
    eo.max_batch = c.group;
    eo.max_seq_len = c.text + c.rows + 2 * c.segment + 1;
    eo.repetition_detection = false;
    const auto cache_options =
        rollout::EmbeddingCacheOptions().set_hidden_size(c.hidden).set_max_bytes(int64_t{1} << 32);

    // With the cache: per prompt, G samples in one call (prefix shared), weights "change", the
    // second segment re-prefills every sample; then the learner's prefill fetches it once more.
    auto cache = std::make_shared<rollout::EmbeddingCache>(cache_options);
    eo.embedding_cache = cache;
    double cached_s = 0, cached_lookup_s = 0;
    int64_t cached_prefill_tokens = 0;
    std::vector<std::vector<int32_t>> cached_tokens;
    for (int64_t p = 0; p < c.prompts; ++p) {
      rollout::RolloutEngine engine(m, eo);
      std::vector<rollout::GenerationRequest> reqs;
      for (int64_t g = 0; g < c.group; ++g) reqs.push_back(request(p, g));
      std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(c.group));
      auto t0 = Clock::now();
      for (int seg = 0; seg < 2; ++seg) {
        if (seg == 1) engine.InvalidateKeptKv();
        auto res = engine.Generate(reqs);
        if (!res.ok()) return ReportError(res.status());
        for (int64_t g = 0; g < c.group; ++g) {
          auto& t = tokens[static_cast<size_t>(g)];
          t.insert(t.end(), (*res)[static_cast<size_t>(g)].tokens.begin(),
                   (*res)[static_cast<size_t>(g)].tokens.end());
          reqs[static_cast<size_t>(g)].carried = t;
        }
      }
      cached_s += SecondsSince(t0);
      auto t1 = Clock::now();
      if (auto e = cache->Get(refs[static_cast<size_t>(p)]); !e.ok())
        return ReportError(e.status());
      cached_lookup_s += SecondsSince(t1);
      cached_prefill_tokens += engine.stats().prefill_tokens;
      for (auto& t : tokens) cached_tokens.push_back(std::move(t));
    }
    const auto stats = cache->stats();

    // Without: every sample's prefill (segment 1, segment 2) and the learner's load their own copy
    // (a fresh cache each time), so nothing is shared.
    double plain_s = 0, plain_lookup_s = 0;
    int64_t plain_prefill_tokens = 0, plain_loads = 0;
    size_t same = 0, k = 0;
    for (int64_t p = 0; p < c.prompts; ++p) {
      for (int64_t g = 0; g < c.group; ++g) {
        auto req = request(p, g);
        std::vector<int32_t> tokens;
        auto t0 = Clock::now();
        for (int seg = 0; seg < 2; ++seg) {
          eo.embedding_cache = std::make_shared<rollout::EmbeddingCache>(cache_options);
          rollout::RolloutEngine engine(m, eo);
          auto res = engine.Generate({req});
          if (!res.ok()) return ReportError(res.status());
          plain_loads += eo.embedding_cache->stats().misses;
          plain_prefill_tokens += engine.stats().prefill_tokens;
          tokens.insert(tokens.end(), (*res)[0].tokens.begin(), (*res)[0].tokens.end());
          req.carried = tokens;
        }
        plain_s += SecondsSince(t0);
        auto t1 = Clock::now();
        auto e = rollout::LoadEmbeddings(refs[static_cast<size_t>(p)], c.hidden);
        if (!e.ok()) return ReportError(e.status());
        plain_lookup_s += SecondsSince(t1);
        ++plain_loads;
        same += tokens == cached_tokens[k++] ? 1 : 0;
      }
    }
    fs::remove_all(dir);

    const double lookups = static_cast<double>(stats.hits + stats.misses);
    nlohmann::json j;
    j["bench"] = "embeddings";
    j["prompts"] = c.prompts;
    j["group"] = c.group;
    j["segments"] = 2;
    j["rows"] = c.rows;
    j["hidden"] = c.hidden;
    j["embedding_bytes_per_prompt"] = c.rows * c.hidden * 4;
    j["cached_generate_seconds"] = cached_s;
    j["uncached_generate_seconds"] = plain_s;
    j["speedup"] = plain_s / cached_s;
    j["cached_learner_lookup_seconds"] = cached_lookup_s;
    j["uncached_learner_load_seconds"] = plain_lookup_s;
    j["cached_prefill_tokens"] = cached_prefill_tokens;
    j["uncached_prefill_tokens"] = plain_prefill_tokens;
    j["cache_loads"] = stats.misses;
    j["cache_hits"] = stats.hits;
    j["hit_rate"] = lookups > 0 ? static_cast<double>(stats.hits) / lookups : 0.0;
    j["uncached_loads"] = plain_loads;
    j["same_tokens"] = same == cached_tokens.size();
    std::printf(
        "with cache: %.3f s generate, %lld prefill tokens, %lld loads, %lld hits; without: %.3f s, "
        "%lld prefill tokens, %lld loads; speed-up %.2fx; same tokens %s\n",
        cached_s, static_cast<long long>(cached_prefill_tokens),
        static_cast<long long>(stats.misses), static_cast<long long>(stats.hits), plain_s,
        static_cast<long long>(plain_prefill_tokens), static_cast<long long>(plain_loads),
        plain_s / cached_s, same == cached_tokens.size() ? "yes" : "NO");
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("embeddings", "prompt-embedding cache: one load per prompt vs a load per sample",
              RunEmbeddingsBench);

}  // namespace chainrl::app
