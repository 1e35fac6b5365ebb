// Train/inference mismatch at equal weights and per-token staleness (see policy_mismatch.h).
#include "learner/policy_mismatch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace chainrl::learner {
namespace {

constexpr double kSmallest = 1e-7;  // |x| below: the middle bin
constexpr int kPerDecade = 20;
constexpr int kDecades = 9;  // 1e-7 .. 1e2

std::string QuantileKey(double q) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "ratio_q%02d", static_cast<int>(std::lround(q * 100)));
  return buf;
}

}  // namespace

int PolicyMismatch::Bin(double x) {
  const double a = std::fabs(x);
  if (!(a >= kSmallest)) return kBinsPerSide;  // also NaN: the caller never passes one
  const int k = std::min(kPerDecade * kDecades,
                         static_cast<int>(std::floor(std::log10(a / kSmallest) * kPerDecade)));
  return x > 0 ? kBinsPerSide + 1 + k : kBinsPerSide - 1 - k;
}

void PolicyMismatch::BinRange(int bin, double* lo, double* hi) {
  if (bin == kBinsPerSide) {
    *lo = -kSmallest;
    *hi = kSmallest;
    return;
  }
  const int k = bin > kBinsPerSide ? bin - kBinsPerSide - 1 : kBinsPerSide - 1 - bin;
  const double inner = kSmallest * std::pow(10.0, static_cast<double>(k) / kPerDecade);
  const double outer = k >= kPerDecade * kDecades
                           ? inner
                           : kSmallest * std::pow(10.0, static_cast<double>(k + 1) / kPerDecade);
  if (bin > kBinsPerSide) {
    *lo = inner;
    *hi = outer;
  } else {
    *lo = -outer;
    *hi = -inner;
  }
}

void PolicyMismatch::AddRow(std::span<const float> learner, std::span<const float> behaviour,
                            const std::vector<VersionRun>& runs, int64_t version,
                            const MismatchBounds& bounds) {
  int64_t covered = 0;
  for (const VersionRun& r : runs) covered += r.length;
  if (covered != static_cast<int64_t>(behaviour.size()) || behaviour.empty()) return;
  const bool measure = learner.size() == behaviour.size();
  const double log_cap = std::log(bounds.is_cap);
  const double log_low = bounds.mask_low > 0 ? std::log(bounds.mask_low) : -INFINITY;
  const double log_high = std::log(bounds.mask_high);
  size_t t = 0;
  bool all_equal = true;
  double row_sum = 0;
  for (const VersionRun& r : runs) {
    const double lag = static_cast<double>(version - r.version);
    all_tokens_ += static_cast<double>(r.length);
    lag_sum_ += lag * static_cast<double>(r.length);
    lag_max_ = std::max(lag_max_, lag);
    if (r.version != version) {
      all_equal = false;
      t += static_cast<size_t>(r.length);
      continue;
    }
    for (int64_t j = 0; j < r.length; ++j, ++t) {
      if (!measure) continue;
      const double x = static_cast<double>(learner[t]) - static_cast<double>(behaviour[t]);
      const double xc = std::clamp(x, -20.0, 20.0);
      tokens_ += 1;
      k1_sum_ -= x;
      k3_sum_ += std::exp(xc) - 1.0 - xc;
      abs_sum_ += std::fabs(x);
      abs_max_ = std::max(abs_max_, std::fabs(x));
      token_over_cap_ += x > log_cap ? 1 : 0;
      token_outside_mask_ += (x < log_low || x > log_high) ? 1 : 0;
      bins_[Bin(x)] += 1;
      row_sum += x;
    }
  }
  if (!measure || !all_equal) return;
  const double n = static_cast<double>(behaviour.size());
  sequences_ += 1;
  seq_over_cap_ += row_sum > log_cap ? 1 : 0;
  seq_outside_mask_ += (row_sum < log_low || row_sum > log_high) ? 1 : 0;
  geo_outside_mask_ += (row_sum / n < log_low || row_sum / n > log_high) ? 1 : 0;
}

void PolicyMismatch::Merge(const PolicyMismatch& o) {
  std::vector<double> s = Sums(), m = Maxima();
  const std::vector<double> os = o.Sums(), om = o.Maxima();
  for (size_t i = 0; i < s.size(); ++i) s[i] += os[i];
  for (size_t i = 0; i < m.size(); ++i) m[i] = std::max(m[i], om[i]);
  FromReduced(s, m);
}

std::vector<double> PolicyMismatch::Sums() const {
  std::vector<double> s = {tokens_,           k1_sum_,         k3_sum_,
                           abs_sum_,          token_over_cap_, token_outside_mask_,
                           sequences_,        seq_over_cap_,   seq_outside_mask_,
                           geo_outside_mask_, all_tokens_,     lag_sum_};
  s.insert(s.end(), bins_.begin(), bins_.end());
  return s;
}

std::vector<double> PolicyMismatch::Maxima() const { return {abs_max_, lag_max_}; }

void PolicyMismatch::FromReduced(const std::vector<double>& s, const std::vector<double>& m) {
  double* fields[] = {&tokens_,           &k1_sum_,         &k3_sum_,
                      &abs_sum_,          &token_over_cap_, &token_outside_mask_,
                      &sequences_,        &seq_over_cap_,   &seq_outside_mask_,
                      &geo_outside_mask_, &all_tokens_,     &lag_sum_};
  size_t i = 0;
  for (double* f : fields) *f = s[i++];
  for (double& b : bins_) b = s[i++];
  abs_max_ = m[0];
  lag_max_ = m[1];
}

double PolicyMismatch::k1() const { return Frac(k1_sum_, tokens_); }
double PolicyMismatch::k3() const { return Frac(k3_sum_, tokens_); }
double PolicyMismatch::abs_mean() const { return Frac(abs_sum_, tokens_); }

double PolicyMismatch::RatioQuantile(double q) const {
  if (tokens_ <= 0) return 1.0;
  const double target = std::clamp(q, 0.0, 1.0) * tokens_;
  double below = 0;
  for (int b = 0; b < kBins; ++b) {
    const double n = bins_[b];
    if (n <= 0) continue;
    if (below + n >= target) {
      double lo, hi;
      BinRange(b, &lo, &hi);
      const double f = std::clamp((target - below) / n, 0.0, 1.0);
      return std::exp(lo + f * (hi - lo));
    }
    below += n;
  }
  double lo, hi;
  BinRange(kBins - 1, &lo, &hi);
  return std::exp(hi);
}

nlohmann::json PolicyMismatch::ToJson() const {
  nlohmann::json j = {{"tokens", tokens_},
                      {"equal_weight_fraction", equal_weight_fraction()},
                      {"k1", k1()},
                      {"k3", k3()},
                      {"abs_mean", abs_mean()},
                      {"abs_max", abs_max_}};
  for (double q : kMismatchQuantiles) j[QuantileKey(q)] = RatioQuantile(q);
  j["outside"] = {{"token_is_cap", token_is_cap()},       {"token_mask", token_mask()},
                  {"sequence_is_cap", sequence_is_cap()}, {"sequence_mask", sequence_mask()},
                  {"geometric_mask", geometric_mask()},   {"sequences", sequences_}};
  return j;
}

}  // namespace chainrl::learner
