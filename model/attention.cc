// Attention: the SDPA / math dispatch on the LibTorch version, GQA by folding query heads, masks.
#include "model/attention.h"

#include <torch/torch.h>
#include <torch/version.h>

#include "core/check.h"
#include "model/decode_attention_kernel.h"

namespace chainrl::model {

torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double scale) {
  CHAINRL_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                "q" << q.sizes() << " k" << k.sizes() << " v" << v.sizes());
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2);
  CHAINRL_CHECK(
      Hkv > 0 && Hq % Hkv == 0 && k.size(0) == B && v.sizes() == k.sizes() && k.size(3) == D,
      "q" << q.sizes() << " k" << k.sizes() << " v" << v.sizes());
  const int64_t rep = Hq / Hkv;
  // Query heads h = g * rep + r share kv head g: view q as [B, Hkv, rep * Tq, D] so one batched
  // matmul per kv head covers its whole group without materialising repeated keys and values.
  torch::Tensor qg = rep == 1 ? q : q.reshape({B, Hkv, rep * Tq, D});
  torch::Tensor m;
  if (mask.defined()) {
    m = mask.dim() == 2 ? mask.view({1, 1, mask.size(0), mask.size(1)}) : mask;
    if (rep > 1) {
      // [B?, 1, Tq, Tk] -> [B?, 1, rep * Tq, Tk], matching the folded query axis.
      m = m.unsqueeze(2)
              .expand({m.size(0), m.size(1), rep, Tq, Tk})
              .reshape({m.size(0), m.size(1), rep * Tq, Tk});
    }
  }
  torch::Tensor out;
// SDPA takes `scale` from LibTorch 2.1 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  out = at::scaled_dot_product_attention(
      qg, k, v, m.defined() ? c10::optional<at::Tensor>(m) : c10::optional<at::Tensor>(), 0.0,
      false, scale);
#else
  const bool low_precision = q.scalar_type() == torch::kHalf || q.scalar_type() == torch::kBFloat16;
  torch::Tensor scores = torch::matmul(qg, k.transpose(-2, -1));  // [B, Hkv, rep*Tq, Tk]
  scores.mul_(scale);
  if (m.defined()) scores.masked_fill_(m.logical_not(), -std::numeric_limits<double>::infinity());
  torch::Tensor probs = low_precision
                            ? torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type())
                            : torch::softmax(scores, -1);
  out = torch::matmul(probs, v);  // [B, Hkv, rep*Tq, D]
#endif
  return rep == 1 ? out : out.reshape({B, Hq, Tq, D});
}

bool DecodeAttentionSupports(const torch::Tensor& k) {
  return k.device().is_cpu() &&
         (k.scalar_type() == torch::kFloat32 || k.scalar_type() == torch::kBFloat16);
}

torch::Tensor DecodeAttention(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const std::vector<int64_t>& lengths,
                              double scale) {
  CHAINRL_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.size(2) == 1,
                "q" << q.sizes() << " k" << k.sizes() << " v" << v.sizes());
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(3), Hkv = k.size(1);
  CHAINRL_CHECK(DecodeAttentionSupports(k) && v.scalar_type() == k.scalar_type() &&
                    k.size(0) == B && k.size(3) == D && Hkv > 0 && Hq % Hkv == 0 &&
                    v.sizes() == k.sizes() && v.strides() == k.strides() && k.stride(3) == 1 &&
                    static_cast<int64_t>(lengths.size()) == B,
                "q" << q.sizes() << " k" << k.sizes() << k.strides() << " v" << v.sizes()
                    << v.strides() << " lengths " << lengths.size());
  for (int64_t b = 0; b < B; ++b)
    CHAINRL_CHECK(lengths[b] >= 0 && lengths[b] <= k.size(2),
                  "lengths[" << b << "] = " << lengths[b] << " of " << k.size(2));
  const int64_t rep = Hq / Hkv;
  torch::Tensor qf = q.to(torch::kFloat32).contiguous();  // [B, Hq, 1, D]: head h = g * rep + r
  torch::Tensor out = torch::zeros({B, Hq, 1, D}, qf.options());
  const float* qp = qf.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const bool bf16 = k.scalar_type() == torch::kBFloat16;
  const int64_t sb = k.stride(0), sg = k.stride(1), sj = k.stride(2);
  const void* kp = k.data_ptr();
  const void* vp = v.data_ptr();
  const float fscale = static_cast<float>(scale);
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / Hkv, g = i % Hkv, len = lengths[b];
      if (len == 0) continue;
      scratch.resize(static_cast<size_t>(rep * len + 2 * D));
      const int64_t qo = (b * Hq + g * rep) * D, ko = b * sb + g * sg;
      if (bf16) {
        kernel::DecodeAttentionBF16(qp + qo, rep, D, static_cast<const uint16_t*>(kp) + ko,
                                    static_cast<const uint16_t*>(vp) + ko, sj, len, fscale,
                                    op + qo, scratch.data());
      } else {
        kernel::DecodeAttentionF32(qp + qo, rep, D, static_cast<const float*>(kp) + ko,
                                   static_cast<const float*>(vp) + ko, sj, len, fscale, op + qo,
                                   scratch.data());
      }
    }
  });
  return out.to(q.scalar_type());
}

torch::Tensor CausalMask(int64_t q_len, int64_t k_len, torch::Device device) {
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  torch::Tensor i = torch::arange(q_len, opts).unsqueeze(1) + (k_len - q_len);
  torch::Tensor j = torch::arange(k_len, opts).unsqueeze(0);
  return j <= i;
}

namespace {
// Rows with no allowed key would be NaN; let them attend everywhere (their outputs are padding).
void UnmaskEmptyRows(torch::Tensor& mask) {
  mask.logical_or_(mask.any(-1, /*keepdim=*/true).logical_not());
}
}  // namespace

torch::Tensor PaddedCausalMask(const torch::Tensor& key_valid) {
  CHAINRL_CHECK(key_valid.dim() == 2, "key_valid" << key_valid.sizes());
  const int64_t T = key_valid.size(1);
  torch::Tensor valid = key_valid.to(torch::kBool).unsqueeze(1);  // [B, 1, T]
  torch::Tensor mask = CausalMask(T, T, key_valid.device()).unsqueeze(0).logical_and(valid);
  UnmaskEmptyRows(mask);
  return mask.unsqueeze(1);
}

torch::Tensor CacheCausalMask(const std::vector<int64_t>& start, int64_t new_tokens,
                              int64_t key_len, torch::Device device) {
  const int64_t B = static_cast<int64_t>(start.size());
  torch::Tensor s = torch::tensor(start, torch::kLong).to(device);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  torch::Tensor last = s.view({B, 1, 1}) + torch::arange(new_tokens, opts).view({1, new_tokens, 1});
  torch::Tensor mask = torch::arange(key_len, opts).view({1, 1, key_len}) <= last;  // [B, T, Tk]
  return mask.unsqueeze(1);
}

}  // namespace chainrl::model
