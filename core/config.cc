// Strict loading and validation of TOML run configurations against the schema.
#include "core/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include <toml++/toml.h>

#include "core/check.h"
#include "core/json_file.h"

namespace chainrl {

const KeySpec* ConfigSchema::FindKey(std::string_view dotted) const {
  for (const auto& k : keys)
    if (k.key == dotted) return &k;
  return nullptr;
}

const ArraySpec* ConfigSchema::FindArray(std::string_view dotted) const {
  for (const auto& a : arrays)
    if (a.name == dotted) return &a;
  return nullptr;
}

bool ConfigSchema::IsSection(std::string_view dotted) const {
  return std::find(sections.begin(), sections.end(), dotted) != sections.end();
}

std::string ConfigIssue::ToString() const {
  std::string s = file;
  if (line > 0) s += ":" + std::to_string(line) + ":" + std::to_string(column);
  s += ": ";
  if (!key.empty()) s += key + ": ";
  return s + message;
}

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kBool:
      return "boolean";
    case ValueType::kInt:
      return "integer";
    case ValueType::kFloat:
      return "float";
    case ValueType::kString:
      return "string";
    case ValueType::kStringList:
      return "array of strings";
    case ValueType::kIntList:
      return "array of integers";
    case ValueType::kFloatList:
      return "array of floats";
    case ValueType::kTable:
      return "table";
    case ValueType::kOverrides:
      return "table of overrides";
  }
  return "?";
}

namespace {

std::string FormatFloat(double d) {
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (std::isnan(d)) return "nan";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);  // shortest exact text
  std::string s(buf, ec == std::errc() ? end : buf);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// A number as a user wrote it: integers without a fraction.
std::string FormatNumber(double d) {
  std::string s = FormatFloat(d);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

std::string QuoteString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04X", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

template <typename T, typename F>
std::string FormatList(const std::vector<T>& v, F f) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + f(v[i]);
  return s + "]";
}

const char* NodeTypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string Leaf(std::string_view dotted) {
  auto p = dotted.rfind('.');
  return std::string(p == std::string_view::npos ? dotted : dotted.substr(p + 1));
}

std::string Parent(std::string_view dotted) {
  auto p = dotted.rfind('.');
  return p == std::string_view::npos ? "" : std::string(dotted.substr(0, p));
}

// The closest valid name for an unknown dotted key: same-section keys by edit distance, then any
// key with the same leaf name, then sections.
std::string Suggest(const ConfigSchema& schema, const std::string& unknown,
                    const std::vector<std::string>& local_candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, Leaf(unknown).size() / 3) + 1;
  for (const auto& c : local_candidates) {
    size_t d = EditDistance(Leaf(unknown), Leaf(c));
    if (d < best_d) best_d = d, best = c;
  }
  if (!best.empty()) return best;
  for (const auto& k : schema.keys)
    if (Leaf(k.key) == Leaf(unknown)) return k.key;
  best_d = std::max<size_t>(2, unknown.size() / 3) + 1;
  for (const auto& s : schema.sections) {
    size_t d = EditDistance(unknown, s);
    if (d < best_d) best_d = d, best = s;
  }
  for (const auto& a : schema.arrays) {
    size_t d = EditDistance(unknown, a.name);
    if (d < best_d) best_d = d, best = a.name;
  }
  return best;
}

std::string DidYouMean(const std::string& s) {
  return s.empty() ? "" : " (did you mean '" + s + "'?)";
}

std::string RangeText(const KeySpec& spec) {
  std::string lo = spec.min ? FormatNumber(*spec.min) : "-inf";
  std::string hi = spec.max ? FormatNumber(*spec.max) : "inf";
  return std::string(spec.min_exclusive ? "(" : "[") + lo + ", " + hi + "]";
}

std::string ChoicesText(const std::vector<std::string>& choices) {
  std::string s;
  for (size_t i = 0; i < choices.size(); ++i) s += (i ? ", " : "") + choices[i];
  return s;
}

