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
// "chainrl-flat-v1:" + a fingerprint of every parameter's name, shape and dtype, in order. Two
// models exchange flat weights only when their formats are equal.
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
