// SentencePiece ModelProto decoding (protobuf wire format, the fields chainrl needs) and BPE
// encoding: symbols are characters, the adjacent pair whose concatenation is the highest-scoring
// vocabulary piece merges first (leftmost on ties), leftovers fall back to bytes or <unk>.
#include "model/tokenizer_sentencepiece.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include "model/unicode.h"

namespace chainrl {
namespace {

const char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// A cursor over protobuf wire format.
class Wire {
 public:
  explicit Wire(std::string_view s) : s_(s) {}
  bool done() const { return p_ >= s_.size(); }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= s_.size()) return false;
      uint8_t b = static_cast<uint8_t>(s_[p_++]);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // Reads a field header and its payload: varint in *v, or bytes in *bytes (LEN), or the raw
  // 4/8 bytes of fixed fields in *v.
  bool Field(uint32_t* number, uint32_t* wire_type, uint64_t* v, std::string_view* bytes) {
    uint64_t key;
    if (!Varint(&key)) return false;
    *number = static_cast<uint32_t>(key >> 3);
    *wire_type = static_cast<uint32_t>(key & 7);
    switch (*wire_type) {
      case 0:
        return Varint(v);
      case 1:
        if (p_ + 8 > s_.size()) return false;
        std::memcpy(v, s_.data() + p_, 8);
        p_ += 8;
        return true;
      case 2: {
        uint64_t len;
        if (!Varint(&len) || len > s_.size() - p_) return false;
        *bytes = s_.substr(p_, len);
        p_ += len;
        return true;
      }
      case 5: {
        if (p_ + 4 > s_.size()) return false;
        uint32_t x;
        std::memcpy(&x, s_.data() + p_, 4);
        *v = x;
        p_ += 4;
        return true;
      }
      default:
        return false;
    }
  }

 private:
  std::string_view s_;
  size_t p_ = 0;
};

}  // namespace

