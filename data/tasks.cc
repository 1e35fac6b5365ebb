// Built-in synthetic tasks: multi-digit arithmetic and countdown, with worked solutions.
#include "data/tasks.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <unordered_set>

namespace chainrl::data {
namespace {

// splitmix64: a small, portable generator, so datasets are identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi], without modulo bias.
  int64_t Uniform(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t x;
    do x = Next();
    while (x >= limit);
    return lo + static_cast<int64_t>(x % span);
  }
  double Unit() { return (Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_;
};

uint64_t Hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, then a splitmix finaliser
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return Rng(h).Next();
}

// One problem in eight is held out.
Split SplitOf(const std::string& key) { return Hash(key) % 8 == 0 ? Split::kEval : Split::kTrain; }

enum class Style { kVerbose, kCompact, kBrief, kDirect };

Style PickStyle(const TaskOptions& o, Rng& rng) {
  double total = o.verbose_fraction + o.compact_fraction + o.brief_fraction + o.direct_fraction;
  double u = rng.Unit() * total;  // drawn whatever the mix, so the problems do not depend on it
  if (total <= 0) return Style::kVerbose;
  if (u < o.verbose_fraction) return Style::kVerbose;
  if (u < o.verbose_fraction + o.compact_fraction) return Style::kCompact;
  if (u < o.verbose_fraction + o.compact_fraction + o.brief_fraction) return Style::kBrief;
  return Style::kDirect;
}

std::string Wrap(const std::string& think, const std::string& answer) {
  if (think.empty()) return "<answer>" + answer + "</answer>";
  return "<think>\n" + think + "</think>\n<answer>" + answer + "</answer>";
}

int64_t RandomWithDigits(Rng& rng, int digits) {
  int64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  int64_t hi = lo * 10 - 1;
  if (digits == 1) lo = 0;
  return rng.Uniform(lo, hi);
}

int Digit(int64_t x, int i) {
  for (int k = 0; k < i; ++k) x /= 10;
  return static_cast<int>(x % 10);
}

int NumDigits(int64_t x) {
  int n = 1;
  while (x >= 10) x /= 10, ++n;
  return n;
}

std::string S(int64_t x) { return std::to_string(x); }

std::string AdditionSteps(int64_t a, int64_t b) {
  std::string t = "Add " + S(a) + " and " + S(b) + " column by column from the right.\n";
  int n = std::max(NumDigits(a), NumDigits(b));
  int carry = 0;
  for (int i = 0; i < n; ++i) {
    int x = Digit(a, i), y = Digit(b, i), s = x + y + carry;
    t += S(x) + " + " + S(y) + (carry ? " + 1" : "") + " = " + S(s) + ", write " + S(s % 10);
    carry = s / 10;
    t += carry ? ", carry 1.\n" : ".\n";
  }
  if (carry) t += "Write the final carry 1.\n";
  return t + "So " + S(a) + " + " + S(b) + " = " + S(a + b) + ".\n";
}

std::string SubtractionSteps(int64_t a, int64_t b) {  // REQUIRES a >= b
  std::string t = "Subtract " + S(b) + " from " + S(a) + " column by column from the right.\n";
  int n = NumDigits(a), borrow = 0;
  for (int i = 0; i < n; ++i) {
    int x = Digit(a, i) - borrow, y = Digit(b, i);
    std::string lhs = S(Digit(a, i)) + (borrow ? " - 1" : "");
    if (x < y) {
      t += lhs + " is less than " + S(y) + ", borrow: " + S(x + 10) + " - " + S(y) + " = " +
           S(x + 10 - y) + ", write " + S(x + 10 - y) + ".\n";
      borrow = 1;
    } else {
      t += lhs + " - " + S(y) + " = " + S(x - y) + ", write " + S(x - y) + ".\n";
      borrow = 0;
    }
  }
  return t + "So " + S(a) + " - " + S(b) + " = " + S(a - b) + ".\n";
}

// The same column steps as AdditionSteps / SubtractionSteps / MultiplicationSteps in terse
// notation: one line per column ("7+5=12", "3+4+1=8"; "2-1<7: 11-7=4" for a borrow), then the
// result. About a third of the tokens, and the same per-digit work.
std::string CompactSteps(int64_t a, int64_t b, int op) {
  std::string t;
  if (op == 0) {
    int n = std::max(NumDigits(a), NumDigits(b)), carry = 0;
    for (int i = 0; i < n; ++i) {
      int x = Digit(a, i), y = Digit(b, i), s = x + y + carry;
      t += S(x) + "+" + S(y) + (carry ? "+1" : "") + "=" + S(s) + "\n";
      carry = s / 10;
    }
    return t + S(a) + "+" + S(b) + "=" + S(a + b) + "\n";
  }
  if (op == 1) {
    int n = NumDigits(a), borrow = 0;
    for (int i = 0; i < n; ++i) {
      int x = Digit(a, i) - borrow, y = Digit(b, i);
      std::string lhs = S(Digit(a, i)) + (borrow ? "-1" : "");
      if (x < y) {
        t += lhs + "<" + S(y) + ": " + S(x + 10) + "-" + S(y) + "=" + S(x + 10 - y) + "\n";
        borrow = 1;
      } else {
        t += lhs + "-" + S(y) + "=" + S(x - y) + "\n";
        borrow = 0;
      }
    }
    return t + S(a) + "-" + S(b) + "=" + S(a - b) + "\n";
  }
  int64_t place = 1, total = 0;
  for (int i = 0; i < NumDigits(b); ++i, place *= 10) {
    int64_t part = a * Digit(b, i) * place;
    t += S(a) + "*" + S(Digit(b, i) * place) + "=" + S(part) + "\n";
    total += part;
  }
  return t + S(a) + "*" + S(b) + "=" + S(total) + "\n";
}

std::string MultiplicationSteps(int64_t a, int64_t b) {
  std::string t = "Multiply " + S(a) + " by each digit of " + S(b) + " and add the parts.\n";
  int64_t place = 1, total = 0;
  int n = NumDigits(b);
  for (int i = 0; i < n; ++i, place *= 10) {
    int d = Digit(b, i);
    int64_t part = a * d * place;
    t += S(a) + " * " + S(d * place) + " = " + S(part) + ".\n";
    if (i > 0) t += S(total) + " + " + S(part) + " = " + S(total + part) + ".\n";
    total += part;
  }
  return t + "So " + S(a) + " * " + S(b) + " = " + S(a * b) + ".\n";
}

bool MakeArithmetic(const TaskOptions& o, Rng& rng, Example* ex, std::string* key) {
  int da = static_cast<int>(rng.Uniform(o.min_size, o.max_size));
  int db = static_cast<int>(rng.Uniform(o.min_size, o.max_size));
  int64_t a = RandomWithDigits(rng, da), b = RandomWithDigits(rng, db);
  int op = 0;
  if (o.ops == "+-*") {
    op = static_cast<int>(rng.Uniform(0, 2));
  } else {
    const char c = o.ops[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(o.ops.size()) - 1))];
    op = c == '+' ? 0 : c == '-' ? 1 : 2;
  }
  const char* sym = op == 0 ? "+" : op == 1 ? "-" : "*";
  if (op == 1 && a < b) std::swap(a, b);
  int64_t result = op == 0 ? a + b : op == 1 ? a - b : a * b;
  *key = "arithmetic:" + S(a) + sym + S(b);
  Style style = PickStyle(o, rng);
  std::string think;
  if (style == Style::kVerbose) {
    think = op == 0   ? AdditionSteps(a, b)
            : op == 1 ? SubtractionSteps(a, b)
                      : MultiplicationSteps(a, b);
  } else if (style == Style::kCompact) {
    think = CompactSteps(a, b, op);
  } else if (style == Style::kBrief) {
    think = S(a) + " " + sym + " " + S(b) + " = " + S(result) + ".\n";
  }
  ex->prompt = "What is " + S(a) + " " + sym + " " + S(b) + "?";
  ex->answer = result;
  ex->metadata = {{"task", "arithmetic"}, {"a", a}, {"b", b}, {"op", sym}};
  ex->solution = Wrap(think, S(result));
  ex->difficulty = "d" + S(std::max(da, db));
  return true;
}

