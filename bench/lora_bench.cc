// `chainrl bench lora`: LoRA against full fine-tuning, side by side in one run on a Qwen2.5-0.5B-
// shaped model (24 layers, hidden 896, 14 / 2 heads, MLP 4864, vocabulary 151936, tied): the
// learner's bytes of parameters + gradients + optimiser state after a real SFT update (every
// tensor counted, frozen ones included), the bytes published to the actors per update (in their
// bfloat16), and the seconds of one update (forward, streaming backprop, AdamW step). The last
// line is one JSON object.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "core/check.h"
#include "core/stopwatch.h"
#include "learner/optimizer.h"
#include "learner/rl_step.h"
#include "learner/run_options.h"
#include "model/decoder.h"
#include "model/flat_weights.h"
#include "model/model_io.h"

namespace chainrl::app {
namespace {

struct Figures {
  int64_t trainable = 0;  // parameters
  double param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0, published_bytes = 0;
  double step_seconds = 0;  // best of the timed updates
  double total() const { return param_bytes + grad_bytes + optimizer_bytes; }
};

double Bytes(const torch::Tensor& t) {
  return t.defined() ? static_cast<double>(t.numel() * t.element_size()) : 0.0;
}

// One model (LoRA when `lora`), `updates` SFT updates on `batch`, its memory counted after them.
Figures Measure(const model::ModelConfig& c, const std::optional<model::LoraOptions>& lora,
                const std::vector<learner::SftExample>& batch, int64_t updates,
                torch::ScalarType base_dtype = torch::kFloat32) {
  model::DecoderModel m(c, model::ModelOptions().set_dtype(base_dtype));
  m.InitWeights(1);
  if (lora) {
    const Status st = m.AttachLora(*lora, 2, torch::kFloat32);
    CHAINRL_CHECK(st.ok(), st.ToString());
    for (auto& p : m.parameters()) p.requires_grad_(false);
  }
  learner::LearnerRunOptions o;  // streaming backprop on, as the learner runs
  o.memory_budget_bytes = int64_t{1} << 30;
  o.optimizer.set_lr(1e-5);
  auto opt = learner::Optimizer::Create(m.TrainableParameters(), o.optimizer);
  CHAINRL_CHECK(opt.ok(), opt.status().ToString());
  Figures f;
  f.step_seconds = 1e30;
  for (int64_t u = 0; u < updates; ++u) {
    // The last update keeps its gradients (skip the step) so that they are counted; the ones
    // before it step, so that AdamW holds its moments.
    const bool last = u + 1 == updates;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = learner::RunSftUpdate(m, **opt, batch, o, 8192, /*skip_optimizer_step=*/last);
    CHAINRL_CHECK(r.ok(), r.status().ToString());
    if (!last) f.step_seconds = std::min(f.step_seconds, SecondsSince(t0));
  }
  std::set<const void*> seen;
  for (const auto& p : m.parameters())
    if (seen.insert(p.data_ptr()).second) f.param_bytes += Bytes(p);
  for (auto& [name, t] : m.TrainableParameters()) {
    f.trainable += t.numel();
    if (seen.insert(t.data_ptr()).second) f.param_bytes += Bytes(t);  // the adapters
    f.grad_bytes += Bytes(t.grad());
  }
  for (const auto& [key, state] : (*opt)->adamw().state()) {
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
    f.optimizer_bytes += Bytes(s.exp_avg()) + Bytes(s.exp_avg_sq()) + Bytes(s.max_exp_avg_sq());
  }
  f.published_bytes = static_cast<double>(model::FlatWeightsBytes(m, torch::kBFloat16));
  return f;
}

// Seconds of `tokens` cached decode steps (one token per sequence, greedy) after a prefill of
// `prompt` tokens for `batch` sequences, and the logits of the first step (for comparisons).
std::pair<double, torch::Tensor> Decode(model::DecoderModel& m, int64_t batch, int64_t prompt,
                                        int64_t tokens) {
  torch::NoGradGuard ng;
  const auto& c = m.config();
  torch::manual_seed(4);
  torch::Tensor ids = torch::randint(0, c.vocab_size, {batch, prompt}, torch::kLong);
  model::KvCache cache(c, batch, prompt + tokens, m.options().ComputeDtype(), torch::kCPU);
  torch::Tensor pos = torch::arange(prompt, torch::kLong).view({1, prompt}).expand({batch, prompt});
  torch::Tensor first = m.Logits(m.ForwardCached(ids, pos, cache)).select(1, prompt - 1);
  torch::Tensor next = first.argmax(-1, /*keepdim=*/true);
  torch::Tensor step_pos = torch::full({batch, 1}, prompt, torch::kLong);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t t = 0; t < tokens; ++t) {
    next = m.Logits(m.ForwardCached(next, step_pos, cache)).argmax(-1);
    step_pos.add_(1);
  }
  return {SecondsSince(t0), first.to(torch::kFloat)};
}

int RunLoraBench(const std::vector<std::string>& argv) {
  int64_t layers = 24, hidden = 896, heads = 14, kv_heads = 2, intermediate = 4864, vocab = 151936;
  int64_t rank = 16, batch = 2, seq = 256, updates = 3, threads = 0, decode_batch = 8,
          decode_tokens = 32;
  Args args("chainrl bench lora", "[options]",
            "LoRA (rank --rank on every attention and MLP projection) against full fine-tuning on "
            "the same model, one after the other in this process: learner bytes of parameters + "
            "gradients + AdamW state, bytes published per update, seconds per SFT update; LoRA "
            "also with its frozen base in bfloat16 (\"lora16\"). "
            "Defaults: the Qwen2.5-0.5B shape (494M parameters), 2 sequences of 256 tokens.");
  args.Option("layers", &layers, "decoder layers (default 24)")
      .Option("hidden", &hidden, "hidden size (default 896)")
      .Option("heads", &heads, "attention heads (default 14)")
      .Option("kv-heads", &kv_heads, "key/value heads (default 2)")
      .Option("intermediate", &intermediate, "MLP size (default 4864)")
      .Option("vocab", &vocab, "vocabulary (default 151936, tied embeddings)")
      .Option("rank", &rank, "LoRA rank (default 16, alpha 2 x rank)")
      .Option("batch", &batch, "sequences per update (default 2)")
      .Option("seq", &seq, "tokens per sequence, half prompt and half response (default 256)")
      .Option("updates", &updates, "updates per variant; all but the last timed (default 3)")
      .Option("threads", &threads, "intra-op threads (default: LibTorch's)")
      .Option("decode-batch", &decode_batch,
              "sequences decoded at once by the actor-side comparison (default 8)")
      .Option("decode-tokens", &decode_tokens,
              "tokens decoded per sequence, unmerged vs merged adapters (default 32; 0: skip)");
  return ParseAndRun(args, argv, [&]() -> int {
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
    if (updates < 2) {
      std::fprintf(stderr, "chainrl bench lora: --updates must be >= 2\n");
      return kExitUsage;
    }
    model::ModelConfig c;
    c.arch = model::Architecture::kQwen2;
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.intermediate_size = intermediate;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv_heads;
    c.head_dim = hidden / heads;
    c.max_position_embeddings = std::max<int64_t>(4096, seq);
    c.tie_word_embeddings = true;
    if (!c.Validate().ok()) {
      std::fprintf(stderr, "chainrl bench lora: %s\n", c.Validate().ToString().c_str());
      return kExitUsage;
    }
    std::mt19937 gen(3);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
    std::vector<learner::SftExample> examples(static_cast<size_t>(batch));
    for (auto& e : examples) {
      for (int64_t i = 0; i < seq / 2; ++i) e.prompt.push_back(tok(gen));
      for (int64_t i = seq / 2; i < seq; ++i) e.response.push_back(tok(gen));
    }
    model::LoraOptions lo;
    lo.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    lo.rank = rank;
    lo.alpha = 2.0 * static_cast<double>(rank);
    std::printf(
        "model: %lld layers, hidden %lld, vocab %lld; %lld x %lld tokens per update; "
        "threads %d\n",
        static_cast<long long>(layers), static_cast<long long>(hidden),
        static_cast<long long>(vocab), static_cast<long long>(batch), static_cast<long long>(seq),
        at::get_num_threads());
    std::fflush(stdout);
    const Figures l = Measure(c, lo, examples, updates);
    const Figures lb = Measure(c, lo, examples, updates, torch::kBFloat16);
    const Figures f = Measure(c, std::nullopt, examples, updates);
    // The actors' side, in their bfloat16: adapters applied unmerged (what actors do) against
    // a copy with W + s B A merged in float32 and cast; the first step's logits compared.
    double t_unmerged = 0, t_merged = 0, merge_diff = 0, logit_scale = 0, unmerged_err = 0,
           merged_err = 0;
    if (decode_tokens > 0) {
      model::DecoderModel learner(c);
      learner.InitWeights(1);
      if (Status st = learner.AttachLora(lo, 2); !st.ok()) {
        std::fprintf(stderr, "%s\n", st.ToString().c_str());
        return kExitFailure;
      }
      {
        torch::NoGradGuard ng;
        for (auto& [n, t] : learner.LoraParameters()) t.normal_(0, 0.02);  // a trained adapter
      }
      const auto actor_options = model::ModelOptions().set_dtype(torch::kBFloat16);
      auto unmerged = model::CopyModel(learner, actor_options);
      auto merged = model::CopyModel(learner, actor_options);
      merged->MergeLora();                     // what actors do (lora.actor_merge)
      Decode(*unmerged, decode_batch, 16, 2);  // warm-up
      auto [tu, lu] = Decode(*unmerged, decode_batch, seq, decode_tokens);
      auto [tm, lm] = Decode(*merged, decode_batch, seq, decode_tokens);
      t_unmerged = tu;
      t_merged = tm;
      merge_diff = (lu - lm).abs().max().item<double>();
      logit_scale = lu.abs().max().item<double>();
      // Both against the learner's float32 forward (adapters unmerged, no rounding to bfloat16).
      const torch::Tensor exact = Decode(learner, decode_batch, seq, 0).second;
      unmerged_err = (lu - exact).abs().max().item<double>();
      merged_err = (lm - exact).abs().max().item<double>();
    }
    const double gib = 1024.0 * 1024.0 * 1024.0;
    auto row = [&](const char* name, const Figures& x) {
      std::printf(
          "%-6s trainable %11lld  params %6.3f GiB  grads %6.3f GiB  AdamW %6.3f GiB  "
          "total %6.3f GiB  published %9.3f MiB  update %6.2f s\n",
          name, static_cast<long long>(x.trainable), x.param_bytes / gib, x.grad_bytes / gib,
          x.optimizer_bytes / gib, x.total() / gib, x.published_bytes / (1024.0 * 1024.0),
          x.step_seconds);
    };
    row("full", f);
    row("lora", l);
    row("lora16", lb);
    const double mem = l.total() / f.total(), pub = l.published_bytes / f.published_bytes;
    std::printf(
        "LoRA / full: learner bytes %.3fx (goal <= 0.3), published bytes %.4fx "
        "(goal <= 0.02), update time %.2fx\n",
        mem, pub, l.step_seconds / f.step_seconds);
    std::printf(
        "LoRA with the base in bfloat16 (lora.base_dtype = \"compute\") / full: learner "
        "bytes %.3fx, update time %.2fx\n",
        lb.total() / f.total(), lb.step_seconds / f.step_seconds);
    if (decode_tokens > 0) {
      const double n = static_cast<double>(decode_batch * decode_tokens);
      std::printf(
          "actor decode (bfloat16, %lld x %lld tokens after %lld): unmerged adapters "
          "%.0f tokens/s, merged %.0f tokens/s (unmerged / merged time %.3fx); first "
          "logits differ by at most %.3g (largest logit %.3g: bfloat16 rounding); from the "
          "float32 forward: unmerged %.3g, merged %.3g\n",
          static_cast<long long>(decode_batch), static_cast<long long>(decode_tokens),
          static_cast<long long>(seq), n / t_unmerged, n / t_merged, t_unmerged / t_merged,
          merge_diff, logit_scale, unmerged_err, merged_err);
    }
    nlohmann::json j = {{"bench", "lora"},
                        {"layers", layers},
                        {"hidden", hidden},
                        {"vocab", vocab},
                        {"rank", rank},
                        {"threads", at::get_num_threads()},
                        {"full_learner_bytes", f.total()},
                        {"lora_learner_bytes", l.total()},
                        {"learner_bytes_ratio", mem},
                        {"full_published_bytes", f.published_bytes},
                        {"lora_published_bytes", l.published_bytes},
                        {"published_bytes_ratio", pub},
                        {"full_update_seconds", f.step_seconds},
                        {"lora_update_seconds", l.step_seconds},
                        {"update_time_ratio", l.step_seconds / f.step_seconds},
                        {"bf16_base_learner_bytes_ratio", lb.total() / f.total()},
                        {"bf16_base_update_time_ratio", lb.step_seconds / f.step_seconds},
                        {"decode_unmerged_seconds", t_unmerged},
                        {"decode_merged_seconds", t_merged},
                        {"decode_merged_max_logit_diff", merge_diff},
                        {"decode_unmerged_vs_float32", unmerged_err},
                        {"decode_merged_vs_float32", merged_err}};
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("lora", "LoRA vs full fine-tuning: learner memory, published bytes, update time",
              RunLoraBench);

}  // namespace chainrl::app
