// Built-in rewards and synthetic task verifiers (see builtin_rewards.h).
#include "rewards/builtin_rewards.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "rewards/math_answer.h"

namespace chainrl::rewards {
namespace {

using json = nlohmann::json;

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

RewardOutcome Ok(double score, std::string message = {}) {
  RewardOutcome o;
  o.score = score;
  o.message = std::move(message);
  return o;
}
RewardOutcome Fail(std::string message) {
  RewardOutcome o;
  o.error = RewardError::kPluginError;
  o.message = std::move(message);
  return o;
}

// Reads a reward's options table; every key must be consumed by a getter, else Finish() fails.
class Options {
 public:
  static Result<Options> Parse(const std::string& reward, const std::string& text) {
    Options o;
    o.reward_ = reward;
    try {
      o.table_ = toml::parse(text);
    } catch (const toml::parse_error& e) {
      std::ostringstream msg;
      msg << "reward '" << reward << "': options: line " << e.source().begin.line << ": "
          << e.description();
      return InvalidArgument(msg.str());
    }
    return o;
  }
  template <typename T>
  Status Get(const std::string& key, T* out) {
    used_.insert(key);
    const toml::node* n = table_.get(key);
    if (n == nullptr) return Status::Ok();
    if constexpr (std::is_same_v<T, double>) {
      if (auto v = n->value<double>()) {
        *out = *v;
        return Status::Ok();
      }
      return Bad(key, "a number");
    } else if constexpr (std::is_same_v<T, long long>) {
      if (auto v = n->value<int64_t>()) {
        *out = *v;
        return Status::Ok();
      }
      return Bad(key, "an integer");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = n->value<bool>()) {
        *out = *v;
        return Status::Ok();
      }
      return Bad(key, "true or false");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = n->value<std::string>()) {
        *out = *v;
        return Status::Ok();
      }
      return Bad(key, "a string");
    } else {
      const toml::array* arr = n->as_array();
      if (arr == nullptr) return Bad(key, "an array of strings");
      out->clear();
      for (const auto& el : *arr) {
        auto v = el.value<std::string>();
        if (!v) return Bad(key, "an array of strings");
        out->push_back(*v);
      }
      return Status::Ok();
    }
  }
  bool Has(const std::string& key) const { return table_.contains(key); }
  Status Finish() const {
    for (const auto& [k, v] : table_) {
      if (!used_.count(std::string(k.str())))
        return InvalidArgument("reward '" + reward_ + "': unknown option '" + std::string(k.str()) +
                               "'");
    }
    return Status::Ok();
  }

 private:
  Status Bad(const std::string& key, const char* what) const {
    return InvalidArgument("reward '" + reward_ + "': option '" + key + "' must be " + what);
  }
  std::string reward_;
  toml::table table_;
  std::set<std::string> used_;
};

// ---- math ----------------------------------------------------------------------------------
class MathReward : public BuiltinReward {
 public:
  explicit MathReward(double tol) : tol_(tol) {}
  RewardOutcome Score(const RewardInput& in) const override {
    auto ref = ReferenceAnswerFromJson(in.answer_json);
    if (!ref) return Fail("example has no usable reference answer: " + in.answer_json);
    ExtractedAnswer got = ExtractFinalAnswer(in.response);
    RewardOutcome o;
    o.components.emplace_back("answer_found", got.found ? 1.0 : 0.0);
    if (!got.found) {
      o.message = "no final answer found";
      return o;
    }
    bool match = AnswersMatch(got.text, *ref, tol_);
    o.score = match ? 1.0 : 0.0;
    if (!match)
      o.message = "answer '" + got.text + "' (" + got.method + ") != reference '" + *ref + "'";
    return o;
  }

 private:
  double tol_;
};

