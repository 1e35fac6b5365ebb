// Tests of model/tokenizer.h: a hand-built byte-level BPE with hand-derived ids, the fast BPE
// against a naive reference on random words, NFC, errors; and, when the test assets exist
// (scripts/fetch_test_assets.sh), exact ids for Qwen3, Llama 3 and Llama 3.1 against a JavaScript
// reference.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#ifdef CHAINRL_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

#include "model/unicode.h"

namespace chainrl {
namespace {

using nlohmann::json;

// GPT-2's byte -> printable character mapping, written out independently of the library.
std::string ByteChar(int b) {
  static std::map<int, std::string> table = [] {
    std::map<int, std::string> t;
    int n = 0;
    for (int x = 0; x < 256; ++x) {
      bool keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
      std::string s;
      unicode::AppendUtf8(keep ? x : 256 + n++, &s);
      t[x] = s;
    }
    return t;
  }();
  return table[b];
}

// A byte-level BPE whose ids 0..255 are the bytes, plus merges he(256) ll(257) hell(258)
// hello(259) Ġw(260), and added tokens <|end|>(300, special), <m>(302, lstrip+rstrip),
// cat(303, single_word).
json TinyTokenizerJson(bool pair_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab[ByteChar(' ') + "w"] = 260;
  std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {ByteChar(' '), "w"}};
  json m = json::array();
  for (auto& [a, b] : merges) {
    if (pair_merges)
      m.push_back(json::array({a, b}));
    else
      m.push_back(a + " " + b);
  }
  json added = json::array();
  added.push_back({{"id", 300},
                   {"content", "<|end|>"},
                   {"special", true},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"single_word", false},
                   {"normalized", false}});
  added.push_back({{"id", 302},
                   {"content", "<m>"},
                   {"special", false},
                   {"lstrip", true},
                   {"rstrip", true},
                   {"single_word", false},
                   {"normalized", false}});
  added.push_back({{"id", 303},
                   {"content", "cat"},
                   {"special", false},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"single_word", true},
                   {"normalized", false}});
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
}

Tokenizer Tiny(bool pair_merges = false) {
  auto t = Tokenizer::FromJsonText(TinyTokenizerJson(pair_merges).dump(),
                                   R"({"eos_token": "<|end|>"})", "tiny/tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

std::vector<int32_t> Ids(std::string_view s) {
  std::vector<int32_t> v;
  for (unsigned char c : s) v.push_back(c);
  return v;
}

TEST(TokenizerTiny, HandDerivedIds) {
  for (bool pairs : {false, true}) {
    Tokenizer t = Tiny(pairs);
    // "hello" merges fully; " world" -> Ġw o r l d.
    auto ids = t.Encode("hello world");
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, (std::vector<int32_t>{259, 260, 'o', 'r', 'l', 'd'})) << "pairs=" << pairs;
    // Equal ranks merge leftmost first: "lll" -> ll l.
    EXPECT_EQ(*t.Encode("lll"), (std::vector<int32_t>{257, 'l'}));
    EXPECT_EQ(*t.Encode("llll"), (std::vector<int32_t>{257, 257}));
    // "hel": he + l (no "hel" token).
    EXPECT_EQ(*t.Encode("hel"), (std::vector<int32_t>{256, 'l'}));
    EXPECT_EQ(*t.Encode(""), std::vector<int32_t>{});
  }
}

TEST(TokenizerTiny, AddedTokens) {
  Tokenizer t = Tiny();
  EXPECT_EQ(*t.Encode("hi<|end|>hello"), (std::vector<int32_t>{'h', 'i', 300, 259}));
  EXPECT_EQ(*t.Decode({'h', 'i', 300, 259}), "hi<|end|>hello");
  EXPECT_EQ(*t.Decode({'h', 'i', 300, 259}, /*skip_special=*/true), "hihello");
  // lstrip/rstrip swallow the spaces around <m>.
  EXPECT_EQ(*t.Encode("a  <m>  b"), (std::vector<int32_t>{'a', 302, 'b'}));
  // single_word: "cat" alone matches, inside "cats" it does not.
  EXPECT_EQ(*t.Encode("cat"), (std::vector<int32_t>{303}));
  EXPECT_EQ(*t.Encode("cats"), Ids("cats"));
  EXPECT_EQ(*t.Encode("a cat"), (std::vector<int32_t>{'a', ' ', 303}));
  // A partial added token is ordinary text.
  EXPECT_EQ(*t.Encode("<|end"), Ids("<|end"));
  EXPECT_EQ(t.eos_token_id(), 300);
  EXPECT_EQ(t.TokenToId("hello"), 259);
  EXPECT_EQ(t.IdToToken(300), "<|end|>");
  EXPECT_TRUE(t.IsSpecial(300));
  EXPECT_FALSE(t.IsSpecial(302));
  EXPECT_EQ(t.vocab_size(), 304);
}

TEST(TokenizerTiny, ConcurrentEncodesAgreeWithSequential) {
  Tokenizer t = Tiny();
  std::vector<std::string> texts;
  std::mt19937 rng(3);
  for (int i = 0; i < 200; ++i) {
    std::string s;
    for (int k = 0; k < 30; ++k) s += " hello world lll cat <|end|>"[rng() % 27];
    texts.push_back(s);
  }
  auto want = t.EncodeBatch(texts);
  ASSERT_TRUE(want.ok());
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if (*t.Encode(texts[i]) != (*want)[i]) ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerTiny, InvalidUtf8IsAnError) {
  Tokenizer t = Tiny();
  auto r = t.Encode("ok\xC3(");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("byte offset 2"), std::string::npos) << r.status().message();
  EXPECT_FALSE(t.Encode("\xED\xA0\x80").ok());  // a surrogate
  EXPECT_FALSE(t.Encode("\xC0\x80").ok());      // an overlong NUL
}

