// Length-prefixed records (see record_file.h).
#include "learner/record_file.h"

#include <cstdint>
#include <cstring>

namespace chainrl::learner {

void AppendRecord(std::string* out, std::string_view record) {
  const uint64_t n = record.size();
  out->append(reinterpret_cast<const char*>(&n), 8);
  out->append(record);
}

Result<std::vector<std::string_view>> SplitRecords(std::string_view bytes,
                                                   const std::string& what) {
  std::vector<std::string_view> out;
  size_t p = 0;
  while (p < bytes.size()) {
    const std::string record =
        "record " + std::to_string(out.size() + 1) + " at byte " + std::to_string(p);
    uint64_t n = 0;
    if (bytes.size() - p < 8)
      return Corrupt(what + ": truncated record length: " + record + " has " +
                     std::to_string(bytes.size() - p) + " of its 8 length bytes");
    std::memcpy(&n, bytes.data() + p, 8);
    if (n > kMaxRecordBytes)
      return Corrupt(what + ": " + record + " claims " + std::to_string(n) +
                     " bytes, over the limit of " + std::to_string(kMaxRecordBytes));
    p += 8;
    if (n > bytes.size() - p)
      return Corrupt(what + ": truncated record: " + record + " claims " + std::to_string(n) +
                     " bytes, " + std::to_string(bytes.size() - p) + " are left");
    out.emplace_back(bytes.data() + p, n);
    p += n;
  }
  return out;
}

}  // namespace chainrl::learner