struct Term {
  int64_t value;
  std::string text;
  int prec;  // 1: + -, 2: * /, 3: a number
};

std::string Operand(const Term& t, int op_prec, bool right, char op) {
  bool paren = t.prec < op_prec || (right && t.prec == op_prec && (op == '-' || op == '/'));
  return paren ? "(" + t.text + ")" : t.text;
}

bool MakeCountdown(const TaskOptions& o, Rng& rng, Example* ex, std::string* key) {
  int size = static_cast<int>(rng.Uniform(o.min_size, o.max_size));
  int n = size + 2;
  std::vector<int64_t> numbers(n);
  for (auto& x : numbers) x = rng.Uniform(1, 20);
  std::vector<Term> pool;
  for (auto x : numbers) pool.push_back({x, S(x), 3});
  std::string steps;
  while (pool.size() > 1) {
    size_t i = static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(pool.size()) - 1));
    Term a = pool[i];
    pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(i));
    size_t j = static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(pool.size()) - 1));
    Term b = pool[j];
    pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(j));
    if (a.value < b.value) std::swap(a, b);
    std::vector<char> ops = {'+'};
    if (a.value > b.value) ops.push_back('-');
    if (a.value * b.value <= 5000 && b.value > 1) ops.push_back('*');
    if (b.value > 1 && a.value % b.value == 0) ops.push_back('/');
    char op = ops[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(ops.size()) - 1))];
    int prec = (op == '+' || op == '-') ? 1 : 2;
    int64_t v = op == '+'   ? a.value + b.value
                : op == '-' ? a.value - b.value
                : op == '*' ? a.value * b.value
                            : a.value / b.value;
    steps += S(a.value) + " " + op + " " + S(b.value) + " = " + S(v) + "\n";
    pool.push_back(
        {v, Operand(a, prec, false, op) + " " + op + " " + Operand(b, prec, true, op), prec});
  }
  int64_t target = pool[0].value;
  if (target < 1 || target > 999) return false;
  std::vector<int64_t> shown = numbers;
  std::sort(shown.begin(), shown.end());
  std::string list;
  for (size_t i = 0; i < shown.size(); ++i) list += (i ? ", " : "") + S(shown[i]);
  *key = "countdown:" + list + "=" + S(target);
  Style style = PickStyle(o, rng);
  std::string think = style == Style::kVerbose || style == Style::kCompact ? steps : "";
  ex->prompt = "Using the numbers [" + list +
               "], each exactly once, with + - * / and "
               "parentheses, make " +
               S(target) + ".";
  ex->answer = target;
  ex->metadata = {{"task", "countdown"}, {"numbers", shown}, {"target", target}, {"use_all", true}};
  ex->solution = Wrap(think, pool[0].text);
  ex->difficulty = "n" + S(n);
  return true;
}

}  // namespace

