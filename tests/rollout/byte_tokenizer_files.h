// The byte-level tokenizer the rollout tests write by hand (independently of
// model/byte_tokenizer.h): ids 0..255 are the bytes (no merges), <|endoftext|> (256),
// <|im_start|> (257) and <|im_end|> (258) are special tokens.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace chainrl::testing {

// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the rest map to 256 + n.
inline std::string ByteChar(int b) {
  int n = 0;
  for (int x = 0; x < 256; ++x) {
    const bool keep = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
    const int cp = keep ? x : 256 + n++;
    if (x != b) continue;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  }
  return "";
}

// Writes that tokenizer's tokenizer.json into `dir` (created), `config` as tokenizer_config.json,
// and `generation_config` as generation_config.json unless it is null.
inline void WriteByteTokenizerFiles(const std::string& dir, const nlohmann::json& config,
                                    const nlohmann::json& generation_config = nullptr) {
  using json = nlohmann::json;
  std::filesystem::create_directories(dir);
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  json added = json::array();
  int id = 256;
  for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", id++},
                     {"content", t},
                     {"special", true},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"single_word", false},
                     {"normalized", false}});
  json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  std::ofstream(dir + "/tokenizer.json") << tok.dump();
  std::ofstream(dir + "/tokenizer_config.json") << config.dump();
  if (!generation_config.is_null())
    std::ofstream(dir + "/generation_config.json") << generation_config.dump();
}

}  // namespace chainrl::testing
