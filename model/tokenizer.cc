// Tokenizer: tokenizer.json byte-level BPE (normalizer -> added-token split -> Split regex ->
// ByteLevel -> BPE with a merge-rank map and a per-word cache) and SentencePiece models.
#include "model/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "core/json_file.h"
#include "model/tokenizer_sentencepiece.h"
#include "model/unicode.h"

namespace chainrl {
namespace {

using nlohmann::json;

Result<std::string> ReadFile(const std::string& path) {
  return ReadFileBounded(path, kMaxLargeJsonBytes);
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

// GPT-2's byte <-> printable-character table: bytes that are printable Latin-1 map to
// themselves, the others to U+0100.. in byte order.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_utf8;
  std::unordered_map<char32_t, uint8_t> cp_to_byte;
  ByteLevelTable() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      char32_t cp = keep ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      unicode::AppendUtf8(cp, &byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevelTable& ByteLevel() {
  static const ByteLevelTable table;
  return table;
}

// A compiled PCRE2 pattern (UTF + UCP, JIT when available). Thread-safe after construction.
class Regex {
 public:
  static Result<std::shared_ptr<Regex>> Compile(const std::string& pattern, bool literal) {
    int err = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     opts, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      return InvalidArgument("regex /" + pattern + "/ does not compile at offset " +
                             std::to_string(off) + ": " + reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
    auto r = std::shared_ptr<Regex>(new Regex);
    r->code_ = code;
    return r;
  }
  ~Regex() { pcre2_code_free(code_); }

  // Calls on_match(begin, end) for each non-overlapping match in s (valid UTF-8).
  template <typename F>
  Status ForEachMatch(std::string_view s, F&& on_match) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0;
    Status st;
    while (pos <= s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos,
                           PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        st = Internal(std::string("regex match failed: ") + reinterpret_cast<char*>(msg));
        break;
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e > b) on_match(b, e);
      if (e == b) {  // empty match: step one code point
        if (e >= s.size()) break;
        size_t next = e;
        unicode::NextCodePoint(s, &next);
        pos = next;
      } else {
        pos = e;
      }
    }
    pcre2_match_data_free(md);
    return st;
  }

 private:
  Regex() = default;
  pcre2_code* code_ = nullptr;
};

// One pre-tokenization step, applied to every piece of the current split.
struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel } kind;
  std::shared_ptr<Regex> regex;   // kSplit, or kByteLevel with use_regex
  bool removed = false;           // kSplit behaviour Removed (else Isolated)
  bool add_prefix_space = false;  // kByteLevel
};

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Hash for string-keyed maps that can be probed with a string_view (no temporary string).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsWordByte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

}  // namespace

// Shared by both tokenizer kinds: added tokens, config specials, encode/decode frames.
class Tokenizer::Impl {
 public:
  virtual ~Impl() = default;

  // Encodes text that holds no added tokens.
  virtual Status EncodeModel(std::string_view text, bool first_segment,
                             std::vector<int32_t>* out) const = 0;
  // Appends the bytes of a run of model (non-added) ids.
  virtual void DecodeModel(const std::vector<int32_t>& ids, std::string* out) const = 0;
  virtual std::optional<int32_t> ModelTokenToId(std::string_view token) const = 0;
  virtual std::optional<std::string> ModelIdToToken(int32_t id) const = 0;
  virtual int64_t ModelVocabSize() const = 0;
  virtual void PostProcess(std::vector<int32_t>* ids) const = 0;
  virtual std::string kind() const = 0;

  Status AddToken(AddedToken t) {
    if (t.content.empty())
      return InvalidArgument("added token " + std::to_string(t.id) + " is empty");
    added_index[t.content] = added.size();
    added_by_id[t.id] = added.size();
    added.push_back(std::move(t));
    return Status::Ok();
  }
  void IndexAddedTokens() {
    for (auto& v : by_first_byte) v.clear();
    for (size_t i = 0; i < added.size(); ++i)
      by_first_byte[static_cast<unsigned char>(added[i].content[0])].push_back(i);
    for (auto& v : by_first_byte)
      std::stable_sort(v.begin(), v.end(), [&](size_t a, size_t b) {
        return added[a].content.size() > added[b].content.size();
      });
  }