TEST(TokenizerTiny, DecodeRepairsSplitCharacters) {
  Tokenizer t = Tiny();
  // "é" is C3 A9; decoding only its first byte gives U+FFFD, DecodeBytes gives the byte.
  EXPECT_EQ(*t.Decode({0xC3}), "\xEF\xBF\xBD");
  EXPECT_EQ(*t.DecodeBytes({0xC3}), "\xC3");
  EXPECT_EQ(*t.Decode({0xC3, 0xA9}), "\xC3\xA9");
  EXPECT_FALSE(t.Decode({99999}).ok());
  EXPECT_FALSE(t.Decode({-1}).ok());
}

TEST(TokenizerTiny, NfcNormalizerApplies) {
  Tokenizer t = Tiny();
  // e + combining acute -> é (C3 A9) before BPE.
  EXPECT_EQ(*t.Encode("e\xCC\x81"), (std::vector<int32_t>{0xC3, 0xA9}));
}

TEST(TokenizerTiny, MalformedFilesNameFileAndPath) {
  json j = TinyTokenizerJson(false);
  j["model"]["merges"][1] = 7;
  auto r = Tokenizer::FromJsonText(j.dump(), "", "bad/tokenizer.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad/tokenizer.json"), std::string::npos);
  EXPECT_NE(r.status().message().find("model.merges[1]"), std::string::npos)
      << r.status().message();

  j = TinyTokenizerJson(false);
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Whitespace"}}})}};
  r = Tokenizer::FromJsonText(j.dump(), "", "bad/tokenizer.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pre_tokenizer.pretokenizers[0]"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("Whitespace"), std::string::npos);

  r = Tokenizer::FromJsonText("{not json", "", "bad/tokenizer.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad/tokenizer.json"), std::string::npos);

  auto d = Tokenizer::FromDir("/nonexistent/dir");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("/nonexistent/dir"), std::string::npos);
}

// Naive BPE: repeatedly merge the lowest-rank adjacent pair, leftmost first.
std::vector<std::string> NaiveBpe(std::vector<std::string> syms,
                                  const std::map<std::pair<std::string, std::string>, int>& ranks) {
  while (true) {
    int best = -1;
    size_t at = 0;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      auto it = ranks.find({syms[i], syms[i + 1]});
      if (it != ranks.end() && (best < 0 || it->second < best)) {
        best = it->second;
        at = i;
      }
    }
    if (best < 0) return syms;
    syms[at] += syms[at + 1];
    syms.erase(syms.begin() + at + 1);
  }
}

