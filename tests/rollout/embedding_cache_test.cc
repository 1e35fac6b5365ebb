// The prompt-embedding cache and its splice into the prompt: byte-bounded LRU with exact counts,
// one load per prompt across a group's samples and later segments, the splice against a forward
// built by hand, generation that depends on the embeddings, the learner's recomputed logprobs equal
// to the engine's behaviour logprobs, and errors that name the file and tensor.
#include "rollout/embedding_cache.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/metrics.h"
#include "learner/optimizer.h"
#include "learner/rl_step.h"
#include "model/safetensors.h"
#include "rollout/engine.h"
#include "tests/model/tiny_model.h"

namespace chainrl::rollout {
namespace {

namespace fs = std::filesystem;
using torch::Tensor;

constexpr int32_t kPlaceholder = 63;
constexpr int64_t kHidden = chainrl::testing::kTinyHidden;

fs::path TempDir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("chainrl_embcache_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

using chainrl::testing::TinyModel;

// Random rows [n, hidden] on the scale of the model's own embeddings.
Tensor RandomRows(int64_t n, uint64_t seed, int64_t hidden = kHidden) {
  torch::manual_seed(seed);
  return torch::randn({n, hidden}) * 0.5;
}

// --- Reference parsing ---------------------------------------------------------------------------

TEST(EmbeddingRefTest, ParsesResolvesAndRejects) {
  auto r = ParseEmbeddingRef("clips/a.safetensors#video_0", "/data/set");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->file, "/data/set/clips/a.safetensors");
  EXPECT_EQ(r->tensor, "video_0");
  EXPECT_EQ(r->ToString(), "/data/set/clips/a.safetensors#video_0");
  r = ParseEmbeddingRef("/abs/./x/../b.safetensors#t", "/data/set");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->file, "/abs/b.safetensors");  // absolute: base ignored, normalised
  r = ParseEmbeddingRef("odd#dir/c.safetensors#name", "");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->file, "odd#dir/c.safetensors");  // the last '#' separates the name
  EXPECT_EQ(r->tensor, "name");
  for (const char* bad : {"no_hash.safetensors", "#tensor", "file.safetensors#"}) {
    auto e = ParseEmbeddingRef(bad, "/base");
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find(bad), std::string::npos) << e.status().ToString();
  }
}

// --- The cache -----------------------------------------------------------------------------------

// Four tensors of 2, 3, 1 and 4 rows of 4 floats: 32, 48, 16 and 64 bytes.
struct Files {
  fs::path dir;
  std::string file;
  std::map<std::string, Tensor> tensors;
};
Files FourTensors(const std::string& name) {
  Files f;
  f.dir = TempDir(name);
  f.file = (f.dir / "e.safetensors").string();
  f.tensors = {{"a", RandomRows(2, 1, 4)},
               {"b", RandomRows(3, 2, 4)},
               {"c", RandomRows(1, 3, 4)},
               {"d", RandomRows(4, 4, 4)}};
  model::TensorMap m(f.tensors.begin(), f.tensors.end());
  EXPECT_TRUE(model::SaveSafetensors(f.file, m).ok());
  return f;
}

