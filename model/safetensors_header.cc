// Parsing and validation of safetensors headers (see safetensors_header.h).
#include "model/safetensors_header.h"

#include <algorithm>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/json_file.h"

namespace chainrl::model {
namespace {

uint64_t ReadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

uint64_t SafetensorsElementSize(const std::string& dtype) {
  static const std::map<std::string, uint64_t> kSizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},      {"BOOL", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

Result<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* data, size_t size,
                                                 const std::string& file) {
  auto corrupt = [&](const std::string& m) { return Corrupt(file + ": " + m); };
  if (size < 8) return corrupt("truncated: " + std::to_string(size) + " bytes, no header length");
  const uint64_t n = ReadLe64(data);
  if (n > kMaxSafetensorsHeaderBytes)
    return corrupt("header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    return corrupt("header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const char* text = reinterpret_cast<const char*>(data + 8);

  // Duplicate top-level names would silently shadow each other in a JSON object; catch them
  // while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  if (Status st = CheckJson(std::string_view(text, n), "header", kMaxJsonDepth); !st.ok())
    return corrupt(st.message());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, text + n, callback);
  } catch (const std::exception& e) {
    return corrupt(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return corrupt("tensor " + Quote(duplicate) + " appears twice in header");
  if (!j.is_object()) return corrupt("header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + n;
  const uint64_t data_size = size - 8 - n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return corrupt("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return corrupt("__metadata__ value for " + Quote(m.key()) + " is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& m) { return corrupt("tensor " + Quote(name) + ": " + m); };
    if (!v.is_object()) return bad("entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return bad("missing or non-string 'dtype'");
    if (sh == v.end() || !sh->is_array()) return bad("missing or non-array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      return bad("'data_offsets' is not a pair");
    SafetensorsEntry e;
    e.name = name;
    e.dtype = dt->get<std::string>();
    const uint64_t element_size = SafetensorsElementSize(e.dtype);
    if (element_size == 0) return bad("unknown dtype " + Quote(e.dtype));
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return bad("shape has a non-integer or negative dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        return bad("shape overflows");
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned()) return bad("'data_offsets' are not non-negative integers");
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    if (e.end < e.begin) return bad("data_offsets end before they begin");
    if (e.end > data_size)
      return bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                 ") run past the data section (" + std::to_string(data_size) + " bytes)");
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, element_size, &nbytes) || nbytes != e.end - e.begin)
      return bad("byte count " + std::to_string(e.end - e.begin) + " does not match shape and " +
                 e.dtype);
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Sorted by begin, non-empty ranges are disjoint iff each begins at or after every earlier end.
  uint64_t max_end = 0;
  const SafetensorsEntry* last = nullptr;
  for (const auto& e : h.entries) {
    if (e.end == e.begin) continue;
    if (last != nullptr && e.begin < max_end)
      return corrupt("tensors " + Quote(last->name) + " and " + Quote(e.name) +
                     " have overlapping data_offsets");
    max_end = e.end;
    last = &e;
  }
  return h;
}

}  // namespace chainrl::model
