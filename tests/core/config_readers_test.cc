// Every key of the run-configuration schema has a reader: its name appears as a string literal
// ("learner.lr", quotes included) in some non-test source outside core/config_schema.cc, so that
// a key added to the schema without code that reads it fails here instead of being accepted and
// ignored. Keys of an array of tables (`[[rewards]]`) must appear in a source that reads the array
// (GetArray("rewards")). The source tree is read from CHAINRL_SOURCE_DIR.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"

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
      if (rel == "core/config_schema.cc") continue;  // the definitions, not a reader
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
          << k.key << " is in the schema (core/config_schema.cc) but no source under core/, "
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

// The search itself: it finds a key that is read and reports one that is not.
TEST(ConfigReadersTest, SearchFindsReadersAndMissesUnreadKeys) {
  const std::vector<Source> sources = ReaderSources();
  EXPECT_FALSE(Readers(sources, "learner.lr").empty());
  EXPECT_TRUE(Readers(sources, "learner.no_such_key").empty());
}

}  // namespace
}  // namespace chainrl