TEST(EmbeddingCacheTest, EvictsLeastRecentlyUsedByBytesWithExactCounts) {
  Files f = FourTensors("lru");
  EmbeddingCache cache(EmbeddingCacheOptions().set_hidden_size(4).set_max_bytes(100));
  auto get = [&](const char* name) {
    auto t = cache.Get({f.file, name});
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    if (t.ok()) {
      EXPECT_TRUE(torch::equal(*t, f.tensors[name])) << name;
    }
  };
  get("a");  // miss: 32
  get("b");  // miss: 80
  get("a");  // hit; LRU order now a, b
  get("c");  // miss: 96 <= 100
  EXPECT_EQ(cache.stats().bytes, 96);
  EXPECT_EQ(cache.stats().evictions, 0);
  get("d");  // miss: 96 + 64 > 100 -> evict b (80 + 64 > 100) -> evict a (48 + 64 <= 100)
  auto s = cache.stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 4);
  EXPECT_EQ(s.evictions, 2);
  EXPECT_EQ(s.bytes, 16 + 64);
  EXPECT_EQ(s.entries, 2);
  EXPECT_FALSE(cache.Contains({f.file, "a"}));
  EXPECT_FALSE(cache.Contains({f.file, "b"}));
  EXPECT_TRUE(cache.Contains({f.file, "c"}));
  EXPECT_TRUE(cache.Contains({f.file, "d"}));
  get("c");  // hit; order c, d
  get("a");  // miss: 80 + 32 > 100 -> evict d -> 16 + 32
  s = cache.stats();
  EXPECT_EQ(s.hits, 2);
  EXPECT_EQ(s.misses, 5);
  EXPECT_EQ(s.evictions, 3);
  EXPECT_EQ(s.bytes, 48);
  EXPECT_TRUE(cache.Contains({f.file, "c"}));
  EXPECT_FALSE(cache.Contains({f.file, "d"}));
  // A tensor handed out outlives its eviction.
  auto held = cache.Get({f.file, "b"});  // miss: 48 + 48 <= 100, nothing evicted
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(cache.stats().bytes, 96);
  EXPECT_EQ(cache.stats().evictions, 3);
  cache.Clear();
  EXPECT_EQ(cache.stats().bytes, 0);
  EXPECT_TRUE(torch::equal(*held, f.tensors["b"]));
}

TEST(EmbeddingCacheTest, ExportsHitsMissesAndBytes) {
  Files f = FourTensors("metrics");
  auto registry = metrics::MetricsRegistry::Create(
      metrics::MetricsOptions().set_run_id("t").set_role("actor").set_serve(false));
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EmbeddingCache cache(
      EmbeddingCacheOptions().set_hidden_size(4).set_max_bytes(1000).set_metrics(registry->get()));
  const metrics::Labels label = {{"cache", "prompt_embeddings"}};
  auto& reg = **registry;
  EXPECT_EQ(reg.gauge(metrics::GaugeId::kCacheBytes, label).Value(), 0);
  ASSERT_TRUE(cache.Get({f.file, "a"}).ok());
  ASSERT_TRUE(cache.Get({f.file, "a"}).ok());
  ASSERT_TRUE(cache.Get({f.file, "a"}).ok());
  ASSERT_TRUE(cache.Get({f.file, "d"}).ok());
  EXPECT_EQ(reg.counter(metrics::CounterId::kCacheHits, label).Value(), 2);
  EXPECT_EQ(reg.counter(metrics::CounterId::kCacheMisses, label).Value(), 2);
  EXPECT_EQ(reg.gauge(metrics::GaugeId::kCacheBytes, label).Value(), 32 + 64);
  // The exposition carries the series (labels in any order after the metric name).
  const std::string scrape = reg.Scrape();
  bool found = false;
  for (size_t at = scrape.find("\nchainrl_cache_bytes{"); at != std::string::npos;
       at = scrape.find("\nchainrl_cache_bytes{", at + 1)) {
    const std::string line = scrape.substr(at + 1, scrape.find('\n', at + 1) - at - 1);
    found |= line.find("cache=\"prompt_embeddings\"") != std::string::npos &&
             line.substr(line.rfind(' ') + 1) == "96";
  }
  EXPECT_TRUE(found) << scrape;
}

TEST(EmbeddingCacheTest, ConcurrentLookupsOfOneKeyLoadOnce) {
  Files f = FourTensors("threads");
  EmbeddingCache cache(EmbeddingCacheOptions().set_hidden_size(4));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] { ok += cache.Get({f.file, "d"}).ok() ? 1 : 0; });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(cache.stats().misses, 1);
  EXPECT_EQ(cache.stats().hits, 7);
  EXPECT_EQ(cache.stats().bytes, 64);
}

TEST(EmbeddingCacheTest, ComputesOnceOnAMiss) {
  EmbeddingCache cache(EmbeddingCacheOptions().set_hidden_size(4));
  int calls = 0;
  auto encoder = [&]() -> Result<Tensor> {
    ++calls;
    return RandomRows(5, 9, 4).to(torch::kDouble);  // converted to float32 on insertion
  };
  auto a = cache.GetOrCompute({"video.mp4", "encoder_v1"}, encoder);
  auto b = cache.GetOrCompute({"video.mp4", "encoder_v1"}, encoder);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(a->scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(*a, *b));
  EXPECT_EQ(cache.stats().bytes, 5 * 4 * 4);
}