  Result<std::vector<int32_t>> Encode(std::string_view text, bool add_special) const {
    size_t bad = 0;
    if (!unicode::IsValidUtf8(text, &bad))
      return InvalidArgument("text is not valid UTF-8 (ill-formed sequence at byte offset " +
                             std::to_string(bad) + ")");
    std::vector<int32_t> ids;
    size_t seg_begin = 0, pos = 0;
    bool first = true;
    while (pos < text.size()) {
      size_t m_begin, m_end;
      const AddedToken* t = MatchAddedAt(text, pos, seg_begin, &m_begin, &m_end);
      if (!t) {
        ++pos;
        continue;
      }
      if (m_begin > seg_begin) {
        CHAINRL_RETURN_IF_ERROR(
            EncodeModel(text.substr(seg_begin, m_begin - seg_begin), first, &ids));
      }
      first = false;
      ids.push_back(t->id);
      pos = seg_begin = m_end;
    }
    if (seg_begin < text.size())
      CHAINRL_RETURN_IF_ERROR(EncodeModel(text.substr(seg_begin), first, &ids));
    if (add_special) PostProcess(&ids);
    return ids;
  }

  Result<std::string> DecodeBytes(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string out;
    std::vector<int32_t> run;
    const int64_t model_size = ModelVocabSize();
    for (int32_t id : ids) {
      auto it = added_by_id.find(id);
      if (it != added_by_id.end()) {
        DecodeModel(run, &out);
        run.clear();
        const AddedToken& t = added[it->second];
        if (!(skip_special && t.special)) out += t.content;
        continue;
      }
      if (id < 0 || id >= model_size || !ModelIdToToken(id))
        return InvalidArgument("token id " + std::to_string(id) + " is not in the vocabulary");
      run.push_back(id);
    }
    DecodeModel(run, &out);
    return out;
  }

  std::vector<AddedToken> added;
  std::unordered_map<std::string, size_t> added_index;
  std::unordered_map<int32_t, size_t> added_by_id;
  std::array<std::vector<size_t>, 256> by_first_byte;
  std::optional<std::string> bos, eos, pad;
  std::string chat_template;
  bool add_bos = false, add_eos = false;

 private:
  // Finds the added token matching at `pos` (longest first), with its lstrip/rstrip extent.
  // The match must not start before `floor` (the end of the previous match).
  const AddedToken* MatchAddedAt(std::string_view text, size_t pos, size_t floor, size_t* begin,
                                 size_t* end) const {
    const auto& cands = by_first_byte[static_cast<unsigned char>(text[pos])];
    for (size_t idx : cands) {
      const AddedToken& t = added[idx];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      size_t e = pos + t.content.size();
      if (t.single_word) {
        if (pos > 0 && IsWordByte(text[pos - 1])) continue;
        if (e < text.size() && IsWordByte(text[e])) continue;
      }
      size_t b = pos;
      if (t.lstrip)
        while (b > floor && IsAsciiSpace(text[b - 1])) --b;
      if (t.rstrip)
        while (e < text.size() && IsAsciiSpace(text[e])) ++e;
      *begin = b;
      *end = e;
      return &t;
    }
    return nullptr;
  }
};

namespace {

// Byte-level (or character-level) BPE from tokenizer.json.
class BpeTokenizer final : public Tokenizer::Impl {
 public:
  Status Load(const json& root, const std::string& src);

  Status EncodeModel(std::string_view text, bool first_segment,
                     std::vector<int32_t>* out) const override {
    std::string normalized;
    if (nfc_) {
      normalized = unicode::Nfc(text);
      text = normalized;
    }
    // Pre-tokenize into pieces: views into `text`, or into `owned` where a step rewrites one
    // (ByteLevel's add_prefix_space).
    std::deque<std::string> owned;
    std::vector<std::string_view> pieces{text};
    std::vector<std::string_view> next;
    for (const PreTokenizerStep& step : pretok_) {
      next.clear();
      for (std::string_view p : pieces) {
        if (step.kind == PreTokenizerStep::kByteLevel) {
          if (step.add_prefix_space && (p.empty() || p[0] != ' ')) {
            owned.push_back(" " + std::string(p));
            p = owned.back();
          }
          if (!step.regex) {
            next.push_back(p);
            continue;
          }
        }
        size_t last = 0;
        // Isolated: gaps and matches are pieces; Removed: only the gaps are.
        CHAINRL_RETURN_IF_ERROR(step.regex->ForEachMatch(p, [&](size_t b, size_t e) {
          if (b > last) next.push_back(p.substr(last, b - last));
          if (!step.removed) next.push_back(p.substr(b, e - b));
          last = e;
        }));
        if (last < p.size()) next.push_back(p.substr(last));
      }
      pieces.swap(next);
    }
    for (std::string_view p : pieces) CHAINRL_RETURN_IF_ERROR(EncodeWord(p, out));
    return Status::Ok();
  }

