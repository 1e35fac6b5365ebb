// Rank messages of the data-parallel learner (see rank_messages.h): the byte format of
// rank_message_codec.h instantiated with RankMessage, and its prompt embeddings' tensors.
#include "learner/rank_messages.h"

#include <torch/torch.h>

namespace chainrl::learner {
namespace {

static_assert(kEmbeddingDtypes[0] == static_cast<int8_t>(torch::kHalf) &&
              kEmbeddingDtypes[1] == static_cast<int8_t>(torch::kFloat) &&
              kEmbeddingDtypes[2] == static_cast<int8_t>(torch::kDouble) &&
              kEmbeddingDtypes[3] == static_cast<int8_t>(torch::kBFloat16));
static_assert(kRankMessageMaxSampleEnd == kMaxSampleEnd);

// A group's prompt embeddings as float32 values and back (exact for the 16-bit types).
struct TensorEmbeddings {
  static PromptEmbeddingsBytes ToBytes(const GroupData& g) {
    PromptEmbeddingsBytes e;
    if (!g.prompt_embeddings.defined()) return e;
    e.dtype = static_cast<int8_t>(g.prompt_embeddings.scalar_type());
    e.shape.assign(g.prompt_embeddings.sizes().begin(), g.prompt_embeddings.sizes().end());
    torch::Tensor f = g.prompt_embeddings.detach().to(torch::kCPU, torch::kFloat).contiguous();
    e.values.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
    return e;
  }
  // Given a checked matrix (rank_codec::CheckPromptEmbeddings).
  static void FromBytes(PromptEmbeddingsBytes e, GroupData* g) {
    g->prompt_embeddings = torch::from_blob(e.values.data(), e.shape, torch::kFloat)
                               .to(static_cast<torch::ScalarType>(e.dtype))
                               .clone();
  }
};

}  // namespace

std::string EncodeRankMessage(const RankMessage& m) {
  return rank_codec::Encode<TensorEmbeddings>(m);
}

Result<RankMessage> DecodeRankMessage(std::string_view bytes) {
  RankMessage m;
  CHAINRL_RETURN_IF_ERROR(rank_codec::Decode<TensorEmbeddings>(bytes, &m));
  return m;
}

Status TellOtherRanks(DataParallel* dp, const RankMessage& m) {
  if (dp == nullptr) return Status::Ok();
  const std::string bytes = EncodeRankMessage(m);
  for (int r = 1; r < dp->world_size(); ++r) CHAINRL_RETURN_IF_ERROR(dp->Send(r, bytes));
  return Status::Ok();
}

}  // namespace chainrl::learner
