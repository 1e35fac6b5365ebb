// algorithm.name -> recipe and objective (see objective.h). The recipes are defined in their
// objectives' files; this file only expands learner/objective_list.h into the lookup.
#include <string>

#include "learner/objective.h"
#include "learner/run_options.h"

namespace chainrl::learner {

#define CHAINRL_DECLARE_RECIPE(name, Symbol, family, doc) ObjectiveRecipe Symbol##Recipe();
CHAINRL_OBJECTIVES(CHAINRL_DECLARE_RECIPE)
#undef CHAINRL_DECLARE_RECIPE

std::unique_ptr<PolicyObjective> MakeDrpoObjective(const LearnerRunOptions& options);

namespace {

struct Registered {
  const char* name;
  ObjectiveRecipe (*recipe)();
};

const std::vector<Registered>& Registry() {
#define CHAINRL_REGISTER_RECIPE(name, Symbol, family, doc) {#name, &Symbol##Recipe},
  static const auto* list =
      new std::vector<Registered>{CHAINRL_OBJECTIVES(CHAINRL_REGISTER_RECIPE)};
#undef CHAINRL_REGISTER_RECIPE
  return *list;
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

Result<ObjectiveRecipe> FindRecipe(std::string_view algorithm) {
  for (const auto& r : Registry()) {
    if (algorithm != r.name) continue;
    ObjectiveRecipe recipe = r.recipe();
    recipe.family = FindObjective(algorithm)->family;
    return recipe;
  }
  return InvalidArgument("algorithm: unknown value \"" + std::string(algorithm) +
                         "\"; valid values: " + Join(ObjectiveNames()));
}

Result<PolicyLossOptions> PolicyLossPreset(std::string_view algorithm) {
  CHAINRL_ASSIGN_OR_RETURN(ObjectiveRecipe recipe, FindRecipe(algorithm));
  if (recipe.family != ObjectiveFamily::kPolicyGradient)
    return InvalidArgument("algorithm: \"" + std::string(algorithm) +
                           "\" is a preference loss, not a policy-gradient recipe; those are " +
                           Join(ObjectiveNames(ObjectiveFamily::kPolicyGradient)));
  return recipe.policy;
}

Result<std::unique_ptr<PolicyObjective>> MakePolicyObjective(const LearnerRunOptions& options) {
  if (options.drpo) return MakeDrpoObjective(options);
  CHAINRL_ASSIGN_OR_RETURN(ObjectiveRecipe recipe, FindRecipe(options.algorithm));
  if (recipe.family != ObjectiveFamily::kPolicyGradient || recipe.make == nullptr)
    return InvalidArgument("algorithm.name = '" + options.algorithm +
                           "' is a preference loss: it does not train on groups of rollouts");
  return recipe.make(options);
}

}  // namespace chainrl::learner
