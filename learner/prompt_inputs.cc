#include "learner/prompt_inputs.h"

#include "core/log.h"
#include "learner/group_source.h"
#include "learner/rl_step.h"
#include "rollout/embedding_cache.h"

namespace chainrl::learner {

Result<std::unique_ptr<PromptInputs>> PromptInputs::Create(const Config& c) {
  auto p = std::unique_ptr<PromptInputs>(new PromptInputs());
  const rollout::PromptOptions po = rollout::PromptOptionsFromConfig(c);
  p->tokenizer_dir_ = po.tokenizer_dir;
  CHAINRL_ASSIGN_OR_RETURN(p->renderer_, rollout::PromptRenderer::Create(po));
  return p;
}

Status PromptInputs::SetupEmbeddings(const Config& c, const data::Example* first,
                                     int64_t hidden_size, metrics::MetricsRegistry* metrics) {
  if (!first) return Status::Ok();
  const std::string text = c.GetString("data.embedding_placeholder");
  if (text.empty())
    return InvalidArgument("data.embedding_placeholder: the data carries prompt embeddings (" +
                           first->source + ") but no placeholder token is set");
  CHAINRL_ASSIGN_OR_RETURN(placeholder_id_,
                           renderer_->SingleTokenId(text, "data.embedding_placeholder"));
  embeddings_ = rollout::MakeEmbeddingCache(c, hidden_size, metrics);
  CHAINRL_LOG(kInfo) << "prompt embeddings: spliced at token " << placeholder_id_ << " ('" << text
                     << "'), cache of " << c.GetInt("rollout.embedding_cache_bytes") << " bytes";
  return Status::Ok();
}

Result<const std::vector<int32_t>*> PromptInputs::Tokens(size_t index, const data::Example& example,
                                                         bool* hit) {
  auto it = cache_.find(index);
  if (hit) *hit = it != cache_.end();
  if (it != cache_.end()) return &it->second;
  CHAINRL_ASSIGN_OR_RETURN(auto ids, renderer_->Render(example));
  return &(cache_[index] = std::move(ids));
}

Status PromptInputs::AttachEmbeddings(const data::Example& example, GroupData* group) const {
  if (example.embeddings.empty() || !embeddings_) return Status::Ok();
  CHAINRL_ASSIGN_OR_RETURN(const rollout::EmbeddingRef ref,
                           rollout::ParseEmbeddingRef(example.embeddings));
  CHAINRL_ASSIGN_OR_RETURN(group->prompt_embeddings, embeddings_->Get(ref));
  group->placeholder_token_id = placeholder_id_;
  return Status::Ok();
}

Result<std::vector<SftExample>> PromptInputs::SftExamples(
    const std::vector<data::Example>& train, const std::vector<size_t>& indices) const {
  std::vector<SftExample> batch;
  for (size_t index : indices) {
    const std::string target = SftResponse(train[index]);
    if (target.empty()) continue;
    SftExample s;
    CHAINRL_ASSIGN_OR_RETURN(s.prompt, renderer_->Render(train[index]));
    CHAINRL_ASSIGN_OR_RETURN(s.response, renderer_->EncodeResponse(target));
    batch.push_back(std::move(s));
  }
  if (batch.empty())
    return InvalidArgument(
        "sft.steps > 0 but the training examples have no solution to imitate (built-in tasks "
        "carry one; JSONL needs a 'solution' field or a string answer)");
  return batch;
}

}  // namespace chainrl::learner
