// Every value of `algorithm.name`, in one list: the schema's choices and their line in
// docs/CONFIG.md, the learner's family dispatch and its recipes (learner/objective.h) all come
// from it. Adding an objective is one file defining its recipe and one line here
// (docs/ALGORITHMS.md §1.9). LibTorch-free, so that configuration code can read it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace chainrl::learner {

// What an objective trains on: groups of sampled responses with rewards (policy gradient), or
// chosen/rejected pairs (preference). Supervised fine-tuning is not an algorithm.name: it is the
// [sft] warm-up that runs before either.
enum class ObjectiveFamily { kPolicyGradient, kPreference };

// X(name, Symbol, family, doc), in the schema's order. `name` is the algorithm.name value;
// `Symbol` names `ObjectiveRecipe Symbol##Recipe()` (learner/objective.h), defined in the
// objective's own file; `doc` is the objective's phrase in the key's documentation.
#define CHAINRL_OBJECTIVES(X)                                                                 \
  X(grpo, Grpo, kPolicyGradient, "GRPO (clip 0.2/0.2, k3 KL 0.04, seq-mean-token-mean)")      \
  X(dr_grpo, DrGrpo, kPolicyGradient,                                                         \
    "Dr.GRPO (no std division, seq-mean-token-sum-norm over a constant length)")              \
  X(dapo, Dapo, kPolicyGradient, "DAPO (clip-higher 0.2/0.28, token-mean, dynamic sampling)") \
  X(gspo, Gspo, kPolicyGradient, "GSPO (sequence-level ratio, clip 3e-4/4e-4)")               \
  X(dler, Dler, kPolicyGradient,                                                              \
    "DLER's loss (clip 0.2/0.28, dual clip 10, k3 KL 5e-4, token-mean, dynamic sampling)")    \
  X(campo, Campo, kPolicyGradient,                                                            \
    "CAMPO's loss (DLER's without KL, dynamic sampling; its repetition penalty is "           \
    "length_shaping's)")                                                                      \
  X(cispo, Cispo, kPolicyGradient,                                                            \
    "CISPO (clipped, stop-gradient importance weight on every token's log-likelihood)")       \
  X(dpo, Dpo, kPreference, "DPO (cDPO with label_smoothing)")                                 \
  X(ipo, Ipo, kPreference, "IPO")                                                             \
  X(simpo, Simpo, kPreference, "SimPO (reference-free, length-normalised)")                   \
  X(logo, Logo, kPreference, "LOGO (SimPO-style over several rejected responses, plus CE)")

struct ObjectiveInfo {
  std::string name;
  ObjectiveFamily family;
  std::string doc;
};

// The list above, in order.
const std::vector<ObjectiveInfo>& Objectives();
// The entry named `name`, or nullptr.
const ObjectiveInfo* FindObjective(std::string_view name);
// The names, in order: every family, or one.
std::vector<std::string> ObjectiveNames();
std::vector<std::string> ObjectiveNames(ObjectiveFamily family);
// The documentation of algorithm.name: each name with its phrase, by family.
std::string ObjectiveChoicesDoc();

}  // namespace chainrl::learner
