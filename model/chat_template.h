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
// Supported Jinja subset. Unsupported statements fail at Parse(); unsupported filters, tests,
// functions and type errors fail at Render(); both say "NAME:LINE:COL: unsupported ... 'x'".
//  - Syntax: text, {{ expr }}, {% stmt %}, {# comment #}, whitespace control {%- -%} {{- -}}
//    {#- -#}, and the environment transformers uses: trim_blocks, lstrip_blocks ({%+ opts out),
//    one trailing newline of the template dropped.
//  - Statements: if/elif/else/endif; for x in e [if cond] ... [else] ... endfor (also
//    `for a, b in ...`) with loop.index, index0, revindex, revindex0, first, last, length,
//    previtem, nextitem; break, continue; set x = e, set a, b = e, set ns.attr = e,
//    {% set x %}...{% endset %}; macro/endmacro (positional, keyword and default arguments);
//    generation/endgeneration (render their body). Not supported: include, import, extends,
//    block, call, filter, with, raw, recursive loops, loop.cycle.
//  - Expressions: string/int/float literals, true/false/none (any case), lists, dicts,
//    tuples, names, a.b, a[b], slices a[s:e:step], calls f(x, k=v), unary - + not,
//    + - * / // % ** ~, == != < <= > >=, in, not in, and, or, x if c else y, x|filter(args),
//    x is [not] test(args). Python semantics: truthiness, str() of None/True/floats/lists,
//    floor division, negative indices and steps, string repetition, list concatenation.
//  - Filters: abs, capitalize, count, d/default, first, float, int, items, join(sep,
//    attribute=), last, length, list, lower, map(attribute=|filter name), reject, rejectattr,
//    replace, reverse, round, safe, select, selectattr, sort(reverse=, attribute=), string, sum,
//    title, tojson(indent=) (Python json.dumps(ensure_ascii=False) layout, key order kept),
//    trim, unique, upper.
//  - Tests: boolean, callable, defined, divisibleby, eq/equalto/==, even, false, float,
//    ge/gt/le/lt (greaterthan/lessthan), in, integer, iterable, lower, mapping, ne, none,
//    number, odd, sameas, sequence, string, true, undefined, upper.
//  - Methods: str.startswith/endswith (a string or a list of them), strip/lstrip/rstrip
//    ([chars]), split/rsplit([sep[, maxsplit]]), splitlines, lower, upper, title, capitalize,
//    replace, find, count, join; dict.items/keys/values/get; list.index/count.
//  - Globals: namespace(...), dict(...), range(...), raise_exception(msg), strftime_now(fmt).
//  - Undefined values print as ""; reading an attribute of, subscripting, calling or
//    iterating an undefined value is an error (as Jinja's default Undefined).
class ChatTemplate {
 public:
  // Parses `source`; `name` (e.g. the config file path) prefixes error messages.
  static Result<ChatTemplate> Parse(const std::string& source,
                                    const std::string& name = "chat_template");
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
Result<std::string> RenderChat(
    const ChatTemplate& tmpl, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
    const nlohmann::ordered_json& extra_context = nlohmann::ordered_json::object());

}  // namespace chainrl
