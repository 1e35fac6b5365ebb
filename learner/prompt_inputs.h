// The learner's prompt inputs: the renderer (chat template, tokenizer), each training example's
// rendered prompt tokens cached by example, and the prompt embeddings of data that carries them
// (spliced at a placeholder token in the policy update's prefill). Knows nothing of the process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"
#include "rollout/prompting.h"

namespace chainrl::metrics {
class MetricsRegistry;
}
namespace chainrl::rollout {
class EmbeddingCache;
}

namespace chainrl::learner {

struct GroupData;
struct SftExample;

class PromptInputs {
 public:
  // The renderer from the config's model, tokenizer and chat-template keys; no embeddings yet.
  static Result<std::unique_ptr<PromptInputs>> Create(const Config& c);

  // With `examples` (training, then held-out) of which one carries prompt embeddings: checks
  // data.embedding_placeholder is one token and makes the cache (rollout.embedding_cache_bytes,
  // rows of `hidden_size`, series exported to `metrics` when given). `first_with_embeddings` is
  // null when no example carries them: nothing to do. InvalidArgument naming the key otherwise.
  Status SetupEmbeddings(const Config& c, const data::Example* first_with_embeddings,
                         int64_t hidden_size, metrics::MetricsRegistry* metrics);

  const rollout::PromptRenderer& renderer() const { return *renderer_; }
  const std::string& tokenizer_dir() const { return tokenizer_dir_; }

  // The rendered prompt of training example `index` (`example`), rendered once and then served
  // from the cache; `*hit` tells which when given. The renderer's error naming the example.
  Result<const std::vector<int32_t>*> Tokens(size_t index, const data::Example& example,
                                             bool* hit = nullptr);

  // `example`'s prompt embeddings into `group` (and the placeholder token they are spliced at);
  // nothing when the example carries none or embeddings are not set up.
  Status AttachEmbeddings(const data::Example& example, GroupData* group) const;

  // The SFT warm-up's examples of `indices` into `train`: each rendered prompt and its target
  // (SftResponse) encoded as a response; examples without a target are left out. InvalidArgument
  // when none of them has one, the renderer's errors otherwise.
  Result<std::vector<SftExample>> SftExamples(const std::vector<data::Example>& train,
                                              const std::vector<size_t>& indices) const;

  // For the evaluation and the actors' work: the cache (null without embeddings) and the
  // placeholder token (-1 without).
  const std::shared_ptr<rollout::EmbeddingCache>& embeddings() const { return embeddings_; }
  int32_t placeholder_id() const { return placeholder_id_; }
  size_t cached_prompts() const { return cache_.size(); }

 private:
  std::unique_ptr<rollout::PromptRenderer> renderer_;
  std::string tokenizer_dir_;
  std::unordered_map<size_t, std::vector<int32_t>> cache_;
  std::shared_ptr<rollout::EmbeddingCache> embeddings_;
  int32_t placeholder_id_ = -1;
};

}  // namespace chainrl::learner