  void DecodeModel(const std::vector<int32_t>& ids, std::string* out) const override {
    for (int32_t id : ids) out->append(id_bytes_[id]);
  }
  std::optional<int32_t> ModelTokenToId(std::string_view token) const override {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> ModelIdToToken(int32_t id) const override {
    if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !has_id_[id])
      return std::nullopt;
    return id_to_token_[id];
  }
  int64_t ModelVocabSize() const override { return static_cast<int64_t>(id_to_token_.size()); }
  void PostProcess(std::vector<int32_t>* ids) const override {
    if (template_prefix_.empty() && template_suffix_.empty()) return;
    std::vector<int32_t> r = template_prefix_;
    r.insert(r.end(), ids->begin(), ids->end());
    r.insert(r.end(), template_suffix_.begin(), template_suffix_.end());
    *ids = std::move(r);
  }
  std::string kind() const override { return "bpe"; }

 private:
  Status EncodeWord(std::string_view piece, std::vector<int32_t>* out) const;
  // Applies the merges to `syms` in place: lowest rank first, leftmost on ties; O(n log n).
  void Merge(std::vector<int32_t>* syms) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<char> has_id_;
  std::vector<std::string> id_bytes_;  // what each model id decodes to
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged)
  std::array<int32_t, 256> byte_ids_{};
  bool byte_level_ = false;
  bool byte_level_decoder_ = false;
  bool nfc_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_;
  std::vector<PreTokenizerStep> pretok_;
  std::vector<int32_t> template_prefix_, template_suffix_;

  static constexpr size_t kMaxCachedPiece = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

void BpeTokenizer::Merge(std::vector<int32_t>* syms) const {
  const size_t n = syms->size();
  if (n < 2) return;
  std::vector<int32_t>& id = *syms;
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  // Min-heap on (rank, position of the left symbol): lowest rank first, leftmost on ties, as
  // Hugging Face's Word::merge_all.
  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t i) {
    if (i < 0 || next[i] < 0) return;
    auto it = merges_.find(PairKey(id[i], id[next[i]]));
    if (it != merges_.end()) heap.push({it->second.first, i, id[i], id[next[i]]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  std::vector<char> alive(n, 1);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    int32_t i = c.pos;
    if (!alive[i] || next[i] < 0 || id[i] != c.left || id[next[i]] != c.right) continue;
    int32_t j = next[i];
    id[i] = merges_.at(PairKey(c.left, c.right)).second;
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i)
    if (alive[i]) id[w++] = id[i];
  id.resize(w);
}

Status BpeTokenizer::EncodeWord(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return Status::Ok();
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return Status::Ok();
    }
  }
  std::vector<int32_t> syms;
  if (byte_level_) {
    if (ignore_merges_) {
      std::string mapped;
      for (unsigned char b : piece) mapped += ByteLevel().byte_to_utf8[b];
      auto it = vocab_.find(mapped);
      if (it != vocab_.end()) {
        out->push_back(it->second);
        return Status::Ok();
      }
    }
    syms.reserve(piece.size());
    for (unsigned char b : piece) syms.push_back(byte_ids_[b]);
    Merge(&syms);
  } else {
    if (ignore_merges_) {
      auto it = vocab_.find(piece);
      if (it != vocab_.end()) {
        out->push_back(it->second);
        return Status::Ok();
      }
    }
    // Character-level symbols; unknown characters become byte-fallback tokens or unk, which
    // never merge (they are not in any merge pair).
    std::vector<int32_t> run;
    auto flush = [&] {
      Merge(&run);
      syms.insert(syms.end(), run.begin(), run.end());
      run.clear();
    };
    for (size_t i = 0; i < piece.size();) {
      size_t b = i;
      unicode::NextCodePoint(piece, &i);
      auto it = vocab_.find(piece.substr(b, i - b));
      if (it != vocab_.end()) {
        run.push_back(it->second);
        continue;
      }
      flush();
      if (byte_fallback_) {
        bool all = true;
        std::vector<int32_t> bytes;
        for (size_t k = b; k < i; ++k) {
          char name[8];
          std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(piece[k]));
          auto bt = vocab_.find(name);
          if (bt == vocab_.end()) {
            all = false;
            break;
          }
          bytes.push_back(bt->second);
        }
        if (all) {
          syms.insert(syms.end(), bytes.begin(), bytes.end());
          continue;
        }
      }
      if (!unk_)
        return InvalidArgument("character '" + std::string(piece.substr(b, i - b)) +
                               "' is not in the vocabulary and there is no unk_token");
      if (!fuse_unk_ || syms.empty() || syms.back() != *unk_) syms.push_back(*unk_);
    }
    flush();
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(piece, syms);
  }
  out->insert(out->end(), syms.begin(), syms.end());
  return Status::Ok();
}

