// The "eval_samples" record of each held-out evaluation (see eval_samples.h).
#include "learner/eval_samples.h"

namespace chainrl::learner {
namespace {

using nlohmann::json;

// Chat messages as the lines a reader expects: "role: content".
std::string MessagesText(const json& messages) {
  std::string out;
  for (const auto& m : messages) {
    if (!m.is_object()) continue;
    const json role = m.value("role", json("?"));
    const json content = m.value("content", json(""));
    if (!out.empty()) out += "\n";
    out += (role.is_string() ? role.get<std::string>() : role.dump()) + ": " +
           (content.is_string() ? content.get<std::string>() : content.dump());
  }
  return out;
}

}  // namespace

std::string CutText(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  // Back off continuation bytes (10xxxxxx), so the cut never splits a character.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "\n[... " + std::to_string(text.size() - end) + " more bytes]";
}

EvalSample EvalSample::Of(const data::Example& example, const std::string& response, bool correct,
                          double reward, int64_t tokens, const std::string& finish) {
  EvalSample s;
  s.id = example.id;
  s.prompt =
      CutText(example.prompt.empty() && example.messages.is_array() ? MessagesText(example.messages)
                                                                    : example.prompt);
  s.response = CutText(response);
  if (example.answer.is_string()) {
    s.reference = CutText(example.answer.get<std::string>());
  } else if (!example.answer.is_null()) {
    s.reference = CutText(example.answer.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  s.correct = correct;
  s.reward = reward;
  s.tokens = tokens;
  s.finish = finish;
  return s;
}

json EvalSample::ToJson() const {
  return {
      {"id", id},           {"prompt", prompt}, {"response", response}, {"reference", reference},
      {"correct", correct}, {"reward", reward}, {"tokens", tokens},     {"finish", finish}};
}

Result<EvalSample> EvalSample::FromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("eval sample: not a JSON object");
  EvalSample s;
  auto text = [&](const char* key, std::string* out) -> Status {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return Status::Ok();
    if (!it->is_string())
      return InvalidArgument(std::string("eval sample: ") + key + ": expected a string, got " +
                             it->type_name());
    *out = it->get<std::string>();
    return Status::Ok();
  };
  CHAINRL_RETURN_IF_ERROR(text("id", &s.id));
  CHAINRL_RETURN_IF_ERROR(text("prompt", &s.prompt));
  CHAINRL_RETURN_IF_ERROR(text("response", &s.response));
  CHAINRL_RETURN_IF_ERROR(text("reference", &s.reference));
  CHAINRL_RETURN_IF_ERROR(text("finish", &s.finish));
  if (auto it = j.find("correct"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean())
      return InvalidArgument(std::string("eval sample: correct: expected a boolean, got ") +
                             it->type_name());
    s.correct = it->get<bool>();
  }
  if (auto it = j.find("reward"); it != j.end() && !it->is_null()) {
    if (!it->is_number())
      return InvalidArgument(std::string("eval sample: reward: expected a number, got ") +
                             it->type_name());
    s.reward = it->get<double>();
  }
  if (auto it = j.find("tokens"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer())
      return InvalidArgument(std::string("eval sample: tokens: expected an integer, got ") +
                             it->type_name());
    s.tokens = it->get<int64_t>();
  }
  return s;
}

json EvalSamplesRecord(const std::string& label, int64_t step,
                       const std::vector<EvalSample>& samples) {
  json list = json::array();
  for (const auto& s : samples) list.push_back(s.ToJson());
  return {{"label", label}, {"step", step}, {"samples", std::move(list)}};
}

}  // namespace chainrl::learner
