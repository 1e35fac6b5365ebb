// Example reward plugin: 1 when the last line of the response contains the reference answer,
// else `miss_score` (option, default 0); component "lines" counts the response's lines.
#include <chainrl/reward.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

class LastLineAnswer {
 public:
  explicit LastLineAnswer(const std::string& options_toml) {
    // One optional key, `miss_score = 0.1`; a plugin with more options would use a TOML parser.
    size_t key = options_toml.find("miss_score");
    if (key != std::string::npos)
      miss_score_ = std::stod(options_toml.substr(options_toml.find('=', key) + 1));
  }

  chainrl_sdk::Score Score(const chainrl_sdk::Sample& s) {
    std::string answer(s.answer_json);  // a JSON value: "\"42\"" or 42
    if (answer.size() >= 2 && answer.front() == '"') answer = answer.substr(1, answer.size() - 2);
    if (answer.empty() || answer == "null") throw std::runtime_error("example has no answer");
    std::string text(s.response);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    std::string last =
        text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
    chainrl_sdk::Score out;
    out.value = last.find(answer) != std::string::npos ? 1.0 : miss_score_;
    out.components.emplace_back(
        "lines", 1.0 + static_cast<double>(std::count(text.begin(), text.end(), '\n')));
    if (out.value != 1.0) out.message = "answer " + answer + " not on the last line";
    return out;
  }

 private:
  double miss_score_ = 0;
};

CHAINRL_REWARD_PLUGIN(LastLineAnswer, "last_line_answer", "1.0.0")
