// `chainrl generate`: text from a Hugging Face model directory with the rollout engine (KV cache,
// seeded sampling), optionally through the model's chat template.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "model/chat_template.h"
#include "model/model_io.h"
#include "model/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/prompting.h"

namespace chainrl::app {
namespace {

// The text of `ids`, never failing for one id: an id the tokenizer has no token for (a model whose
// embedding has more rows than the tokenizer has tokens samples them) is written as <|id:N|> and
// counted in `unknown`. `raw` gives the bytes (DecodeBytes) instead of the text, where such an id
// adds nothing (as in the engine's count of the bytes before a stop string).
std::string DecodeLenient(const Tokenizer& tok, const std::vector<int32_t>& ids, bool raw,
                          int64_t* unknown) {
  std::string out;
  std::vector<int32_t> run;
  auto flush = [&] {
    if (run.empty()) return;
    auto text = raw ? tok.DecodeBytes(run) : tok.Decode(run, /*skip_special=*/true);
    out += text.ok() ? *text : std::string();
    run.clear();
  };
  for (int32_t id : ids) {
    if (id >= 0 && id < tok.vocab_size() && tok.IdToToken(id).has_value()) {
      run.push_back(id);
      continue;
    }
    flush();
    if (!raw) out += "<|id:" + std::to_string(id) + "|>";  // raw: no bytes, as the engine counts
    ++*unknown;
  }
  flush();
  return out;
}

int RunGenerate(const std::vector<std::string>& argv) {
  std::string dir, prompt, system, dtype_name = "float32";
  std::vector<std::string> stops;
  bool chat = false, as_json = false;
  int64_t max_new = 128, top_k = 0, seed = 0, samples = 1;
  double temperature = 1.0, top_p = 1.0;
  Args a(
      "chainrl generate", "--model DIR --prompt TEXT [options]",
      "Generate from a Hugging Face model directory (config.json, safetensors, tokenizer.json).\n"
      "Each sample's tokens are reproducible from --seed (sample i uses seed + i).");
  a.Option("model", &dir, "model directory", true)
      .Option("prompt", &prompt, "prompt text", true)
      .Flag("chat", &chat, "render the prompt as a user turn through the chat template")
      .Option("system", &system, "system message (with --chat)")
      .Option("max-new-tokens", &max_new, "tokens to generate at most (128)")
      .Option("temperature", &temperature, "sampling temperature; 0 is greedy (1.0)")
      .Option("top-k", &top_k, "top-k sampling; 0 disables (0)")
      .Option("top-p", &top_p, "nucleus sampling mass (1.0)")
      .Option("seed", &seed, "seed of the first sample (0)")
      .Option("num-samples", &samples, "samples to generate (1)")
      .Option("dtype", &dtype_name,
              "weights and compute dtype: float32 (default), bfloat16 or float16; the weights "
              "are converted when loaded")
      .Repeated("stop", &stops, "a stop string")
      .Flag("json", &as_json, "print one JSON object per sample (text, tokens, logprobs, finish)");
  return ParseAndRun(a, argv, [&]() -> int {
    if (max_new < 1 || samples < 1 || temperature < 0 || !(top_p > 0 && top_p <= 1) || top_k < 0)
      return ReportError(InvalidArgument(
          "need --max-new-tokens >= 1, --num-samples >= 1, --temperature >= 0, 0 < --top-p <= 1"));
    auto tok = Tokenizer::FromDir(dir);
    if (!tok.ok()) return ReportError(tok.status());
    auto dtype = model::ParseTorchDtype(dtype_name);
    if (!dtype.ok()) return ReportError(dtype.status().WithPrefix("--dtype"));
    auto m = model::LoadModel(dir, model::ModelOptions().set_dtype(*dtype));
    if (!m.ok()) return ReportError(m.status());
    std::string text = prompt;
    bool add_special = true;
    if (chat) {
      auto tmpl = ChatTemplate::FromTokenizerConfig(
          (std::filesystem::path(dir) / "tokenizer_config.json").string());
      if (!tmpl.ok()) return ReportError(tmpl.status());
      std::vector<ChatMessage> msgs;
      if (!system.empty()) msgs.push_back({"system", system, nullptr});
      msgs.push_back({"user", prompt, nullptr});
      auto rendered = RenderChat(*tmpl, msgs, /*add_generation_prompt=*/true);
      if (!rendered.ok()) return ReportError(rendered.status());
      text = *rendered;
      add_special = false;  // the template writes its own special tokens
    }
    auto ids = tok->Encode(text, add_special);
    if (!ids.ok()) return ReportError(ids.status());
    // The KV cache holds prompt + new tokens: no more than the model's context.
    const int64_t context = (*m)->config().max_position_embeddings;
    if (static_cast<int64_t>(ids->size()) + max_new > context)
      return ReportError(InvalidArgument(
          "the prompt (" + std::to_string(ids->size()) + " tokens) and --max-new-tokens (" +
          std::to_string(max_new) + ") exceed the model's context of " + std::to_string(context) +
          " tokens (max_position_embeddings in " + dir + "/config.json)"));
    rollout::EngineOptions eo;
    eo.max_batch = std::min<int64_t>(samples, 64);
    eo.max_seq_len = static_cast<int64_t>(ids->size()) + max_new;
    // End-of-sequence ids: the tokenizer's, plus generation_config.json's eos_token_id.
    auto gen_eos = rollout::GenerationConfigEos(dir);
    if (!gen_eos.ok()) return ReportError(gen_eos.status());
    if (auto e = tok->eos_token_id()) eo.eos_token_ids.push_back(*e);
    eo.eos_token_ids.insert(eo.eos_token_ids.end(), gen_eos->begin(), gen_eos->end());
    const Tokenizer& t = *tok;
    eo.token_bytes = [&t](int32_t id) {
      auto b = t.DecodeBytes({id});
      return b.ok() ? *b : std::string();
    };
    rollout::RolloutEngine engine(*m, eo);
    std::vector<rollout::GenerationRequest> reqs;
    for (int64_t i = 0; i < samples; ++i) {
      rollout::GenerationRequest r;
      r.id = "sample-" + std::to_string(i);
      r.prompt = *ids;
      r.max_new_tokens = max_new;
      r.sampling = {temperature, top_k, top_p, static_cast<uint64_t>(seed + i)};
      r.stop_strings = stops;
      reqs.push_back(std::move(r));
    }
    auto res = engine.Generate(reqs);
    if (!res.ok()) return ReportError(res.status());
    int64_t unknown = 0;
    for (const auto& r : *res) {
      std::string s = DecodeLenient(*tok, r.tokens, /*raw=*/false, &unknown);
      if (r.stop_text_bytes >= 0) {
        int64_t ignored = 0;
        s = DecodeLenient(*tok, r.tokens, /*raw=*/true, &ignored)
                .substr(0, static_cast<size_t>(r.stop_text_bytes));
      }
      if (as_json) {
        nlohmann::json j = {{"id", r.id},
                            {"text", s},
                            {"tokens", r.tokens},
                            {"logprobs", r.logprobs},
                            {"finish", rollout::FinishReasonName(r.finish)}};
        std::printf("%s\n",
                    j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      } else {
        std::printf("%s\n", s.c_str());
      }
    }
    if (unknown > 0)
      std::fprintf(stderr,
                   "chainrl generate: %lld sampled token id(s) have no token in %s's tokenizer "
                   "(the model's vocabulary of %lld rows is larger than the tokenizer's %lld "
                   "tokens); shown as <|id:N|>\n",
                   static_cast<long long>(unknown), dir.c_str(),
                   static_cast<long long>((*m)->config().vocab_size),
                   static_cast<long long>(tok->vocab_size()));
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("generate", "generate text from a model directory", RunGenerate);

}  // namespace chainrl::app
