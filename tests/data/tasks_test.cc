// Built-in synthetic tasks: answers recomputed independently, solutions consistent with answers,
// held-out problems disjoint from training, deterministic generation.
#include "data/tasks.h"

#include <gtest/gtest.h>

#include <cctype>
#include <sstream>

#include <map>
#include <regex>
#include <set>

namespace chainrl::data {
namespace {

std::string AnswerTag(const std::string& solution) {
  auto b = solution.rfind("<answer>"), e = solution.rfind("</answer>");
  if (b == std::string::npos || e == std::string::npos || e < b) return "";
  return solution.substr(b + 8, e - b - 8);
}

// Exact rational evaluation of + - * / ( ) over integers; independent of the generator.
struct Rat {
  long long n, d;
};
long long Gcd(long long a, long long b) { return b ? Gcd(b, a % b) : (a < 0 ? -a : a); }
Rat Norm(Rat r) {
  if (r.d < 0) r.n = -r.n, r.d = -r.d;
  long long g = Gcd(r.n, r.d);
  return g ? Rat{r.n / g, r.d / g} : r;
}
struct Parser {
  std::string s;
  size_t i = 0;
  std::vector<long long> literals;
  bool ok = true;
  void Ws() {
    while (i < s.size() && s[i] == ' ') ++i;
  }
  Rat Primary() {
    Ws();
    if (i < s.size() && s[i] == '(') {
      ++i;
      Rat r = Sum();
      Ws();
      if (i >= s.size() || s[i] != ')') ok = false;
      ++i;
      return r;
    }
    long long v = 0;
    size_t start = i;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) v = v * 10 + (s[i++] - '0');
    if (i == start) ok = false;
    literals.push_back(v);
    return {v, 1};
  }
  Rat Product() {
    Rat r = Primary();
    for (;;) {
      Ws();
      if (i < s.size() && (s[i] == '*' || s[i] == '/')) {
        char op = s[i++];
        Rat b = Primary();
        r = op == '*' ? Norm({r.n * b.n, r.d * b.d}) : Norm({r.n * b.d, r.d * b.n});
      } else {
        return r;
      }
    }
  }
  Rat Sum() {
    Rat r = Product();
    for (;;) {
      Ws();
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
        char op = s[i++];
        Rat b = Product();
        r = Norm({op == '+' ? r.n * b.d + b.n * r.d : r.n * b.d - b.n * r.d, r.d * b.d});
      } else {
        return r;
      }
    }
  }
};

TEST(TasksTest, ArithmeticAnswersAndSolutionsAreCorrect) {
  TaskOptions o;
  o.family = "arithmetic";
  o.min_size = 1;
  o.max_size = 4;
  o.seed = 7;
  auto ex = GenerateTask(o, Split::kTrain, 2000);
  ASSERT_TRUE(ex.ok()) << ex.status().ToString();
  ASSERT_EQ(ex->size(), 2000u);
  std::regex q(R"(What is (\d+) ([-+*]) (\d+)\?)");
  int verbose = 0, direct = 0;
  for (const auto& e : *ex) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(e.prompt, m, q)) << e.prompt;
    long long a = std::stoll(m[1]), b = std::stoll(m[3]);
    char op = m[2].str()[0];
    long long want = op == '+' ? a + b : op == '-' ? a - b : a * b;
    EXPECT_EQ(e.answer.get<long long>(), want) << e.prompt;
    EXPECT_EQ(AnswerTag(e.solution), std::to_string(want)) << e.solution;
    EXPECT_EQ(e.metadata["task"], "arithmetic");
    if (e.solution.find("column by column") != std::string::npos ||
        e.solution.find("each digit") != std::string::npos) {
      ++verbose;
      EXPECT_NE(e.solution.find("So " + m[1].str() + " " + op + " " + m[3].str() + " = " +
                                std::to_string(want) + "."),
                std::string::npos)
          << e.solution;
    }
    if (op == '+' && e.solution.find("column by column") != std::string::npos) {
      // The digits written, right to left, spell the sum.
      std::regex w(R"(write (\d))");
      std::string digits;
      for (auto it = std::sregex_iterator(e.solution.begin(), e.solution.end(), w);
           it != std::sregex_iterator(); ++it)
        digits.insert(digits.begin(), (*it)[1].str()[0]);
      if (e.solution.find("final carry 1") != std::string::npos) digits.insert(digits.begin(), '1');
      while (digits.size() > 1 && digits[0] == '0') digits.erase(digits.begin());
      EXPECT_EQ(digits, std::to_string(want)) << e.solution;
    }
    if (e.solution.find("<think>") == std::string::npos) ++direct;
  }
  // The style mix follows the options (0.6 / 0.3 / 0.1) within sampling noise.
  EXPECT_NEAR(verbose / 2000.0, 0.6, 0.05);
  EXPECT_NEAR(direct / 2000.0, 0.1, 0.03);
}

