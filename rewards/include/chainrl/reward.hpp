// C++ convenience layer for reward plugin authors, header-only, on top of the C ABI in
// chainrl/reward.h (which stays the contract). Needs C++17. Write a class with a constructor taking
// the options TOML and a Score(const Sample&) method, then CHAINRL_REWARD_PLUGIN(Class, name, ver).
#ifndef CHAINRL_REWARD_HPP_
#define CHAINRL_REWARD_HPP_

#include <chainrl/reward.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chainrl_sdk {

// One sample, viewing chainrl's memory: valid only during the Score call.
struct Sample {
  std::string_view example_id;
  std::string_view prompt;
  std::string_view response;
  const int32_t* token_ids = nullptr;
  std::size_t num_tokens = 0;
  std::string_view finish_reason;  // "stop", "length" or "abort"
  std::string_view answer_json;    // a JSON value, "null" when the example has no answer
  std::string_view metadata_json;  // a JSON object, "{}" when none
};

// What Score returns for one sample. `components` are named metrics, `message` one diagnostic.
struct Score {
  double value = 0;
  std::vector<std::pair<std::string, double>> components;
  std::string message;
};

namespace detail {

inline void CopyError(const char* what, char* error, std::size_t error_size) {
  if (error != nullptr && error_size > 0) std::snprintf(error, error_size, "%s", what);
}

inline Sample ToSample(const chainrl_reward_input& in) {
  Sample s;
  s.example_id = in.example_id ? in.example_id : "";
  s.prompt = std::string_view(in.prompt ? in.prompt : "", in.prompt ? in.prompt_len : 0);
  s.response = std::string_view(in.response ? in.response : "", in.response ? in.response_len : 0);
  s.token_ids = in.token_ids;
  s.num_tokens = in.num_tokens;
  s.finish_reason = in.finish_reason ? in.finish_reason : "";
  s.answer_json = in.answer_json ? in.answer_json : "null";
  s.metadata_json = in.metadata_json ? in.metadata_json : "{}";
  return s;
}

// init: constructs T(options_toml); an exception becomes an init error carrying its what().
template <typename T>
int Init(const char* options_toml, void** instance, char* error, std::size_t error_size) {
  try {
    *instance = new T(std::string(options_toml ? options_toml : ""));
    return CHAINRL_REWARD_OK;
  } catch (const std::exception& e) {
    CopyError(e.what(), error, error_size);
  } catch (...) {
    CopyError("unknown exception in plugin constructor", error, error_size);
  }
  return CHAINRL_REWARD_ERROR;
}

// score: calls T::Score per sample; an exception fails only that sample (message = what()).
template <typename T>
int ScoreBatch(void* instance, const chainrl_reward_host* host, const chainrl_reward_input* inputs,
               chainrl_reward_output* outputs, std::size_t count, char*, std::size_t) {
  T* self = static_cast<T*>(instance);
  for (std::size_t i = 0; i < count; ++i) {
    try {
      chainrl_sdk::Score r = self->Score(ToSample(inputs[i]));
      outputs[i].score = r.value;
      for (const auto& c : r.components)
        host->add_component(&outputs[i], c.first.c_str(), c.second);
      if (!r.message.empty()) host->set_message(&outputs[i], r.message.c_str());
    } catch (const std::exception& e) {
      outputs[i].status = CHAINRL_REWARD_ERROR;
      host->set_message(&outputs[i], e.what());
    } catch (...) {
      outputs[i].status = CHAINRL_REWARD_ERROR;
      host->set_message(&outputs[i], "unknown exception in plugin Score");
    }
  }
  return CHAINRL_REWARD_OK;
}

template <typename T>
void Destroy(void* instance) {
  delete static_cast<T*>(instance);
}

}  // namespace detail
}  // namespace chainrl_sdk

// Defines the plugin's entry point for class T. T must be constructible from std::string (the
// options TOML) and have `chainrl_sdk::Score Score(const chainrl_sdk::Sample&)`. Use once per
// plugin, at namespace scope in one source file.
#define CHAINRL_REWARD_PLUGIN(T, plugin_name, plugin_version)                                    \
  extern "C" CHAINRL_REWARD_EXPORT const chainrl_reward_descriptor* chainrl_reward_entry(void) { \
    static const chainrl_reward_descriptor descriptor = {CHAINRL_REWARD_ABI_VERSION,             \
                                                         sizeof(chainrl_reward_descriptor),      \
                                                         plugin_name,                            \
                                                         plugin_version,                         \
                                                         &::chainrl_sdk::detail::Init<T>,        \
                                                         &::chainrl_sdk::detail::ScoreBatch<T>,  \
                                                         &::chainrl_sdk::detail::Destroy<T>};    \
    return &descriptor;                                                                          \
  }

#endif  // CHAINRL_REWARD_HPP_