const std::vector<std::string>& TaskFamilies() {
  static const std::vector<std::string> families = {"arithmetic", "countdown"};
  return families;
}

Result<std::vector<Example>> GenerateTask(const TaskOptions& o, Split split, int64_t count) {
  int max_allowed = 0;
  if (o.family == "arithmetic") max_allowed = 9;
  if (o.family == "countdown") max_allowed = 4;
  if (max_allowed == 0)
    return InvalidArgument("unknown task family '" + o.family +
                           "' (expected arithmetic or countdown)");
  if (o.min_size < 1 || o.max_size > max_allowed || o.min_size > o.max_size)
    return InvalidArgument("task " + o.family + ": sizes [" + S(o.min_size) + ", " + S(o.max_size) +
                           "] must satisfy 1 <= min <= max <= " + S(max_allowed));
  if (count < 0) return InvalidArgument("negative example count");
  if (o.family == "arithmetic" &&
      (o.ops.empty() || o.ops.find_first_not_of("+-*") != std::string::npos))
    return InvalidArgument("task arithmetic: ops '" + o.ops +
                           "' must be a non-empty subset of \"+-*\"");
  Rng rng(o.seed * 0x2545F4914F6CDD1Dull + (split == Split::kTrain ? 1 : 2) + Hash(o.family));
  std::vector<Example> out;
  out.reserve(static_cast<size_t>(count));
  std::unordered_set<std::string> seen;
  const int64_t max_attempts = count * 200 + 10000;
  for (int64_t attempt = 0; attempt < max_attempts && static_cast<int64_t>(out.size()) < count;
       ++attempt) {
    Example ex;
    std::string key;
    bool ok = o.family == "arithmetic" ? MakeArithmetic(o, rng, &ex, &key)
                                       : MakeCountdown(o, rng, &ex, &key);
    if (!ok || SplitOf(key) != split) continue;
    if (split == Split::kEval && !seen.insert(key).second) continue;
    ex.id = std::string(split == Split::kTrain ? "train-" : "eval-") +
            S(static_cast<int64_t>(out.size()));
    ex.source = "task:" + o.family;
    out.push_back(std::move(ex));
  }
  return out;
}

TaskOptions TaskOptionsFromConfig(const Config& c) {
  TaskOptions o;
  o.family = c.GetString("data.task");
  o.min_size = static_cast<int>(c.GetInt("data.task_min_size"));
  o.max_size = static_cast<int>(c.GetInt("data.task_max_size"));
  o.ops = c.GetString("data.task_ops");
  o.verbose_fraction = c.GetFloat("data.task_verbose_fraction");
  o.compact_fraction = c.GetFloat("data.task_compact_fraction");
  o.brief_fraction = c.GetFloat("data.task_brief_fraction");
  o.direct_fraction = c.GetFloat("data.task_direct_fraction");
  o.seed = static_cast<uint64_t>(c.GetInt("run.seed"));
  return o;
}

}  // namespace chainrl::data