TEST(TasksTest, CountdownSolutionsEvaluateToTargetUsingEachNumberOnce) {
  TaskOptions o;
  o.family = "countdown";
  o.min_size = 1;
  o.max_size = 4;
  o.seed = 3;
  auto ex = GenerateTask(o, Split::kTrain, 500);
  ASSERT_TRUE(ex.ok());
  ASSERT_EQ(ex->size(), 500u);
  for (const auto& e : *ex) {
    Parser p;
    p.s = AnswerTag(e.solution);
    Rat v = p.Sum();
    ASSERT_TRUE(p.ok) << e.solution;
    long long target = e.metadata["target"].get<long long>();
    EXPECT_EQ(v.n, target) << e.solution;
    EXPECT_EQ(v.d, 1) << e.solution;
    auto nums = e.metadata["numbers"].get<std::vector<long long>>();
    std::multiset<long long> want(nums.begin(), nums.end()),
        got(p.literals.begin(), p.literals.end());
    EXPECT_EQ(got, want) << e.solution;
    EXPECT_GE(nums.size(), 3u);
    EXPECT_LE(nums.size(), 6u);
    EXPECT_EQ(e.answer.get<long long>(), target);
  }
}

TEST(TasksTest, DeterministicAndHeldOutIsDisjoint) {
  for (const char* family : {"arithmetic", "countdown"}) {
    TaskOptions o;
    o.family = family;
    o.min_size = 1;
    o.max_size = 2;
    o.seed = 11;
    auto a = GenerateTask(o, Split::kTrain, 3000);
    auto b = GenerateTask(o, Split::kTrain, 3000);
    auto eval = GenerateTask(o, Split::kEval, 200);
    ASSERT_TRUE(a.ok() && b.ok() && eval.ok());
    ASSERT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size(); ++i) {
      EXPECT_EQ((*a)[i].prompt, (*b)[i].prompt);
      EXPECT_EQ((*a)[i].solution, (*b)[i].solution);
    }
    std::set<std::string> train;
    for (const auto& e : *a) train.insert(e.prompt);
    std::set<std::string> held;
    for (const auto& e : *eval) {
      EXPECT_EQ(train.count(e.prompt), 0u) << family << ": " << e.prompt;
      EXPECT_TRUE(held.insert(e.prompt).second) << "duplicate held-out " << e.prompt;
    }
    EXPECT_GT(held.size(), 20u) << family;
    o.seed = 12;
    auto c = GenerateTask(o, Split::kTrain, 50);
    int same = 0;
    for (size_t i = 0; i < 50; ++i) same += (*c)[i].prompt == (*a)[i].prompt;
    EXPECT_LT(same, 25) << "another seed gives another order";
  }
}

TEST(TasksTest, ChainsGrowWithProblemSize) {
  std::map<int, double> mean_len;
  for (int size : {1, 3, 5}) {
    TaskOptions o;
    o.min_size = o.max_size = size;
    o.verbose_fraction = 1;
    o.brief_fraction = o.direct_fraction = 0;
    auto ex = GenerateTask(o, Split::kTrain, 300);
    ASSERT_TRUE(ex.ok());
    double total = 0;
    for (const auto& e : *ex) total += e.solution.size();
    mean_len[size] = total / ex->size();
  }
  EXPECT_GT(mean_len[3], 1.5 * mean_len[1]);
  EXPECT_GT(mean_len[5], 1.3 * mean_len[3]);
}

