// A model's parameters as one flat byte buffer (every parameter's bytes in a fixed order), the
// payload of weight publication from the learner to its actors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "model/decoder.h"

namespace chainrl::model {

// `as`: the dtype the weights travel in (the receivers' parameter dtype, e.g. bfloat16 actors fed
// by a learner with float32 master weights); unset = each parameter's own dtype.
//
// What travels: every parameter, or, for a model with LoRA adapters (DecoderModel::AttachLora),
// the adapters alone (the receivers hold the frozen base themselves).
//
// "chainrl-flat-v1:" (full weights) or kLoraFlatPrefix (adapters) + a fingerprint of every
// published tensor's name, shape and dtype, in order. Two models exchange flat weights only when
// their formats are equal: an actor without the learner's [lora] (or with another rank or targets)
// refuses what it is sent instead of sampling its base policy.
inline constexpr char kLoraFlatPrefix[] = "chainrl-lora-v1:";
std::string FlatWeightsFormat(DecoderModel& model, std::optional<torch::ScalarType> as = {});
// Bytes of the flat buffer (tied parameters counted once).
size_t FlatWeightsBytes(DecoderModel& model, std::optional<torch::ScalarType> as = {});
// Writes the parameters, converted to `as`, into `out` (FlatWeightsBytes(model, as) bytes).
void PackFlatWeights(DecoderModel& model, uint8_t* out, std::optional<torch::ScalarType> as = {});
// Copies `bytes` into the parameters. Error (naming `source`) when `format` is not the model's or
// the size differs: the weights belong to another architecture or size.
Status UnpackFlatWeights(DecoderModel& model, std::span<const uint8_t> bytes,
                         std::string_view format, std::string_view source);

}  // namespace chainrl::model