// JSON access that names the file and JSON path on failure.
// Token ids index dense tables (id -> token, id -> bytes): an id this large in a file is a
// corruption, not a vocabulary (the largest real ones hold fewer than 300,000 tokens).
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

struct JsonPath {
  const std::string& src;
  std::string path;
  Status Err(const std::string& what) const {
    return Corrupt(src + ": " + (path.empty() ? "$" : path) + ": " + what);
  }
};

std::string TypeOf(const json& j) {
  return j.is_object() ? j.value("type", std::string("?")) : std::string(j.type_name());
}

Status ParsePreTokenizer(const json& j, JsonPath p, std::vector<PreTokenizerStep>* steps) {
  if (j.is_null()) return Status::Ok();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    return p.Err("expected an object with a string \"type\"");
  const std::string type = j["type"];
  if (type == "Sequence") {
    const json& list = j.contains("pretokenizers") ? j["pretokenizers"] : json();
    if (!list.is_array()) return p.Err("Sequence needs an array \"pretokenizers\"");
    for (size_t i = 0; i < list.size(); ++i)
      CHAINRL_RETURN_IF_ERROR(ParsePreTokenizer(
          list[i], {p.src, p.path + ".pretokenizers[" + std::to_string(i) + "]"}, steps));
    return Status::Ok();
  }
  if (type == "Split") {
    PreTokenizerStep s{PreTokenizerStep::kSplit, nullptr};
    const json& pat = j.contains("pattern") ? j["pattern"] : json();
    std::string text;
    bool literal;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      text = pat["Regex"];
      literal = false;
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      text = pat["String"];
      literal = true;
    } else {
      return p.Err("Split needs \"pattern\": {\"Regex\": ...} or {\"String\": ...}");
    }
    if (j.value("invert", false)) return p.Err("Split with invert=true is not supported");
    std::string behavior = j.value("behavior", std::string("Isolated"));
    if (behavior == "Removed") {
      s.removed = true;
    } else if (behavior != "Isolated") {
      return p.Err("Split behavior \"" + behavior + "\" is not supported (Isolated, Removed are)");
    }
    auto re = Regex::Compile(text, literal);
    if (!re.ok()) return p.Err(re.status().message());
    s.regex = *re;
    steps->push_back(std::move(s));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    PreTokenizerStep s{PreTokenizerStep::kByteLevel, nullptr};
    s.add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) {
      auto re = Regex::Compile(kGpt2Pattern, false);
      if (!re.ok()) return p.Err(re.status().message());
      s.regex = *re;
    }
    steps->push_back(std::move(s));
    return Status::Ok();
  }
  return p.Err("pre-tokenizer type \"" + type + "\" is not supported");
}