TEST(EmbeddingCacheTest, EveryErrorNamesFileAndTensor) {
  fs::path dir = TempDir("errors");
  const std::string file = (dir / "e.safetensors").string();
  ASSERT_TRUE(model::SaveSafetensors(file, {{"ok", RandomRows(3, 1, 4)},
                                            {"rank3", torch::zeros({2, 2, 4})},
                                            {"wide", torch::zeros({2, 5})},
                                            {"ints", torch::zeros({2, 4}, torch::kInt32)},
                                            {"big", torch::zeros({64, 4})}})
                  .ok());
  const std::string garbage = (dir / "garbage.safetensors").string();
  std::ofstream(garbage) << "this is not a safetensors file";
  EmbeddingCache cache(EmbeddingCacheOptions().set_hidden_size(4).set_max_bytes(512));
  struct Case {
    EmbeddingRef ref;
    StatusCode code;
    const char* why;
  };
  const std::vector<Case> cases = {
      {{(dir / "missing.safetensors").string(), "ok"}, StatusCode::kNotFound, "no such file"},
      {{file, "absent"}, StatusCode::kNotFound, "no tensor named"},
      {{file, "rank3"}, StatusCode::kInvalidArgument, "rank 3"},
      {{file, "wide"}, StatusCode::kInvalidArgument, "hidden size 4"},
      {{file, "ints"}, StatusCode::kInvalidArgument, "not a floating type"},
      {{file, "big"}, StatusCode::kInvalidArgument, "exceed the whole cache budget of 512"},
      {{garbage, "ok"}, StatusCode::kCorrupt, ""},
  };
  for (const auto& c : cases) {
    auto r = cache.Get(c.ref);
    ASSERT_FALSE(r.ok()) << c.ref.ToString();
    const std::string msg = r.status().message();
    EXPECT_EQ(r.status().code(), c.code) << msg;
    EXPECT_NE(msg.find(c.ref.file), std::string::npos) << msg;
    EXPECT_NE(msg.find("'" + c.ref.tensor + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.why), std::string::npos) << msg;
  }
  EXPECT_EQ(cache.stats().entries, 0);  // failures cache nothing
  EXPECT_EQ(cache.stats().misses, static_cast<int64_t>(cases.size()));
  EXPECT_TRUE(cache.Get({file, "ok"}).ok());
}

// --- The splice ----------------------------------------------------------------------------------

// The reference: inputs_embeds built by hand (token embeddings, then rows written over the
// placeholders among the first `prompt_len` tokens one by one), run through every layer and the
// final norm.
Tensor ManualHidden(model::DecoderModel& m, const std::vector<int32_t>& ids, const Tensor& rows,
                    int32_t placeholder, size_t prompt_len) {
  torch::NoGradGuard g;
  const int64_t T = static_cast<int64_t>(ids.size());
  Tensor x =
      m.Embed(torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({1, T})).clone();
  int64_t j = 0;
  for (size_t t = 0; t < prompt_len; ++t)
    if (ids[t] == placeholder) x[0][static_cast<int64_t>(t)].copy_(rows[j++]);
  EXPECT_EQ(j, rows.size(0));
  model::LayerContext ctx = m.MakeContext(1, T, {}, {});
  for (int64_t l = 0; l < m.num_layers(); ++l) x = m.Layer(l, x, ctx);
  return m.FinalNorm(x);
}

model::EmbeddingSplice SpliceFor(const std::vector<int32_t>& ids, const Tensor& rows) {
  model::EmbeddingSplice s;
  s.index = torch::tensor(model::PlaceholderPositions(ids, kPlaceholder), torch::kLong);
  s.rows = rows;
  return s;
}

Tensor Ids(const std::vector<int32_t>& ids) {
  return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({1, -1});
}

const std::vector<int32_t> kPrompt = {
    1, 2, kPlaceholder, kPlaceholder, kPlaceholder, kPlaceholder, 4, 5, 6};

