// `chainrl eval`: held-out evaluation of a model directory on a JSONL file or a built-in task's
// held-out split, scored with the run config's rewards (accuracy, mean reward, length, truncation).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "apps/run_config.h"
#include "core/log.h"
#include "data/jsonl.h"
#include "data/tasks.h"
#include "model/model_io.h"
#include "rewards/reward_config.h"
#include "rollout/embedding_cache.h"
#include "rollout/evaluate.h"
#include "rollout/prompting.h"

namespace chainrl::app {
namespace {

// A TOML basic string (JSON's escapes are valid TOML).
std::string TomlString(const std::string& s) { return nlohmann::json(s).dump(); }

Result<std::vector<data::Example>> LoadEvalData(const Config& cfg, const std::string& data) {
  const std::string prefix = "task:";
  if (data.rfind(prefix, 0) == 0) {
    data::TaskOptions t = data::TaskOptionsFromConfig(cfg);
    t.family = data.substr(prefix.size());
    const int64_t count = cfg.GetInt("data.num_eval_examples");
    if (count < 1) return InvalidArgument("--data " + data + ": data.num_eval_examples is 0");
    auto ex = data::GenerateTask(t, data::Split::kEval, count);
    if (!ex.ok()) return InvalidArgument("--data " + data + ": " + ex.status().message());
    return ex;
  }
  const data::JsonlFields f = data::JsonlFieldsFromConfig(cfg);
  const data::BadLinePolicy policy = data::BadLinePolicyFromConfig(cfg);
  data::JsonlStats stats;
  auto ex = data::LoadExamplesJsonl(data, f, policy, &stats);
  if (!ex.ok()) return ex;
  if (stats.skipped > 0) {
    CHAINRL_LOG(kWarn) << data << ": skipped " << stats.skipped << " malformed line(s) of "
                       << stats.lines;
    for (const auto& p : stats.first_problems) CHAINRL_LOG(kWarn) << "  " << p;
  }
  if (ex->empty()) return InvalidArgument(data + ": no examples");
  return ex;
}

int RunEval(const std::vector<std::string>& argv) {
  std::string model_dir, data, config_path, records_path;
  std::vector<std::string> sets;
  int64_t max_new = 0, limit = 0, samples = 1, seed = 0;
  double temperature = 0.0;
  bool as_json = false;
  Args a("chainrl eval",
         "--model DIR --data FILE|task:NAME [--config RUN.toml] [--set K=V]... [options]",
         "Evaluate a model on held-out prompts: generate (greedy by default) and score with the\n"
         "config's [[rewards]]. A sample is correct when the FIRST reward scores >= 1. Without\n"
         "--config (or with a config that has no [[rewards]]) one built-in reward is used: `task`\n"
         "for task:NAME data, `math` for JSONL. JSONL field names come from the config's [data]\n"
         "keys; task:arithmetic / task:countdown is the task's held-out split (data.task_*_size,\n"
         "data.num_eval_examples, run.seed). The model runs on run.device in model.compute_dtype.");
  a.Option("model", &model_dir, "model directory (overrides model.path)")
      .Option("data", &data, "a JSONL file, or task:arithmetic / task:countdown", true)
      .Option("config", &config_path, "run config (rewards, data fields, tokenizer, device)")
      .Repeated("set", &sets, "override a config key, e.g. --set tokenizer.system_prompt=\"...\"")
      .Option("max-new-tokens", &max_new, "response cap (default rollout.max_new_tokens)")
      .Option("limit", &limit, "evaluate the first N examples only (0: all)")
      .Option("samples", &samples, "samples per prompt (1)")
      .Option("temperature", &temperature, "sampling temperature; 0 is greedy (0)")
      .Option("seed", &seed, "seed of the first sample when sampling (0)")
      .Option("records", &records_path, "write one JSON object per sample to this file")
      .Flag("json", &as_json, "print the summary as one JSON object on the last line");
  return ParseAndRun(a, argv, [&]() -> int {
    if (limit < 0 || samples < 1 || max_new < 0 || temperature < 0 || seed < 0)
      return ReportError(InvalidArgument(
          "need --limit >= 0, --samples >= 1, --max-new-tokens >= 1, --temperature >= 0, "
          "--seed >= 0"));
    if (model_dir.empty() && config_path.empty())
      return ReportError(
          InvalidArgument("--model DIR is required (or a --config with model.path)"));
    std::vector<std::string> overrides = sets;
    if (!model_dir.empty()) overrides.push_back("model.path=" + TomlString(model_dir));
    auto cfg = config_path.empty() ? ParseConfig("[model]\npath = \"\"\n", "(defaults)", overrides)
                                   : LoadConfig(config_path, overrides);
    if (!cfg.ok()) return ReportError(cfg.status());
    if (auto lvl = log::ParseLevel(cfg->GetString("run.log_level")); lvl.ok()) log::SetLevel(*lvl);

    auto examples = LoadEvalData(*cfg, data);
    if (!examples.ok()) return ReportError(examples.status());
    if (limit > 0 && static_cast<int64_t>(examples->size()) > limit)
      examples->resize(static_cast<size_t>(limit));

    // Rewards: the config's, else one built-in verifier.
    std::unique_ptr<rewards::RewardPool> pool;
    if (cfg->GetArray("rewards").empty()) {
      const bool task = data.rfind("task:", 0) == 0;
      auto p = rewards::RewardPool::Create(
          {rewards::RewardSpec().set_name("correct").set_kind(task ? "task" : "math")});
      if (!p.ok()) return ReportError(p.status());
      pool = std::move(*p);
    } else {
      auto p = rewards::CreateRewardPool(*cfg);
      if (!p.ok()) return ReportError(p.status());
      pool = std::move(*p);
    }

    rollout::PromptOptions po = rollout::PromptOptionsFromConfig(*cfg);
    if (config_path.empty()) {
      // No config: use the chat template when the tokenizer has one.
      std::ifstream tc(po.tokenizer_dir + "/tokenizer_config.json");
      auto j = nlohmann::json::parse(tc, nullptr, false);
      po.use_chat_template = tc && j.is_object() && j.contains("chat_template");
    }
    auto prompts = rollout::PromptRenderer::Create(po);
    if (!prompts.ok()) return ReportError(prompts.status());

    auto options = model::ModelOptionsFromConfig(*cfg, model::ModelRole::kInference);
    if (!options.ok()) return ReportError(options.status());
    auto model = model::LoadModel(cfg->GetString("model.path"), *options);
    if (!model.ok()) return ReportError(model.status());
    if ((*prompts)->tokenizer().vocab_size() > (*model)->config().vocab_size)
      return ReportError(InvalidArgument(
          po.tokenizer_dir + ": the tokenizer has " +
          std::to_string((*prompts)->tokenizer().vocab_size()) + " ids but the model only " +
          std::to_string((*model)->config().vocab_size) + " (config.json vocab_size)"));

    rollout::EvalOptions eo;
    // Examples that carry precomputed prompt embeddings splice them at data.embedding_placeholder.
    if (std::any_of(examples->begin(), examples->end(),
                    [](const data::Example& e) { return !e.embeddings.empty(); })) {
      auto id = (*prompts)->SingleTokenId(cfg->GetString("data.embedding_placeholder"),
                                          "data.embedding_placeholder");
      if (!id.ok()) return ReportError(id.status());
      eo.placeholder_token_id = *id;
      eo.embedding_cache = rollout::MakeEmbeddingCache(*cfg, (*model)->config().hidden_size);
    }
    eo.max_new_tokens = max_new > 0 ? max_new : cfg->GetInt("rollout.max_new_tokens");
    eo.temperature = temperature;
    eo.max_batch = cfg->GetInt("rollout.max_batch_size");
    eo.seed = static_cast<uint64_t>(seed);
    eo.samples_per_prompt = static_cast<int>(samples);
    eo.stop_strings = cfg->GetStringList("rollout.stop_strings");
    for (int64_t id : cfg->GetIntList("rollout.stop_token_ids")) {
      if (id >= (*model)->config().vocab_size)
        return ReportError(InvalidArgument("rollout.stop_token_ids: " + std::to_string(id) +
                                           " is outside the model's vocabulary"));
      eo.stop_token_ids.push_back(static_cast<int32_t>(id));
    }
    if (temperature > 0) {
      eo.top_k = cfg->GetInt("rollout.top_k");
      eo.top_p = cfg->GetFloat("rollout.top_p");
    }
    CHAINRL_LOG(kInfo) << "evaluating " << examples->size() << " examples x " << samples
                       << " samples, max_new_tokens " << eo.max_new_tokens << ", reward '"
                       << pool->specs().front().name << "' decides correctness";
    auto res = rollout::Evaluate(**model, **prompts, *pool, *examples, eo);
    if (!res.ok()) return ReportError(res.status());

    if (!records_path.empty()) {
      std::ofstream out(records_path);
      if (!out) return ReportError(IoError(records_path + ": cannot open for writing"));
      for (const auto& r : res->records) {
        nlohmann::json j = {{"id", r.example_id}, {"response", r.response}, {"tokens", r.tokens},
                            {"reward", r.reward}, {"correct", r.correct},   {"finish", r.finish}};
        out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
      if (!out) return ReportError(IoError(records_path + ": write failed"));
    }

    std::printf("%10s %8s %10s %12s %12s %10s %9s\n", "examples", "samples", "accuracy",
                "mean_reward", "mean_length", "truncated", "seconds");
    std::printf("%10lld %8lld %10.4f %12.4f %12.1f %9.1f%% %9.2f\n",
                static_cast<long long>(res->examples), static_cast<long long>(res->samples),
                res->accuracy, res->mean_reward, res->mean_length, 100.0 * res->truncated_fraction,
                res->seconds);
    if (as_json) {
      nlohmann::json j = {
          {"examples", res->examples},       {"samples", res->samples},
          {"accuracy", res->accuracy},       {"mean_reward", res->mean_reward},
          {"mean_length", res->mean_length}, {"truncated_fraction", res->truncated_fraction},
          {"seconds", res->seconds}};
      std::printf("%s\n", j.dump().c_str());
    }
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("eval", "evaluate a model on a dataset with the configured reward", RunEval);

}  // namespace chainrl::app
