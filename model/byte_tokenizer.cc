// Writes the byte-level tokenizer's Hugging Face files (see byte_tokenizer.h).
#include "model/byte_tokenizer.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/file_io.h"

namespace chainrl::model {
namespace {

// The printable stand-in of each byte in byte-level BPE vocabularies: printable Latin-1 bytes
// stand for themselves, the others are shifted to code points 256 and up.
std::string ByteSymbol(int b, int* next_shifted) {
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const int cp = printable ? b : 256 + (*next_shifted)++;
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {  // < 0x800 for every value used here: two UTF-8 bytes
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

nlohmann::ordered_json AddedToken(int id, const char* content) {
  return {{"id", id},           {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},    {"normalized", false}, {"special", true}};
}

}  // namespace

Status WriteByteTokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  int shifted = 0;
  for (int b = 0; b < 256; ++b) vocab[ByteSymbol(b, &shifted)] = b;
  const nlohmann::ordered_json byte_level = {{"type", "ByteLevel"},
                                             {"add_prefix_space", false},
                                             {"trim_offsets", false},
                                             {"use_regex", false}};
  nlohmann::ordered_json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {AddedToken(kByteTokenizerEndOfText, "<|endoftext|>"),
        AddedToken(kByteTokenizerImStart, "<|im_start|>"),
        AddedToken(kByteTokenizerImEnd, "<|im_end|>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", nlohmann::ordered_json::array()}}}};
  const char* chat_template =
      "{%- for message in messages %}"
      "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
      "{%- endfor %}"
      "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  nlohmann::ordered_json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                                   {"bos_token", nullptr},
                                   {"eos_token", "<|im_end|>"},
                                   {"pad_token", "<|endoftext|>"},
                                   {"model_max_length", 32768},
                                   {"chat_template", chat_template}};
  nlohmann::ordered_json special = {{"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"}};
  const fs::path d(dir);
  CHAINRL_RETURN_IF_ERROR(WriteFileAtomic((d / "tokenizer.json").string(), tok.dump(1) + "\n"));
  CHAINRL_RETURN_IF_ERROR(
      WriteFileAtomic((d / "tokenizer_config.json").string(), config.dump(1) + "\n"));
  return WriteFileAtomic((d / "special_tokens_map.json").string(), special.dump(1) + "\n");
}

}  // namespace chainrl::model
