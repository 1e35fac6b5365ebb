// Prompt rendering through the chat template; see prompting.h.
#include "rollout/prompting.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/json_file.h"

namespace chainrl::rollout {
namespace {

namespace fs = std::filesystem;

// A string no tokenizer treats specially and no template rewrites, used to find what a template
// writes after an assistant turn's content.
constexpr char kSentinel[] = "CHAINRLRESPONSESENTINEL";

void AddUnique(std::vector<int32_t>& ids, int32_t id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

std::string ExampleName(const data::Example& example) {
  std::string name = "example '" + example.id + "'";
  if (!example.source.empty()) name += " (" + example.source + ")";
  return name;
}

// The example's conversation: `messages` when it is an array, else `prompt` as one user turn.
Result<std::vector<ChatMessage>> Conversation(const data::Example& example,
                                              const std::string& system_prompt) {
  std::vector<ChatMessage> messages;
  if (example.messages.is_array()) {
    for (size_t i = 0; i < example.messages.size(); ++i) {
      const auto& m = example.messages[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
          !m.contains("content") || !m["content"].is_string())
        return InvalidArgument(ExampleName(example) + ": messages[" + std::to_string(i) +
                               "]: expected {\"role\": string, \"content\": string}");
      ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>(), nullptr};
      for (auto it = m.begin(); it != m.end(); ++it) {
        if (it.key() == "role" || it.key() == "content") continue;
        if (msg.extra.is_null()) msg.extra = nlohmann::ordered_json::object();
        msg.extra[it.key()] = nlohmann::ordered_json::parse(it.value().dump());
      }
      messages.push_back(std::move(msg));
    }
    if (messages.empty()) return InvalidArgument(ExampleName(example) + ": messages is empty");
  } else {
    if (example.prompt.empty()) return InvalidArgument(ExampleName(example) + ": empty prompt");
    messages.push_back({"user", example.prompt, nullptr});
  }
  if (!system_prompt.empty() && messages.front().role != "system")
    messages.insert(messages.begin(), ChatMessage{"system", system_prompt, nullptr});
  return messages;
}

}  // namespace

PromptOptions PromptOptionsFromConfig(const Config& config) {
  PromptOptions o;
  o.tokenizer_dir = config.GetString("tokenizer.path");
  if (o.tokenizer_dir.empty()) o.tokenizer_dir = config.GetString("model.path");
  o.use_chat_template = config.GetBool("tokenizer.use_chat_template");
  o.chat_template = config.GetString("tokenizer.chat_template");
  o.system_prompt = config.GetString("tokenizer.system_prompt");
  o.generation_config_dir = config.GetString("model.path");
  return o;
}

PromptRenderer::PromptRenderer(PromptOptions options, Tokenizer tokenizer) noexcept
    : options_(std::move(options)), tokenizer_(std::move(tokenizer)) {}

Result<std::unique_ptr<PromptRenderer>> PromptRenderer::Create(const PromptOptions& options) {
  if (options.tokenizer_dir.empty())
    return InvalidArgument("tokenizer directory is empty (set tokenizer.path or model.path)");
  CHAINRL_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromDir(options.tokenizer_dir));
  std::unique_ptr<PromptRenderer> r(new PromptRenderer(options, std::move(tok)));
  const Tokenizer& t = r->tokenizer_;
  const std::string config_path =
      (fs::path(options.tokenizer_dir) / "tokenizer_config.json").string();

  if (options.use_chat_template) {
    if (!options.chat_template.empty()) {
      CHAINRL_ASSIGN_OR_RETURN(
          ChatTemplate tmpl, ChatTemplate::Parse(options.chat_template, "tokenizer.chat_template"));
      tmpl.bos_token = t.bos_token().value_or("");
      tmpl.eos_token = t.eos_token().value_or("");
      r->template_ = std::move(tmpl);
    } else {
      if (!fs::exists(config_path))
        return InvalidArgument(config_path +
                               ": cannot open, and the chat template is needed "
                               "(set tokenizer.chat_template or tokenizer.use_chat_template = "
                               "false)");
      auto tmpl = ChatTemplate::FromTokenizerConfig(config_path);
      if (!tmpl.ok()) {
        if (tmpl.status().code() == StatusCode::kNotFound)
          return InvalidArgument(tmpl.status().message() +
                                 " (set tokenizer.chat_template or tokenizer.use_chat_template = "
                                 "false)");
        return tmpl.status();
      }
      r->template_ = std::move(*tmpl);
    }
    // The end-of-turn token: what the template writes right after an assistant turn's content,
    // when that begins with a special token (<|im_end|>, <|eot_id|>, <end_of_turn>, ...).
    std::vector<ChatMessage> probe = {{"user", "1+1?", nullptr}, {"assistant", kSentinel, nullptr}};
    auto rendered = RenderChat(*r->template_, probe, /*add_generation_prompt=*/false);
    if (rendered.ok()) {
      const size_t at = rendered->rfind(kSentinel);
      if (at != std::string::npos) {
        auto after = t.Encode(std::string_view(*rendered).substr(at + sizeof(kSentinel) - 1));
        if (after.ok() && !after->empty() && t.IsSpecial(after->front()))
          r->end_of_turn_id_ = after->front();
      }
    }
  }

