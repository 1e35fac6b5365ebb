// libFuzzer harness: a chat template (model/chat_template.h: the Jinja subset's lexer, parser and
// interpreter) parsed and rendered, with the render context as JSON after a "\n#context\n" line
// (default: a short conversation with a system, user and assistant turn).
#include "core/json_file.h"
#include "fuzz/fuzz_input.h"
#include "model/chat_template.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [source, context_text] = fuzz::SplitAt(fuzz::AsText(data, size), "\n#context\n");
  auto tmpl = ChatTemplate::Parse(std::string(source), "fuzz.jinja");
  if (!tmpl.ok()) return 0;
  nlohmann::ordered_json context;
  if (!context_text.empty()) {
    if (!CheckJson(context_text, "context").ok()) return 0;
    context = nlohmann::ordered_json::parse(context_text, nullptr, false);
    if (!context.is_object()) return 0;
    (void)tmpl->Render(context);
    return 0;
  }
  tmpl->bos_token = "<s>";
  tmpl->eos_token = "</s>";
  const std::vector<ChatMessage> messages = {
      {"system", "You are terse.", nullptr},
      {"user", "What is 6 * 7?", nullptr},
      {"assistant", "42", {{"reasoning_content", "six sevens"}}},
      {"user", "Thanks.", nullptr}};
  (void)RenderChat(*tmpl, messages, /*add_generation_prompt=*/true,
                   {{"enable_thinking", false}, {"tools", nlohmann::ordered_json::array()}});
  return 0;
}
