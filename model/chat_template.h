// Chat templates: renders the Jinja `chat_template` of a Hugging Face tokenizer_config.json
// (Qwen2.5, Qwen3, Llama 3, ...) byte-identically to transformers' apply_chat_template, with a
// small interpreter for the subset of Jinja that chat templates use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace chainrl {

// One turn of a conversation. `extra` holds further keys the template may read (e.g.
// "reasoning_content", "tool_calls", "name"); it must be a JSON object or null.
struct ChatMessage {
  std::string role;
  std::string content;
  nlohmann::ordered_json extra;
};

// A parsed template. Immutable and thread-safe to render from several threads.
//
// Supported Jinja subset (anything else fails at Parse() with "LINE:COL: unsupported ..."):
//  - text, {{ expr }}, {% stmt %}, {# comment #}, whitespace control {%- -%} {{- -}}, and the
//    environment Hugging Face uses: trim_blocks, lstrip_blocks, one trailing newline dropped;
//  - statements: if/elif/else/endif; for x in xs [if cond] / for k, v in ... / else / endfor
//    with loop.index, index0, revindex, revindex0, first, last, length, previtem, nextitem;
//    break, continue; set x = e, set ns.attr = e, set a, b = e, {% set x %}...{% endset %};
//    macro/endmacro with positional and default arguments, called as functions;
//  - expressions: literals (strings, ints, floats, true/false/none in either case, lists,
//    dicts, tuples), names, a.b, a[b], slices a[s:e:step], calls, unary -/+/not, + - * / // % **,
//    ~, comparisons == != < <= > >=, in / not in, and/or, x if c else y, filters x|f(args),
//    tests x is [not] t(args);
//  - filters: abs, capitalize, count, d/default, first, float, int, items, join, last, length,
//    list, lower, map(attribute=...|filter name), reject, rejectattr, replace, reverse, round,
//    safe, select, selectattr, sort(attribute=, reverse=), string, sum, title, tojson(indent=),
//    trim, unique, upper, wordcount? no; (dictsort, indent, batch, groupby, format: unsupported);
//  - tests: boolean, callable, defined, divisibleby, eq/equalto/==, even, false, float, ge, gt,
//    in, integer, iterable, le, lower, lt, mapping, ne, none, number, odd, sequence, string,
//    true, undefined, upper;
//  - methods: str.startswith/endswith/strip/lstrip/rstrip/split/rsplit/lower/upper/title/
//    capitalize/replace/find/count/join/format? (no); dict.items/keys/values/get; list.index?;
//  - globals: namespace(...), range(...), raise_exception(msg), strftime_now(fmt), dict(...).
class ChatTemplate {
 public:
  // Parses `source`; `name` (e.g. the config file path) prefixes error messages.
  static Result<ChatTemplate> Parse(const std::string& source, const std::string& name = "chat_template");
  // Reads chat_template (and bos_token/eos_token) from a tokenizer_config.json.
  static Result<ChatTemplate> FromTokenizerConfig(const std::string& path);

  // Renders with `context` as the template's variables (a JSON object, e.g. {"messages": [...],
  // "add_generation_prompt": true, "bos_token": "<s>"}). Errors (raise_exception, undefined
  // attribute access, type errors) name the template position.
  Result<std::string> Render(const nlohmann::ordered_json& context) const;

  // Special tokens that RenderChat() adds to the context (from tokenizer_config.json).
  std::string bos_token, eos_token;
  const std::string& source() const;

  struct Program;

 private:
  std::shared_ptr<const Program> program_;
};

// apply_chat_template(messages, tokenize=False, add_generation_prompt=...): the context is
// {"messages", "add_generation_prompt", "bos_token", "eos_token"} then `extra_context`'s keys
// (e.g. "tools", "enable_thinking", "date_string"), which override.
Result<std::string> RenderChat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt,
                               const nlohmann::ordered_json& extra_context = nlohmann::ordered_json::object());

}  // namespace chainrl
