// Tests of config.json parsing and writing: real-shaped configs of the three families, defaults,
// errors naming file and key, unknown keys surviving a round trip.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/hf_config.h"

namespace chainrl::model {
namespace {

// Shaped like Qwen2.5-0.5B-Instruct's config.json.
const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

// Shaped like Qwen3-0.6B's.
const char* kQwen3 = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "head_dim": 128,
  "hidden_act": "silu", "hidden_size": 1024, "intermediate_size": 3072,
  "max_position_embeddings": 40960, "model_type": "qwen3", "num_attention_heads": 16,
  "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null,
  "rope_theta": 1000000, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "vocab_size": 151936})";

// Shaped like Llama-3.2-1B's.
const char* kLlama = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "vocab_size": 128256})";

TEST(HfConfig, ParsesQwen2) {
  auto c = ParseModelConfig(kQwen2, "q2/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kQwen2);
  EXPECT_EQ(c->hidden_size, 896);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 64);  // 896 / 14
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->qkv_bias());
  EXPECT_FALSE(c->o_bias());
  EXPECT_FALSE(c->qk_norm());
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(HfConfig, ParsesQwen3AndLlama) {
  auto q3 = ParseModelConfig(kQwen3, "q3/config.json");
  ASSERT_TRUE(q3.ok()) << q3.status().ToString();
  EXPECT_EQ(q3->head_dim, 128);  // explicit, not 1024 / 16
  EXPECT_TRUE(q3->qk_norm());
  EXPECT_FALSE(q3->qkv_bias());
  auto l = ParseModelConfig(kLlama, "l/config.json");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_TRUE(l->rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(l->rope_scaling->factor, 32.0);
  EXPECT_EQ(l->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(l->rms_norm_eps, 1e-5);
  EXPECT_FALSE(l->qkv_bias());
}

TEST(HfConfig, DefaultsForOptionalKeys) {
  auto c = ParseModelConfig(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2})",
                            "x");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->rope_scaling.has_value());
}

TEST(HfConfig, RoundTripKeepsUnknownKeys) {
  auto c = ParseModelConfig(kLlama, "l/config.json");
  ASSERT_TRUE(c.ok());
  const std::string text = ModelConfigToJson(*c);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["eos_token_id"], nlohmann::json({128001, 128008, 128009}));
  EXPECT_EQ(j["bos_token_id"], 128000);
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
  auto again = ParseModelConfig(text, "again");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->num_key_value_heads, 8);
  EXPECT_EQ(again->head_dim, 64);
  EXPECT_DOUBLE_EQ(again->rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(ModelConfigToJson(*again), text);
}

void ExpectError(const std::string& json, StatusCode code, const std::string& mention) {
  auto c = ParseModelConfig(json, "dir/config.json");
  ASSERT_FALSE(c.ok()) << json;
  EXPECT_EQ(c.status().code(), code) << c.status().ToString();
  EXPECT_NE(c.status().message().find("dir/config.json"), std::string::npos);
  EXPECT_NE(c.status().message().find(mention), std::string::npos) << c.status().ToString();
}

TEST(HfConfig, ErrorsNameFileAndKey) {
  const std::string base = R"("vocab_size":10,"hidden_size":8,"intermediate_size":16,
      "num_hidden_layers":1,"num_attention_heads":2)";
  ExpectError("{" + base + "}", StatusCode::kInvalidArgument, "'model_type'");
  ExpectError(R"({"model_type":"mistral",)" + base + "}", StatusCode::kUnimplemented, "mistral");
  ExpectError(R"({"model_type":"qwen2","hidden_size":8})", StatusCode::kInvalidArgument,
              "'vocab_size'");
  ExpectError(R"({"model_type":"qwen2","vocab_size":10,"hidden_size":"8",)" +
                  base.substr(base.find("\"int")) + "}",
              StatusCode::kInvalidArgument, "'hidden_size'");
  ExpectError(R"({"model_type":"qwen2","num_key_value_heads":3,)" + base + "}",
              StatusCode::kInvalidArgument, "'num_key_value_heads'");
  ExpectError(R"({"model_type":"qwen2","use_sliding_window":true,)" + base + "}",
              StatusCode::kUnimplemented, "'use_sliding_window'");
  ExpectError(R"({"model_type":"llama","rope_scaling":{"rope_type":"yarn"},)" + base + "}",
              StatusCode::kUnimplemented, "'rope_scaling'");
  ExpectError(R"({"model_type":"llama","hidden_act":"gelu",)" + base + "}",
              StatusCode::kUnimplemented, "'hidden_act'");
  ExpectError(R"({"model_type":"llama","head_dim":3,)" + base + "}", StatusCode::kInvalidArgument,
              "'head_dim'");
  ExpectError("{oops", StatusCode::kInvalidArgument, "not valid JSON");
  EXPECT_EQ(LoadModelConfig("/nonexistent/config.json").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace chainrl::model