// ---- exact match ---------------------------------------------------------------------------
class ExactMatchReward : public BuiltinReward {
 public:
  ExactMatchReward(bool extract, bool case_sensitive)
      : extract_(extract), case_sensitive_(case_sensitive) {}
  RewardOutcome Score(const RewardInput& in) const override {
    json j = json::parse(in.answer_json, nullptr, false);
    std::string ref;
    if (j.is_string())
      ref = j.get<std::string>();
    else if (j.is_number())
      ref = j.dump();
    else
      return Fail("example has no string reference answer: " + in.answer_json);
    std::string got = Trim(in.response);
    if (extract_) {
      ExtractedAnswer a = ExtractFinalAnswer(in.response);
      if (!a.found) return Ok(0, "no final answer found");
      got = Trim(a.text);
    }
    ref = Trim(ref);
    if (!case_sensitive_) {
      for (char& c : got) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (char& c : ref) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (got == ref) return Ok(1);
    return Ok(0, "'" + got + "' != '" + ref + "'");
  }

 private:
  bool extract_, case_sensitive_;
};

// ---- regex ---------------------------------------------------------------------------------
class RegexReward : public BuiltinReward {
 public:
  ~RegexReward() override {
    if (code_) pcre2_code_free(code_);
  }
  static Result<std::unique_ptr<RegexReward>> Make(const std::string& reward,
                                                   const std::string& pattern, bool full) {
    auto r = std::make_unique<RegexReward>();
    int err = 0;
    PCRE2_SIZE off = 0;
    r->code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                             PCRE2_UTF | (full ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0), &err,
                             &off, nullptr);
    if (r->code_ == nullptr) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      return InvalidArgument("reward '" + reward + "': option 'pattern': " +
                             reinterpret_cast<char*>(buf) + " at offset " + std::to_string(off));
    }
    return r;
  }
  RewardOutcome Score(const RewardInput& in) const override {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(in.response.data()),
                         in.response.size(), 0, 0, md, nullptr);
    pcre2_match_data_free(md);
    if (rc >= 0) return Ok(1);
    if (rc == PCRE2_ERROR_NOMATCH) return Ok(0, "pattern does not match");
    return Fail("regex match failed with PCRE2 error " + std::to_string(rc));
  }

 private:
  pcre2_code* code_ = nullptr;
};

// ---- format --------------------------------------------------------------------------------
class FormatReward : public BuiltinReward {
 public:
  FormatReward(std::vector<std::string> tags, bool strict)
      : tags_(std::move(tags)), strict_(strict) {}
  RewardOutcome Score(const RewardInput& in) const override {
    const std::string& s = in.response;
    RewardOutcome o;
    size_t cursor = 0;
    bool all = true;
    std::string missing;
    for (size_t k = 0; k < tags_.size(); ++k) {
      std::string open = "<" + tags_[k] + ">", close = "</" + tags_[k] + ">";
      size_t a = s.find(open), b = s.find(close);
      bool ok = a != std::string::npos && b != std::string::npos && a + open.size() <= b &&
                a >= cursor && s.find(open, a + 1) == std::string::npos &&
                s.find(close, b + 1) == std::string::npos;
      if (ok && k == 0 && strict_) ok = Trim(s.substr(0, a)).empty();
      if (ok) cursor = b + close.size();
      o.components.emplace_back("format/" + tags_[k], ok ? 1.0 : 0.0);
      if (!ok) {
        all = false;
        missing += (missing.empty() ? "" : ", ") + open + "..." + close;
      }
    }
    o.score = all ? 1.0 : 0.0;
    if (!all) o.message = "missing or misplaced " + missing;
    return o;
  }

 private:
  std::vector<std::string> tags_;
  bool strict_;
};

// ---- length --------------------------------------------------------------------------------
class LengthReward : public BuiltinReward {
 public:
  LengthReward(long long target, long long max, bool zero_truncated)
      : target_(target), max_(max), zero_truncated_(zero_truncated) {}
  RewardOutcome Score(const RewardInput& in) const override {
    double n = static_cast<double>(in.token_ids.size());
    RewardOutcome o;
    o.components.emplace_back("tokens", n);
    if (zero_truncated_ && in.finish_reason == "length") {
      o.message = "truncated at the token budget";
      return o;
    }
    if (n <= target_)
      o.score = 1;
    else if (n >= max_)
      o.score = 0;
    else
      o.score = (max_ - n) / static_cast<double>(max_ - target_);
    return o;
  }

 private:
  long long target_, max_;
  bool zero_truncated_;
};

// ---- task ----------------------------------------------------------------------------------
class TaskReward : public BuiltinReward {
 public:
  explicit TaskReward(std::string default_task) : default_task_(std::move(default_task)) {}
  RewardOutcome Score(const RewardInput& in) const override {
    json meta = json::parse(in.metadata_json, nullptr, false);
    std::string task = default_task_;
    if (meta.is_object() && meta.contains("task") && meta["task"].is_string())
      task = meta["task"].get<std::string>();
    if (task.empty()) return Fail("example metadata has no \"task\" and no default_task is set");
    TaskVerdict v = VerifyTask(task, in.response, in.answer_json, in.metadata_json);
    if (v.error) return Fail(v.message);
    RewardOutcome o = Ok(v.score, v.message);
    return o;
  }

