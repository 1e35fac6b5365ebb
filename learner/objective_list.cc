// The objective list as data (see objective_list.h).
#include "learner/objective_list.h"

namespace chainrl::learner {

const std::vector<ObjectiveInfo>& Objectives() {
#define CHAINRL_OBJECTIVE_INFO(name, Symbol, family, doc) {#name, ObjectiveFamily::family, doc},
  static const auto* list =
      new std::vector<ObjectiveInfo>{CHAINRL_OBJECTIVES(CHAINRL_OBJECTIVE_INFO)};
#undef CHAINRL_OBJECTIVE_INFO
  return *list;
}

const ObjectiveInfo* FindObjective(std::string_view name) {
  for (const auto& o : Objectives())
    if (o.name == name) return &o;
  return nullptr;
}

std::vector<std::string> ObjectiveNames() {
  std::vector<std::string> out;
  for (const auto& o : Objectives()) out.push_back(o.name);
  return out;
}

std::vector<std::string> ObjectiveNames(ObjectiveFamily family) {
  std::vector<std::string> out;
  for (const auto& o : Objectives())
    if (o.family == family) out.push_back(o.name);
  return out;
}

std::string ObjectiveChoicesDoc() {
  std::string pg, pref;
  for (const auto& o : Objectives()) {
    std::string& s = o.family == ObjectiveFamily::kPolicyGradient ? pg : pref;
    s += (s.empty() ? "" : "; ") + o.name + ": " + o.doc;
  }
  return "Policy gradient on groups of rollouts: " + pg + ". Preference pairs: " + pref + ".";
}

}  // namespace chainrl::learner