Status SentencePieceModel::Load(std::string_view serialized, const std::string& source) {
  auto corrupt = [&](const std::string& what) { return Corrupt(source + ": " + what); };
  Wire top(serialized);
  int64_t model_type = 1;  // UNIGRAM is the proto default
  std::string normalizer_name;
  bool charsmap = false;
  while (!top.done()) {
    uint32_t num, wt;
    uint64_t v = 0;
    std::string_view bytes;
    if (!top.Field(&num, &wt, &v, &bytes))
      return corrupt("not a SentencePiece model (bad protobuf)");
    if (num == 1 && wt == 2) {  // SentencePiece pieces
      Piece piece;
      Wire w(bytes);
      while (!w.done()) {
        uint32_t n2, t2;
        uint64_t v2 = 0;
        std::string_view b2;
        if (!w.Field(&n2, &t2, &v2, &b2))
          return corrupt("pieces[" + std::to_string(pieces_.size()) + "]: bad protobuf");
        if (n2 == 1 && t2 == 2)
          piece.text = std::string(b2);
        else if (n2 == 2 && t2 == 5) {
          uint32_t bits = static_cast<uint32_t>(v2);
          std::memcpy(&piece.score, &bits, 4);
        } else if (n2 == 3 && t2 == 0) {
          if (v2 < 1 || v2 > 6)
            return corrupt("pieces[" + std::to_string(pieces_.size()) + "].type: unknown " +
                           std::to_string(v2));
          piece.type = static_cast<PieceType>(v2);
        }
      }
      pieces_.push_back(std::move(piece));
    } else if (num == 2 && wt == 2) {  // TrainerSpec
      Wire w(bytes);
      while (!w.done()) {
        uint32_t n2, t2;
        uint64_t v2 = 0;
        std::string_view b2;
        if (!w.Field(&n2, &t2, &v2, &b2)) return corrupt("trainer_spec: bad protobuf");
        if (t2 != 0) continue;
        int32_t i = static_cast<int32_t>(static_cast<int64_t>(v2));
        switch (n2) {
          case 3:
            model_type = i;
            break;
          case 35:
            byte_fallback_ = v2 != 0;
            break;
          case 40:
            unk_id_ = i;
            break;
          case 41:
            bos_id_ = i;
            break;
          case 42:
            eos_id_ = i;
            break;
          case 43:
            pad_id_ = i;
            break;
          case 24:
            if (v2)
              return Unimplemented(source +
                                   ": trainer_spec.treat_whitespace_as_suffix is not supported");
            break;
          default:
            break;
        }
      }
    } else if (num == 3 && wt == 2) {  // NormalizerSpec
      Wire w(bytes);
      while (!w.done()) {
        uint32_t n2, t2;
        uint64_t v2 = 0;
        std::string_view b2;
        if (!w.Field(&n2, &t2, &v2, &b2)) return corrupt("normalizer_spec: bad protobuf");
        if (n2 == 1 && t2 == 2)
          normalizer_name = std::string(b2);
        else if (n2 == 2 && t2 == 2)
          charsmap = !b2.empty();
        else if (n2 == 3 && t2 == 0)
          add_dummy_prefix_ = v2 != 0;
        else if (n2 == 4 && t2 == 0)
          remove_extra_whitespaces_ = v2 != 0;
        else if (n2 == 5 && t2 == 0)
          escape_whitespaces_ = v2 != 0;
      }
    }
  }
  if (pieces_.empty()) return corrupt("no pieces (not a SentencePiece model?)");
  if (model_type != 2)
    return Unimplemented(source + ": SentencePiece model_type " + std::to_string(model_type) +
                         " is not supported (only BPE, type 2, as Llama 2 uses)");
  if (charsmap)
    return Unimplemented(source + ": SentencePiece normalizer \"" + normalizer_name +
                         "\" is not supported (only identity)");
  const int32_t n = static_cast<int32_t>(pieces_.size());
  for (int32_t id : {unk_id_, bos_id_, eos_id_})
    if (id >= n) return corrupt("trainer_spec: special id " + std::to_string(id) + " out of range");
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  for (int32_t id = 0; id < n; ++id) {
    const Piece& p = pieces_[id];
    if (!unicode::IsValidUtf8(p.text))
      return corrupt("pieces[" + std::to_string(id) + "]: not valid UTF-8");
    all_.emplace(p.text, id);
    if (p.type == PieceType::kNormal || p.type == PieceType::kUserDefined)
      mergeable_.emplace(p.text, id);
    if (p.type == PieceType::kUserDefined) user_defined_.push_back(id);
    if (p.type == PieceType::kByte) {
      unsigned v;
      if (p.text.size() == 6 && std::sscanf(p.text.c_str(), "<0x%02X>", &v) == 1 && v < 256)
        byte_ids_[v] = id;
    }
  }
  std::stable_sort(user_defined_.begin(), user_defined_.end(), [&](int32_t a, int32_t b) {
    return pieces_[a].text.size() > pieces_[b].text.size();
  });
  return Status::Ok();
}

std::optional<int32_t> SentencePieceModel::PieceToId(std::string_view piece) const {
  auto it = all_.find(std::string(piece));
  if (it == all_.end()) return std::nullopt;
  return it->second;
}

