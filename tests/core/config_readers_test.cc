// Every key of the run-configuration schema (apps/run_config.h, assembled from the layers'
// config_keys.cc files) has a reader: its name appears as a string literal ("learner.lr", quotes
// included) in some non-test source other than the keys files, so that a key added to the schema
// without code that reads it fails here instead of being accepted and ignored. Keys of an array of
// tables (`[[rewards]]`) must appear in a source that reads the array (GetArray("rewards")). And
// every value a key's `choices` accept appears as a literal in some reader, so that no accepted
// value falls back silently to another's behaviour. The source tree is read from
// CHAINRL_SOURCE_DIR.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "apps/run_config.h"

namespace chainrl {
namespace {

namespace fs = std::filesystem;

// The folders whose code reads the configuration (tests, benchmarks and scripts do not count).
const char* const kReaderDirs[] = {"core",    "learner", "actors", "rollout",
                                   "rewards", "apps",    "model",  "data"};

// Keys read without their full name as a literal (a prefix or table walk), each with the reason.
// None today; an entry here must name a schema key that the literal search does not find.
const std::map<std::string, std::string>& KeysReadWithoutLiteral() {
  static const auto* keys = new std::map<std::string, std::string>{};
  return *keys;
}

// Choices accepted by the schema and matched without their literal, as "key=value" (element keys of
// an array as "array.key=value"), each with the reason. An entry must name an accepted choice that
// the literal search does not find.
const std::map<std::string, std::string>& ChoicesMatchedWithoutLiteral() {
  static const auto* choices = new std::map<std::string, std::string>{
      // Two-valued keys whose reader compares with the other value.
      {"learner.old_logprobs=behaviour", "read as old_logprobs != \"recompute\""},
      {"algorithm.preference_source=online", "read as preference_source != \"offline\""},
  };
  return *choices;
}

// Keys whose values are dispatched through a list rather than compared as literals: the list's
// file and the form an entry takes there ("X(name," in an X-macro list). Each entry of the list
// is checked elsewhere to have its implementation (objective_test: every name has its recipe).
struct ValueList {
  const char* file;    // relative to the source tree
  const char* prefix;  // an entry is prefix + value + ","
};
const std::map<std::string, ValueList>& KeysDispatchedByList() {
  static const auto* keys = new std::map<std::string, ValueList>{
      {"algorithm.name", {"learner/objective_list.h", "X("}},
  };
  return *keys;
}

// A keys file declares keys; it does not read them.
bool IsKeysFile(const fs::path& p) { return p.filename() == "config_keys.cc"; }

struct Source {
  std::string path;  // relative to the source tree
  std::string text;
};

std::vector<Source> ReaderSources() {
  const fs::path root(CHAINRL_SOURCE_DIR);
  std::vector<Source> out;
  for (const char* dir : kReaderDirs) {
    for (const auto& e : fs::recursive_directory_iterator(root / dir)) {
      if (!e.is_regular_file()) continue;
      const fs::path& p = e.path();
      const std::string name = p.filename().string();
      if (p.extension() != ".cc" && p.extension() != ".h") continue;
      if (name.size() > 8 && name.compare(name.size() - 8, 8, "_test.cc") == 0) continue;
      const std::string rel = fs::relative(p, root).string();
      if (IsKeysFile(p)) continue;  // the definitions, not a reader
      std::ifstream in(p);
      std::stringstream ss;
      ss << in.rdbuf();
      out.push_back({rel, ss.str()});
    }
  }
  return out;
}

// The sources holding "`key`" (the quotes included), among `sources`.
std::vector<std::string> Readers(const std::vector<Source>& sources, const std::string& key) {
  const std::string needle = "\"" + key + "\"";
  std::vector<std::string> found;
  for (const Source& s : sources)
    if (s.text.find(needle) != std::string::npos) found.push_back(s.path);
  return found;
}

TEST(ConfigReadersTest, EveryKeyIsReadBySomeSource) {
  const std::vector<Source> sources = ReaderSources();
  ASSERT_GT(sources.size(), 50u) << "source tree not found at " << CHAINRL_SOURCE_DIR;
  const ConfigSchema& schema = RunConfigSchema();
  int checked = 0;
  for (const KeySpec& k : schema.keys) {
    const bool excepted = KeysReadWithoutLiteral().count(k.key) > 0;
    const auto readers = Readers(sources, k.key);
    if (excepted) {
      EXPECT_TRUE(readers.empty()) << k.key << " is read as a literal now (in " << readers[0]
                                   << "): remove it from KeysReadWithoutLiteral";
    } else {
      EXPECT_FALSE(readers.empty())
          << k.key << " is in the schema (a config_keys.cc) but no source under core/, "
          << "learner/, actors/, rollout/, rewards/, apps/, model/ or data/ names it: read it, "
          << "refuse its values, or remove it";
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(schema.keys.size()));
  for (const auto& [key, reason] : KeysReadWithoutLiteral())
    EXPECT_NE(schema.FindKey(key), nullptr) << key << " (" << reason << ") is not a schema key";
}

TEST(ConfigReadersTest, EveryArrayElementKeyIsReadWhereTheArrayIsRead) {
  const std::vector<Source> sources = ReaderSources();
  for (const ArraySpec& a : RunConfigSchema().arrays) {
    std::vector<Source> array_readers;
    for (const Source& s : sources)
      if (s.text.find("GetArray(\"" + a.name + "\")") != std::string::npos)
        array_readers.push_back(s);
    ASSERT_FALSE(array_readers.empty()) << "[[" << a.name << "]] is read by no source";
    for (const KeySpec& k : a.keys)
      EXPECT_FALSE(Readers(array_readers, k.key).empty())
          << "[[" << a.name << "]] " << k.key << ": no source that reads the array names it";
  }
}

// The string and string-list keys with choices, each with the name its choices are listed under:
// top-level keys by their dotted name, element keys of an array as "array.key".
std::vector<std::pair<std::string, const KeySpec*>> KeysWithChoices(const ConfigSchema& schema) {
  std::vector<std::pair<std::string, const KeySpec*>> out;
  auto add = [&](const std::string& name, const KeySpec& k) {
    if ((k.type == ValueType::kString || k.type == ValueType::kStringList) && !k.choices.empty())
      out.emplace_back(name, &k);
  };
  for (const KeySpec& k : schema.keys) add(k.key, k);
  for (const ArraySpec& a : schema.arrays)
    for (const KeySpec& k : a.keys) add(a.name + "." + k.key, k);
  return out;
}

bool IsRefused(const KeySpec& k, const std::string& value) {
  for (const RefusedValue& r : k.refused) {
    const std::string* s = std::get_if<std::string>(&r.value);
    if (s && *s == value) return true;
  }
  return false;
}

// An accepted value never silently falls back: every choice that is not refused appears as a
// literal ("recompute", quotes included) in some reader, where code compares against it. A value
// the schema accepts but no code names would be handled as some other value without a word; such a
// value is refused in the schema with a reason instead.
TEST(ConfigReadersTest, EveryAcceptedChoiceIsNamedBySomeReader) {
  const std::vector<Source> sources = ReaderSources();
  ASSERT_GT(sources.size(), 50u) << "source tree not found at " << CHAINRL_SOURCE_DIR;
  const auto keys = KeysWithChoices(RunConfigSchema());
  ASSERT_FALSE(keys.empty());
  std::map<std::string, bool> accepted;  // "key=value" -> seen
  int checked = 0;
  for (const auto& [name, k] : keys) {
    if (auto list = KeysDispatchedByList().find(name); list != KeysDispatchedByList().end()) {
      std::ifstream in(fs::path(CHAINRL_SOURCE_DIR) / list->second.file);
      std::stringstream text;
      text << in.rdbuf();
      for (const std::string& choice : k->choices) {
        if (IsRefused(*k, choice)) continue;
        EXPECT_NE(text.str().find(list->second.prefix + choice + ","), std::string::npos)
            << name << "=" << choice << " is accepted by the schema but is no entry of "
            << list->second.file;
        ++checked;
      }
      continue;
    }
    for (const std::string& choice : k->choices) {
      if (IsRefused(*k, choice)) continue;
      const std::string entry = name + "=" + choice;
      accepted[entry] = true;
      const bool excepted = ChoicesMatchedWithoutLiteral().count(entry) > 0;
      const auto readers = Readers(sources, choice);
      if (excepted) {
        EXPECT_TRUE(readers.empty()) << entry << " is named as a literal now (in " << readers[0]
                                     << "): remove it from ChoicesMatchedWithoutLiteral";
      } else {
        EXPECT_FALSE(readers.empty())
            << entry << " is accepted by the schema but no source under core/, learner/, "
            << "actors/, rollout/, rewards/, apps/, model/ or data/ names \"" << choice
            << "\": compare against it where the key is read, or refuse it in the schema with "
            << "a reason";
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
  for (const auto& [entry, reason] : ChoicesMatchedWithoutLiteral())
    EXPECT_EQ(accepted.count(entry), 1u)
        << entry << " (" << reason << ") is not an accepted choice";
}

// The search itself: it finds a key that is read and reports one that is not.
TEST(ConfigReadersTest, SearchFindsReadersAndMissesUnreadKeys) {
  const std::vector<Source> sources = ReaderSources();
  EXPECT_FALSE(Readers(sources, "learner.lr").empty());
  EXPECT_TRUE(Readers(sources, "learner.no_such_key").empty());
}

}  // namespace
}  // namespace chainrl
