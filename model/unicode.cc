// UTF-8 helpers and NFC normalization: canonical decomposition (recursive, Hangul algorithmic),
// canonical ordering by combining class, then canonical composition (UAX #15).
#include "model/unicode.h"

#include <algorithm>
#include <vector>

namespace chainrl::unicode {
namespace {

struct CombiningClassEntry {
  char32_t cp;
  uint8_t ccc;
};
struct DecompositionEntry {
  char32_t cp, first, second;
};
struct CompositionEntry {
  char32_t first, second, composed;
};
#include "model/unicode_tables.inc"

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

uint8_t CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kCombiningClass), std::end(kCombiningClass), cp,
                             [](const CombiningClassEntry& e, char32_t c) { return e.cp < c; });
  return (it != std::end(kCombiningClass) && it->cp == cp) ? it->ccc : 0;
}

void Decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    int s = static_cast<int>(cp - kSBase);
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out->push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0) {
    auto it = std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), cp,
                               [](const DecompositionEntry& e, char32_t c) { return e.cp < c; });
    if (it != std::end(kDecomposition) && it->cp == cp) {
      Decompose(it->first, out);
      if (it->second) Decompose(it->second, out);
      return;
    }
  }
  out->push_back(cp);
}

// Returns the primary composite of (a, b), or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kComposition), std::end(kComposition), std::pair{a, b},
                             [](const CompositionEntry& e, std::pair<char32_t, char32_t> k) {
                               return e.first != k.first ? e.first < k.first : e.second < k.second;
                             });
  if (it != std::end(kComposition) && it->first == a && it->second == b) return it->composed;
  return 0;
}

// Code points that NFC can change or that can combine with a neighbour: those with a canonical
// decomposition, non-zero combining class, or that are the second half of a composition (Hangul
// V/T jamo included). Text made only of other code points is already NFC.
class NfcUnstable {
 public:
  NfcUnstable() : bmp_(0x10000, false) {
    for (const auto& e : kDecomposition) Add(e.cp);
    for (const auto& e : kCombiningClass) Add(e.cp);
    for (const auto& e : kComposition) Add(e.second);
    for (char32_t c = kVBase; c < kVBase + kVCount; ++c) Add(c);
    for (char32_t c = kTBase + 1; c < kTBase + kTCount; ++c) Add(c);
    std::sort(astral_.begin(), astral_.end());
  }
  bool Contains(char32_t cp) const {
    if (cp < 0x10000) return bmp_[cp];
    return std::binary_search(astral_.begin(), astral_.end(), cp);
  }

 private:
  void Add(char32_t cp) {
    if (cp < 0x10000)
      bmp_[cp] = true;
    else
      astral_.push_back(cp);
  }
  std::vector<bool> bmp_;
  std::vector<char32_t> astral_;
};

const NfcUnstable& Unstable() {
  static const NfcUnstable table;
  return table;
}

// Length of the valid sequence at s[i], or 0 when ill-formed; *bad_len is then the length of
// the maximal ill-formed subpart (>= 1).
size_t ValidSequenceLength(std::string_view s, size_t i, size_t* bad_len) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  *bad_len = 1;
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      *bad_len = k;
      return 0;
    }
    unsigned char d = b(i + k);
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (d < l || d > h) {
      *bad_len = k;
      return 0;
    }
  }
  return need + 1;
}

}  // namespace

bool IsValidUtf8(std::string_view s, size_t* error_offset) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad;
    size_t n = ValidSequenceLength(s, i, &bad);
    if (n == 0) {
      if (error_offset) *error_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

char32_t NextCodePoint(std::string_view s, size_t* pos) {
  auto b = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
  size_t i = *pos;
  char32_t c = b(i);
  if (c < 0x80) {
    *pos = i + 1;
    return c;
  }
  if (c < 0xE0) {
    *pos = i + 2;
    return ((c & 0x1F) << 6) | (b(i + 1) & 0x3F);
  }
  if (c < 0xF0) {
    *pos = i + 3;
    return ((c & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
  }
  *pos = i + 4;
  return ((c & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
         (b(i + 3) & 0x3F);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string ReplaceInvalidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    size_t bad;
    size_t n = ValidSequenceLength(bytes, i, &bad);
    if (n) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      i += bad;
    }
  }
  return out;
}

namespace {

// Full NFC of a chunk: decompose, order marks, compose.
void NfcChunk(std::string_view s, std::string* result) {
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) Decompose(NextCodePoint(s, &i), &cps);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (CombiningClass(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && CombiningClass(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<char32_t> out;
  out.reserve(cps.size());
  ptrdiff_t starter = -1;
  int last_ccc = -1;
  for (char32_t c : cps) {
    int ccc = CombiningClass(c);
    if (starter >= 0) {
      bool blocked =
          !(last_ccc < ccc || (last_ccc == 0 && static_cast<size_t>(starter) + 1 == out.size()));
      // A starter directly after the starter is unblocked; last_ccc==0 otherwise means a
      // blocking starter sits between them.
      if (static_cast<size_t>(starter) + 1 == out.size()) blocked = false;
      if (!blocked) {
        char32_t composed = Compose(out[starter], c);
        if (composed) {
          out[starter] = composed;
          continue;
        }
      }
    }
    if (ccc == 0) {
      starter = static_cast<ptrdiff_t>(out.size());
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
    out.push_back(c);
  }
  for (char32_t c : out) AppendUtf8(c, result);
}

}  // namespace

std::string NfcReference(std::string_view s) {
  std::string out;
  NfcChunk(s, &out);
  return out;
}

std::string Nfc(std::string_view s) {
  // NFC never acts across a stable code point (one that neither decomposes, nor has a combining
  // class, nor composes with what precedes it), so stable code points are copied and only the
  // chunks [stable starter, following unstable code points] take the full path.
  std::string out;
  out.reserve(s.size());
  size_t prev_begin = std::string::npos;  // start in `s` of the last copied code point
  size_t i = 0;
  while (i < s.size()) {
    size_t b = i;
    if ((s[i] & 0x80) == 0) {
      out.push_back(s[i++]);
      prev_begin = b;
      continue;
    }
    char32_t cp = NextCodePoint(s, &i);
    if (!Unstable().Contains(cp)) {
      out.append(s.substr(b, i - b));
      prev_begin = b;
      continue;
    }
    size_t chunk_begin = b;
    if (prev_begin != std::string::npos) {
      out.resize(out.size() - (b - prev_begin));
      chunk_begin = prev_begin;
    }
    size_t end = i;
    while (end < s.size()) {
      size_t next = end;
      char32_t c = NextCodePoint(s, &next);
      if (c < 0x80 || !Unstable().Contains(c)) break;
      end = next;
    }
    NfcChunk(s.substr(chunk_begin, end - chunk_begin), &out);
    prev_begin = std::string::npos;
    i = end;
  }
  return out;
}

}  // namespace chainrl::unicode
