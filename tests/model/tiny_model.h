// The small random Qwen2-style decoder the rollout and learner tests run: 2 layers, hidden 32,
// 4 query / 2 key-value heads. The rollout tests keep the default large initialiser range, so that
// distributions are peaked and greedy decoding has no near-ties.
#pragma once

#include <cstdint>
#include <memory>

#include "model/decoder.h"

namespace chainrl::testing {

inline constexpr int64_t kTinyHidden = 32;

inline std::shared_ptr<model::DecoderModel> TinyModel(uint64_t seed = 1, int64_t vocab = 64,
                                                      double initializer_range = 0.3,
                                                      bool tie_word_embeddings = false) {
  model::ModelConfig c;
  c.arch = model::Architecture::kQwen2;
  c.vocab_size = vocab;
  c.hidden_size = kTinyHidden;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 512;
  c.initializer_range = initializer_range;
  c.tie_word_embeddings = tie_word_embeddings;
  auto m = std::make_shared<model::DecoderModel>(c);
  m->InitWeights(seed);
  return m;
}

}  // namespace chainrl::testing