 private:
  std::string default_task_;
};

const char* const kKinds[] = {"math", "exact_match", "regex", "format", "length", "task"};

// The response's final answer for task verifiers.
std::string TaskAnswer(std::string_view response) {
  size_t close = response.rfind("</answer>");
  if (close != std::string_view::npos) {
    size_t open = response.rfind("<answer>", close);
    if (open != std::string_view::npos) return Trim(response.substr(open + 8, close - open - 8));
  }
  ExtractedAnswer a = ExtractFinalAnswer(response);
  if (a.found && a.method != "last_number") return Trim(a.text);
  std::string r = Trim(response);
  size_t nl = r.rfind('\n');
  return nl == std::string::npos ? r : Trim(std::string_view(r).substr(nl + 1));
}

// Recursive-descent evaluator over exact rationals.
class ExprParser {
 public:
  explicit ExprParser(std::string_view s) : s_(s) {}
  Result<ExpressionValue> Run() {
    ExpressionValue v;
    Rat r;
    if (!Expr(&r)) return InvalidArgument(error_);
    Skip();
    if (pos_ != s_.size())
      return InvalidArgument("unexpected '" + std::string(1, s_[pos_]) + "' at offset " +
                             std::to_string(pos_));
    v.numerator = r.n;
    v.denominator = r.d;
    v.literals = literals_;
    return v;
  }

 private:
  struct Rat {
    long long n = 0, d = 1;
  };
  static long long Gcd(long long a, long long b) {
    a = a < 0 ? -a : a;
    while (b) {
      long long t = a % b;
      a = b;
      b = t < 0 ? -t : t;
    }
    return a == 0 ? 1 : a;
  }
  bool Norm(long long n, long long d, Rat* out) {
    if (d == 0) return Error("division by zero");
    if (d < 0) {
      n = -n;
      d = -d;
    }
    long long g = Gcd(n, d);
    out->n = n / g;
    out->d = d / g;
    return true;
  }
  bool Mul(long long a, long long b, long long* out) {
    if (__builtin_mul_overflow(a, b, out)) return Error("overflow");
    return true;
  }
  bool Combine(char op, Rat a, Rat b, Rat* out) {
    long long x, y, z;
    switch (op) {
      case '+':
      case '-':
        if (!Mul(a.n, b.d, &x) || !Mul(b.n, a.d, &y) || !Mul(a.d, b.d, &z)) return false;
        if (op == '+' ? __builtin_add_overflow(x, y, &x) : __builtin_sub_overflow(x, y, &x))
          return Error("overflow");
        return Norm(x, z, out);
      case '*':
        if (!Mul(a.n, b.n, &x) || !Mul(a.d, b.d, &z)) return false;
        return Norm(x, z, out);
      default:
        if (!Mul(a.n, b.d, &x) || !Mul(a.d, b.n, &z)) return false;
        return Norm(x, z, out);
    }
  }
  bool Error(std::string m) {
    if (error_.empty()) error_ = std::move(m);
    return false;
  }
  void Skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  static char Op(char c) {
    if (c == 'x' || c == '\xd7') return '*';  // 'x' as times; U+00D7 arrives as UTF-8 bytes
    return c;
  }
  bool Expr(Rat* out) {
    if (!Term(out)) return false;
    for (;;) {
      Skip();
      if (pos_ >= s_.size() || (s_[pos_] != '+' && s_[pos_] != '-')) return true;
      char op = s_[pos_++];
      Rat r;
      if (!Term(&r) || !Combine(op, *out, r, out)) return false;
    }
  }
  bool Term(Rat* out) {
    if (!Factor(out)) return false;
    for (;;) {
      Skip();
      if (pos_ >= s_.size()) return true;
      char op = Op(s_[pos_]);
      if (s_.substr(pos_, 5) == "\\cdot" || s_.substr(pos_, 6) == "\\times") {
        pos_ += s_[pos_ + 1] == 'c' ? 5 : 6;
        op = '*';
      } else if (op == '*' || op == '/') {
        ++pos_;
      } else {
        return true;
      }
      Rat r;
      if (!Factor(&r) || !Combine(op, *out, r, out)) return false;
    }
  }
  bool Factor(Rat* out) {
    if (++depth_ > 200) return Error("expression nested too deeply");
    Skip();
    if (pos_ >= s_.size()) return Error("expression ends early");
    char c = s_[pos_];
    bool ok;
    if (c == '(') {
      ++pos_;
      ok = Expr(out);
      Skip();
      if (ok && (pos_ >= s_.size() || s_[pos_] != ')')) ok = Error("missing ')'");
      if (ok) ++pos_;
    } else if (c == '-') {
      ++pos_;
      ok = Factor(out);
      out->n = -out->n;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      long long v = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        if (__builtin_mul_overflow(v, 10LL, &v) ||
            __builtin_add_overflow(v, static_cast<long long>(s_[pos_] - '0'), &v))
          return Error("number too large");
        ++pos_;
      }
      literals_.push_back(v);
      out->n = v;
      out->d = 1;
      ok = true;
    } else {
      ok = Error("unexpected '" + std::string(1, c) + "' at offset " + std::to_string(pos_));
    }
    --depth_;
    return ok;
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::string error_;
  std::vector<long long> literals_;
};