  if (auto eos = t.eos_token_id()) AddUnique(r->stop_token_ids_, *eos);
  if (r->end_of_turn_id_) AddUnique(r->stop_token_ids_, *r->end_of_turn_id_);
  const std::string gen_dir =
      options.generation_config_dir.empty() ? options.tokenizer_dir : options.generation_config_dir;
  CHAINRL_ASSIGN_OR_RETURN(std::vector<int32_t> gen_eos, GenerationConfigEos(gen_dir));
  for (int32_t id : gen_eos) {
    if (id >= t.vocab_size())
      return InvalidArgument((fs::path(gen_dir) / "generation_config.json").string() +
                             ": eos_token_id " + std::to_string(id) +
                             " is outside the tokenizer's vocabulary (" +
                             std::to_string(t.vocab_size()) + ")");
    AddUnique(r->stop_token_ids_, id);
  }
  return r;
}

Result<std::string> PromptRenderer::RenderText(const data::Example& example) const {
  if (template_) {
    CHAINRL_ASSIGN_OR_RETURN(std::vector<ChatMessage> messages,
                             Conversation(example, options_.system_prompt));
    auto text = RenderChat(*template_, messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return InvalidArgument(ExampleName(example) + ": " + text.status().message());
    return *text;
  }
  std::string text;
  if (example.messages.is_array()) {
    CHAINRL_ASSIGN_OR_RETURN(std::vector<ChatMessage> messages, Conversation(example, ""));
    for (const auto& m : messages) {
      if (!text.empty()) text += "\n\n";
      text += m.content;
    }
  } else {
    if (example.prompt.empty()) return InvalidArgument(ExampleName(example) + ": empty prompt");
    text = example.prompt;
  }
  if (!options_.system_prompt.empty()) text = options_.system_prompt + "\n\n" + text;
  return text;
}

Result<std::vector<int32_t>> PromptRenderer::Render(const data::Example& example) const {
  CHAINRL_ASSIGN_OR_RETURN(std::string text, RenderText(example));
  // A template writes its own special tokens; plain text gets the tokenizer's (e.g. a BOS).
  auto ids = tokenizer_.Encode(text, /*add_special_tokens=*/!template_.has_value());
  if (!ids.ok()) return InvalidArgument(ExampleName(example) + ": " + ids.status().message());
  if (ids->empty()) return InvalidArgument(ExampleName(example) + ": the prompt has no tokens");
  return std::move(*ids);
}

Result<std::vector<int32_t>> PromptRenderer::EncodeResponse(const std::string& response) const {
  CHAINRL_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_.Encode(response));
  if (end_of_turn_id_) {
    ids.push_back(*end_of_turn_id_);
  } else if (auto eos = tokenizer_.eos_token_id()) {
    ids.push_back(*eos);
  }
  return ids;
}

Result<std::string> PromptRenderer::DecodeResponse(const std::vector<int32_t>& ids) const {
  // Models often pad their embedding matrix beyond the tokenizer (Qwen2.5: 151936 rows for 151665
  // ids); those rows stand for no text.
  const int64_t vocab = tokenizer_.vocab_size();
  std::vector<int32_t> known;
  known.reserve(ids.size());
  for (int32_t id : ids)
    if (id >= 0 && id < vocab) known.push_back(id);
  return tokenizer_.Decode(known, /*skip_special=*/true);
}

Result<int32_t> PromptRenderer::SingleTokenId(const std::string& text,
                                              const std::string& key) const {
  if (text.empty()) return InvalidArgument(key + ": empty, not a token");
  if (auto id = tokenizer_.TokenToId(text)) return *id;
  auto ids = tokenizer_.Encode(text);
  if (ids.ok() && ids->size() == 1) return (*ids)[0];
  return InvalidArgument(key + ": '" + text + "' is not one token of the tokenizer in " +
                         options_.tokenizer_dir);
}

Result<std::vector<int32_t>> GenerationConfigEos(const std::string& dir) {
  std::vector<int32_t> ids;
  const fs::path path = fs::path(dir) / "generation_config.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return ids;
  CHAINRL_ASSIGN_OR_RETURN(const nlohmann::json j, ReadJsonFile(path.string(), kMaxSmallJsonBytes));
  if (!j.is_object()) return InvalidArgument(path.string() + ": not a JSON object");
  if (!j.contains("eos_token_id") || j["eos_token_id"].is_null()) return ids;
  const auto& e = j["eos_token_id"];
  auto one = [&](const nlohmann::json& x) -> Status {
    if (!x.is_number_integer() || x.get<int64_t>() < 0)
      return InvalidArgument(path.string() + ": eos_token_id: expected a non-negative integer");
    ids.push_back(x.get<int32_t>());
    return Status();
  };
  if (e.is_array()) {
    for (const auto& x : e) CHAINRL_RETURN_IF_ERROR(one(x));
  } else {
    CHAINRL_RETURN_IF_ERROR(one(e));
  }
  return ids;
}

}  // namespace chainrl::rollout
