// What every libFuzzer harness of fuzz/ shares: the input as text, cut into parts at marker lines,
// and a check that turns a broken property into a crash libFuzzer saves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

namespace chainrl::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// `in` cut at the first `marker` (e.g. "\n#context\n"): the part before and the part after
// (empty when the marker is absent). Seeds hold two files this way.
inline std::pair<std::string_view, std::string_view> SplitAt(std::string_view in,
                                                             std::string_view marker) {
  const size_t at = in.find(marker);
  if (at == std::string_view::npos) return {in, {}};
  return {in.substr(0, at), in.substr(at + marker.size())};
}

// A property every input must keep; on failure prints `what` and aborts (a libFuzzer crash).
#define CHAINRL_FUZZ_CHECK(cond, what)                                                      \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s: %s\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                              \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

}  // namespace chainrl::fuzz