// Range/choices/custom checks on a typed value; returns "" when valid.
std::string CheckValue(const KeySpec& spec, const ConfigValue& v) {
  auto check_number = [&](double x) -> std::string {
    if (!std::isfinite(x)) return "must be finite";
    bool below = spec.min && (spec.min_exclusive ? x <= *spec.min : x < *spec.min);
    bool above = spec.max && x > *spec.max;
    if (below || above) return FormatNumber(x) + " is out of range " + RangeText(spec);
    return "";
  };
  auto check_choice = [&](const std::string& s) -> std::string {
    if (spec.choices.empty()) return "";
    if (std::find(spec.choices.begin(), spec.choices.end(), s) != spec.choices.end()) return "";
    return "'" + s + "' is not one of: " + ChoicesText(spec.choices);
  };
  for (const RefusedValue& r : spec.refused) {
    if (r.value != v) continue;
    const std::string* s = std::get_if<std::string>(&v);
    std::string msg = (s ? "'" + *s + "'" : FormatConfigValue(v)) + " is refused: " + r.reason;
    if (!spec.choices.empty()) msg += "; valid values: " + ChoicesText(spec.choices);
    return msg;
  }
  std::string err;
  if (auto* i = std::get_if<int64_t>(&v)) err = check_number(static_cast<double>(*i));
  if (auto* d = std::get_if<double>(&v)) err = check_number(*d);
  if (auto* s = std::get_if<std::string>(&v); s && spec.type == ValueType::kString)
    err = check_choice(*s);
  if (auto* l = std::get_if<std::vector<std::string>>(&v); l && spec.type == ValueType::kStringList)
    for (const auto& s : *l)
      if (err.empty()) err = check_choice(s);
  if (auto* l = std::get_if<std::vector<int64_t>>(&v))
    for (auto x : *l)
      if (err.empty()) err = check_number(static_cast<double>(x));
  if (auto* l = std::get_if<std::vector<double>>(&v))
    for (auto x : *l)
      if (err.empty()) err = check_number(x);
  if (err.empty() && spec.check) err = spec.check(v);
  return err;
}

struct Position {
  int line = 0, column = 0;
};

Position PosOf(const toml::source_region& r) {
  return {static_cast<int>(r.begin.line), static_cast<int>(r.begin.column)};
}

// Collects issues while converting TOML nodes into typed values.
class Validator {
 public:
  Validator(const ConfigSchema& schema, std::string file)
      : schema_(schema), file_(std::move(file)) {}

  void Issue(Position p, const std::string& key, const std::string& message) {
    issues.push_back({file_, p.line, p.column, key, message});
  }

