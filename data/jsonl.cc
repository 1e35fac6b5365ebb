// JSONL dataset reading with per-line validation.
#include "data/jsonl.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/json_file.h"

namespace chainrl::data {
namespace {

// Validates prompt/messages of `obj`; returns "" or the reason.
std::string ReadPrompt(const nlohmann::json& obj, const JsonlFields& f, std::string* prompt,
                       nlohmann::json* messages) {
  auto m = obj.find(f.messages);
  if (m != obj.end() && !m->is_null()) {
    if (!m->is_array() || m->empty()) return "field '" + f.messages + "' must be a non-empty array";
    for (size_t i = 0; i < m->size(); ++i) {
      const auto& msg = (*m)[i];
      if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() ||
          !msg.contains("content") || !msg["content"].is_string())
        return "field '" + f.messages + "'[" + std::to_string(i) +
               "] must be an object with string 'role' and 'content'";
    }
    *messages = *m;
    return "";
  }
  auto p = obj.find(f.prompt);
  if (p == obj.end()) return "missing field '" + f.prompt + "' (or '" + f.messages + "')";
  if (!p->is_string() || p->get<std::string>().empty())
    return "field '" + f.prompt + "' must be a non-empty string";
  *prompt = p->get<std::string>();
  return "";
}

std::string ReadId(const nlohmann::json& obj, const JsonlFields& f, const std::string& where,
                   std::string* id) {
  auto it = obj.find(f.id);
  if (it == obj.end() || it->is_null()) {
    *id = where;
    return "";
  }
  if (it->is_string()) {
    *id = it->get<std::string>();
    return "";
  }
  if (it->is_number_integer()) {
    *id = std::to_string(it->get<int64_t>());
    return "";
  }
  return "field '" + f.id + "' must be a string or an integer";
}

// Calls `parse(obj, where, &reason)` for every non-empty line of `in`; applies the bad-line
// policy. `path` names the lines in messages.
template <typename T, typename Parse>
Result<std::vector<T>> ReadLines(std::istream& in, const std::string& path, BadLinePolicy policy,
                                 JsonlStats* stats, Parse parse) {
  JsonlStats local;
  JsonlStats& st = stats ? *stats : local;
  st = JsonlStats();
  std::vector<T> out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    ++st.lines;
    std::string where = path + ":" + std::to_string(lineno);
    std::string reason;
    // Nesting is bounded before anything is built (a value nested 100,000 deep would overflow
    // the stack of the code that copies or walks it).
    auto obj = ParseJson(line, where);
    T item;
    if (!obj.ok()) {
      reason = obj.status().message().substr(where.size() + 2);  // without "WHERE: "
    } else if (!obj->is_object()) {
      reason = "expected a JSON object";
    } else {
      reason = parse(*obj, where, &item);
    }
    if (reason.empty()) {
      out.push_back(std::move(item));
      continue;
    }
    if (policy == BadLinePolicy::kError)
      return InvalidArgument(where + ": " + reason +
                             " (set data.on_bad_line = \"skip\" to skip such lines)");
    ++st.skipped;
    if (st.first_problems.size() < 10) st.first_problems.push_back(where + ": " + reason);
  }
  if (in.bad()) return IoError(path + ": read error");
  st.examples = static_cast<int64_t>(out.size());
  return out;
}

template <typename T, typename Parse>
Result<std::vector<T>> ReadFileLines(const std::string& path, BadLinePolicy policy,
                                     JsonlStats* stats, Parse parse) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound(path + ": no such data file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError(path + ": " + std::strerror(errno));
  return ReadLines<T>(in, path, policy, stats, parse);
}

template <typename T, typename Parse>
Result<std::vector<T>> ReadTextLines(std::string_view text, const std::string& source,
                                     BadLinePolicy policy, JsonlStats* stats, Parse parse) {
  std::istringstream in{std::string(text)};
  return ReadLines<T>(in, source, policy, stats, parse);
}