TEST(TokenizerTiny, FastBpeMatchesNaiveReferenceOnRandomWords) {
  // Alphabet a-d; merges built in a fixed random order over tokens formed so far.
  std::mt19937 rng(1234);
  std::vector<std::string> tokens;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  for (char c : std::string("abcd")) tokens.push_back(std::string(1, c));
  std::map<std::pair<std::string, std::string>, int> ranks;
  json merges = json::array();
  int next_id = 256;
  while (ranks.size() < 60) {
    const std::string& a = tokens[rng() % tokens.size()];
    const std::string& b = tokens[rng() % tokens.size()];
    if (a.size() + b.size() > 6 || ranks.count({a, b}) || vocab.contains(a + b)) continue;
    ranks[{a, b}] = static_cast<int>(ranks.size());
    merges.push_back(a + " " + b);
    vocab[a + b] = next_id++;
    tokens.push_back(a + b);
  }
  json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  auto t = Tokenizer::FromJsonText(j.dump(), "", "random/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (int trial = 0; trial < 500; ++trial) {
    std::string word;
    int len = 1 + rng() % 40;
    for (int i = 0; i < len; ++i) word.push_back("abcd"[rng() % 4]);
    std::vector<std::string> syms;
    for (char c : word) syms.push_back(std::string(1, c));
    std::vector<int32_t> want;
    for (const auto& s : NaiveBpe(syms, ranks)) want.push_back(vocab[s].get<int32_t>());
    auto got = t->Encode(word);
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(*got, want) << word;
    ASSERT_EQ(*t->Decode(*got), word);
  }
}

TEST(Unicode, NfcMatchesHandComputed) {
  EXPECT_EQ(unicode::Nfc("abc"), "abc");
  EXPECT_EQ(unicode::Nfc("e\xCC\x81"), "\xC3\xA9");     // e + U+0301 -> é
  EXPECT_EQ(unicode::Nfc("A\xCC\x8A"), "\xC3\x85");     // A + ring -> Å
  EXPECT_EQ(unicode::Nfc("\xE2\x84\xAB"), "\xC3\x85");  // U+212B ANGSTROM SIGN -> Å
  EXPECT_EQ(unicode::Nfc("\xE2\x84\xA6"), "\xCE\xA9");  // U+2126 OHM SIGN -> Ω
  EXPECT_EQ(unicode::Nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul L+V -> 가
  // q + dot below (ccc 220) + acute (230) in either order: ordered, no composite for q.
  EXPECT_EQ(unicode::Nfc("q\xCC\x81\xCC\xA3"), "q\xCC\xA3\xCC\x81");
  // s + dot above + dot below -> ṩ (U+1E69) after reordering.
  EXPECT_EQ(unicode::Nfc("s\xCC\x87\xCC\xA3"), "\xE1\xB9\xA9");
  // Composition exclusion: U+0958 stays decomposed as U+0915 U+093C.
  EXPECT_EQ(unicode::Nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");
}

#ifdef CHAINRL_HAVE_SENTENCEPIECE
// SentencePiece BPE models trained here on a small corpus; libsentencepiece is the reference.
class SentencePieceTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() /
                           ("chainrl_sp_test_" + std::to_string(::getpid())));
    std::filesystem::create_directories(*dir_ + "/llama2");
    std::filesystem::create_directories(*dir_ + "/clean");
    std::filesystem::create_directories(*dir_ + "/nfkc");
    std::ofstream corpus(*dir_ + "/corpus.txt");
    std::mt19937 rng(7);
    for (int line = 0; line < 3000; ++line) {
      int n = 3 + rng() % 8;
      for (int w = 0; w < n; ++w) corpus << (w ? " " : "") << kWords[rng() % std::size(kWords)];
      corpus << "\n";
    }
    corpus.close();
    const std::string common = "--input=" + *dir_ +
                               "/corpus.txt --model_type=bpe --minloglevel=2 "
                               "--character_coverage=1.0 ";
    // Llama 2's settings: identity normalizer, whitespace kept, byte fallback.
    auto st = sentencepiece::SentencePieceTrainer::Train(
        common + "--model_prefix=" + *dir_ +
        "/llama2/tokenizer --vocab_size=330 --byte_fallback=true "
        "--normalization_rule_name=identity --remove_extra_whitespaces=false");
    ASSERT_TRUE(st.ok()) << st.ToString();
    // Identity normalizer with whitespace clean-up, no byte fallback (unknowns -> <unk>).
    st = sentencepiece::SentencePieceTrainer::Train(common + "--model_prefix=" + *dir_ +
                                                    "/clean/tokenizer --vocab_size=80 "
                                                    "--normalization_rule_name=identity");
    ASSERT_TRUE(st.ok()) << st.ToString();
    st = sentencepiece::SentencePieceTrainer::Train(common + "--model_prefix=" + *dir_ +
                                                    "/nfkc/tokenizer --vocab_size=80");
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static constexpr const char* kWords[] = {
      "the",     "cat",   "sat",     "on",    "mat",     "reward", "policy", "token", "gradient",
      "learner", "actor", "rollout", "chain", "thought", "42",     "naïve",  "日本語"};
  static std::string* dir_;
};
std::string* SentencePieceTokenizer::dir_ = nullptr;

