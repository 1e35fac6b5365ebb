// Prompt rendering: turns a dataset example into the token ids a policy sees before its response
// (through the model's chat template), encodes SFT targets, and names the tokens that end a
// response. No LibTorch: used by the learner, the actors and `chainrl eval` alike.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace chainrl::rollout {

// How prompts are rendered; one-to-one with the config's [tokenizer] keys.
struct PromptOptions {
  std::string tokenizer_dir;  // directory with tokenizer.json / tokenizer_config.json
  bool use_chat_template = true;
  std::string chat_template;  // overrides tokenizer_config.json's template when non-empty
  std::string system_prompt;  // prepended as a system message when non-empty
  // Directory whose generation_config.json adds stop ids (the model directory); empty means
  // tokenizer_dir.
  std::string generation_config_dir;
};

// From config keys tokenizer.path (empty -> model.path), tokenizer.use_chat_template,
// tokenizer.chat_template, tokenizer.system_prompt; generation_config_dir = model.path.
PromptOptions PromptOptionsFromConfig(const Config& config);

// Immutable after Create; all const methods are thread-safe.
class PromptRenderer {
 public:
  // Loads the tokenizer and, when use_chat_template, the chat template (options.chat_template, else
  // tokenizer_config.json's). Errors name the file: a missing or malformed tokenizer, a template
  // that does not parse, or use_chat_template with no template anywhere (InvalidArgument).
  static Result<std::unique_ptr<PromptRenderer>> Create(const PromptOptions& options);

  // The prompt's token ids as the model sees them before its response. With the chat template:
  // the example's `messages` (when it is a JSON array of {"role", "content", ...}) or else its
  // `prompt` as one user turn, preceded by the system prompt (unless the messages already start
  // with a system turn), rendered with the generation prompt; the template writes its own special
  // tokens. Without: the prompt text (or the messages' contents joined by blank lines) with the
  // system prompt and a blank line in front, encoded with the tokenizer's own special tokens.
  // InvalidArgument naming the example's id for an empty prompt, malformed messages or a template
  // error.
  Result<std::vector<int32_t>> Render(const data::Example& example) const;

  // The token ids of a response text as the model must produce it after Render(): the text
  // followed by the end-of-turn token the template uses (e.g. <|im_end|>), or else EOS (nothing
  // when the tokenizer has neither). Used for SFT and preference targets.
  Result<std::vector<int32_t>> EncodeResponse(const std::string& response) const;

  // Token ids that end a response, without duplicates: EOS, the template's end-of-turn token,
  // generation_config.json's eos_token_id (int or list) when present.
  const std::vector<int32_t>& stop_token_ids() const { return stop_token_ids_; }
  // The end-of-turn token the chat template writes after an assistant turn, if any.
  std::optional<int32_t> end_of_turn_id() const { return end_of_turn_id_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const PromptOptions& options() const { return options_; }
  // The id of `text` when it is exactly one token of the tokenizer (a special token or one that
  // encodes to a single id); else InvalidArgument naming `key` (the config key it came from).
  Result<int32_t> SingleTokenId(const std::string& text, const std::string& key) const;

  // The text Render() encodes (for logs and for the reward's `prompt` field).
  Result<std::string> RenderText(const data::Example& example) const;

  // Response text from generated ids (special tokens dropped, and ids beyond the tokenizer's
  // vocabulary, i.e. padding rows of the model's embedding, ignored).
  Result<std::string> DecodeResponse(const std::vector<int32_t>& ids) const;

 private:
  PromptRenderer(PromptOptions options, Tokenizer tokenizer) noexcept;

  PromptOptions options_;
  Tokenizer tokenizer_;
  std::optional<ChatTemplate> template_;
  std::optional<int32_t> end_of_turn_id_;
  std::vector<int32_t> stop_token_ids_;
};

// DIR/generation_config.json's eos_token_id (an int or a list of ints); nothing when the file or
// the key is absent. InvalidArgument naming the file when it is not a JSON object or an id is not
// a non-negative integer.
Result<std::vector<int32_t>> GenerationConfigEos(const std::string& dir);

}  // namespace chainrl::rollout
