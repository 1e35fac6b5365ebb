// Tokenizers of Hugging Face model directories: byte-level BPE from `tokenizer.json` (Qwen2/Qwen3,
// Llama 3, GPT-2) and SentencePiece `tokenizer.model` (Llama 2 style), behind one interface whose
// token ids equal those of the Hugging Face `tokenizers` library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace chainrl {

// A token matched in raw text before the model runs (tokenizer.json "added_tokens").
struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;      // dropped by Decode(skip_special=true)
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // the match swallows whitespace on its right
  bool single_word = false;  // matches only when not inside a word
  bool normalized = false;   // see Tokenizer's note on added tokens
};

// An immutable tokenizer. Copies share the loaded model (cheap). All const methods are
// thread-safe (the per-word BPE cache is internally locked).
//
// Input text must be valid UTF-8: Encode() returns InvalidArgument naming the byte offset of the
// first ill-formed sequence otherwise (no silent replacement). Decode() of ids whose bytes do not
// form valid UTF-8 (a multi-byte character split across a cut) replaces each ill-formed subpart
// with U+FFFD, as Hugging Face's decode does (errors="replace"); DecodeBytes() gives the raw bytes.
//
// Supported tokenizer.json parts: model BPE (merges as "a b" strings or ["a","b"] pairs,
// ignore_merges, byte_fallback, unk_token); normalizers null, NFC, Sequence of those;
// pre-tokenizers Split (Regex or String pattern, behaviour Isolated/Removed, invert false),
// ByteLevel (with or without its GPT-2 regex, add_prefix_space), Sequence; decoder ByteLevel (or
// null); post-processors null, ByteLevel, TemplateProcessing (single sequence), Sequence. Anything
// else is an error naming the file and JSON path. Added tokens are matched leftmost-longest on the
// raw text (before the normalizer), honouring lstrip/rstrip/single_word; tokens flagged
// normalized=true are matched on the raw text too, which is the same whenever the normalizer leaves
// the token's text unchanged (true for NFC and ASCII tokens). lstrip/rstrip swallow ASCII
// whitespace; single_word treats ASCII letters, digits, '_' and any non-ASCII byte as word bytes.
//
// SentencePiece tokenizer.model files are read natively (see tokenizer_sentencepiece.h): BPE
// models with the identity normalizer (Llama 2, Mistral); their control pieces (<s>, </s>) act
// as special added tokens, and add_special_tokens adds BOS (and EOS) per tokenizer_config.json's
// add_bos_token/add_eos_token (default: BOS only, as Llama 2). For tokenizer.json the
// post-processor alone decides what add_special_tokens adds, as in Hugging Face tokenizers.
class Tokenizer {
 public:
  // Loads DIR/tokenizer.json (preferred) or DIR/tokenizer.model, plus DIR/tokenizer_config.json
  // when present (bos/eos/pad tokens, add_bos_token/add_eos_token, chat template).
  static Result<Tokenizer> FromDir(const std::string& dir);
  // Loads one file: a tokenizer.json, or a SentencePiece model when the name ends in ".model".
  // `config_json_path` (optional) is a tokenizer_config.json.
  static Result<Tokenizer> FromFile(const std::string& path,
                                    const std::string& config_json_path = "");
  // Parses tokenizer.json text; `source` names it in errors. `config_json` may be empty.
  static Result<Tokenizer> FromJsonText(std::string_view tokenizer_json,
                                        std::string_view config_json, const std::string& source);

  // Token ids of `text`. With add_special_tokens, the post-processor's tokens are added (e.g. a
  // BOS from TemplateProcessing), as Hugging Face's encode(..., add_special_tokens=True).
  Result<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens = false) const;
  // Encode() of each text; fails on the first bad text, naming its index.
  Result<std::vector<std::vector<int32_t>>> EncodeBatch(const std::vector<std::string>& texts,
                                                        bool add_special_tokens = false) const;
  // Text of `ids` (UTF-8; see the class note). Unknown ids are InvalidArgument. skip_special
  // drops special added tokens. No "clean up tokenization spaces" is applied.
  Result<std::string> Decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // The raw bytes `ids` stand for, without UTF-8 repair.
  Result<std::string> DecodeBytes(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Number of ids: max id + 1 over the model vocabulary and added tokens.
  int64_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  // Special ids from tokenizer_config.json (bos_token, eos_token, pad_token), when present.
  std::optional<int32_t> bos_token_id() const;
  std::optional<int32_t> eos_token_id() const;
  std::optional<int32_t> pad_token_id() const;
  std::optional<std::string> bos_token() const;
  std::optional<std::string> eos_token() const;
  // The chat_template string of tokenizer_config.json ("" when absent).
  const std::string& chat_template() const;
  // "bpe" or "sentencepiece".
  std::string kind() const;

  class Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  static Result<Tokenizer> LoadJson(std::string_view tokenizer_json, const std::string& source,
                                    std::string_view config_json, const std::string& config_source);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace chainrl