TEST_F(SentencePieceTokenizer, MatchesLibsentencepieceOnRandomText) {
  std::mt19937 rng(99);
  const char* extra[] = {" ", "  ", "\t", "\n", "x", "Z", "é", "🤖", "ñ", "\xE2\x96\x81", "!!"};
  for (const char* name : {"llama2", "clean"}) {
    const std::string dir = *dir_ + "/" + name;
    auto tok = Tokenizer::FromDir(dir);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    EXPECT_EQ(tok->kind(), "sentencepiece");
    sentencepiece::SentencePieceProcessor sp;
    ASSERT_TRUE(sp.Load(dir + "/tokenizer.model").ok());
    EXPECT_EQ(tok->vocab_size(), sp.GetPieceSize());
    EXPECT_EQ(tok->bos_token_id(), sp.bos_id());
    EXPECT_EQ(tok->eos_token_id(), sp.eos_id());
    for (int trial = 0; trial < 300; ++trial) {
      std::string text;
      int n = rng() % 12;
      for (int i = 0; i < n; ++i) {
        if (rng() % 3 == 0)
          text += extra[rng() % std::size(extra)];
        else
          text += std::string(rng() % 2 ? " " : "") + kWords[rng() % std::size(kWords)];
      }
      std::vector<int> want;
      ASSERT_TRUE(sp.Encode(text, &want).ok());
      auto ids = tok->Encode(text);
      ASSERT_TRUE(ids.ok());
      ASSERT_EQ(*ids, std::vector<int32_t>(want.begin(), want.end()))
          << name << ": [" << text << "]";
      std::string back;
      ASSERT_TRUE(sp.Decode(want, &back).ok());
      EXPECT_EQ(*tok->Decode(*ids), back) << name << ": [" << text << "]";
      // Llama 2 convention: add_special_tokens prepends BOS.
      auto with_bos = tok->Encode(text, true);
      ASSERT_TRUE(with_bos.ok());
      ASSERT_FALSE(with_bos->empty());
      EXPECT_EQ((*with_bos)[0], sp.bos_id());
    }
  }
}

