// Checkpoint files of serialized messages (buffer.bin, partials.bin): a sequence of records, each
// an 8-byte little-endian length followed by that many bytes. No LibTorch.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace chainrl::learner {

// Appends one record holding `record` to `out`.
void AppendRecord(std::string* out, std::string_view record);
// The records of `bytes`, viewing into it. Corrupt naming `what` when a length or a record is cut
// short; never reads past the end.
Result<std::vector<std::string_view>> SplitRecords(std::string_view bytes, const std::string& what);

}  // namespace chainrl::learner
