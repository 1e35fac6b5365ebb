// The preference losses as algorithm.name recipes (docs/ALGORITHMS.md §3); their update is
// RunPreferenceUpdate (learner/rl_step.h), not a PolicyObjective.
#include "learner/objective.h"

namespace chainrl::learner {
namespace {

ObjectiveRecipe Preference(PreferenceLossType loss) {
  ObjectiveRecipe r;
  r.family = ObjectiveFamily::kPreference;
  r.preference = loss;
  return r;
}

}  // namespace

ObjectiveRecipe DpoRecipe() { return Preference(PreferenceLossType::kDpo); }
ObjectiveRecipe IpoRecipe() { return Preference(PreferenceLossType::kIpo); }
ObjectiveRecipe SimpoRecipe() { return Preference(PreferenceLossType::kSimpo); }
ObjectiveRecipe LogoRecipe() { return Preference(PreferenceLossType::kLogo); }

}  // namespace chainrl::learner
