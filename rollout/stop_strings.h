// Stop-string matching during decoding. Text arrives one token's bytes at a time, so a stop
// string may be split across several tokens (or even inside a multi-byte character); the matcher
// keeps just enough of the tail to see every such split.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chainrl::rollout {

// One sequence's matcher. Not thread-safe; cheap to copy.
class StopMatcher {
 public:
  // Empty strings in `stops` are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `piece` (the bytes of the newest token) to the text seen so far. Returns the byte
  // offset, in the whole text, where the earliest-ending stop string begins, if one now occurs;
  // the text up to that offset is the response (stop string excluded).
  std::optional<size_t> Append(std::string_view piece);
  size_t total_bytes() const { return total_; }

 private:
  std::vector<std::string> stops_;
  size_t keep_ = 0;   // the longest stop string's length minus 1
  std::string tail_;  // the last bytes seen (at most keep_ + latest piece)
  size_t total_ = 0;  // bytes seen
};

}  // namespace chainrl::rollout