TaskVerdict Verdict(double score, std::string message = {}) {
  return {score, std::move(message), false};
}
TaskVerdict Malformed(std::string message) { return {0, std::move(message), true}; }

TaskVerdict VerifyCountdown(std::string_view response, const json& meta) {
  if (!meta.is_object() || !meta.contains("numbers") || !meta["numbers"].is_array() ||
      !meta.contains("target") || !meta["target"].is_number_integer())
    return Malformed("countdown example needs metadata {\"numbers\": [...], \"target\": int}");
  std::vector<long long> numbers;
  for (const auto& n : meta["numbers"]) {
    if (!n.is_number_integer()) return Malformed("countdown metadata \"numbers\" must be integers");
    numbers.push_back(n.get<long long>());
  }
  long long target = meta["target"].get<long long>();
  bool use_all = !meta.contains("use_all") || meta["use_all"] == true;
  std::string expr = TaskAnswer(response);
  size_t eq = expr.find('=');
  if (eq != std::string::npos) expr = Trim(std::string_view(expr).substr(0, eq));
  auto v = EvaluateExpression(expr);
  if (!v.ok()) return Verdict(0, "expression '" + expr + "': " + v.status().message());
  std::multiset<long long> avail(numbers.begin(), numbers.end());
  for (long long lit : v->literals) {
    auto it = avail.find(lit);
    if (it == avail.end()) return Verdict(0, "uses " + std::to_string(lit) + " not available");
    avail.erase(it);
  }
  if (use_all && !avail.empty()) return Verdict(0, "does not use every number");
  if (v->denominator != 1 || v->numerator != target) {
    return Verdict(0, "'" + expr + "' = " + std::to_string(v->numerator) +
                          (v->denominator != 1 ? "/" + std::to_string(v->denominator) : "") +
                          ", target " + std::to_string(target));
  }
  return Verdict(1);
}

std::optional<std::vector<long long>> ParseIntList(std::string_view s) {
  std::vector<long long> out;
  std::string cur;
  auto flush = [&]() -> bool {
    if (cur.empty()) return true;
    if (cur == "-") return false;
    out.push_back(std::stoll(cur));
    cur.clear();
    return true;
  };
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && cur.empty())) {
      cur.push_back(c);
      if (cur.size() > 18) return std::nullopt;
    } else if (c == ',' || c == ' ' || c == '[' || c == ']' || c == '\t' || c == '\n') {
      if (!flush()) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  if (!flush()) return std::nullopt;
  return out;
}

}  // namespace

bool IsBuiltinRewardKind(std::string_view kind) {
  for (const char* k : kKinds)
    if (kind == k) return true;
  return false;
}

Result<ExpressionValue> EvaluateExpression(std::string_view expression) {
  return ExprParser(expression).Run();
}

