// `chainrl bench streambp`: the longest sequence that trains (forward + backward of an SFT loss)
// within a memory budget, for plain backprop, per-layer gradient checkpointing and StreamBP, each
// probe in a child process whose peak resident memory is measured; then seconds per 1K trained
// tokens of each at a length all three can run, and StreamBP's gradient error against plain
// backprop. The last line is one JSON object.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "learner/objectives.h"
#include "learner/streambp.h"
#include "model/decoder.h"

extern char** environ;

namespace chainrl::app {
namespace {

using Clock = std::chrono::steady_clock;

struct Spec {
  int64_t layers = 11, hidden = 512, heads = 8, kv_heads = 2, intermediate = 1536, vocab = 32000;
  int64_t budget_mb = 4096;
  int64_t layer_chunk = 256, head_chunk = 256;
  int64_t start_len = 256, max_len = 65536;
};

std::shared_ptr<model::DecoderModel> MakeModel(const Spec& s) {
  model::ModelConfig c;
  c.arch = model::Architecture::kQwen2;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.head_dim = s.hidden / s.heads;
  c.max_position_embeddings = 1 << 20;
  c.tie_word_embeddings = true;
  auto m = std::make_shared<model::DecoderModel>(c);
  m->InitWeights(1);
  return m;
}

// One training step (forward + backward of the token-mean SFT loss) of `method` on `len` tokens.
void Step(model::DecoderModel& m, const std::string& method, int64_t len, const Spec& s) {
  auto ids = torch::randint(0, s.vocab, {1, len}, torch::kLong);
  auto targets = torch::roll(ids, -1, 1);
  auto mask = torch::ones({1, len});
  const double total = static_cast<double>(len);
  if (method == "plain") {
    auto logp = torch::log_softmax(m.Logits(m.Forward(ids)), -1)
                    .gather(-1, targets.unsqueeze(-1))
                    .squeeze(-1);
    learner::SftLoss(logp, mask, total).backward();
  } else if (method == "checkpointing") {
    // Per-layer checkpointing: layer inputs stored without gradients, each layer recomputed with
    // gradients over the whole sequence during backward; the LM head is not chunked.
    auto ctx = m.MakeContext(1, len, {}, {});
    std::vector<torch::Tensor> xs;
    {
      torch::NoGradGuard g;
      xs.push_back(m.Embed(ids));
      for (int64_t l = 0; l < m.num_layers(); ++l) xs.push_back(m.Layer(l, xs.back(), ctx));
    }
    auto x_last = xs.back().detach().requires_grad_(true);
    xs.pop_back();
    auto logp = torch::log_softmax(m.Logits(m.FinalNorm(x_last)), -1)
                    .gather(-1, targets.unsqueeze(-1))
                    .squeeze(-1);
    learner::SftLoss(logp, mask, total).backward();
    torch::Tensor dy = x_last.grad();
    for (int64_t l = m.num_layers() - 1; l >= 0; --l) {
      auto x = xs.back().detach().requires_grad_(true);
      xs.pop_back();
      m.Layer(l, x, ctx).backward(dy);
      dy = x.grad();
    }
    m.Embed(ids).backward(dy);
  } else {
    learner::StreamBpOptions o;
    o.set_layer_chunk_tokens(s.layer_chunk)
        .set_head(learner::ChunkedHeadOptions().set_chunk_tokens(s.head_chunk));
    learner::StreamBackward(
        m, ids, {}, targets,
        [&](int64_t t0, int64_t t1, const torch::Tensor& lp, const torch::Tensor&) {
          return learner::SftLoss(lp, mask.narrow(1, t0, t1 - t0), total);
        },
        o);
  }
}

struct Probe {
  bool ok = false;
  double peak_mb = 0, seconds = 0;
};

std::vector<std::string> SpecArgs(const Spec& s) {
  return {"--layers",       std::to_string(s.layers),
          "--hidden",       std::to_string(s.hidden),
          "--heads",        std::to_string(s.heads),
          "--kv-heads",     std::to_string(s.kv_heads),
          "--intermediate", std::to_string(s.intermediate),
          "--vocab",        std::to_string(s.vocab),
          "--layer-chunk",  std::to_string(s.layer_chunk),
          "--head-chunk",   std::to_string(s.head_chunk)};
}

// Runs one step in a child process; its peak RSS comes from wait4's rusage.
Probe RunChild(const std::string& method, int64_t len, const Spec& s) {
  std::vector<std::string> args = {"chainrl", "bench", "streambp",         "--child",
                                   method,    "--len", std::to_string(len)};
  for (auto& a : SpecArgs(s)) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return {};
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  Probe p;
  p.peak_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  auto j = nlohmann::json::parse(out, nullptr, false);
  p.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && j.is_object() && j.value("ok", false);
  if (p.ok) p.seconds = j.value("seconds", 0.0);
  return p;
}

// Longest length (to ~5%) whose step succeeds within the budget: doubling, then bisection.
int64_t MaxLength(const std::string& method, const Spec& s) {
  auto fits = [&](int64_t len) {
    Probe p = RunChild(method, len, s);
    bool ok = p.ok && p.peak_mb <= static_cast<double>(s.budget_mb);
    std::fprintf(stderr, "  %-13s %6lld tokens: %s, peak %.0f MB, %.1f s\n", method.c_str(),
                 static_cast<long long>(len), ok ? "fits" : "does not fit", p.peak_mb, p.seconds);
    return ok;
  };
  int64_t lo = 0, hi = 0;
  for (int64_t len = s.start_len; len <= s.max_len; len *= 2) {
    if (fits(len)) {
      lo = len;
    } else {
      hi = len;
      break;
    }
  }
  if (hi == 0) return lo;  // fits up to max_len
  while (hi - lo > std::max<int64_t>(16, lo / 20)) {
    int64_t mid = (lo + hi) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

double GradError(const Spec& s, int64_t len) {
  auto m = MakeModel(s);
  torch::manual_seed(0);
  Step(*m, "plain", len, s);
  std::vector<torch::Tensor> want;
  for (auto& p : m->parameters()) want.push_back(p.grad().clone());
  m->zero_grad();
  torch::manual_seed(0);
  Step(*m, "streambp", len, s);
  double worst = 0;
  size_t i = 0;
  for (auto& p : m->parameters()) {
    double scale = want[i].abs().max().item<double>();
    worst =
        std::max(worst, (p.grad() - want[i]).abs().max().item<double>() / std::max(scale, 1e-30));
    ++i;
  }
  return worst;
}

int RunStreamBpBench(const std::vector<std::string>& argv) {
  Spec s;
  std::string child;
  int64_t len = 0;
  Args a(
      "chainrl bench streambp", "[options]",
      "Longest trainable sequence within a memory budget for plain backprop, gradient\n"
      "checkpointing and StreamBP (each probe a child process, peak RSS measured), and time per\n"
      "1K tokens at a common length.");
  a.Option("budget-mb", &s.budget_mb, "peak resident memory budget of a training step (4096)")
      .Option("layers", &s.layers, "decoder layers (11)")
      .Option("hidden", &s.hidden, "hidden size (512)")
      .Option("heads", &s.heads, "attention heads (8)")
      .Option("kv-heads", &s.kv_heads, "key/value heads (2)")
      .Option("intermediate", &s.intermediate, "MLP size (1536)")
      .Option("vocab", &s.vocab, "vocabulary (32000)")
      .Option("layer-chunk", &s.layer_chunk, "StreamBP query rows per chunk (256)")
      .Option("head-chunk", &s.head_chunk, "StreamBP LM-head tokens per chunk (256)")
      .Option("start-len", &s.start_len, "first length probed (256)")
      .Option("max-len", &s.max_len, "longest length probed (65536)")
      .Option("child", &child, "internal: run one step of METHOD in this process")
      .Option("len", &len, "internal: the child's length");
  return ParseAndRun(a, argv, [&]() -> int {
    if (!child.empty()) {
      torch::manual_seed(0);
      auto m = MakeModel(s);
      auto t0 = Clock::now();
      Step(*m, child, len, s);
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      std::printf("{\"ok\":true,\"seconds\":%.6f}\n", secs);
      return kExitOk;
    }
    auto m = MakeModel(s);
    int64_t params = 0;
    for (auto& p : m->parameters()) params += p.numel();
    m.reset();
    std::printf(
        "model: qwen2, %lld layers, hidden %lld, vocab %lld, %.1fM parameters; budget %lld MB\n",
        static_cast<long long>(s.layers), static_cast<long long>(s.hidden),
        static_cast<long long>(s.vocab), params / 1e6, static_cast<long long>(s.budget_mb));
    std::fflush(stdout);
    nlohmann::json j = {{"bench", "streambp"}, {"params", params}, {"budget_mb", s.budget_mb}};
    std::map<std::string, int64_t> max_len;
    for (const char* method : {"plain", "checkpointing", "streambp"}) {
      max_len[method] = MaxLength(method, s);
      std::printf("%-13s longest sequence within %lld MB: %lld tokens\n", method,
                  static_cast<long long>(s.budget_mb), static_cast<long long>(max_len[method]));
      std::fflush(stdout);
    }
    const int64_t common = std::max<int64_t>(s.start_len, max_len["plain"]);
    std::map<std::string, double> per_k;
    for (const char* method : {"plain", "checkpointing", "streambp"}) {
      Probe p = RunChild(method, common, s);
      per_k[method] = p.ok ? p.seconds / (static_cast<double>(common) / 1000.0) : 0;
      std::printf("%-13s %lld tokens: %.2f s per 1K tokens, peak %.0f MB\n", method,
                  static_cast<long long>(common), per_k[method], p.peak_mb);
    }
    double err = GradError(s, 128);
    std::printf("StreamBP gradient vs plain backprop (128 tokens): max relative error %.2e\n", err);
    j["max_len_plain"] = max_len["plain"];
    j["max_len_checkpointing"] = max_len["checkpointing"];
    j["max_len_streambp"] = max_len["streambp"];
    j["len_ratio_vs_checkpointing"] =
        max_len["checkpointing"] > 0
            ? static_cast<double>(max_len["streambp"]) / max_len["checkpointing"]
            : 0;
    j["common_len"] = common;
    j["seconds_per_1k_tokens"] = per_k;
    j["time_ratio_vs_checkpointing"] =
        per_k["checkpointing"] > 0 ? per_k["streambp"] / per_k["checkpointing"] : 0;
    j["grad_max_rel_err"] = err;
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("streambp", "longest trainable sequence: plain, checkpointing, StreamBP",
              RunStreamBpBench);

}  // namespace chainrl::app
