// Test reward plugin on the raw C ABI whose score call lets a C++ exception escape whenever any
// sample in the batch contains "THROW" (so the worker must catch it and retry samples alone).
#include <chainrl/reward.h>

#include <stdexcept>
#include <string_view>

namespace {

int Init(const char*, void** instance, char*, size_t) {
  *instance = nullptr;
  return CHAINRL_REWARD_OK;
}

int Score(void*, const chainrl_reward_host*, const chainrl_reward_input* inputs,
          chainrl_reward_output* outputs, size_t count, char*, size_t) {
  for (size_t i = 0; i < count; ++i)
    if (std::string_view(inputs[i].response).find("THROW") != std::string_view::npos)
      throw std::runtime_error("verifier exploded on " + std::string(inputs[i].example_id));
  for (size_t i = 0; i < count; ++i) outputs[i].score = 2.0;
  return CHAINRL_REWARD_OK;
}

void Destroy(void*) {}

const chainrl_reward_descriptor kDescriptor = {CHAINRL_REWARD_ABI_VERSION,
                                               sizeof(chainrl_reward_descriptor),
                                               "throwing_plugin",
                                               "0.1",
                                               &Init,
                                               &Score,
                                               &Destroy};

}  // namespace

extern "C" CHAINRL_REWARD_EXPORT const chainrl_reward_descriptor* chainrl_reward_entry(void) {
  return &kDescriptor;
}
