// The built-in tasks (data/tasks.h) and the built-in `task` reward agree: every generated
// reference solution scores 1, and a wrong final answer scores 0.
#include <gtest/gtest.h>

#include "data/tasks.h"
#include "rewards/builtin_rewards.h"

namespace chainrl {
namespace {

TEST(TaskVerifierTest, GeneratedSolutionsVerify) {
  for (const auto& family : data::TaskFamilies()) {
    data::TaskOptions o;
    o.family = family;
    o.min_size = 1;
    o.max_size = family == "arithmetic" ? 5 : 4;
    o.seed = 9;
    for (auto split : {data::Split::kTrain, data::Split::kEval}) {
      auto ex = data::GenerateTask(o, split, 300);
      ASSERT_TRUE(ex.ok()) << ex.status().ToString();
      ASSERT_GT(ex->size(), 100u);
      for (const auto& e : *ex) {
        auto v = rewards::VerifyTask(family, e.solution, e.answer.dump(), e.metadata.dump());
        EXPECT_EQ(v.score, 1.0) << family << ": " << e.prompt << "\n"
                                << e.solution << "\n"
                                << v.message;
        EXPECT_FALSE(v.error) << v.message;
        // The same chain with a wrong final answer fails.
        std::string wrong = e.solution;
        auto at = wrong.rfind("</answer>");
        ASSERT_NE(at, std::string::npos);
        wrong.insert(at, "1");
        auto w = rewards::VerifyTask(family, wrong, e.answer.dump(), e.metadata.dump());
        EXPECT_EQ(w.score, 0.0) << family << ": " << wrong;
      }
    }
  }
}

}  // namespace
}  // namespace chainrl
