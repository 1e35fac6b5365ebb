// `chainrl init-model`: writes a randomly initialised qwen2 / qwen3 / llama model in Hugging Face
// layout (config.json, model.safetensors, generation_config.json, tokenizer files if given).


#include "apps/args.h"
#include "model/model_init.h"
#include "model/model_io.h"

namespace chainrl::app {
namespace {

int RunInitModel(const std::vector<std::string>& argv) {
  std::string arch_name, vocab_from, tokenizer, out, dtype_name = "float32";
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, intermediate = 0, vocab_size = 0;
  int64_t seed = 0, head_dim = 0, max_position = 32768;
  double rope_theta = 10000.0;
  bool tie = false;
  Args args("chainrl init-model",
            "--arch qwen2|qwen3|llama --layers N --hidden D --heads H --intermediate I "
            "(--vocab-from DIR | --vocab-size V | --tokenizer bytes) --out DIR [options]",
            "Write a randomly initialised model (HF initialisation: weights ~ N(0, 0.02), norms 1, "
            "biases 0) in Hugging Face layout.");
  args.Option("arch", &arch_name, "qwen2, qwen3 or llama", true)
      .Option("layers", &layers, "number of decoder layers", true)
      .Option("hidden", &hidden, "hidden size", true)
      .Option("heads", &heads, "attention heads", true)
      .Option("kv-heads", &kv_heads, "key/value heads (default: --heads)")
      .Option("intermediate", &intermediate, "MLP intermediate size", true)
      .Option("vocab-from", &vocab_from,
              "tokenizer directory: vocab size from its tokenizer.json; its files are copied")
      .Option("vocab-size", &vocab_size, "vocabulary size (instead of --vocab-from)")
      .Option("tokenizer", &tokenizer,
              "'bytes': write a byte-level tokenizer with a ChatML template (259 tokens)")
      .Option("out", &out, "output directory", true)
      .Option("seed", &seed, "random seed (default 0)")
      .Flag("tie-embeddings", &tie, "share the embedding matrix with the LM head")
      .Option("head-dim", &head_dim, "per-head dimension (default hidden / heads)")
      .Option("max-position", &max_position, "max_position_embeddings (default 32768)")
      .Option("rope-theta", &rope_theta, "RoPE base (default 10000)")
      .Option("dtype", &dtype_name, "float32 (default), bfloat16 or float16");
  return ParseAndRun(args, argv, [&]() -> int {
    const int sources = !vocab_from.empty() + (vocab_size != 0) + !tokenizer.empty();
    if (sources != 1 && !(sources == 2 && tokenizer == "bytes" && vocab_size != 0))
      return ReportError(InvalidArgument(
          "exactly one of --vocab-from, --vocab-size and --tokenizer bytes is required"));
    if (!tokenizer.empty() && tokenizer != "bytes")
      return ReportError(InvalidArgument("--tokenizer: only 'bytes' is known, got '" +
                                         tokenizer + "' (use --vocab-from DIR to copy one)"));
    auto arch = model::ParseArchitecture(arch_name);
    if (!arch.ok()) return ReportError(InvalidArgument("--arch: " + arch.status().message()));
    if (!model::ParseTorchDtype(dtype_name).ok())
      return ReportError(model::ParseTorchDtype(dtype_name).status().WithPrefix("--dtype"));
    model::InitModelSpec spec;
    spec.arch = *arch;
    spec.layers = layers;
    spec.hidden = hidden;
    spec.heads = heads;
    spec.kv_heads = kv_heads;
    spec.intermediate = intermediate;
    spec.head_dim = head_dim;
    spec.max_position = max_position;
    spec.rope_theta = rope_theta;
    spec.tie_embeddings = tie;
    spec.dtype = dtype_name;
    spec.seed = static_cast<uint64_t>(seed);
    spec.tokenizer = !tokenizer.empty() ? tokenizer : vocab_from;
    spec.vocab_size = vocab_size;
    auto report = model::InitModelDir(spec, out);
    if (!report.ok()) return ReportError(report.status());
    std::printf("wrote %s: %s, %lld layers, hidden %lld, vocab %lld, %lld parameters\n",
                out.c_str(), model::ArchitectureName(spec.arch), static_cast<long long>(layers),
                static_cast<long long>(hidden), static_cast<long long>(report->vocab_size),
                static_cast<long long>(report->parameters));
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("init-model", "write a randomly initialised model in Hugging Face layout",
                RunInitModel);

}  // namespace chainrl::app