  // Converts `node` to the spec's type, checking range; nullopt after recording an issue.
  std::optional<ConfigValue> Convert(const KeySpec& spec, const std::string& key,
                                     const toml::node& node) {
    Position pos = PosOf(node.source());
    auto wrong = [&]() -> std::optional<ConfigValue> {
      Issue(pos, key,
            std::string("expected ") + (spec.type == ValueType::kInt ? "an " : "a ") +
                ValueTypeName(spec.type) + ", got " + NodeTypeName(node));
      return std::nullopt;
    };
    std::optional<ConfigValue> out;
    switch (spec.type) {
      case ValueType::kBool:
        if (!node.is_boolean()) return wrong();
        out = node.as_boolean()->get();
        break;
      case ValueType::kInt:
        if (!node.is_integer()) return wrong();
        out = node.as_integer()->get();
        break;
      case ValueType::kFloat:
        if (node.is_integer()) {
          out = static_cast<double>(node.as_integer()->get());
        } else if (node.is_floating_point()) {
          out = node.as_floating_point()->get();
        } else {
          return wrong();
        }
        break;
      case ValueType::kString:
        if (!node.is_string()) return wrong();
        out = node.as_string()->get();
        break;
      case ValueType::kStringList:
      case ValueType::kIntList:
      case ValueType::kFloatList: {
        const toml::array* arr = node.as_array();
        if (!arr) return wrong();
        std::vector<std::string> ss;
        std::vector<int64_t> is;
        std::vector<double> ds;
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::node& e = *arr->get(i);
          bool ok = false;
          if (spec.type == ValueType::kStringList && e.is_string()) {
            ss.push_back(e.as_string()->get());
            ok = true;
          } else if (spec.type == ValueType::kIntList && e.is_integer()) {
            is.push_back(e.as_integer()->get());
            ok = true;
          } else if (spec.type == ValueType::kFloatList &&
                     (e.is_integer() || e.is_floating_point())) {
            ds.push_back(e.is_integer() ? static_cast<double>(e.as_integer()->get())
                                        : e.as_floating_point()->get());
            ok = true;
          }
          if (!ok) {
            Issue(PosOf(e.source()), key,
                  "element " + std::to_string(i) + ": expected " +
                      (spec.type == ValueType::kStringList ? "a string"
                       : spec.type == ValueType::kIntList  ? "an integer"
                                                           : "a float") +
                      ", got " + NodeTypeName(e));
            return std::nullopt;
          }
        }
        if (spec.type == ValueType::kStringList)
          out = std::move(ss);
        else if (spec.type == ValueType::kIntList)
          out = std::move(is);
        else
          out = std::move(ds);
        break;
      }
      case ValueType::kTable: {
        const toml::table* t = node.as_table();
        if (!t) return wrong();
        toml::table block = *t;  // written as a block table so the text parses on its own
        block.is_inline(false);
        std::ostringstream os;
        os << block;
        out = os.str();
        break;
      }
      case ValueType::kOverrides: {
        const toml::table* t = node.as_table();
        if (!t) return wrong();
        std::vector<std::string> sets;
        bool ok = true;
        for (auto&& [k, v] : *t) {
          std::string target(k.str());
          const KeySpec* ts = schema_.FindKey(target);
          if (!ts) {
            std::vector<std::string> local;
            for (const auto& c : schema_.keys)
              if (Parent(c.key) == Parent(target)) local.push_back(c.key);
            Issue(PosOf(k.source()), key,
                  "unknown key '" + target + "'" + DidYouMean(Suggest(schema_, target, local)));
            ok = false;
            continue;
          }
          auto tv = Convert(*ts, key + "." + target, v);
          if (!tv) {
            ok = false;
            continue;
          }
          sets.push_back(target + "=" + FormatConfigValue(*tv));
        }
        if (!ok) return std::nullopt;
        out = std::move(sets);
        break;
      }
    }
    std::string err = CheckValue(spec, *out);
    if (!err.empty()) {
      Issue(pos, key, err);
      return std::nullopt;
    }
    return out;
  }

  // Walks a table that is (part of) section `prefix` ("" for the root).
  void WalkTable(const toml::table& table, const std::string& prefix,
                 std::map<std::string, std::pair<ConfigValue, Position>>* values,
                 std::map<std::string, std::vector<std::pair<ConfigTable, Position>>>* arrays) {
    for (auto&& [k, node] : table) {
      std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      Position kpos = PosOf(k.source());
      if (const KeySpec* spec = schema_.FindKey(key)) {
        if (auto v = Convert(*spec, key, node)) (*values)[key] = {*v, PosOf(node.source())};
        continue;
      }
      if (const ArraySpec* arr = schema_.FindArray(key)) {
        const toml::array* a = node.as_array();
        if (!a || !a->is_array_of_tables()) {
          Issue(PosOf(node.source()), key,
                std::string("expected an array of tables ([[") + key + "]]), got " +
                    NodeTypeName(node));
          continue;
        }
        for (size_t i = 0; i < a->size(); ++i) {
          const toml::table& elem = *a->get(i)->as_table();
          (*arrays)[key].push_back(
              {WalkElement(*arr, key + "[" + std::to_string(i) + "]", elem), PosOf(elem.source())});
        }
        continue;
      }
      if (schema_.IsSection(key)) {
        if (const toml::table* t = node.as_table()) {
          WalkTable(*t, key, values, arrays);
        } else {
          Issue(PosOf(node.source()), key,
                std::string("expected a table [") + key + "], got " + NodeTypeName(node));
        }
        continue;
      }
      std::vector<std::string> local;
      for (const auto& c : schema_.keys)
        if (Parent(c.key) == prefix) local.push_back(c.key);
      for (const auto& s : schema_.sections)
        if (Parent(s) == prefix) local.push_back(s);
      for (const auto& a : schema_.arrays)
        if (Parent(a.name) == prefix) local.push_back(a.name);
      const char* what = node.is_table() ? "table" : "key";
      Issue(kpos, key, std::string("unknown ") + what + DidYouMean(Suggest(schema_, key, local)));
    }
  }

  ConfigTable WalkElement(const ArraySpec& arr, const std::string& where, const toml::table& elem) {
    ConfigTable out;
    for (auto&& [k, node] : elem) {
      std::string leaf(k.str());
      const KeySpec* spec = nullptr;
      for (const auto& ks : arr.keys)
        if (ks.key == leaf) spec = &ks;
      if (!spec) {
        std::vector<std::string> local;
        for (const auto& ks : arr.keys) local.push_back(ks.key);
        Issue(PosOf(k.source()), where + "." + leaf,
              "unknown key" + DidYouMean(Suggest(schema_, leaf, local)));
        continue;
      }
      if (auto v = Convert(*spec, where + "." + leaf, node)) out[leaf] = *v;
    }
    for (const auto& ks : arr.keys) {
      if (out.count(ks.key)) continue;
      if (ks.required) {
        Issue(PosOf(elem.source()), where + "." + ks.key, "required key is missing");
      } else {
        out[ks.key] = ks.default_value;
      }
    }
    return out;
  }

  std::vector<ConfigIssue> issues;

 private:
  const ConfigSchema& schema_;
  std::string file_;
};

