// Checkpoint files of serialized messages (buffer.bin, partials.bin): a sequence of records, each
// an 8-byte little-endian length followed by that many bytes. No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace chainrl::learner {

// The largest record: every record is a serialized Protobuf message, which is never larger, and
// the readers hand a record's size to ParseFromArray as an int.
inline constexpr uint64_t kMaxRecordBytes = (uint64_t{1} << 31) - 1;

// Appends one record holding `record` to `out`. REQUIRES: record.size() <= kMaxRecordBytes.
void AppendRecord(std::string* out, std::string_view record);
// The records of `bytes`, viewing into it. Corrupt "WHAT: truncated record ..." naming the record's
// number and byte offset when a length or a record is cut short, and "WHAT: record N at byte P
// claims L bytes, over the limit of kMaxRecordBytes" for a longer one; never reads past the end.
Result<std::vector<std::string_view>> SplitRecords(std::string_view bytes, const std::string& what);

}  // namespace chainrl::learner