TEST(EmbeddingSpliceTest, EveryForwardPathMatchesAHandBuiltInput) {
  auto m = TinyModel();
  torch::NoGradGuard g;
  const Tensor rows = RandomRows(4, 7);
  const Tensor ref = ManualHidden(*m, kPrompt, rows, kPlaceholder, kPrompt.size());
  const auto splice = SpliceFor(kPrompt, rows);
  EXPECT_EQ(model::PlaceholderPositions(kPrompt, kPlaceholder), (std::vector<int64_t>{2, 3, 4, 5}));
  // Uncached forward.
  Tensor full = m->Forward(Ids(kPrompt), {}, {}, splice);
  EXPECT_LT((full - ref).abs().max().item<double>(), 1e-6);
  // The splice matters.
  EXPECT_GT((m->Forward(Ids(kPrompt)) - ref).abs().max().item<double>(), 1e-2);
  // Cached forward in two chunks (the placeholders straddle the boundary), row 1 of a batch of 2
  // whose row 0 has no placeholders.
  model::KvCache cache(m->config(), 2, 16, torch::kFloat32, torch::kCPU);
  const std::vector<int32_t> other = {7, 8, 9, 10, 11, 12, 13, 14, 15};
  std::vector<Tensor> parts;
  for (int64_t off : {0, 4}) {
    const int64_t T = off == 0 ? 4 : 5;
    std::vector<int64_t> ids, pos;
    for (const auto* seq : {&other, &kPrompt})
      for (int64_t t = 0; t < T; ++t) {
        ids.push_back((*seq)[static_cast<size_t>(off + t)]);
        pos.push_back(off + t);
      }
    model::EmbeddingSplice s;
    std::vector<int64_t> flat, picked;
    for (int64_t t = 0; t < T; ++t)
      if (kPrompt[static_cast<size_t>(off + t)] == kPlaceholder) {
        flat.push_back(1 * T + t);
        picked.push_back(off + t - 2);
      }
    s.index = torch::tensor(flat, torch::kLong);
    s.rows = rows.index_select(0, torch::tensor(picked, torch::kLong));
    parts.push_back(m->ForwardCached(torch::tensor(ids).view({2, T}),
                                     torch::tensor(pos).view({2, T}), cache, {}, s)[1]);
  }
  EXPECT_LT((torch::cat(parts).unsqueeze(0) - ref).abs().max().item<double>(), 1e-5);
  // The per-layer path the streaming learner uses.
  Tensor stream =
      learner::StreamHidden(*m, Ids(kPrompt), torch::ones({1, 9}, torch::kLong), 2, splice);
  EXPECT_LT((stream - ref).abs().max().item<double>(), 1e-5);
}

// --- The engine ----------------------------------------------------------------------------------

struct EngineFixture {
  std::shared_ptr<model::DecoderModel> model = TinyModel();
  fs::path dir;
  EmbeddingRef ref, ref2;
  Tensor rows, rows2;
  std::shared_ptr<EmbeddingCache> cache;
  explicit EngineFixture(const std::string& name) {
    dir = TempDir(name);
    rows = RandomRows(4, 11);
    rows2 = RandomRows(4, 12);
    const std::string file = (dir / "prompt_embeds.safetensors").string();
    EXPECT_TRUE(model::SaveSafetensors(file, {{"p0", rows}, {"p1", rows2}}).ok());
    ref = *ParseEmbeddingRef("prompt_embeds.safetensors#p0", dir.string());
    ref2 = *ParseEmbeddingRef("prompt_embeds.safetensors#p1", dir.string());
    cache = std::make_shared<EmbeddingCache>(
        EmbeddingCacheOptions().set_hidden_size(kHidden).set_max_bytes(1 << 20));
  }
  EngineOptions Opts(int64_t max_batch = 4) const {
    EngineOptions o;
    o.max_batch = max_batch;
    o.max_seq_len = 64;
    o.repetition_detection = false;
    o.prefill_chunk = 4;  // placeholders straddle prefill chunks
    o.embedding_cache = cache;
    return o;
  }
  GenerationRequest Req(std::string id, uint64_t seed, int64_t max_new, double temperature,
                        bool with_embeds = true) const {
    GenerationRequest r;
    r.id = std::move(id);
    r.prompt = kPrompt;
    r.max_new_tokens = max_new;
    r.sampling.seed = seed;
    r.sampling.temperature = temperature;
    if (with_embeds) {
      r.embeddings = ref;
      r.placeholder_token_id = kPlaceholder;
    }
    return r;
  }
};