Status ParseNormalizer(const json& j, JsonPath p, bool* nfc) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "NFC") {
    *nfc = true;
    return Status::Ok();
  }
  if (type == "Sequence") {
    const json& list = j.contains("normalizers") ? j["normalizers"] : json();
    if (!list.is_array()) return p.Err("Sequence needs an array \"normalizers\"");
    for (size_t i = 0; i < list.size(); ++i)
      CHAINRL_RETURN_IF_ERROR(ParseNormalizer(
          list[i], {p.src, p.path + ".normalizers[" + std::to_string(i) + "]"}, nfc));
    return Status::Ok();
  }
  return p.Err("normalizer type \"" + type + "\" is not supported (null, NFC, Sequence are)");
}

Status BpeTokenizer::Load(const json& root, const std::string& src) {
  if (!root.is_object()) return JsonPath{src, ""}.Err("expected a JSON object");
  if (!root.contains("model") || !root["model"].is_object())
    return JsonPath{src, "model"}.Err("missing object");
  const json& model = root["model"];
  std::string mtype = model.value("type", std::string("BPE"));
  if (mtype != "BPE")
    return JsonPath{src, "model.type"}.Err("model \"" + mtype + "\" is not supported (BPE is)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return JsonPath{src, "model.vocab"}.Err("expected an object of token -> id");
  int32_t max_id = -1;
  vocab_.reserve(model["vocab"].size());
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      return JsonPath{src, "model.vocab[\"" + it.key() + "\"]"}.Err("expected a non-negative id");
    if (it.value().get<int64_t>() > kMaxTokenId)
      return JsonPath{src, "model.vocab[\"" + it.key() + "\"]"}.Err(
          "id " + it.value().dump() + " is over the limit of " + std::to_string(kMaxTokenId));
    int32_t id = it.value().get<int32_t>();
    vocab_[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(max_id + 1, "");
  has_id_.assign(max_id + 1, 0);
  for (const auto& [tok, id] : vocab_) {
    id_to_token_[id] = tok;
    has_id_[id] = 1;
  }
  ignore_merges_ = model.value("ignore_merges", false);
  byte_fallback_ = model.value("byte_fallback", false) == true;
  fuse_unk_ = model.value("fuse_unk", false) == true;
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab_.find(model["unk_token"].get<std::string>());
    if (it != vocab_.end()) unk_ = it->second;
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
      return JsonPath{src, std::string("model.") + key}.Err("non-empty value is not supported");
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0)
    return JsonPath{src, "model.dropout"}.Err("BPE dropout is not supported");

  if (!model.contains("merges") || !model["merges"].is_array())
    return JsonPath{src, "model.merges"}.Err("expected an array");
  const json& merges = model["merges"];
  merges_.reserve(merges.size() * 2);
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        return JsonPath{src, "model.merges[" + std::to_string(r) + "]"}.Err("expected \"a b\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0];
      b = m[1];
    } else {
      return JsonPath{src, "model.merges[" + std::to_string(r) + "]"}.Err(
          "expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || iab == vocab_.end())
      return JsonPath{src, "model.merges[" + std::to_string(r) + "]"}.Err(
          "merge \"" + a + " " + b + "\" uses a token missing from the vocabulary");
    merges_.emplace(PairKey(ia->second, ib->second),
                    std::pair<int32_t, int32_t>(static_cast<int32_t>(r), iab->second));
  }

  CHAINRL_RETURN_IF_ERROR(
      ParseNormalizer(root.value("normalizer", json()), {src, "normalizer"}, &nfc_));
  CHAINRL_RETURN_IF_ERROR(
      ParsePreTokenizer(root.value("pre_tokenizer", json()), {src, "pre_tokenizer"}, &pretok_));
  for (const auto& s : pretok_)
    if (s.kind == PreTokenizerStep::kByteLevel) byte_level_ = true;
  if (byte_level_) {
    for (int b = 0; b < 256; ++b) {
      auto it = vocab_.find(ByteLevel().byte_to_utf8[b]);
      if (it == vocab_.end())
        return JsonPath{src, "model.vocab"}.Err("byte-level vocabulary lacks the token for byte " +
                                                std::to_string(b));
      byte_ids_[b] = it->second;
    }
  }

  const json& dec = root.value("decoder", json());
  if (!dec.is_null()) {
    std::string t = TypeOf(dec);
    if (t == "ByteLevel") {
      byte_level_decoder_ = true;
    } else {
      return JsonPath{src, "decoder"}.Err("decoder type \"" + t + "\" is not supported");
    }
  }
  id_bytes_.resize(id_to_token_.size());
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    const std::string& tok = id_to_token_[id];
    if (!byte_level_decoder_) {
      id_bytes_[id] = tok;
      continue;
    }
    std::string bytes;
    for (size_t i = 0; i < tok.size();) {
      size_t b = i;
      char32_t cp = unicode::NextCodePoint(tok, &i);
      auto it = ByteLevel().cp_to_byte.find(cp);
      if (it != ByteLevel().cp_to_byte.end()) {
        bytes.push_back(static_cast<char>(it->second));
      } else {
        bytes.append(tok, b, i - b);  // not a byte-level character: keep its text
      }
    }
    id_bytes_[id] = std::move(bytes);
  }

  // Added tokens.
  if (root.contains("added_tokens")) {
    const json& list = root["added_tokens"];
    if (!list.is_array()) return JsonPath{src, "added_tokens"}.Err("expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      JsonPath p{src, "added_tokens[" + std::to_string(i) + "]"};
      const json& t = list[i];
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string())
        return p.Err("expected {\"id\": int, \"content\": string, ...}");
      if (t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() > kMaxTokenId)
        return p.Err("id " + t["id"].dump() + " is outside [0, " + std::to_string(kMaxTokenId) +
                     "]");
      AddedToken a;
      a.id = t["id"].get<int32_t>();
      a.content = t["content"];
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      a.normalized = t.value("normalized", !a.special);
      if (a.id < 0) return p.Err("negative id");
      Status st = AddToken(std::move(a));
      if (!st.ok()) return p.Err(st.message());
    }
  }
  IndexAddedTokens();

  // Post-processor.
  std::function<Status(const json&, JsonPath)> post = [&](const json& j, JsonPath p) -> Status {
    if (j.is_null()) return Status::Ok();
    std::string t = TypeOf(j);
    if (t == "ByteLevel") return Status::Ok();
    if (t == "Sequence") {
      const json& list = j.contains("processors") ? j["processors"] : json();
      if (!list.is_array()) return p.Err("Sequence needs an array \"processors\"");
      for (size_t i = 0; i < list.size(); ++i)
        CHAINRL_RETURN_IF_ERROR(
            post(list[i], {src, p.path + ".processors[" + std::to_string(i) + "]"}));
      return Status::Ok();
    }
    if (t == "TemplateProcessing") {
      const json& single = j.contains("single") ? j["single"] : json();
      if (!single.is_array()) return p.Err("TemplateProcessing needs an array \"single\"");
      bool after = false;
      for (size_t i = 0; i < single.size(); ++i) {
        const json& piece = single[i];
        JsonPath pp{src, p.path + ".single[" + std::to_string(i) + "]"};
        if (piece.contains("Sequence")) {
          after = true;
          continue;
        }
        if (!piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id"))
          return pp.Err("expected {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
        std::string name = piece["SpecialToken"]["id"];
        const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json();
        std::vector<int32_t> ids;
        if (specials.is_object() && specials.contains(name) && specials[name].contains("ids")) {
          // Encode() emits these ids as they are: each must name a token.
          JsonPath sp{src, p.path + ".special_tokens[\"" + name + "\"].ids"};
          if (!specials[name]["ids"].is_array()) return sp.Err("expected an array of token ids");
          for (const json& x : specials[name]["ids"]) {
            const int64_t id = x.is_number_integer() ? x.get<int64_t>() : -1;
            if (id < 0 || id > kMaxTokenId ||
                (!added_by_id.count(static_cast<int32_t>(id)) &&
                 !ModelIdToToken(static_cast<int32_t>(id))))
              return sp.Err("id " + x.dump() + " is not in the vocabulary");
            ids.push_back(static_cast<int32_t>(id));
          }
        } else {
          auto it = added_index.find(name);
          auto v = vocab_.find(name);
          if (it != added_index.end())
            ids.push_back(added[it->second].id);
          else if (v != vocab_.end())
            ids.push_back(v->second);
          else
            return pp.Err("special token \"" + name + "\" is unknown");
        }
        auto& dst = after ? template_suffix_ : template_prefix_;
        dst.insert(dst.end(), ids.begin(), ids.end());
      }
      return Status::Ok();
    }
    return p.Err("post-processor type \"" + t + "\" is not supported");
  };
  try {
    CHAINRL_RETURN_IF_ERROR(post(root.value("post_processor", json()), {src, "post_processor"}));
  } catch (const json::exception& e) {
    return JsonPath{src, "post_processor"}.Err(e.what());
  }
  return Status::Ok();
}

// SentencePiece model (tokenizer.model), run by SentencePieceModel.
class SentencePieceTokenizer final : public Tokenizer::Impl {
 public:
  Status Load(const std::string& path) {
    CHAINRL_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
    CHAINRL_RETURN_IF_ERROR(sp_.Load(bytes, path));
    // Control symbols (<s>, </s>, ...) are matched in text like Hugging Face's special tokens.
    const auto& pieces = sp_.pieces();
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (pieces[i].type == SentencePieceModel::PieceType::kControl) {
        AddedToken t;
        t.id = static_cast<int32_t>(i);
        t.content = pieces[i].text;
        t.special = true;
        CHAINRL_RETURN_IF_ERROR(AddToken(std::move(t)));
      }
    }
    IndexAddedTokens();
    if (sp_.bos_id() >= 0) bos = pieces[sp_.bos_id()].text;
    if (sp_.eos_id() >= 0) eos = pieces[sp_.eos_id()].text;
    add_bos = sp_.bos_id() >= 0;  // Llama 2 convention; tokenizer_config.json may override
    return Status::Ok();
  }
  Status EncodeModel(std::string_view text, bool, std::vector<int32_t>* out) const override {
    sp_.Encode(text, out);
    return Status::Ok();
  }
  void DecodeModel(const std::vector<int32_t>& ids, std::string* out) const override {
    sp_.Decode(ids, out->empty(), out);
  }
  std::optional<int32_t> ModelTokenToId(std::string_view token) const override {
    return sp_.PieceToId(token);
  }
  std::optional<std::string> ModelIdToToken(int32_t id) const override {
    if (id < 0 || id >= static_cast<int32_t>(sp_.pieces().size())) return std::nullopt;
    return sp_.pieces()[id].text;
  }
  int64_t ModelVocabSize() const override { return static_cast<int64_t>(sp_.pieces().size()); }
  void PostProcess(std::vector<int32_t>* ids) const override {
    if (add_bos && sp_.bos_id() >= 0) ids->insert(ids->begin(), sp_.bos_id());
    if (add_eos && sp_.eos_id() >= 0) ids->push_back(sp_.eos_id());
  }
  std::string kind() const override { return "sentencepiece"; }

 private:
  SentencePieceModel sp_;
};

// Reads the token-valued keys of tokenizer_config.json ("<s>" or {"content": "<s>", ...}).
std::optional<std::string> ConfigToken(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

Status ApplyConfig(std::string_view config_text, const std::string& config_src,
                   Tokenizer::Impl* impl) {
  if (config_text.empty()) return Status::Ok();
  CHAINRL_ASSIGN_OR_RETURN(json cfg,
                           ParseJson(config_text, config_src, kMaxJsonDepth, StatusCode::kCorrupt));
  if (!cfg.is_object()) return Corrupt(config_src + ": $: expected a JSON object");
  if (auto t = ConfigToken(cfg, "bos_token")) impl->bos = t;
  if (auto t = ConfigToken(cfg, "eos_token")) impl->eos = t;
  if (auto t = ConfigToken(cfg, "pad_token")) impl->pad = t;
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
    impl->add_bos = cfg["add_bos_token"];
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean())
    impl->add_eos = cfg["add_eos_token"];
  if (cfg.contains("chat_template")) {
    const json& ct = cfg["chat_template"];
    if (ct.is_string()) {
      impl->chat_template = ct;
    } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const json& e : ct)
        if (e.is_object() && e.value("name", std::string()) == "default" && e.contains("template"))
          impl->chat_template = e["template"].get<std::string>();
    } else if (!ct.is_null()) {
      return Corrupt(config_src + ": chat_template: expected a string");
    }
  }
  // A special token the vocabulary lacks simply has no id (bos_token_id() etc. return nullopt).
  return Status::Ok();
}

}  // namespace

