// Per-step reward shaping and advantages of the learner process (see process_shaping.h).
#include "learner/process_shaping.h"

#include <algorithm>
#include <map>

namespace chainrl::learner {
namespace {

bool Replacing(LengthMethod m) {
  return m == LengthMethod::kDler || m == LengthMethod::kLaser || m == LengthMethod::kLaserD ||
         m == LengthMethod::kLaserDe || m == LengthMethod::kGrpoLambda || m == LengthMethod::kDrpo;
}

LaserSample ToLaser(const ShapingSample& s) {
  LaserSample l;
  l.correct = s.correct;
  l.formatted = s.formatted;
  l.looping = s.looping;
  l.length = s.length;
  return l;
}

}  // namespace

Result<std::vector<LengthMethod>> ParseLengthMethods(const std::vector<std::string>& names) {
  static const std::map<std::string, LengthMethod> kNames = {
      {"kimi", LengthMethod::kKimi},
      {"dapo_overlong", LengthMethod::kDapoOverlong},
      {"campo_repetition", LengthMethod::kCampoRepetition},
      {"dler", LengthMethod::kDler},
      {"laser", LengthMethod::kLaser},
      {"laser_d", LengthMethod::kLaserD},
      {"laser_de", LengthMethod::kLaserDe},
      {"grpo_lambda", LengthMethod::kGrpoLambda},
      {"drpo", LengthMethod::kDrpo}};
  std::vector<LengthMethod> out;
  std::string replacing;
  for (const auto& n : names) {
    auto it = kNames.find(n);
    if (it == kNames.end())
      return InvalidArgument("length_shaping.methods: unknown method \"" + n + "\"");
    if (Replacing(it->second)) {
      if (!replacing.empty())
        return InvalidArgument("length_shaping.methods: \"" + replacing + "\" and \"" + n +
                               "\" both set the base reward; list at most one of dler, laser, "
                               "laser_d, laser_de, grpo_lambda, drpo");
      replacing = n;
    }
    if (std::find(out.begin(), out.end(), it->second) == out.end()) out.push_back(it->second);
  }
  return out;
}

bool ProcessShapingOptions::Has(LengthMethod m) const {
  return std::find(methods.begin(), methods.end(), m) != methods.end();
}

Result<ProcessShapingOptions> ProcessShapingOptionsFromConfig(
    const Config& c, const GroupAdvantageOptions& advantages) {
  ProcessShapingOptions o;
  CHAINRL_ASSIGN_OR_RETURN(o.methods,
                           ParseLengthMethods(c.GetStringList("length_shaping.methods")));
  o.kimi.weight = c.GetFloat("length_shaping.kimi_weight");
  o.overlong_buffer_len = c.GetInt("length_shaping.overlong_buffer_len");
  o.overlong_penalty_factor = c.GetFloat("length_shaping.overlong_penalty_factor");
  if (o.Has(LengthMethod::kDapoOverlong) && o.overlong_buffer_len < 1)
    return InvalidArgument("length_shaping.overlong_buffer_len must be >= 1 with dapo_overlong");
  o.repetition.repetition_penalty = c.GetFloat("length_shaping.repetition_penalty");
  o.laser.alpha = c.GetFloat("length_shaping.laser_alpha");
  const std::string mode = c.GetString("length_shaping.laser_mode");
  // The config's "reward" is LASER's default step form (+α within the target).
  CHAINRL_ASSIGN_OR_RETURN(o.laser.mode, ParseLaserMode(mode == "reward" ? "step" : mode));
  o.laser.exploration = o.Has(LengthMethod::kLaserDe);
  o.laser_target = c.GetInt("length_shaping.laser_target_tokens");
  const int64_t max_new = c.GetInt("rollout.max_new_tokens");
  const int64_t spacing = std::max<int64_t>(1, max_new / 16);
  o.laser_d.set_group_size(c.GetInt("rollout.group_size"))
      .set_target_length(o.laser_target)
      .set_lower_bound(spacing)
      .set_upper_bound(std::max(spacing, max_new))
      .set_threshold_step(spacing)
      .set_update_every(c.GetInt("length_shaping.laser_d_update_every"));
  if (Status st = ValidateLaserDOptions(o.laser_d); !st.ok())
    return st.WithPrefix("[length_shaping] laser_d");
  o.grpo_lambda.top_fraction = c.GetFloat("length_shaping.grpo_lambda_fraction");
  o.grpo_lambda.kimi = o.kimi;
  const std::string sw = c.GetString("curriculum.soft_weighting");
  if (sw != "none") {
    auto stage = ParseDifficultyStage(sw);
    if (!stage.ok()) return stage.status().WithPrefix("curriculum.soft_weighting");
    o.soft_weighting = *stage;
  }
  o.advantages = advantages;
  return o;
}

ProcessShaping::ProcessShaping(ProcessShapingOptions options)
    : options_(std::move(options)), laser_d_(options_.laser_d) {}

void ProcessShaping::SetOptions(ProcessShapingOptions options) {
  const nlohmann::json kept = laser_d_.ToJson();
  options_ = std::move(options);
  laser_d_ = LaserDTargets(options_.laser_d);
  (void)laser_d_.LoadJson(kept);  // written by ToJson just above: cannot fail
}

ShapedStep ProcessShaping::Shape(int64_t step, int64_t budget,
                                 const std::vector<ShapingGroup>& groups) {
  const ProcessShapingOptions& o = options_;
  const bool laser_d = o.Has(LengthMethod::kLaserD) || o.Has(LengthMethod::kLaserDe);
  ShapedStep out;
  if (laser_d && step > 0 && laser_d_.UpdateDue(step) && !monitor_.empty()) {
    laser_d_.Update(monitor_);
    monitor_.clear();
    out.laser_targets_updated = true;
  }
  if (laser_d)
    for (int b = 0; b < 3; ++b)
      out.laser_targets[b] = laser_d_.Target(static_cast<DifficultyBucket>(b));

  // Flattened batch views (GRPO-λ ranks groups within the batch; DLER whitens over it).
  std::vector<uint8_t> correct;
  std::vector<int64_t> lengths, gids;
  for (size_t g = 0; g < groups.size(); ++g) {
    double c = 0;
    for (const auto& s : groups[g].samples) {
      correct.push_back(s.correct ? 1 : 0);
      lengths.push_back(s.length);
      gids.push_back(static_cast<int64_t>(g));
      c += s.correct ? 1.0 : 0.0;
    }
    out.group_accuracy.push_back(
        groups[g].samples.empty() ? 0.0 : c / static_cast<double>(groups[g].samples.size()));
  }
  std::vector<double> lambda_rewards;
  if (o.Has(LengthMethod::kGrpoLambda))
    lambda_rewards = GrpoLambdaRewards(correct, lengths, gids, o.grpo_lambda);

  OverlongOptions oo;
  oo.max_response_length = std::max<int64_t>(1, budget);
  oo.overlong_buffer_len = std::clamp<int64_t>(o.overlong_buffer_len, 1, oo.max_response_length);
  oo.overlong_penalty_factor = o.overlong_penalty_factor;

  std::vector<double> flat_rewards;
  size_t k = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& samples = groups[g].samples;
    const double acc = out.group_accuracy[g];
    std::vector<int64_t> glen(lengths.begin() + k, lengths.begin() + k + samples.size());
    std::vector<uint8_t> gcor(correct.begin() + k, correct.begin() + k + samples.size());
    const std::vector<double> kimi = o.Has(LengthMethod::kKimi)
                                         ? KimiLengthReward(glen, gcor, o.kimi)
                                         : std::vector<double>(samples.size(), 0.0);
    std::vector<double> r(samples.size());
    for (size_t i = 0; i < samples.size(); ++i, ++k) {
      const ShapingSample& s = samples[i];
      double v = s.reward;
      if (o.Has(LengthMethod::kDler)) {
        v = DlerReward(s.correct, s.truncated);
      } else if (o.Has(LengthMethod::kLaser)) {
        v = LaserReward(ToLaser(s), o.laser_target, o.laser);
      } else if (laser_d) {
        v = LaserReward(ToLaser(s), laser_d_.TargetFor(acc), o.laser);
      } else if (o.Has(LengthMethod::kGrpoLambda)) {
        v = lambda_rewards[k];
      } else if (o.Has(LengthMethod::kDrpo)) {
        v = s.correct ? 1.0 : 0.0;  // DRPO's binary reward (its loss reads correctness)
      }
      v += kimi[i];
      if (o.Has(LengthMethod::kDapoOverlong)) v += OverlongPenalty(s.length, oo);
      if (o.Has(LengthMethod::kCampoRepetition))
        v += RepetitionPenalty(s.tokens, s.truncated, o.repetition);
      r[i] = v;
      flat_rewards.push_back(v);
    }
    out.rewards.push_back(std::move(r));
    if (laser_d) monitor_.push_back({acc, glen});
  }