// The compact style writes the same column steps tersely: every line is a true equation, the
// last one is the problem with its answer, the problems are those of any other style mix, and
// the chains are far shorter than the verbose ones.
TEST(TasksTest, CompactSolutionsAreTrueColumnStepsAtAFractionOfTheLength) {
  TaskOptions verbose, compact;
  verbose.min_size = compact.min_size = 1;
  verbose.max_size = compact.max_size = 3;
  verbose.verbose_fraction = 1;
  verbose.brief_fraction = verbose.direct_fraction = 0;
  compact.verbose_fraction = compact.brief_fraction = compact.direct_fraction = 0;
  compact.compact_fraction = 1;
  auto v = GenerateTask(verbose, Split::kTrain, 300);
  auto c = GenerateTask(compact, Split::kTrain, 300);
  ASSERT_TRUE(v.ok() && c.ok());
  double len_v = 0, len_c = 0;
  for (size_t i = 0; i < c->size(); ++i) {
    const Example& e = (*c)[i];
    EXPECT_EQ(e.prompt, (*v)[i].prompt);
    len_v += static_cast<double>((*v)[i].solution.size());
    len_c += static_cast<double>(e.solution.size());
    const std::string& sol = e.solution;
    const size_t b = sol.find("<think>\n") + 8, end = sol.find("</think>");
    ASSERT_NE(end, std::string::npos) << sol;
    std::stringstream lines(sol.substr(b, end - b));
    std::string line, last;
    int n = 0;
    for (; std::getline(lines, line); ++n) {
      last = line;
      // "[x<y: ]lhs=rhs" where lhs is numbers joined by + - *; its value must equal rhs.
      const size_t colon = line.find(": ");
      const std::string eq = colon == std::string::npos ? line : line.substr(colon + 2);
      const size_t at = eq.find('=');
      ASSERT_NE(at, std::string::npos) << line;
      std::string lhs = eq.substr(0, at);
      const int64_t rhs = std::stoll(eq.substr(at + 1));
      int64_t value = 0, term = 0;
      char op = '+';
      for (size_t k = 0; k <= lhs.size(); ++k) {
        if (k < lhs.size() && std::isdigit(static_cast<unsigned char>(lhs[k]))) {
          term = term * 10 + (lhs[k] - '0');
          continue;
        }
        value = op == '+' ? value + term : op == '-' ? value - term : value * term;
        term = 0;
        if (k < lhs.size()) op = lhs[k];
      }
      EXPECT_EQ(value, rhs) << line << " in " << sol;
    }
    EXPECT_GE(n, 2) << sol;
    const std::string& meta_op = e.metadata["op"].get_ref<const std::string&>();
    EXPECT_EQ(last, std::to_string(e.metadata["a"].get<int64_t>()) + meta_op +
                        std::to_string(e.metadata["b"].get<int64_t>()) + "=" + e.answer.dump())
        << sol;
  }
  EXPECT_LT(len_c, 0.6 * len_v) << "compact " << len_c / 300 << " vs verbose " << len_v / 300;
}

TEST(TasksTest, BadOptionsAreErrors) {
  TaskOptions o;
  o.family = "sudoku";
  auto r = GenerateTask(o, Split::kTrain, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown task family 'sudoku'"), std::string::npos);
  o.family = "arithmetic";
  o.min_size = 3;
  o.max_size = 2;
  EXPECT_FALSE(GenerateTask(o, Split::kTrain, 1).ok());
  o.min_size = 1;
  o.max_size = 10;
  EXPECT_FALSE(GenerateTask(o, Split::kTrain, 1).ok());
  o.family = "countdown";
  o.max_size = 5;
  EXPECT_FALSE(GenerateTask(o, Split::kTrain, 1).ok());
}

}  // namespace
}  // namespace chainrl::data