// The per-line readers: "" or the reason the line is bad. `path` resolves relative embeddings.
auto ExampleReader(const std::string& path, const JsonlFields& f) {
  return
      [&path, &f](const nlohmann::json& obj, const std::string& where, Example* ex) {
        std::string r = ReadPrompt(obj, f, &ex->prompt, &ex->messages);
        if (r.empty()) r = ReadId(obj, f, where, &ex->id);
        if (!r.empty()) return r;
        ex->answer = obj.contains(f.answer) ? obj[f.answer] : nlohmann::json();
        if (auto d = obj.find(f.difficulty); d != obj.end() && !d->is_null()) {
          if (!d->is_string()) return "field '" + f.difficulty + "' must be a string";
          ex->difficulty = d->get<std::string>();
        }
        if (auto e = obj.find(f.embeddings); e != obj.end() && !e->is_null()) {
          const std::string spec = e->is_string() ? e->get<std::string>() : std::string();
          const size_t hash = spec.rfind('#');
          if (hash == std::string::npos || hash == 0 || hash + 1 == spec.size())
            return "field '" + f.embeddings + "' must be a string \"FILE.safetensors#TENSOR\"";
          std::filesystem::path file(spec.substr(0, hash));
          if (file.is_relative()) file = std::filesystem::path(path).parent_path() / file;
          ex->embeddings = file.lexically_normal().string() + spec.substr(hash);
        }
        if (auto s = obj.find("solution"); s != obj.end() && !s->is_null()) {
          if (!s->is_string()) return std::string("field 'solution' must be a string");
          ex->solution = s->get<std::string>();
        }
        ex->metadata = nlohmann::json::object();
        for (auto it = obj.begin(); it != obj.end(); ++it) {
          const std::string& k = it.key();
          if (k != f.prompt && k != f.messages && k != f.answer && k != f.id && k != f.difficulty &&
              k != "solution" && k != f.embeddings)
            ex->metadata[k] = it.value();
        }
        ex->source = where;
        return std::string();
      };
}

auto PreferenceReader(const JsonlFields& f) {
  return [&f](const nlohmann::json& obj, const std::string& where, PreferenceExample* ex) {
    std::string r = ReadPrompt(obj, f, &ex->prompt, &ex->messages);
    if (r.empty()) r = ReadId(obj, f, where, &ex->id);
    if (!r.empty()) return r;
    auto c = obj.find(f.chosen);
    if (c == obj.end() || !c->is_string() || c->get<std::string>().empty())
      return "field '" + f.chosen + "' must be a non-empty string";
    ex->chosen = c->get<std::string>();
    auto rj = obj.find(f.rejected);
    if (rj != obj.end() && rj->is_string() && !rj->get<std::string>().empty()) {
      ex->rejected = {rj->get<std::string>()};
    } else if (rj != obj.end() && rj->is_array() && !rj->empty()) {
      for (const auto& x : *rj) {
        if (!x.is_string() || x.get<std::string>().empty())
          return "field '" + f.rejected + "' must hold non-empty strings";
        ex->rejected.push_back(x.get<std::string>());
      }
    } else {
      return "field '" + f.rejected + "' must be a non-empty string or array of strings";
    }
    ex->source = where;
    return std::string();
  };
}

}  // namespace

Result<std::vector<Example>> LoadExamplesJsonl(const std::string& path, const JsonlFields& f,
                                               BadLinePolicy policy, JsonlStats* stats) {
  return ReadFileLines<Example>(path, policy, stats, ExampleReader(path, f));
}

Result<std::vector<Example>> ParseExamplesJsonl(std::string_view text, const std::string& source,
                                                const JsonlFields& f, BadLinePolicy policy,
                                                JsonlStats* stats) {
  return ReadTextLines<Example>(text, source, policy, stats, ExampleReader(source, f));
}

Result<std::vector<PreferenceExample>> LoadPreferencesJsonl(const std::string& path,
                                                            const JsonlFields& f,
                                                            BadLinePolicy policy,
                                                            JsonlStats* stats) {
  return ReadFileLines<PreferenceExample>(path, policy, stats, PreferenceReader(f));
}

Result<std::vector<PreferenceExample>> ParsePreferencesJsonl(std::string_view text,
                                                             const std::string& source,
                                                             const JsonlFields& f,
                                                             BadLinePolicy policy,
                                                             JsonlStats* stats) {
  return ReadTextLines<PreferenceExample>(text, source, policy, stats, PreferenceReader(f));
}

JsonlFields JsonlFieldsFromConfig(const Config& c) {
  JsonlFields f;
  f.prompt = c.GetString("data.prompt_field");
  f.messages = c.GetString("data.messages_field");
  f.answer = c.GetString("data.answer_field");
  f.id = c.GetString("data.id_field");
  f.chosen = c.GetString("data.chosen_field");
  f.rejected = c.GetString("data.rejected_field");
  f.embeddings = c.GetString("data.embeddings_field");
  return f;
}

BadLinePolicy BadLinePolicyFromConfig(const Config& c) {
  return c.GetString("data.on_bad_line") == "skip" ? BadLinePolicy::kSkip : BadLinePolicy::kError;
}

}  // namespace chainrl::data