Result<Tokenizer> Tokenizer::LoadJson(std::string_view tokenizer_json, const std::string& source,
                                      std::string_view config_json,
                                      const std::string& config_source) {
  CHAINRL_ASSIGN_OR_RETURN(json root,
                           ParseJson(tokenizer_json, source, kMaxJsonDepth, StatusCode::kCorrupt));
  auto impl = std::make_shared<BpeTokenizer>();
  try {
    CHAINRL_RETURN_IF_ERROR(impl->Load(root, source));
  } catch (const json::exception& e) {
    return Corrupt(source + ": unexpected JSON value type: " + e.what());
  }
  CHAINRL_RETURN_IF_ERROR(ApplyConfig(config_json, config_source, impl.get()));
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::FromJsonText(std::string_view tokenizer_json,
                                          std::string_view config_json, const std::string& source) {
  return LoadJson(tokenizer_json, source, config_json, source + " (tokenizer_config)");
}

Result<Tokenizer> Tokenizer::FromFile(const std::string& path,
                                      const std::string& config_json_path) {
  std::string config_text;
  if (!config_json_path.empty()) {
    CHAINRL_ASSIGN_OR_RETURN(config_text, ReadFile(config_json_path));
  }
  if (path.size() >= 6 && path.compare(path.size() - 6, 6, ".model") == 0) {
    auto impl = std::make_shared<SentencePieceTokenizer>();
    CHAINRL_RETURN_IF_ERROR(impl->Load(path));
    CHAINRL_RETURN_IF_ERROR(ApplyConfig(config_text, config_json_path, impl.get()));
    return Tokenizer(std::move(impl));
  }
  CHAINRL_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return LoadJson(text, path, config_text, config_json_path);
}

Result<Tokenizer> Tokenizer::FromDir(const std::string& dir) {
  std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  std::string config = base + "tokenizer_config.json";
  if (!FileExists(config)) config.clear();
  if (FileExists(base + "tokenizer.json")) return FromFile(base + "tokenizer.json", config);
  if (FileExists(base + "tokenizer.model")) return FromFile(base + "tokenizer.model", config);
  return NotFound(dir + ": no tokenizer.json or tokenizer.model");
}

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                               bool add_special_tokens) const {
  return impl_->Encode(text, add_special_tokens);
}