std::string JoinIssues(const std::vector<ConfigIssue>& issues) {
  std::string s;
  for (size_t i = 0; i < issues.size(); ++i) s += (i ? "\n" : "") + issues[i].ToString();
  return s;
}

}  // namespace

std::string FormatConfigValue(const ConfigValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>)
          return x ? "true" : "false";
        else if constexpr (std::is_same_v<T, int64_t>)
          return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>)
          return FormatFloat(x);
        else if constexpr (std::is_same_v<T, std::string>)
          return QuoteString(x);
        else if constexpr (std::is_same_v<T, std::vector<std::string>>)
          return FormatList(x, QuoteString);
        else if constexpr (std::is_same_v<T, std::vector<int64_t>>)
          return FormatList(x, [](int64_t i) { return std::to_string(i); });
        else
          return FormatList(x, FormatFloat);
      },
      v);
}

// Builds a Config from the schema defaults plus validated values; friend of Config.
class ConfigBuilder {
 public:
  static Result<Config> Build(const ConfigSchema& schema, const std::string& file,
                              const toml::table& root, const Config* base,
                              const std::vector<std::string>& overrides,
                              std::vector<ConfigIssue>* issues_out) {
    Validator val(schema, file);
    std::map<std::string, std::pair<ConfigValue, Position>> values;
    std::map<std::string, std::vector<std::pair<ConfigTable, Position>>> arrays;
    val.WalkTable(root, "", &values, &arrays);

    Config c;
    if (base) c = *base;
    c.schema_ = &schema;
    for (const auto& k : schema.keys) {
      auto it = values.find(k.key);
      if (it != values.end()) {
        c.values_[k.key] = it->second.first;
        c.sources_[k.key] = file + ":" + std::to_string(it->second.second.line) + ":" +
                            std::to_string(it->second.second.column);
      } else if (!base) {
        c.values_[k.key] = k.default_value;
        c.sources_[k.key] = "default";
      }
    }
    for (const auto& a : schema.arrays) {
      auto it = arrays.find(a.name);
      if (it != arrays.end()) {
        auto& dst = c.arrays_[a.name];
        dst.clear();
        for (auto& [t, pos] : it->second) dst.push_back(t);
      } else if (!base) {
        c.arrays_[a.name] = {};
      }
    }

    // Command-line overrides: "dotted.key=value" where value is TOML (a bare word is accepted
    // as a string for string keys).
    Validator oval(schema, "--set");
    for (size_t i = 0; i < overrides.size(); ++i) {
      const std::string& o = overrides[i];
      int line = static_cast<int>(i) + 1;
      auto eq = o.find('=');
      if (eq == std::string::npos) {
        oval.issues.push_back({"--set", line, 1, "", "expected KEY=VALUE, got '" + o + "'"});
        continue;
      }
      std::string key = o.substr(0, eq), text = o.substr(eq + 1);
      while (!key.empty() && key.back() == ' ') key.pop_back();
      if (key.empty()) {
        oval.issues.push_back({"--set", line, 1, "", "empty key in '" + o + "'"});
        continue;
      }
      const KeySpec* spec = schema.FindKey(key);
      if (!spec && (schema.IsSection(key) || schema.FindArray(key))) {
        oval.issues.push_back({"--set", line, 1, key,
                               "is a table, not a key: set one of its keys (see chainrl config "
                               "docs)"});
        continue;
      }
      if (!spec) {
        std::vector<std::string> local;
        for (const auto& c2 : schema.keys)
          if (Parent(c2.key) == Parent(key)) local.push_back(c2.key);
        oval.issues.push_back(
            {"--set", line, 1, key, "unknown key" + DidYouMean(Suggest(schema, key, local))});
        continue;
      }
      int vcol = static_cast<int>(eq) + 2;
      toml::table parsed;
      bool parsed_ok = true;
      std::string parse_msg;
      try {
        parsed = toml::parse("v = " + text);
      } catch (const toml::parse_error& e) {
        parsed_ok = false;
        parse_msg = std::string(e.description());
      }
      std::optional<ConfigValue> v;
      if (!parsed_ok || !parsed.contains("v")) {
        // A bare string for a string key: brackets, braces and '=' included (an IPv6 endpoint,
        // a CURVE key); a stray quote is more likely a quoting mistake than part of the value.
        if (spec->type == ValueType::kString && text.find_first_of("\"'\n") == std::string::npos) {
          v = ConfigValue(text);
          std::string err = CheckValue(*spec, *v);
          if (!err.empty()) {
            oval.issues.push_back({"--set", line, vcol, key, err});
            v.reset();
          }
        } else {
          oval.issues.push_back({"--set", line, vcol, key,
                                 "value '" + text + "' is not a valid TOML value (" +
                                     (parse_msg.empty() ? "empty" : parse_msg) + ")"});
        }
      } else {
        size_t before = oval.issues.size();
        v = oval.Convert(*spec, key, *parsed.get("v"));
        for (size_t j = before; j < oval.issues.size(); ++j) {
          oval.issues[j].line = line;
          oval.issues[j].column = vcol;
        }
      }
      if (v) {
        c.values_[key] = *v;
        c.sources_[key] = "--set";
      }
    }

    // A key given with --set replaces the file's value, so a problem with that value is moot.
    std::vector<ConfigIssue> issues;
    for (auto& i : val.issues)
      if (c.sources_[i.key] != "--set") issues.push_back(std::move(i));
    // Report in source order (the TOML table iterates keys alphabetically).
    std::stable_sort(issues.begin(), issues.end(), [](const ConfigIssue& a, const ConfigIssue& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    issues.insert(issues.end(), oval.issues.begin(), oval.issues.end());
    for (const auto& k : schema.keys) {
      if (!k.required) continue;
      bool set = c.sources_[k.key] != "default";
      if (!set) issues.push_back({file, 0, 0, k.key, "required key is missing"});
    }
    if (issues_out) *issues_out = issues;
    if (!issues.empty()) return InvalidArgument(JoinIssues(issues));
    return c;
  }
};

namespace {

// Where the text nests tables deeper than kMaxConfigTableDepth through its keys, if anywhere. The
// TOML parser (and a table's destructor) recurse once per table: a header or dotted key of a few
// tens of thousands of parts overflows the stack, and the parser bounds only nested values
// (arrays, inline tables). This scan follows the TOML lexical structure just enough to count a
// key's parts (strings and comments skipped, values' dots ignored) and adds the depth of the table
// it is in (its header, enclosing inline tables and arrays).
std::optional<ConfigIssue> TableDepthIssue(std::string_view text, const std::string& source_name) {
  struct Open {
    char kind;  // '[' an array value, '{' an inline table
    int depth;  // tables above the keys written inside it
  };
  std::vector<Open> open;
  bool in_key = true;      // a key is expected or being read (else a value)
  bool in_header = false;  // a [table] or [[array]] header on this line
  bool line_start = true;
  int table_depth = 0;  // of the last header, for the key/value lines below it
  int base = 0;         // tables above the key being read
  int parts = 1;        // parts of the key being read
  int line = 1;
  size_t line_begin = 0;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const char ch = text[i];
    if (ch == '\n') {
      ++line;
      line_begin = i + 1;
      if (in_header) table_depth = parts;
      in_header = false;
      if (open.empty()) {
        in_key = true;
        line_start = true;
        base = table_depth;
        parts = 1;
      }
      continue;
    }
    if (ch == ' ' || ch == '\t' || ch == '\r') continue;
    if (ch == '#') {  // a comment, to the end of the line
      while (i + 1 < n && text[i + 1] != '\n') ++i;
      continue;
    }
    if (ch == '"' || ch == '\'') {  // a string, a key or a value: skipped whole
      const bool basic = ch == '"';
      const bool multi = i + 2 < n && text[i + 1] == ch && text[i + 2] == ch;
      i += multi ? 3 : 1;
      for (; i < n; ++i) {
        if (basic && text[i] == '\\') {
          ++i;
          continue;
        }
        if (text[i] == '\n') {
          if (!multi) break;  // unterminated: the parser reports it
          ++line;
          line_begin = i + 1;
        }
        if (text[i] == ch && (!multi || (i + 2 < n && text[i + 1] == ch && text[i + 2] == ch))) {
          if (multi) i += 2;
          break;
        }
      }
      if (i < n && text[i] == '\n') --i;  // the newline is handled above
      line_start = false;
      continue;
    }
    if (in_key) {
      if (line_start && open.empty() && ch == '[') {
        in_header = true;
        base = 0;
      } else if (ch == '.') {
        ++parts;
        if (base + parts > kMaxConfigTableDepth)
          return ConfigIssue{source_name, line, static_cast<int>(i - line_begin + 1), "",
                             "keys nest tables deeper than " +
                                 std::to_string(kMaxConfigTableDepth) +
                                 " levels (a table header or dotted key with too many parts)"};
      } else if (ch == '=') {
        in_key = false;
        base += parts;
        parts = 1;
      } else if (ch == '}' && !open.empty()) {  // an empty inline table
        open.pop_back();
        in_key = false;
      }
      line_start = false;
      continue;
    }
    line_start = false;
    if (ch == '[' || ch == '{') {
      open.push_back({ch, base + (ch == '[' ? 1 : 0)});
      if (open.size() > 1024) return std::nullopt;  // the parser refuses this nesting itself
      if (ch == '{') {
        in_key = true;
        base = open.back().depth;
        parts = 1;
      }
    } else if ((ch == ']' || ch == '}') && !open.empty()) {
      open.pop_back();
      base = open.empty() ? table_depth : open.back().depth;
    } else if (ch == ',' && !open.empty() && open.back().kind == '{') {
      in_key = true;
      base = open.back().depth;
      parts = 1;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<Config> ParseConfig(const ConfigSchema& schema, std::string_view text,
                           const std::string& source_name,
                           const std::vector<std::string>& overrides,
                           std::vector<ConfigIssue>* issues) {
  if (std::optional<ConfigIssue> deep = TableDepthIssue(text, source_name)) {
    if (issues) *issues = {*deep};
    return InvalidArgument(deep->ToString());
  }
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    ConfigIssue issue{source_name, static_cast<int>(e.source().begin.line),
                      static_cast<int>(e.source().begin.column), "",
                      "syntax error: " + std::string(e.description())};
    if (issues) *issues = {issue};
    return InvalidArgument(issue.ToString());
  }
  return ConfigBuilder::Build(schema, source_name, root, nullptr, overrides, issues);
}

Result<Config> LoadConfig(const ConfigSchema& schema, const std::string& path,
                          const std::vector<std::string>& overrides,
                          std::vector<ConfigIssue>* issues) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    ConfigIssue issue{path, 0, 0, "", "no such config file"};
    if (issues) *issues = {issue};
    return NotFound(issue.ToString());
  }
  Result<std::string> text = ReadFileBounded(path, kMaxConfigBytes);
  if (!text.ok()) {
    // ReadFileBounded's message starts with the path; the issue names it once.
    std::string why = text.status().message();
    if (why.rfind(path + ": ", 0) == 0) why = why.substr(path.size() + 2);
    ConfigIssue issue{path, 0, 0, "", why};
    if (issues) *issues = {issue};
    // A config that cannot be read is the user's to mend, like one that does not parse.
    return Status(text.status().code() == StatusCode::kNotFound ? StatusCode::kNotFound
                                                                : StatusCode::kInvalidArgument,
                  issue.ToString());
  }
  return ParseConfig(schema, *text, path, overrides, issues);
}

Result<Config> Config::WithOverrides(const std::vector<std::string>& sets,
                                     std::vector<ConfigIssue>* issues) const {
  CHAINRL_CHECK(schema_ != nullptr, "WithOverrides on a Config that was not loaded");
  return ConfigBuilder::Build(*schema_, "--set", toml::table{}, this, sets, issues);
}

namespace {
const ConfigValue& Lookup(const std::map<std::string, ConfigValue, std::less<>>& values,
                          std::string_view key) {
  auto it = values.find(key);
  CHAINRL_CHECK(it != values.end(), "config key '" << key << "' is not in the schema");
  return it->second;
}
template <typename T>
const T& Typed(const std::map<std::string, ConfigValue, std::less<>>& values,
               std::string_view key) {
  const ConfigValue& v = Lookup(values, key);
  const T* p = std::get_if<T>(&v);
  CHAINRL_CHECK(p != nullptr, "config key '" << key << "' read with the wrong type");
  return *p;
}
}  // namespace

const ConfigValue& Config::Get(std::string_view key) const { return Lookup(values_, key); }
bool Config::GetBool(std::string_view key) const { return Typed<bool>(values_, key); }
int64_t Config::GetInt(std::string_view key) const { return Typed<int64_t>(values_, key); }
double Config::GetFloat(std::string_view key) const { return Typed<double>(values_, key); }
const std::string& Config::GetString(std::string_view key) const {
  return Typed<std::string>(values_, key);
}
const std::vector<std::string>& Config::GetStringList(std::string_view key) const {
  return Typed<std::vector<std::string>>(values_, key);
}
const std::vector<int64_t>& Config::GetIntList(std::string_view key) const {
  return Typed<std::vector<int64_t>>(values_, key);
}
const std::vector<double>& Config::GetFloatList(std::string_view key) const {
  return Typed<std::vector<double>>(values_, key);
}

const std::vector<ConfigTable>& Config::GetArray(std::string_view name) const {
  auto it = arrays_.find(name);
  CHAINRL_CHECK(it != arrays_.end(), "config array '" << name << "' is not in the schema");
  return it->second;
}

std::string Config::SourceOf(std::string_view key) const {
  auto it = sources_.find(key);
  return it == sources_.end() ? "" : it->second;
}

namespace {
// Renders an element value of an array of tables; tables and overrides are written inline.
std::string FormatElementValue(const KeySpec& spec, const ConfigValue& v) {
  if (spec.type == ValueType::kTable) {
    const std::string& text = std::get<std::string>(v);
    if (text.empty()) return "{}";
    toml::table t = toml::parse(text);
    std::ostringstream os;
    t.is_inline(true);
    os << t;
    return os.str();
  }
  if (spec.type == ValueType::kOverrides) {
    const auto& sets = std::get<std::vector<std::string>>(v);
    std::string s = "{ ";
    for (size_t i = 0; i < sets.size(); ++i) {
      auto eq = sets[i].find('=');
      s += (i ? ", " : "") + QuoteString(sets[i].substr(0, eq)) + " = " + sets[i].substr(eq + 1);
    }
    return sets.empty() ? "{}" : s + " }";
  }
  return FormatConfigValue(v);
}
}  // namespace

std::string Config::ToToml() const {
  CHAINRL_CHECK(schema_ != nullptr, "ToToml on a Config that was not loaded");
  const ConfigSchema& schema = *schema_;
  std::ostringstream os;
  os << "# Resolved chainrl configuration (every key, defaults included).\n";
  for (const auto& section : schema.sections) {
    bool header = false;
    for (const auto& k : schema.keys) {
      if (Parent(k.key) != section) continue;
      if (!header) {
        os << "\n[" << section << "]\n";
        header = true;
      }
      os << Leaf(k.key) << " = " << FormatConfigValue(values_.at(k.key)) << "\n";
    }
  }
  for (const auto& a : schema.arrays) {
    for (const auto& elem : arrays_.at(a.name)) {
      os << "\n[[" << a.name << "]]\n";
      for (const auto& ks : a.keys)
        os << ks.key << " = " << FormatElementValue(ks, elem.at(ks.key)) << "\n";
    }
  }
  return os.str();
}

namespace {
std::string DocType(const KeySpec& k) {
  std::string t = ValueTypeName(k.type);
  return t;
}
std::string DocValid(const KeySpec& k) {
  std::string s;
  if (!k.choices.empty()) s = "one of: " + ChoicesText(k.choices);
  if (k.min || k.max) s += (s.empty() ? "" : "; ") + RangeText(k);
  if (s.empty()) s = "any";
  for (const RefusedValue& r : k.refused) {
    const std::string* v = std::get_if<std::string>(&r.value);
    s += "; refused: " + (v ? *v : FormatConfigValue(r.value));
  }
  return s;
}
std::string DocDefault(const KeySpec& k) {
  if (k.required) return "required";
  std::string d = FormatElementValue(k, k.default_value);
  return "`" + d + "`";
}
std::string EscapeCell(std::string s) {
  std::string out;
  for (char c : s) out += (c == '|') ? std::string("\\|") : std::string(1, c);
  return out;
}
}  // namespace

std::string RenderSchemaDocs(const ConfigSchema& schema) {
  std::ostringstream os;
  for (const auto& section : schema.sections) {
    os << "\n## `[" << section << "]`\n\n";
    auto it = schema.section_docs.find(section);
    if (it != schema.section_docs.end()) os << it->second << "\n\n";
    bool any = false;
    for (const auto& k : schema.keys) {
      if (Parent(k.key) != section) continue;
      if (!any) {
        os << "| key | type | default | valid | description |\n|---|---|---|---|---|\n";
        any = true;
      }
      os << "| `" << k.key << "` | " << DocType(k) << " | " << EscapeCell(DocDefault(k)) << " | "
         << EscapeCell(DocValid(k)) << " | " << EscapeCell(k.doc) << " |\n";
    }
    for (const auto& a : schema.arrays) {
      if (Parent(a.name) != section) continue;
      os << "\n### `[[" << a.name << "]]`\n\n" << a.doc << "\n\n";
      os << "| key | type | default | valid | description |\n|---|---|---|---|---|\n";
      for (const auto& k : a.keys)
        os << "| `" << k.key << "` | " << DocType(k) << " | " << EscapeCell(DocDefault(k)) << " | "
           << EscapeCell(DocValid(k)) << " | " << EscapeCell(k.doc) << " |\n";
    }
  }
  for (const auto& a : schema.arrays) {
    if (!Parent(a.name).empty()) continue;
    os << "\n## `[[" << a.name << "]]`\n\n" << a.doc << "\n\n";
    os << "| key | type | default | valid | description |\n|---|---|---|---|---|\n";
    for (const auto& k : a.keys)
      os << "| `" << k.key << "` | " << DocType(k) << " | " << EscapeCell(DocDefault(k)) << " | "
         << EscapeCell(DocValid(k)) << " | " << EscapeCell(k.doc) << " |\n";
  }
  return os.str();
}

}  // namespace chainrl