void SentencePieceModel::Encode(std::string_view text, std::vector<int32_t>* out) const {
  // Normalize: optional whitespace clean-up, dummy prefix, spaces -> U+2581.
  std::string t(text);
  if (remove_extra_whitespaces_) {
    std::string c;
    bool space = true;  // drops leading spaces
    for (char ch : t) {
      if (ch == ' ') {
        if (!space) c.push_back(' ');
        space = true;
      } else {
        c.push_back(ch);
        space = false;
      }
    }
    while (!c.empty() && c.back() == ' ') c.pop_back();
    t = std::move(c);
  }
  if (t.empty()) return;
  if (add_dummy_prefix_) t.insert(t.begin(), ' ');
  std::string norm;
  if (escape_whitespaces_) {
    for (char ch : t) {
      if (ch == ' ')
        norm += kSpaceSymbol;
      else
        norm.push_back(ch);
    }
  } else {
    norm = std::move(t);
  }
  if (remove_extra_whitespaces_) {
    // Trailing whitespace is removed after escaping, so a literal U+2581 there goes too.
    const std::string_view space = escape_whitespaces_ ? kSpaceSymbol : " ";
    while (norm.size() >= space.size() &&
           norm.compare(norm.size() - space.size(), space.size(), space) == 0)
      norm.resize(norm.size() - space.size());
  }

  // Initial symbols: user-defined pieces (longest match) or single characters.
  struct Sym {
    size_t begin, len;
    int32_t prev, next;
    bool fixed;  // user-defined symbols never merge
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < norm.size();) {
    size_t len = 0;
    bool fixed = false;
    for (int32_t id : user_defined_) {
      const std::string& u = pieces_[id].text;
      if (norm.compare(i, u.size(), u) == 0) {
        len = u.size();
        fixed = true;
        break;
      }
    }
    if (!len) {
      size_t j = i;
      unicode::NextCodePoint(norm, &j);
      len = j - i;
    }
    int32_t idx = static_cast<int32_t>(syms.size());
    syms.push_back({i, len, idx - 1, -1, fixed});
    if (idx > 0) syms[idx - 1].next = idx;
    i += len;
  }
  // Max-heap on score, then leftmost.
  struct Cand {
    float score;
    int32_t left, right;
    size_t size;  // total length when queued, to detect stale entries
  };
  auto worse = [](const Cand& a, const Cand& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto push = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0 || syms[l].fixed || syms[r].fixed) return;
    std::string_view merged(norm.data() + syms[l].begin, syms[l].len + syms[r].len);
    auto it = mergeable_.find(std::string(merged));
    if (it == mergeable_.end()) return;
    heap.push({pieces_[it->second].score, l, r, merged.size()});
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i)
    push(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    if (l.len == 0 || l.next != c.right || syms[c.right].len == 0 ||
        l.len + syms[c.right].len != c.size)
      continue;
    Sym& r = syms[c.right];
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    push(l.prev, c.left);
    push(c.left, l.next);
  }
  bool prev_unk = false;
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
    std::string piece = norm.substr(syms[i].begin, syms[i].len);
    auto it = all_.find(piece);
    bool known = it != all_.end() && pieces_[it->second].type != PieceType::kUnused &&
                 pieces_[it->second].type != PieceType::kControl &&
                 pieces_[it->second].type != PieceType::kUnknown;
    if (known) {
      out->push_back(it->second);
      prev_unk = false;
      continue;
    }
    if (byte_fallback_) {
      for (unsigned char b : piece) out->push_back(byte_ids_[b] >= 0 ? byte_ids_[b] : unk_id_);
      prev_unk = false;
      continue;
    }
    if (!prev_unk) out->push_back(unk_id_);  // consecutive unknowns fuse into one <unk>
    prev_unk = true;
  }
}

void SentencePieceModel::Decode(const std::vector<int32_t>& ids, bool at_start,
                                std::string* out) const {
  // Per piece, as libsentencepiece: controls vanish, <unk> shows as " \u2047 ", runs of byte
  // pieces become their bytes, and leading U+2581 of the output is consumed (dummy prefix).
  std::string text;
  std::string bytes;
  // With remove_extra_whitespaces, U+2581 is dropped from every piece while the output is still
  // empty; otherwise only the first piece loses one (the dummy prefix). Both as libsentencepiece.
  auto flush_bytes = [&] {
    text += bytes;
    bytes.clear();
  };
  bool first = at_start;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) continue;
    const Piece& p = pieces_[id];
    const bool is_first = first;
    first = false;
    if (p.type == PieceType::kByte) {
      unsigned v;
      if (std::sscanf(p.text.c_str(), "<0x%02X>", &v) == 1) bytes.push_back(static_cast<char>(v));
      continue;
    }
    flush_bytes();
    if (p.type == PieceType::kControl) continue;
    if (p.type == PieceType::kUnknown) {
      text += " \xE2\x81\x87 ";
      continue;
    }
    std::string_view piece = p.text;
    const bool bos_ws =
        remove_extra_whitespaces_ ? at_start && text.empty() : is_first && add_dummy_prefix_;
    if (bos_ws && piece.substr(0, 3) == kSpaceSymbol) piece.remove_prefix(3);
    for (size_t i = 0; i < piece.size(); ++i) {
      if (piece.compare(i, 3, kSpaceSymbol) == 0) {
        text.push_back(' ');
        i += 2;
      } else {
        text.push_back(piece[i]);
      }
    }
  }
  flush_bytes();
  out->append(text);
}

}  // namespace chainrl
