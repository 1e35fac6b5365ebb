// Creates randomly initialised model directories in Hugging Face layout (see model_init.h).
#include "model/model_init.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/json_file.h"
#include "model/byte_tokenizer.h"
#include "model/decoder.h"
#include "model/model_io.h"

namespace chainrl::model {
namespace {
namespace fs = std::filesystem;

struct TokenizerInfo {
  int64_t vocab_size = 0;
  nlohmann::json bos_token_id, eos_token_id;  // null when unknown
};

Result<nlohmann::json> ReadJson(const fs::path& path) {
  return ReadJsonFile(path.string(), kMaxLargeJsonBytes);
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

}  // namespace

Result<InitModelReport> InitModelDir(const InitModelSpec& spec, const std::string& out) {
  CHAINRL_ASSIGN_OR_RETURN(auto dtype, ParseTorchDtype(spec.dtype));
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return IoError(out + ": cannot create directory: " + ec.message());
  int64_t vocab_size = spec.vocab_size;
  TokenizerInfo tok;
  if (spec.tokenizer == "bytes") {
    CHAINRL_RETURN_IF_ERROR(WriteByteTokenizer(out));
  }
  if (!spec.tokenizer.empty()) {
    const std::string from = spec.tokenizer == "bytes" ? out : spec.tokenizer;
    CHAINRL_ASSIGN_OR_RETURN(tok, ReadTokenizer(from));
    if (vocab_size == 0) vocab_size = tok.vocab_size;
    if (vocab_size < tok.vocab_size)
      return InvalidArgument("vocab size " + std::to_string(vocab_size) +
                             " is smaller than the tokenizer's " + std::to_string(tok.vocab_size));
    // Rows past the tokenizer are sampled like any other by an untrained model, and have no text.
    // Checkpoints pad the embedding to a multiple of 128 at most (151665 tokens -> 151936 rows).
    const int64_t padded = (tok.vocab_size + 127) / 128 * 128;
    if (vocab_size > padded)
      return InvalidArgument(
          "vocab size " + std::to_string(vocab_size) + " is larger than the tokenizer's " +
          std::to_string(tok.vocab_size) + " rounded up to a multiple of 128 (" +
          std::to_string(padded) + "): ids " + std::to_string(padded) + " to " +
          std::to_string(vocab_size - 1) +
          " would have no token, yet the model samples them; give the vocabulary size alone "
          "(no tokenizer) for a model of that shape, or leave it out");
  }
  if (vocab_size <= 0) return InvalidArgument("a vocabulary size or a tokenizer is required");
  ModelConfig c;
  c.arch = spec.arch;
  c.vocab_size = vocab_size;
  c.hidden_size = spec.hidden;
  c.intermediate_size = spec.intermediate;
  c.num_hidden_layers = spec.layers;
  c.num_attention_heads = spec.heads;
  c.num_key_value_heads = spec.kv_heads > 0 ? spec.kv_heads : spec.heads;
  c.head_dim = spec.head_dim > 0 ? spec.head_dim : (spec.heads > 0 ? spec.hidden / spec.heads : 0);
  c.max_position_embeddings = spec.max_position;
  c.rope_theta = spec.rope_theta;
  c.tie_word_embeddings = spec.tie_embeddings;
  c.rms_norm_eps = spec.arch == Architecture::kLlama ? 1e-5 : 1e-6;
  nlohmann::json extra = nlohmann::json::object();
  if (!tok.bos_token_id.is_null()) extra["bos_token_id"] = tok.bos_token_id;
  if (!tok.eos_token_id.is_null()) extra["eos_token_id"] = tok.eos_token_id;
  c.extra_json = extra.dump();
  CHAINRL_RETURN_IF_ERROR(c.Validate("model init"));
  DecoderModel m(c, ModelOptions().set_dtype(dtype));
  m.InitWeights(spec.seed);
  CHAINRL_RETURN_IF_ERROR(SaveModel(m, out));
  if (!spec.tokenizer.empty() && spec.tokenizer != "bytes")
    CHAINRL_RETURN_IF_ERROR(CopyTokenizerFiles(spec.tokenizer, out));
  InitModelReport report;
  report.vocab_size = vocab_size;
  for (const auto& p : m.parameters()) report.parameters += p.numel();
  return report;
}

}  // namespace chainrl::model