TEST_F(SentencePieceTokenizer, SpecialTokensAndUnsupportedModels) {
  auto tok = Tokenizer::FromDir(*dir_ + "/llama2");
  ASSERT_TRUE(tok.ok());
  // Control tokens written in text are matched as tokens, then dropped by skip_special.
  auto ids = tok->Encode("the cat</s>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->back(), *tok->eos_token_id());
  EXPECT_EQ(*tok->Decode(*ids, /*skip_special=*/true), "the cat");
  EXPECT_EQ(*tok->Decode(*ids), "the cat</s>");
  EXPECT_FALSE(tok->Encode("bad\xFF").ok());
  // The default nmt_nfkc normalizer is not implemented: a clear error naming the file.
  auto nfkc = Tokenizer::FromDir(*dir_ + "/nfkc");
  ASSERT_FALSE(nfkc.ok());
  EXPECT_NE(nfkc.status().message().find("nfkc/tokenizer.model"), std::string::npos);
  EXPECT_NE(nfkc.status().message().find("nmt_nfkc"), std::string::npos) << nfkc.status().message();
  // A file that is not a model.
  std::ofstream(*dir_ + "/junk.model") << "not a protobuf at all \xFF\xFF\xFF";
  auto junk = Tokenizer::FromFile(*dir_ + "/junk.model");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("junk.model"), std::string::npos);
}
#endif  // CHAINRL_HAVE_SENTENCEPIECE

TEST(Unicode, ChunkedNfcMatchesWholeStringReferenceOnRandomText) {
  // Starters, marks of several classes, decomposables, Hangul jamo and syllables, singletons.
  const char32_t pool[] = {'a',    'e',    'o',    ' ',    'A',    0xE9,    0xC5,   0x301,  0x323,
                           0x302,  0x30A,  0x1100, 0x1161, 0x11A8, 0xAC00,  0xAC01, 0x212B, 0x2126,
                           0x0958, 0x3099, 0x304B, 0x1E0B, 0x0F73, 0x1F600, 0x4E2D, 0x05B4, 0x0345};
  std::mt19937 rng(5);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s;
    int n = rng() % 12;
    for (int i = 0; i < n; ++i) unicode::AppendUtf8(pool[rng() % std::size(pool)], &s);
    ASSERT_EQ(unicode::Nfc(s), unicode::NfcReference(s)) << trial;
  }
}

TEST(Unicode, Utf8ValidationAndRepair) {
  size_t off = 0;
  EXPECT_TRUE(unicode::IsValidUtf8("a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80"));
  EXPECT_FALSE(unicode::IsValidUtf8("ab\xF4\x90\x80\x80", &off));  // > U+10FFFF
  EXPECT_EQ(off, 2u);
  // One U+FFFD per maximal ill-formed subpart: E6 97 (truncated) is one, lone 80 another.
  EXPECT_EQ(unicode::ReplaceInvalidUtf8("x\xE6\x97y\x80z"), "x\xEF\xBF\xBDy\xEF\xBF\xBDz");
}

// ---- Real tokenizers (assets fetched by scripts/fetch_test_assets.sh) -------------------------

std::string AssetsDir() {
  if (const char* d = std::getenv("CHAINRL_ASSETS_DIR")) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/chainrl/assets";
}

// Loads each real tokenizer once per test binary (a load parses ~10 MB of JSON).
const Result<Tokenizer>& LoadOnce(const std::string& dir, double* load_seconds = nullptr) {
  static std::map<std::string, std::pair<Result<Tokenizer>, double>> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) {
    auto t0 = std::chrono::steady_clock::now();
    auto tok = Tokenizer::FromDir(dir);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    it = cache.emplace(dir, std::make_pair(std::move(tok), s)).first;
  }
  if (load_seconds) *load_seconds = it->second.second;
  return it->second.first;
}

class RealTokenizer : public ::testing::TestWithParam<std::string> {};

// Special ids and sizes read from the real files (checked by hand against the files' JSON).
void ExpectSpecialIds(const std::string& model, const Tokenizer& tok) {
  if (model == "qwen3") {
    EXPECT_EQ(tok.vocab_size(), 151669);
    EXPECT_EQ(tok.eos_token_id(), 151645);  // <|im_end|>
    EXPECT_EQ(tok.pad_token_id(), 151643);  // <|endoftext|>
    EXPECT_EQ(tok.bos_token_id(), std::nullopt);
    EXPECT_EQ(tok.TokenToId("<|im_start|>"), 151644);
  } else if (model == "llama3") {
    EXPECT_EQ(tok.vocab_size(), 128256);
    EXPECT_EQ(tok.bos_token_id(), 128000);
    EXPECT_EQ(tok.eos_token_id(), 128001);
    EXPECT_EQ(tok.TokenToId("<|eot_id|>"), 128009);
    // Its post-processor is ByteLevel only: add_special_tokens adds nothing.
    EXPECT_EQ(*tok.Encode("Hi", true), *tok.Encode("Hi", false));
  } else {  // llama3_1: TemplateProcessing prepends <|begin_of_text|>
    EXPECT_EQ(tok.vocab_size(), 128256);
    EXPECT_EQ(tok.bos_token_id(), 128000);
    EXPECT_EQ(tok.eos_token_id(), 128009);
    auto ids = tok.Encode("Hi", true);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->front(), 128000);
    EXPECT_EQ(ids->size(), tok.Encode("Hi", false)->size() + 1);
  }
  EXPECT_FALSE(tok.chat_template().empty());
}

