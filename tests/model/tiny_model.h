// The small random Qwen2-style decoder the rollout and learner tests run: 2 layers, hidden 32,
// 4 query / 2 key-value heads. The rollout tests keep the default large initialiser range, so that
// distributions are peaked and greedy decoding has no near-ties. Tests that need another shape
// start from TinyConfig() and change the fields they need.
#pragma once

#include <cstdint>
#include <memory>

#include "model/decoder.h"

namespace chainrl::testing {

inline constexpr int64_t kTinyHidden = 32;

// The tiny decoder's configuration.
inline model::ModelConfig TinyConfig(int64_t vocab = 64, double initializer_range = 0.3,
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
  return c;
}

// A decoder of `config` with weights drawn from `seed` (DecoderModel::InitWeights).
inline std::shared_ptr<model::DecoderModel> TinyModel(const model::ModelConfig& config,
                                                      uint64_t seed) {
  auto m = std::make_shared<model::DecoderModel>(config);
  m->InitWeights(seed);
  return m;
}

// The tiny decoder, TinyConfig(vocab, initializer_range, tie_word_embeddings), from `seed`.
inline std::shared_ptr<model::DecoderModel> TinyModel(uint64_t seed = 1, int64_t vocab = 64,
                                                      double initializer_range = 0.3,
                                                      bool tie_word_embeddings = false) {
  return TinyModel(TinyConfig(vocab, initializer_range, tie_word_embeddings), seed);
}

}  // namespace chainrl::testing
