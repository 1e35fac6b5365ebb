// `chainrl tokenize`: encodes text to token ids (a JSON array on stdout) with a model directory's
// tokenizer, or decodes a JSON array of ids back to text (--decode).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/args.h"
#include "model/tokenizer.h"

namespace chainrl::app {
namespace {

int RunTokenize(const std::vector<std::string>& argv) {
  std::string dir, text, ids_json;
  bool decode = false, add_special = false, skip_special = false;
  Args args("chainrl tokenize", "--tokenizer DIR (--text TEXT | --decode --ids JSON)",
            "Encode TEXT to token ids (printed as one JSON array), or decode a JSON array of ids\n"
            "to text. DIR holds tokenizer.json or tokenizer.model (and tokenizer_config.json).");
  args.Option("tokenizer", &dir, "model or tokenizer directory", /*required=*/true)
      .Option("text", &text, "text to encode; with --decode, a JSON array of ids")
      .Option("ids", &ids_json, "JSON array of ids to decode (implies --decode)")
      .Flag("decode", &decode, "decode ids to text instead of encoding")
      .Flag("add-special-tokens", &add_special, "add the post-processor's tokens (e.g. BOS)")
      .Flag("skip-special", &skip_special, "when decoding, drop special tokens");
  return ParseAndRun(args, argv, [&]() -> int {
    auto tok = Tokenizer::FromDir(dir);
    if (!tok.ok()) {
      // A missing or malformed tokenizer file is a usage/configuration error.
      std::fprintf(stderr, "chainrl tokenize: %s\n", tok.status().message().c_str());
      return kExitUsage;
    }
    if (!ids_json.empty()) decode = true;
    if (decode) {
      const std::string& src = ids_json.empty() ? text : ids_json;
      std::vector<int32_t> ids;
      try {
        auto j = nlohmann::json::parse(src);
        ids = j.get<std::vector<int32_t>>();
      } catch (const nlohmann::json::exception& e) {
        std::fprintf(stderr, "chainrl tokenize: --%s: expected a JSON array of integer ids: %s\n",
                     ids_json.empty() ? "text" : "ids", e.what());
        return kExitUsage;
      }
      auto out = tok->Decode(ids, skip_special);
      if (!out.ok()) return ReportError(out.status());
      std::fwrite(out->data(), 1, out->size(), stdout);
      std::fputc('\n', stdout);
      return kExitOk;
    }
    auto ids = tok->Encode(text, add_special);
    if (!ids.ok()) return ReportError(ids.status());
    std::printf("%s\n", nlohmann::json(*ids).dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("tokenize", "encode text to token ids, or decode ids to text", RunTokenize);

}  // namespace chainrl::app