// One test per model so that the ~10 MB tokenizer.json is parsed once per process.
TEST_P(RealTokenizer, MatchesReferenceIdsOnCorpus) {
  const std::string dir = AssetsDir() + "/" + GetParam();
  if (!std::filesystem::exists(dir + "/reference_ids.json"))
    GTEST_SKIP() << "test assets missing in " << dir << " (run scripts/fetch_test_assets.sh)";
  double load_s = 0;
  const auto& tok = LoadOnce(dir, &load_s);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  ExpectSpecialIds(GetParam(), *tok);
  std::ifstream in(dir + "/reference_ids.json");
  json ref = json::parse(in);
  size_t bytes = 0;
  double encode_s = 0;
  int matched = 0, total = 0;
  std::vector<std::string> texts;
  for (const json& c : ref["cases"]) {
    const std::string name = c["name"], text = c["text"];
    texts.push_back(text);
    ++total;
    auto s = std::chrono::steady_clock::now();
    auto ids = tok->Encode(text);
    encode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
    bytes += text.size();
    ASSERT_TRUE(ids.ok()) << name << ": " << ids.status().ToString();
    const std::vector<int32_t> want = c["ids"];
    EXPECT_EQ(*ids, want) << GetParam() << " case " << name;
    if (*ids == want) ++matched;
    EXPECT_EQ(*tok->Encode(text, true), c["ids_add_special"].get<std::vector<int32_t>>()) << name;
    EXPECT_EQ(*tok->Decode(want), c["decoded"].get<std::string>()) << name;
    EXPECT_EQ(*tok->Decode(want, true), c["decoded_skip_special"].get<std::string>()) << name;
    // Round trip: decode(encode(x)) is x up to the normalizer (NFC for Qwen).
    std::string expect_rt =
        tok->kind() == "bpe" && GetParam() == "qwen3" ? unicode::Nfc(text) : text;
    EXPECT_EQ(*tok->Decode(*ids), expect_rt) << name;
  }
  auto batch = tok->EncodeBatch(texts);
  ASSERT_TRUE(batch.ok());
  for (size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ((*batch)[i], ref["cases"][i]["ids"].get<std::vector<int32_t>>());
  // Throughput on ~2 MB of the ordinary cases (the 100K-character stress cases left out), after
  // the pass above warmed the word cache. A figure for the log, not an assertion.
  std::string bulk;
  for (const json& c : ref["cases"])
    if (c["name"].get<std::string>().rfind("long_", 0) != 0)
      bulk += c["text"].get<std::string>() + "\n";
  while (bulk.size() < 2000000) bulk += bulk;
  auto s = std::chrono::steady_clock::now();
  auto bulk_ids = tok->Encode(bulk);
  double bulk_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
  ASSERT_TRUE(bulk_ids.ok());
  std::printf(
      "[ %s ] %d/%d corpus cases match; load %.2f s; corpus %.2f MB in %.3f s (cold cache); "
      "bulk %.2f MB at %.1f MB/s\n",
      GetParam().c_str(), matched, total, load_s, bytes / 1e6, encode_s, bulk.size() / 1e6,
      bulk.size() / 1e6 / bulk_s);
}

INSTANTIATE_TEST_SUITE_P(Models, RealTokenizer, ::testing::Values("qwen3", "llama3", "llama3_1"));

}  // namespace
}  // namespace chainrl