// Greedy decoding by recomputing the hand-built forward every step.
std::vector<int32_t> GreedyReference(model::DecoderModel& m, std::vector<int32_t> seq,
                                     const Tensor& rows, int n) {
  const size_t prompt_len = seq.size();
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    Tensor h = ManualHidden(m, seq, rows, kPlaceholder, prompt_len);
    int32_t t = static_cast<int32_t>(m.Logits(h)[0][-1].argmax().item<int64_t>());
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

TEST(EngineEmbeddingsTest, GreedyEqualsTheHandBuiltReference) {
  EngineFixture f("greedy");
  RolloutEngine engine(f.model, f.Opts());
  auto res = engine.Generate({f.Req("a", 0, 12, 0.0)});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ((*res)[0].tokens, GreedyReference(*f.model, kPrompt, f.rows, 12));
}

TEST(EngineEmbeddingsTest, OneLoadPerPromptAcrossSamplesAndSegments) {
  EngineFixture f("counts");
  const int64_t G = 4, P = static_cast<int64_t>(kPrompt.size());
  // The whole responses in one call, for comparison.
  std::vector<GenerationRequest> whole;
  for (int64_t i = 0; i < G; ++i) whole.push_back(f.Req("s" + std::to_string(i), 100 + i, 10, 1.0));
  RolloutEngine one_call(f.model, f.Opts(G));
  auto full = one_call.Generate(whole);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(one_call.stats().prefill_tokens, P);  // the group's prompt prefilled once
  EXPECT_EQ(f.cache->stats().misses, 1);
  EXPECT_EQ(f.cache->stats().hits, 0);

  // Segments of 4 tokens (a fresh cache): the second resumes from kept KV (no lookup), the third
  // is prefilled again after the weights "changed" (one hit, not a load).
  f.cache = std::make_shared<EmbeddingCache>(
      EmbeddingCacheOptions().set_hidden_size(kHidden).set_max_bytes(1 << 20));
  RolloutEngine engine(f.model, f.Opts(G));
  std::vector<GenerationRequest> reqs = whole;
  for (auto& r : reqs) r.segment_tokens = 4;
  std::vector<std::vector<int32_t>> tokens(G);
  std::vector<std::vector<float>> logprobs(G);
  for (int seg = 0; seg < 3; ++seg) {
    if (seg == 2) engine.InvalidateKeptKv();
    auto res = engine.Generate(reqs);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    for (int64_t i = 0; i < G; ++i) {
      const auto& r = (*res)[static_cast<size_t>(i)];
      tokens[i].insert(tokens[i].end(), r.tokens.begin(), r.tokens.end());
      logprobs[i].insert(logprobs[i].end(), r.logprobs.begin(), r.logprobs.end());
      reqs[i].carried = tokens[i];
    }
    const auto s = f.cache->stats();
    EXPECT_EQ(s.misses, 1) << "segment " << seg;
    EXPECT_EQ(s.hits, seg == 2 ? 1 : 0) << "segment " << seg;
  }
  EXPECT_EQ(engine.stats().resumed, G);
  EXPECT_EQ(engine.stats().reprefilled, G);
  for (int64_t i = 0; i < G; ++i) {
    EXPECT_EQ(tokens[i], (*full)[i].tokens) << i;
    ASSERT_EQ(logprobs[i].size(), (*full)[i].logprobs.size());
    for (size_t t = 0; t < logprobs[i].size(); ++t)
      EXPECT_NEAR(logprobs[i][t], (*full)[i].logprobs[t], 1e-4) << i << " " << t;
  }
  // Without prefix sharing every sample prefills, still from one lookup per call.
  f.cache = std::make_shared<EmbeddingCache>(
      EmbeddingCacheOptions().set_hidden_size(kHidden).set_max_bytes(1 << 20));
  EngineOptions o = f.Opts(G);
  o.share_prefix = false;
  RolloutEngine unshared(f.model, o);
  auto again = unshared.Generate(whole);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(unshared.stats().prefill_tokens, G * P);
  EXPECT_EQ(f.cache->stats().misses, 1);
  EXPECT_EQ(f.cache->stats().hits, 0);
  for (int64_t i = 0; i < G; ++i) EXPECT_EQ((*again)[i].tokens, (*full)[i].tokens) << i;
}

TEST(EngineEmbeddingsTest, EmbeddingsMatterAndAreReproducible) {
  EngineFixture f("matter");
  RolloutEngine engine(f.model, f.Opts(6));
  auto with = f.Req("with", 5, 12, 1.0);
  auto without = f.Req("without", 5, 12, 1.0, /*with_embeds=*/false);
  auto other = f.Req("other", 5, 12, 1.0);
  other.embeddings = f.ref2;
  auto res = engine.Generate({with, without, other});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  // Three distinct prefills: the sharing key includes the embeddings.
  EXPECT_EQ(engine.stats().prefill_tokens, 3 * static_cast<int64_t>(kPrompt.size()));
  EXPECT_NE((*res)[0].logprobs[0], (*res)[1].logprobs[0]);
  EXPECT_NE((*res)[0].logprobs[0], (*res)[2].logprobs[0]);
  EXPECT_TRUE((*res)[0].tokens != (*res)[1].tokens || (*res)[0].logprobs != (*res)[1].logprobs);
  // Same seed, same embeddings, another engine and batch: the same sample.
  RolloutEngine engine2(f.model, f.Opts(2));
  with.id = "with_again";
  auto res2 = engine2.Generate({with});
  ASSERT_TRUE(res2.ok());
  EXPECT_EQ((*res2)[0].tokens, (*res)[0].tokens);
  for (size_t t = 0; t < (*res)[0].logprobs.size(); ++t)
    EXPECT_NEAR((*res2)[0].logprobs[t], (*res)[0].logprobs[t], 1e-5);
}

TEST(EngineEmbeddingsTest, BadRequestsNameTheRequestFileAndTensor) {
  EngineFixture f("engine_errors");
  auto expect_error = [&](const EngineOptions& o, const GenerationRequest& r,
                          std::vector<std::string> words,
                          StatusCode code = StatusCode::kInvalidArgument) {
    RolloutEngine engine(f.model, o);
    auto res = engine.Generate({r});
    ASSERT_FALSE(res.ok()) << r.id;
    EXPECT_EQ(res.status().code(), code) << res.status().ToString();
    words.push_back("'" + r.id + "'");
    for (const auto& w : words)
      EXPECT_NE(res.status().message().find(w), std::string::npos)
          << w << " missing from: " << res.status().message();
    EXPECT_EQ(engine.stats().generated_tokens, 0);
  };
  EngineOptions no_cache = f.Opts();
  no_cache.embedding_cache = nullptr;
  expect_error(no_cache, f.Req("nocache", 1, 4, 1.0), {"no embedding cache", f.ref.ToString()});
  auto few = f.Req("few", 1, 4, 1.0);
  few.prompt = {1, kPlaceholder, 2, kPlaceholder};  // 2 placeholders, 4 rows
  expect_error(f.Opts(), few, {"4 rows", "2 placeholder", f.ref.file, "p0"});
  auto none = f.Req("none", 1, 4, 1.0);
  none.prompt = {1, 2, 3};
  expect_error(f.Opts(), none, {"no placeholder"});
  auto outside = f.Req("outside", 1, 4, 1.0);
  outside.placeholder_token_id = 64;
  expect_error(f.Opts(), outside, {"placeholder token id 64"});
  auto missing = f.Req("missing", 1, 4, 1.0);
  missing.embeddings = EmbeddingRef{(f.dir / "gone.safetensors").string(), "p0"};
  expect_error(f.Opts(), missing, {"gone.safetensors", "'p0'"}, StatusCode::kNotFound);
  auto absent = f.Req("absent", 1, 4, 1.0);
  absent.embeddings = EmbeddingRef{f.ref.file, "p9"};
  expect_error(f.Opts(), absent, {f.ref.file, "'p9'"}, StatusCode::kNotFound);
}

// --- The learner ---------------------------------------------------------------------------------

std::vector<std::pair<std::string, Tensor>> Named(model::DecoderModel& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

TEST(LearnerEmbeddingsTest, RecomputedLogprobsMatchBehaviourLogprobs) {
  EngineFixture f("learner");
  const int64_t G = 4;
  RolloutEngine engine(f.model, f.Opts(G));
  std::vector<GenerationRequest> reqs;
  for (int64_t i = 0; i < G; ++i) reqs.push_back(f.Req("s" + std::to_string(i), 40 + i, 10, 1.0));
  auto res = engine.Generate(reqs);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  // The learner's prefill takes the same tensor from the shared cache: a hit, not a load.
  auto embeds = f.cache->Get(f.ref);
  ASSERT_TRUE(embeds.ok());
  EXPECT_EQ(f.cache->stats().misses, 1);
  EXPECT_EQ(f.cache->stats().hits, 1);
  learner::GroupData group;
  group.group_id = 7;
  group.prompt = kPrompt;
  group.prompt_embeddings = *embeds;
  group.placeholder_token_id = kPlaceholder;
  for (int64_t i = 0; i < G; ++i) {
    learner::SampleData s;
    s.tokens = (*res)[i].tokens;
    s.behaviour_logprobs = (*res)[i].logprobs;
    s.reward = i % 2;
    group.samples.push_back(s);
  }
  learner::GroupData plain = group;
  plain.prompt_embeddings = Tensor();
  std::map<bool, std::map<std::string, Tensor>> grads;
  for (bool streambp : {true, false}) {
    learner::LearnerRunOptions o;
    o.streambp = streambp;
    o.layer_chunk_tokens = 4;
    o.logits_chunk_tokens = 5;
    learner::RlStepOptions s;
    s.recompute_old_logprobs = true;
    s.skip_optimizer_step = true;
    s.micro_batch_tokens = 40;  // two micro-batches of two rows
    auto opt = learner::Optimizer::Create(Named(*f.model), o.optimizer);
    ASSERT_TRUE(opt.ok());
    auto r = learner::RunPolicyUpdate(*f.model, **opt, {group}, o, s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->policy.mismatch_tokens, static_cast<double>(G * 10));
    EXPECT_LE(r->policy.mismatch_abs_max, 1e-4) << "streambp " << streambp;
    EXPECT_NEAR(r->policy.ratio_mean(), 1.0, 1e-5) << "streambp " << streambp;
    for (const auto& p : f.model->named_parameters())
      grads[streambp][p.key()] = p.value().grad().detach().clone();
    // Without the embeddings the same tokens are far from their behaviour logprobs.
    auto opt2 = learner::Optimizer::Create(Named(*f.model), o.optimizer);
    auto r2 = learner::RunPolicyUpdate(*f.model, **opt2, {plain}, o, s);
    ASSERT_TRUE(r2.ok());
    EXPECT_GT(r2->policy.mismatch_abs_max, 1e-2) << "streambp " << streambp;
  }
  // Streaming backprop and autograd agree on the gradient with the splice, and the placeholder's
  // embedding row gets none from the input side (untied model: only the input uses it).
  for (const auto& [name, g] : grads[true])
    EXPECT_LT((g - grads[false][name]).abs().max().item<double>(), 1e-5) << name;
  const Tensor embed_grad = grads[true]["model.embed_tokens.weight"];
  bool sampled_placeholder = false;
  for (const auto& s : group.samples)
    sampled_placeholder |= std::count(s.tokens.begin(), s.tokens.end(), kPlaceholder) > 0;
  if (!sampled_placeholder) {
    EXPECT_EQ(embed_grad[kPlaceholder].abs().max().item<double>(), 0.0);
  }
  EXPECT_GT(embed_grad[kPrompt[0]].abs().max().item<double>(), 0.0);

  // A row count other than the placeholders' is refused, naming the group.
  learner::GroupData bad = group;
  bad.prompt_embeddings = f.rows.narrow(0, 0, 3);
  learner::LearnerRunOptions o;
  auto opt = learner::Optimizer::Create(Named(*f.model), o.optimizer);
  auto r = learner::RunPolicyUpdate(*f.model, **opt, {bad}, o, learner::RlStepOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("group 7"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("3 prompt embedding rows"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::rollout