TaskVerdict VerifyTask(std::string_view task, std::string_view response,
                       std::string_view answer_json, std::string_view metadata_json) {
  json answer = json::parse(answer_json, nullptr, false);
  json meta = json::parse(metadata_json, nullptr, false);
  if (task == "arithmetic") {
    auto ref = ReferenceAnswerFromJson(answer_json);
    if (!ref) return Malformed("arithmetic example has no reference answer");
    std::string got = TaskAnswer(response);
    ExtractedAnswer a = ExtractFinalAnswer(got);
    if (a.found) got = a.text;
    if (AnswersMatch(got, *ref)) return Verdict(1);
    return Verdict(0, "answer '" + got + "' != reference '" + *ref + "'");
  }
  if (task == "countdown") return VerifyCountdown(response, meta);
  if (task == "sort") {
    if (!answer.is_array()) return Malformed("sort example needs an array answer");
    std::vector<long long> ref;
    for (const auto& x : answer) {
      if (!x.is_number_integer()) return Malformed("sort answer must be integers");
      ref.push_back(x.get<long long>());
    }
    std::string got = TaskAnswer(response);
    auto list = ParseIntList(got);
    if (!list) return Verdict(0, "answer '" + got + "' is not a list of integers");
    if (*list == ref) return Verdict(1);
    return Verdict(0, "list differs from the sorted reference");
  }
  if (task == "reverse" || task == "copy") {
    if (!answer.is_string()) return Malformed(std::string(task) + " example needs a string answer");
    std::string got = TaskAnswer(response);
    if (got == Trim(answer.get<std::string>())) return Verdict(1);
    return Verdict(0, "'" + got + "' != reference");
  }
  return Malformed("unknown synthetic task '" + std::string(task) +
                   "' (known: arithmetic, countdown, sort, reverse, copy)");
}

Result<std::unique_ptr<BuiltinReward>> MakeBuiltinReward(const std::string& reward_name,
                                                         const std::string& kind,
                                                         const std::string& options_toml) {
  CHAINRL_ASSIGN_OR_RETURN(Options opt, Options::Parse(reward_name, options_toml));
  std::unique_ptr<BuiltinReward> out;
  if (kind == "math") {
    double tol = 1e-9;
    CHAINRL_RETURN_IF_ERROR(opt.Get("relative_tolerance", &tol));
    if (!(tol >= 0)) return InvalidArgument("reward '" + reward_name + "': relative_tolerance < 0");
    out = std::make_unique<MathReward>(tol);
  } else if (kind == "exact_match") {
    bool extract = true, cs = true;
    CHAINRL_RETURN_IF_ERROR(opt.Get("extract", &extract));
    CHAINRL_RETURN_IF_ERROR(opt.Get("case_sensitive", &cs));
    out = std::make_unique<ExactMatchReward>(extract, cs);
  } else if (kind == "regex") {
    std::string pattern;
    bool full = false;
    CHAINRL_RETURN_IF_ERROR(opt.Get("pattern", &pattern));
    CHAINRL_RETURN_IF_ERROR(opt.Get("full_match", &full));
    if (!opt.Has("pattern"))
      return InvalidArgument("reward '" + reward_name + "': option 'pattern' is required");
    CHAINRL_ASSIGN_OR_RETURN(auto r, RegexReward::Make(reward_name, pattern, full));
    out = std::move(r);
  } else if (kind == "format") {
    std::vector<std::string> tags = {"think"};
    bool strict = false;
    CHAINRL_RETURN_IF_ERROR(opt.Get("tags", &tags));
    CHAINRL_RETURN_IF_ERROR(opt.Get("strict", &strict));
    if (tags.empty())
      return InvalidArgument("reward '" + reward_name + "': option 'tags' is empty");
    for (const auto& t : tags) {
      if (t.empty() || t.find_first_of("<>/ ") != std::string::npos)
        return InvalidArgument("reward '" + reward_name + "': bad tag name '" + t + "'");
    }
    out = std::make_unique<FormatReward>(tags, strict);
  } else if (kind == "length") {
    long long target = -1, max = -1;
    bool zero = true;
    CHAINRL_RETURN_IF_ERROR(opt.Get("target_tokens", &target));
    CHAINRL_RETURN_IF_ERROR(opt.Get("max_tokens", &max));
    CHAINRL_RETURN_IF_ERROR(opt.Get("zero_when_truncated", &zero));
    if (target <= 0)
      return InvalidArgument("reward '" + reward_name +
                             "': option 'target_tokens' is required and must be > 0");
    if (max < 0) max = 2 * target;
    if (max <= target)
      return InvalidArgument("reward '" + reward_name + "': max_tokens must exceed target_tokens");
    out = std::make_unique<LengthReward>(target, max, zero);
  } else if (kind == "task") {
    std::string def;
    CHAINRL_RETURN_IF_ERROR(opt.Get("default_task", &def));
    out = std::make_unique<TaskReward>(def);
  } else {
    return InvalidArgument("reward '" + reward_name + "': unknown kind '" + kind +
                           "' (built-ins: math, exact_match, regex, format, length, task; or "
                           "\"plugin\")");
  }
  CHAINRL_RETURN_IF_ERROR(opt.Finish());
  return out;
}

}  // namespace chainrl::rewards
