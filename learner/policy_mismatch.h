// What separates the policy that sampled a step's tokens from the policy that trains on them,
// measured in two parts (docs/ALGORITHMS.md §2.2): the numerical train/inference mismatch, on the
// tokens sampled by exactly the weights the learner holds before the update ("equal weights"),
// and staleness, the policy versions each token lags the learner. Additive over rows and ranks
// (Merge, Sums/FromSums). No LibTorch.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace chainrl::learner {

// A run of consecutive response tokens sampled by one policy version.
struct VersionRun {
  int64_t version = 0;
  int64_t length = 0;
};

// The bounds of the rollout corrections (algorithm.rollout_is_cap, rollout_mask_low/high) the
// fractions outside are counted against, whether or not a correction is on.
struct MismatchBounds {
  double is_cap = 2.0;
  double mask_low = 0.5, mask_high = 2.0;
};

// The quantiles of the learner-to-sampler probability ratio that are reported.
inline constexpr std::array<double, 5> kMismatchQuantiles = {0.01, 0.1, 0.5, 0.9, 0.99};

class PolicyMismatch {
 public:
  // Bins of the log-ratio histogram: |x| < 1e-7 in the middle bin; each side 20 bins per decade
  // from 1e-7 to 1e2 and one bin beyond. Quantiles are read from it, so they are exact to the
  // width of a bin (12% of |log ratio|), whatever the number of tokens or ranks.
  static constexpr int kBinsPerSide = 181;
  static constexpr int kBins = 2 * kBinsPerSide + 1;

  // One response: `learner` the learner's logprobs before the update, `behaviour` the sampler's,
  // `runs` the version of each token (covering every token, else the row counts as unknown:
  // staleness and mismatch skip it), `version` the learner's policy version before the update.
  // x_t = learner_t − behaviour_t and ρ_t = exp(x_t) over the tokens with version == `version`;
  // a row all of whose tokens are at equal weights also counts for the sequence bounds.
  // `learner` may be empty (no recomputation): only staleness is counted.
  void AddRow(std::span<const float> learner, std::span<const float> behaviour,
              const std::vector<VersionRun>& runs, int64_t version, const MismatchBounds& bounds);
  void Merge(const PolicyMismatch& o);

  // The figures as one vector of sums and one of maxima, for an all-reduce across ranks.
  std::vector<double> Sums() const;
  std::vector<double> Maxima() const;
  void FromReduced(const std::vector<double>& sums, const std::vector<double>& maxima);

  double tokens() const { return tokens_; }  // at equal weights
  double k1() const;                         // mean of −x = ℓ_sampler − ℓ_learner
  double k3() const;                         // mean of ρ − 1 − x (x clamped to ±20)
  double abs_mean() const;
  double abs_max() const { return abs_max_; }
  // The q-quantile of ρ over the equal-weight tokens (1 when there are none), interpolated
  // inside its histogram bin.
  double RatioQuantile(double q) const;
  // Fractions of equal-weight tokens with ρ > C, with ρ outside [low, high]; of equal-weight
  // sequences with Π ρ > C, with Π ρ outside [low, high], with exp(mean x) outside [low, high].
  double token_is_cap() const { return Frac(token_over_cap_, tokens_); }
  double token_mask() const { return Frac(token_outside_mask_, tokens_); }
  double sequence_is_cap() const { return Frac(seq_over_cap_, sequences_); }
  double sequence_mask() const { return Frac(seq_outside_mask_, sequences_); }
  double geometric_mask() const { return Frac(geo_outside_mask_, sequences_); }
  double sequences() const { return sequences_; }

  // Staleness over every token of known version.
  double stale_tokens() const { return all_tokens_; }
  double staleness_mean() const { return Frac(lag_sum_, all_tokens_); }
  double staleness_max() const { return lag_max_; }
  double equal_weight_fraction() const { return Frac(tokens_, all_tokens_); }

  // {"tokens", "equal_weight_fraction", "k1", "k3", "abs_mean", "abs_max", "ratio_q01", ...
  // "ratio_q99", "outside": {"token_is_cap", ...}} for the step history.
  nlohmann::json ToJson() const;

  // The bin of log ratio x, and the x range [lo, hi) of a bin (the outer bins end at ±100).
  static int Bin(double x);
  static void BinRange(int bin, double* lo, double* hi);

 private:
  static double Frac(double a, double b) { return b > 0 ? a / b : 0; }
  double tokens_ = 0, k1_sum_ = 0, k3_sum_ = 0, abs_sum_ = 0, abs_max_ = 0;
  double token_over_cap_ = 0, token_outside_mask_ = 0;
  double sequences_ = 0, seq_over_cap_ = 0, seq_outside_mask_ = 0, geo_outside_mask_ = 0;
  double all_tokens_ = 0, lag_sum_ = 0, lag_max_ = 0;
  std::array<double, kBins> bins_{};
};

}  // namespace chainrl::learner
