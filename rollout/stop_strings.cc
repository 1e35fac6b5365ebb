// Stop-string matching across token boundaries (see stop_strings.h).
#include "rollout/stop_strings.h"

#include <algorithm>

namespace chainrl::rollout {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
  for (const auto& s : stops_) keep_ = std::max(keep_, s.size() - 1);
}

std::optional<size_t> StopMatcher::Append(std::string_view piece) {
  if (stops_.empty()) {
    total_ += piece.size();
    return std::nullopt;
  }
  // tail_ holds the last min(total_, keep_) bytes; a new match must end inside `piece`.
  const size_t tail_start = total_ - tail_.size();  // offset of tail_[0] in the whole text
  tail_.append(piece);
  total_ += piece.size();
  std::optional<size_t> best_end, best_begin;
  const size_t new_from = tail_.size() - piece.size();
  for (const auto& s : stops_) {
    // Earliest occurrence ending after new_from.
    size_t from = new_from + 1 > s.size() ? new_from + 1 - s.size() : 0;
    size_t pos = tail_.find(s, from);
    if (pos == std::string::npos) continue;
    size_t end = pos + s.size();
    if (!best_end || end < *best_end || (end == *best_end && pos < *best_begin)) {
      best_end = end;
      best_begin = pos;
    }
  }
  if (tail_.size() > keep_) tail_.erase(0, tail_.size() - keep_);
  if (!best_begin) return std::nullopt;
  return tail_start + *best_begin;
}

}  // namespace chainrl::rollout
