// A model's parameters as one flat byte buffer (every parameter's bytes in a fixed order), the
// payload of weight publication from the learner to its actors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "model/decoder.h"

namespace chainrl::model {

// "chainrl-flat-v1:" + a fingerprint of every parameter's name, shape and dtype, in order. Two
// models exchange flat weights only when their formats are equal.
std::string FlatWeightsFormat(DecoderModel& model);
// Bytes of the flat buffer (tied parameters counted once).
size_t FlatWeightsBytes(DecoderModel& model);
// Writes the parameters into `out` (FlatWeightsBytes(model) bytes).
void PackFlatWeights(DecoderModel& model, uint8_t* out);
// Copies `bytes` into the parameters. Error (naming `source`) when `format` is not the model's or
// the size differs: the weights belong to another architecture or size.
Status UnpackFlatWeights(DecoderModel& model, std::span<const uint8_t> bytes,
                         std::string_view format, std::string_view source);

}  // namespace chainrl::model
