// `chainrl bench model`: this machine's float32 GEMM rate, then forward, forward+backward and
// cached-decode throughput of a ~50M-parameter Qwen2-style decoder, as fractions of that rate.
// The last line is one JSON object.
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "core/stopwatch.h"
#include "model/decoder.h"
#include "model/model_io.h"

namespace chainrl::app {
namespace {

// Best time of `reps` runs of fn, after one warm-up run.
template <typename F>
double BestOf(int64_t reps, F&& fn) {
  fn();
  double best = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, SecondsSince(t0));
  }
  return best;
}

std::string BlasConfig() {
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  return fn != nullptr ? std::string(fn()) : "not OpenBLAS";
}

int RunModelBench(const std::vector<std::string>& argv) {
  int64_t layers = 11, hidden = 512, heads = 8, kv_heads = 2, intermediate = 1536, vocab = 32000;
  int64_t batch = 4, seq = 256, iters = 2, decode_tokens = 32, threads = 0;
  std::string compute_dtype = "float32";
  Args args(
      "chainrl bench model", "[options]",
      "Measures float32 GEMM GFLOP/s, then a Qwen2-style model's forward and forward+backward "
      "FLOP/s (2 * matmul params * tokens + attention, x3 for training) as fractions of it, "
      "and cached decoding tokens/s. Defaults: ~50M parameters, 4 x 256 tokens.");
  args.Option("layers", &layers, "decoder layers (default 11)")
      .Option("hidden", &hidden, "hidden size (default 512)")
      .Option("heads", &heads, "attention heads (default 8)")
      .Option("kv-heads", &kv_heads, "key/value heads (default 2)")
      .Option("intermediate", &intermediate, "MLP size (default 1536)")
      .Option("vocab", &vocab, "vocabulary (default 32000, tied embeddings)")
      .Option("batch", &batch, "sequences per step (default 4)")
      .Option("seq", &seq, "tokens per sequence (default 256)")
      .Option("iters", &iters, "timed repetitions after a warm-up, best kept (default 2)")
      .Option("threads", &threads, "intra-op threads (default: LibTorch's, i.e. physical cores)")
      .Option("decode-tokens", &decode_tokens, "tokens decoded one at a time (default 32)")
      .Option("compute-dtype", &compute_dtype,
              "also time mixed precision: float32 weights computing in this dtype (bfloat16, "
              "float16), side by side with float32 (default float32: not timed)");
  return ParseAndRun(args, argv, [&]() -> int {
    // LibTorch defaults to the physical core count (OMP_NUM_THREADS overrides). On a machine shared
    // with other jobs, more OpenMP threads than idle cores make every barrier wait on a descheduled
    // thread (measured here: 20x slower), so the default is kept unless --threads says otherwise.
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
    const int hw = static_cast<int>(std::thread::hardware_concurrency());
    std::printf("threads %d of %d CPUs, BLAS: %s, OPENBLAS_CORETYPE=%s\n", at::get_num_threads(),
                hw, BlasConfig().c_str(),
                std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)");
    std::fflush(stdout);

    torch::NoGradGuard no_grad_outer;
    double gemm = 0;
    for (int64_t n : {1024, 1536, 2048}) {
      torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
      const double t = BestOf(3, [&] { torch::mm_out(c, a, b); });
      const double rate = 2.0 * n * n * n / t / 1e9;
      std::printf("gemm %lld^3 float32: %.1f GFLOP/s\n", static_cast<long long>(n), rate);
      std::fflush(stdout);
      gemm = std::max(gemm, rate);
    }

    model::ModelConfig c;
    c.arch = model::Architecture::kQwen2;
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.intermediate_size = intermediate;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv_heads;
    c.head_dim = heads > 0 ? hidden / heads : 0;
    c.tie_word_embeddings = true;
    c.max_position_embeddings = std::max<int64_t>(seq + decode_tokens, 1);
    if (Status st = c.Validate("bench options"); !st.ok()) return ReportError(st);
    model::DecoderModel m(c);
    m.InitWeights(1);

    int64_t params = 0, matmul_params = 0;
    for (const auto& p : m.named_parameters()) {
      params += p.value().numel();
      if (p.value().dim() == 2) matmul_params += p.value().numel();  // tied: embedding = LM head
    }
    const int64_t tokens = batch * seq;
    const double attn_flops = 4.0 * layers * batch * seq * seq * heads * c.head_dim;
    const double fwd_flops = 2.0 * matmul_params * tokens + attn_flops;
    torch::Tensor ids = torch::randint(vocab, {batch, seq}, torch::kLong);
    std::printf(
        "model: qwen2, %lld layers, hidden %lld, %lld/%lld heads, mlp %lld, vocab %lld: "
        "%.1fM parameters; %lld x %lld tokens\n",
        static_cast<long long>(layers), static_cast<long long>(hidden),
        static_cast<long long>(heads), static_cast<long long>(kv_heads),
        static_cast<long long>(intermediate), static_cast<long long>(vocab), params / 1e6,
        static_cast<long long>(batch), static_cast<long long>(seq));
    std::fflush(stdout);

    const double t_fwd = BestOf(iters, [&] { m.Logits(m.Forward(ids)); });
    double t_train;
    {
      torch::AutoGradMode grad(true);
      t_train = BestOf(iters, [&] {
        for (auto& p : m.parameters()) p.mutable_grad() = torch::Tensor();
        torch::Tensor logits = m.Logits(m.Forward(ids));
        torch::nn::functional::cross_entropy(logits.view({-1, vocab}), ids.view({-1})).backward();
      });
    }
    // Cached decoding: prefill `seq` tokens, then decode_tokens steps of one token per sequence.
    double t_decode = 0;
    if (decode_tokens > 0) {
      model::KvCache cache(c, batch, seq + decode_tokens, torch::kFloat, torch::kCPU);
      torch::Tensor pos = torch::arange(seq, torch::kLong).view({1, seq}).expand({batch, seq});
      m.ForwardCached(ids, pos, cache);
      torch::Tensor next = ids.narrow(1, seq - 1, 1).clone();
      torch::Tensor step_pos = torch::full({batch, 1}, seq, torch::kLong);
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t t = 0; t < decode_tokens; ++t) {
        torch::Tensor h = m.ForwardCached(next, step_pos, cache);
        next = m.Logits(h).argmax(-1);
        step_pos.add_(1);
      }
      t_decode = SecondsSince(t0);
    }

    // Mixed precision side by side: the same weights, products in the compute dtype.
    double t_mixed_fwd = 0, t_mixed_train = 0, mixed_logit_diff = 0;
    auto mixed_type = model::ParseTorchDtype(compute_dtype);
    if (!mixed_type.ok()) return ReportError(mixed_type.status().WithPrefix("--compute-dtype"));
    if (*mixed_type != torch::kFloat) {
      auto copy = model::CopyModel(m, model::ModelOptions().set_compute_dtype(*mixed_type));
      model::DecoderModel& mm = *copy;
      mixed_logit_diff = (mm.Logits(mm.Forward(ids)).to(torch::kFloat) - m.Logits(m.Forward(ids)))
                             .abs()
                             .max()
                             .item<double>();
      t_mixed_fwd = BestOf(iters, [&] { mm.Logits(mm.Forward(ids)); });
      torch::AutoGradMode grad(true);
      t_mixed_train = BestOf(iters, [&] {
        for (auto& p : mm.parameters()) p.mutable_grad() = torch::Tensor();
        torch::Tensor logits = mm.Logits(mm.Forward(ids)).to(torch::kFloat);
        torch::nn::functional::cross_entropy(logits.view({-1, vocab}), ids.view({-1})).backward();
      });
    }

    const double fwd_rate = fwd_flops / t_fwd / 1e9, train_rate = 3 * fwd_flops / t_train / 1e9;
    std::printf("forward:          %8.0f tokens/s  %6.1f GFLOP/s  %.2f of GEMM\n", tokens / t_fwd,
                fwd_rate, fwd_rate / gemm);
    std::printf("forward+backward: %8.0f tokens/s  %6.1f GFLOP/s  %.2f of GEMM\n", tokens / t_train,
                train_rate, train_rate / gemm);
    if (decode_tokens > 0)
      std::printf("cached decode:    %8.0f tokens/s  (batch %lld, context %lld..%lld)\n",
                  batch * decode_tokens / t_decode, static_cast<long long>(batch),
                  static_cast<long long>(seq), static_cast<long long>(seq + decode_tokens));
    if (t_mixed_train > 0)
      std::printf(
          "mixed %s: forward %8.0f tokens/s (%.2fx float32), forward+backward %8.0f tokens/s "
          "(%.2fx float32); max logit difference to float32 %.3g\n",
          compute_dtype.c_str(), tokens / t_mixed_fwd, t_fwd / t_mixed_fwd, tokens / t_mixed_train,
          t_train / t_mixed_train, mixed_logit_diff);
    nlohmann::json j = {
        {"bench", "model"},
        {"threads", at::get_num_threads()},
        {"gemm_gflops", gemm},
        {"params", params},
        {"tokens", tokens},
        {"forward_tokens_per_s", tokens / t_fwd},
        {"forward_gflops", fwd_rate},
        {"forward_gemm_fraction", fwd_rate / gemm},
        {"train_tokens_per_s", tokens / t_train},
        {"train_gflops", train_rate},
        {"train_gemm_fraction", train_rate / gemm},
        {"decode_tokens_per_s", t_decode > 0 ? batch * decode_tokens / t_decode : 0.0}};
    if (t_mixed_train > 0) {
      j["mixed_compute_dtype"] = compute_dtype;
      j["mixed_forward_speedup"] = t_fwd / t_mixed_fwd;
      j["mixed_train_speedup"] = t_train / t_mixed_train;
      j["mixed_max_logit_diff"] = mixed_logit_diff;
    }
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("model", "model forward / train / decode throughput vs this machine's GEMM rate",
              RunModelBench);

}  // namespace chainrl::app