Result<std::vector<std::vector<int32_t>>> Tokenizer::EncodeBatch(
    const std::vector<std::string>& texts, bool add_special_tokens) const {
  std::vector<std::vector<int32_t>> out;
  out.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto r = impl_->Encode(texts[i], add_special_tokens);
    if (!r.ok()) return r.status().WithPrefix("text " + std::to_string(i));
    out.push_back(std::move(r).value());
  }
  return out;
}

Result<std::string> Tokenizer::DecodeBytes(const std::vector<int32_t>& ids,
                                           bool skip_special) const {
  return impl_->DecodeBytes(ids, skip_special);
}

Result<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  CHAINRL_ASSIGN_OR_RETURN(std::string bytes, impl_->DecodeBytes(ids, skip_special));
  if (unicode::IsValidUtf8(bytes)) return bytes;
  return unicode::ReplaceInvalidUtf8(bytes);
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = impl_->ModelVocabSize();
  for (const auto& t : impl_->added) n = std::max<int64_t>(n, int64_t{t.id} + 1);
  return n;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->added_index.find(std::string(token));
  if (it != impl_->added_index.end()) return impl_->added[it->second].id;
  return impl_->ModelTokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  return impl_->ModelIdToToken(id);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

std::optional<int32_t> Tokenizer::bos_token_id() const {
  return impl_->bos ? TokenToId(*impl_->bos) : std::nullopt;
}
std::optional<int32_t> Tokenizer::eos_token_id() const {
  return impl_->eos ? TokenToId(*impl_->eos) : std::nullopt;
}
std::optional<int32_t> Tokenizer::pad_token_id() const {
  return impl_->pad ? TokenToId(*impl_->pad) : std::nullopt;
}
std::optional<std::string> Tokenizer::bos_token() const { return impl_->bos; }
std::optional<std::string> Tokenizer::eos_token() const { return impl_->eos; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
std::string Tokenizer::kind() const { return impl_->kind(); }

}  // namespace chainrl
