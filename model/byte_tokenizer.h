// A byte-level tokenizer for small models trained from scratch (the quickstart): 256 byte tokens,
// no merges, ChatML special tokens and chat template, written as Hugging Face tokenizer files.
#pragma once

#include <string>

#include "core/status.h"

namespace chainrl::model {

// Ids of the byte tokenizer's special tokens (bytes are ids 0..255).
inline constexpr int kByteTokenizerEndOfText = 256;  // <|endoftext|>: pad / document end
inline constexpr int kByteTokenizerImStart = 257;    // <|im_start|>
inline constexpr int kByteTokenizerImEnd = 258;      // <|im_end|>: end of a turn (EOS)
inline constexpr int kByteTokenizerVocabSize = 259;

// Writes tokenizer.json (byte-level BPE without merges: every byte is one token),
// tokenizer_config.json (ChatML chat template, eos_token <|im_end|>, pad <|endoftext|>) and
// special_tokens_map.json into `dir`, which must exist. Error naming the file on I/O failure.
Status WriteByteTokenizer(const std::string& dir);

}  // namespace chainrl::model
