// `chainrl init-model`: writes a randomly initialised qwen2 / qwen3 / llama model in Hugging Face
// layout (config.json, model.safetensors, generation_config.json, tokenizer files if given).
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "model/decoder.h"
#include "model/model_io.h"

namespace chainrl::app {
namespace {
namespace fs = std::filesystem;

struct TokenizerInfo {
  int64_t vocab_size = 0;
  nlohmann::json bos_token_id, eos_token_id;  // null when unknown
};

Result<nlohmann::json> ReadJson(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const std::exception& e) {
    return InvalidArgument(path.string() + ": not valid JSON: " + e.what());
  }
}

// The vocabulary size a model needs for `dir`/tokenizer.json: the largest id of model.vocab and
// added_tokens, plus one. Also resolves bos/eos ids named by tokenizer_config.json.
Result<TokenizerInfo> ReadTokenizer(const fs::path& dir) {
  const fs::path path = dir / "tokenizer.json";
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json tok, ReadJson(path));
  if (!tok.is_object()) return InvalidArgument(path.string() + ": not a JSON object");
  std::map<std::string, int64_t> ids;
  int64_t max_id = -1;
  auto model = tok.find("model");
  if (model == tok.end() || !model->is_object() || !model->contains("vocab"))
    return InvalidArgument(path.string() + ": missing key 'model.vocab'");
  const auto& vocab = (*model)["vocab"];
  if (vocab.is_object()) {  // BPE / WordPiece: {"token": id}
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer())
        return InvalidArgument(path.string() + ": key 'model.vocab' entry '" + it.key() +
                               "' is not an integer id");
      ids[it.key()] = it.value().get<int64_t>();
      max_id = std::max(max_id, it.value().get<int64_t>());
    }
  } else if (vocab.is_array()) {  // Unigram: [[piece, score], ...], ids are positions
    max_id = static_cast<int64_t>(vocab.size()) - 1;
  } else {
    return InvalidArgument(path.string() + ": key 'model.vocab' is neither an object nor an array");
  }
  auto added = tok.find("added_tokens");
  if (added != tok.end() && added->is_array()) {
    for (const auto& t : *added) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
        return InvalidArgument(path.string() +
                               ": key 'added_tokens' has an entry without an integer 'id'");
      const int64_t id = t["id"].get<int64_t>();
      max_id = std::max(max_id, id);
      if (t.contains("content") && t["content"].is_string())
        ids[t["content"].get<std::string>()] = id;
    }
  }
  if (max_id < 0) return InvalidArgument(path.string() + ": empty vocabulary");
  TokenizerInfo info;
  info.vocab_size = max_id + 1;
  auto cfg = ReadJson(dir / "tokenizer_config.json");
  if (cfg.ok() && cfg->is_object()) {
    auto lookup = [&](const char* key) -> nlohmann::json {
      if (!cfg->contains(key)) return nullptr;
      const auto& v = (*cfg)[key];
      std::string s = v.is_string() ? v.get<std::string>()
                      : v.is_object() && v.contains("content") && v["content"].is_string()
                          ? v["content"].get<std::string>()
                          : "";
      auto it = ids.find(s);
      return it == ids.end() ? nlohmann::json(nullptr) : nlohmann::json(it->second);
    };
    info.bos_token_id = lookup("bos_token");
    info.eos_token_id = lookup("eos_token");
  }
  return info;
}

int RunInitModel(const std::vector<std::string>& argv) {
  std::string arch_name, vocab_from, out, dtype_name = "float32";
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, intermediate = 0, vocab_size = 0;
  int64_t seed = 0, head_dim = 0, max_position = 32768;
  double rope_theta = 10000.0;
  bool tie = false;
  Args args("chainrl init-model",
            "--arch qwen2|qwen3|llama --layers N --hidden D --heads H --intermediate I "
            "(--vocab-from DIR | --vocab-size V) --out DIR [options]",
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
      .Option("out", &out, "output directory", true)
      .Option("seed", &seed, "random seed (default 0)")
      .Flag("tie-embeddings", &tie, "share the embedding matrix with the LM head")
      .Option("head-dim", &head_dim, "per-head dimension (default hidden / heads)")
      .Option("max-position", &max_position, "max_position_embeddings (default 32768)")
      .Option("rope-theta", &rope_theta, "RoPE base (default 10000)")
      .Option("dtype", &dtype_name, "float32 (default), bfloat16 or float16");
  return ParseAndRun(args, argv, [&]() -> int {
    if (vocab_from.empty() == (vocab_size == 0))
      return ReportError(
          InvalidArgument("exactly one of --vocab-from and --vocab-size is required"));
    auto arch = model::ParseArchitecture(arch_name);
    if (!arch.ok()) return ReportError(InvalidArgument("--arch: " + arch.status().message()));
    auto dtype = model::ParseTorchDtype(dtype_name);
    if (!dtype.ok()) return ReportError(dtype.status().WithPrefix("--dtype"));

    TokenizerInfo tok;
    if (!vocab_from.empty()) {
      auto t = ReadTokenizer(vocab_from);
      if (!t.ok()) return ReportError(t.status());
      tok = *t;
      vocab_size = tok.vocab_size;
    }
    model::ModelConfig c;
    c.arch = *arch;
    c.vocab_size = vocab_size;
    c.hidden_size = hidden;
    c.intermediate_size = intermediate;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv_heads > 0 ? kv_heads : heads;
    c.head_dim = head_dim > 0 ? head_dim : (heads > 0 ? hidden / heads : 0);
    c.max_position_embeddings = max_position;
    c.rope_theta = rope_theta;
    c.tie_word_embeddings = tie;
    c.rms_norm_eps = *arch == model::Architecture::kLlama ? 1e-5 : 1e-6;
    nlohmann::json extra = nlohmann::json::object();
    if (!tok.bos_token_id.is_null()) extra["bos_token_id"] = tok.bos_token_id;
    if (!tok.eos_token_id.is_null()) extra["eos_token_id"] = tok.eos_token_id;
    c.extra_json = extra.dump();
    if (Status st = c.Validate("command line"); !st.ok()) return ReportError(st);

    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) return ReportError(IoError(out + ": cannot create directory: " + ec.message()));
    model::DecoderModel m(c, model::ModelOptions().set_dtype(*dtype));
    m.InitWeights(static_cast<uint64_t>(seed));
    if (Status st = model::SaveModel(m, out); !st.ok()) return ReportError(st);
    if (!vocab_from.empty()) {
      if (Status st = model::CopyTokenizerFiles(vocab_from, out); !st.ok()) return ReportError(st);
    }
    int64_t params = 0;
    for (const auto& p : m.parameters()) params += p.numel();
    std::printf("wrote %s: %s, %lld layers, hidden %lld, vocab %lld, %lld parameters\n",
                out.c_str(), model::ArchitectureName(c.arch), static_cast<long long>(layers),
                static_cast<long long>(hidden), static_cast<long long>(vocab_size),
                static_cast<long long>(params));
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("init-model", "write a randomly initialised model in Hugging Face layout",
                RunInitModel);

}  // namespace chainrl::app