  std::vector<double> adv = o.Has(LengthMethod::kDler)
                                ? DlerAdvantages(flat_rewards, gids, lengths)
                                : GroupAdvantages(flat_rewards, gids, o.advantages);
  if (o.soft_weighting) ApplyDifficultySoftWeights(adv, correct, gids, *o.soft_weighting);
  k = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    out.soft_weights.push_back(
        o.soft_weighting ? DifficultySoftWeight(out.group_accuracy[g], *o.soft_weighting) : 1.0);
    std::vector<double> a(adv.begin() + k, adv.begin() + k + groups[g].samples.size());
    k += groups[g].samples.size();
    out.advantages.push_back(std::move(a));
  }
  return out;
}

nlohmann::json ProcessShaping::ToJson() const {
  nlohmann::json monitor = nlohmann::json::array();
  for (const auto& m : monitor_)
    monitor.push_back({{"accuracy", m.accuracy}, {"lengths", m.lengths}});
  return {{"laser_d", laser_d_.ToJson()}, {"monitor", monitor}};
}

Status ProcessShaping::LoadJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("laser_d") || !j.contains("monitor") ||
      !j["monitor"].is_array())
    return Corrupt("shaping: expected an object with \"laser_d\" and a \"monitor\" array");
  LaserDTargets t(options_.laser_d);
  CHAINRL_RETURN_IF_ERROR(t.LoadJson(j["laser_d"]));
  std::vector<LaserDTargets::MonitorGroup> monitor;
  for (const auto& m : j["monitor"]) {
    if (!m.is_object() || !m.contains("accuracy") || !m["accuracy"].is_number() ||
        !m.contains("lengths") || !m["lengths"].is_array())
      return Corrupt("shaping: a \"monitor\" entry lacks \"accuracy\" or \"lengths\"");
    LaserDTargets::MonitorGroup g;
    g.accuracy = m["accuracy"].get<double>();
    for (const auto& l : m["lengths"]) {
      if (!l.is_number_integer()) return Corrupt("shaping: monitor lengths must be integers");
      g.lengths.push_back(l.get<int64_t>());
    }
    monitor.push_back(std::move(g));
  }
  laser_d_ = std::move(t);
  monitor_ = std::move(monitor);
  return Status::Ok();
}

}  // namespace chainrl::learner
