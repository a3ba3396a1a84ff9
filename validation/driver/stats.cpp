// Mode S: unbiasedness of the stochastic compressors (style.md B4 "Statistical tests").
//
// Every compressor tested here maps element j to one of two values {a_j, b_j} around its
// expectation t_j (QSGD/TernGrad levels, randk's {0, (n/k) x_j}), so its variance is exactly
// (b_j - t_j)(t_j - a_j) once both values were observed; qsgd_randk's three values {0, a, b}
// fall back to the empirical variance. Elements that showed one value only are either exact
// (value == target) or rare events; they are covered by the two aggregate sums.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "validate.hpp"

namespace gradcomp::validation {

double bonferroni_z(double alpha, double tests) {
  // Solve erfc(z / sqrt 2) = alpha / tests by bisection (monotone, no table needed).
  const double p = alpha / std::max(tests, 1.0);
  double lo = 0.0;
  double hi = 40.0;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (std::erfc(mid / std::sqrt(2.0)) > p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

std::string statistical_unsupported(const CompressorDesc& desc) {
  switch (desc.kind) {
    case CompressorKind::kQsgd: return "";
    case CompressorKind::kRandK: return "";
    case CompressorKind::kTernGrad:
      return desc.clip == 0.0 ? "" : "terngrad is unbiased for the clipped input: use clip=0";
    case CompressorKind::kQsgdTopK:
    case CompressorKind::kQsgdRandK: return "";
    default: return std::string(compressor_name(desc.kind)) + " is not a stochastic compressor";
  }
}

namespace {

// Two-sided exact binomial p-value of k successes in T trials with success probability p:
// the normal approximation is wrong for the rare events of random-k (p = k/n, a few hits).
double binomial_two_sided(std::uint32_t k, std::uint32_t T, double p) {
  if (p <= 0.0) return k == 0 ? 1.0 : 0.0;
  if (p >= 1.0) return k == T ? 1.0 : 0.0;
  const double lp = std::log(p);
  const double lq = std::log1p(-p);
  double lower = 0.0;  // P(X <= k)
  double upper = 0.0;  // P(X >= k)
  for (std::uint32_t i = 0; i <= T; ++i) {
    const double pmf = std::exp(std::lgamma(T + 1.0) - std::lgamma(i + 1.0) -
                                std::lgamma(double(T - i) + 1.0) + i * lp + (T - i) * lq);
    if (i <= k) lower += pmf;
    if (i >= k) upper += pmf;
  }
  return std::min(1.0, 2.0 * std::min(lower, upper));
}

double sum_target(Span<const double> target, const std::vector<double>& weights) {
  double s = 0;
  for (std::size_t j = 0; j < target.size(); ++j) s += weights[j] * target[j];
  return s;
}

}  // namespace

StatResult check_unbiased(Span<const double> samples, std::uint32_t trials,
                          Span<const double> target) {
  StatResult r;
  const std::size_t n = target.size();
  if (n == 0 || trials < 2) return r;
  const double T = trials;
  // Tests: n per-element z-scores, mean z^2, two aggregates.
  const double z_crit = bonferroni_z(kStatAlpha, double(n) + 3.0);
  double sum_z2 = 0;
  for (std::size_t j = 0; j < n; ++j) {
    double lo = samples[j];
    double hi = samples[j];
    double mean = 0;
    double m2 = 0;
    std::uint32_t distinct_extra = 0;  // values other than lo/hi seen (a third support point)
    for (std::uint32_t t = 0; t < trials; ++t) {
      const double v = samples[std::size_t(t) * n + j];
      if (v != lo && v != hi) {
        if (v < lo) {
          if (hi != lo) ++distinct_extra;
          lo = v;
        } else if (v > hi) {
          if (hi != lo) ++distinct_extra;
          hi = v;
        } else {
          ++distinct_extra;
        }
      }
      const double d = v - mean;
      mean += d / (t + 1);
      m2 += d * (v - mean);
    }
    const double tj = target[j];
    if (lo == hi) {
      // One value only: exact elements must hit the target; rare events are left to the sums.
      if (lo == tj) continue;
      if (lo != 0.0 && tj != 0.0 && (lo > 0) != (tj > 0)) {
        // A single value of the wrong sign can never average to the target.
        ++r.nerr;
        if (r.first.size() < kMaxMismatchesShown)
          r.first.push_back({j, tj, mean, std::abs(mean - tj), INFINITY});
      }
      continue;
    }
    const double var = distinct_extra == 0 ? (hi - tj) * (tj - lo) : m2 / (T - 1);
    if (!(var > 0)) {
      // Target outside the observed support: biased (or an extreme rare event).
      ++r.nerr;
      if (r.first.size() < kMaxMismatchesShown)
        r.first.push_back({j, tj, mean, std::abs(mean - tj), INFINITY});
      continue;
    }
    const double z = (mean - tj) / std::sqrt(var / T);
    r.max_z = std::max(r.max_z, std::abs(z));
    bool biased = std::abs(z) > z_crit;
    if (distinct_extra == 0) {
      // Two-point law: the number of `hi` draws is Binomial(T, p_hi) exactly.
      const double p_hi = (tj - lo) / (hi - lo);
      const auto hits = static_cast<std::uint32_t>(std::lround((mean - lo) / (hi - lo) * T));
      biased = binomial_two_sided(hits, trials, p_hi) < kStatAlpha / (double(n) + 3.0);
      // Mean z^2 only over elements where the normal approximation holds (both outcomes
      // expected >= 5 times); conditioning on rare hits would inflate it.
      if (std::min(p_hi, 1.0 - p_hi) * T >= 5.0) {
        ++r.resolved;
        sum_z2 += z * z;
      }
    } else {
      ++r.resolved;
      sum_z2 += z * z;
    }
    if (biased) {
      ++r.nerr;
      if (r.first.size() < kMaxMismatchesShown)
        r.first.push_back({j, tj, mean, std::abs(mean - tj), z});
    }
  }
  if (r.resolved > 0) r.mean_z2 = sum_z2 / double(r.resolved);
  if (r.nerr > 0) {
    r.ok = false;
    r.reason = std::to_string(r.nerr) + " elements biased beyond z_crit=" + std::to_string(z_crit);
    return r;
  }
  // Mean z^2 should be 1 within c * sqrt(2 / resolved) (c = z_crit: Bonferroni over the tests).
  if (r.resolved >= 30) {
    const double band = z_crit * std::sqrt(2.0 / double(r.resolved)) + 2.0 / T;
    if (std::abs(r.mean_z2 - 1.0) > band) {
      r.ok = false;
      r.reason = "mean z^2 = " + std::to_string(r.mean_z2) + " outside 1 +- " +
                 std::to_string(band) + " (variance does not match the two-point law)";
      return r;
    }
  }
  // Two aggregates over every element (rare events included): the plain sum and a +-1 weighted
  // sum. Their per-trial values are sums of many terms, close to normal.
  for (int agg = 0; agg < 2; ++agg) {
    std::vector<double> w(n, 1.0);
    if (agg == 1)
      for (std::size_t j = 0; j < n; ++j) w[j] = ((j * 0x9E3779B97F4A7C15ull) >> 63) ? -1.0 : 1.0;
    double mean = 0;
    double m2 = 0;
    for (std::uint32_t t = 0; t < trials; ++t) {
      double s = 0;
      for (std::size_t j = 0; j < n; ++j) s += w[j] * samples[std::size_t(t) * n + j];
      const double d = s - mean;
      mean += d / (t + 1);
      m2 += d * (s - mean);
    }
    const double expect = sum_target(target, w);
    const double sd = std::sqrt(m2 / (T - 1) / T);
    const double scale = std::max(std::abs(expect), 1.0);
    if (sd == 0) {
      if (std::abs(mean - expect) > 1e-9 * scale) {
        r.ok = false;
        r.reason = "aggregate " + std::to_string(agg) + ": constant " + std::to_string(mean) +
                   " != expected " + std::to_string(expect);
        return r;
      }
      continue;
    }
    const double z = (mean - expect) / sd;
    r.max_z = std::max(r.max_z, std::abs(z));
    if (std::abs(z) > z_crit) {
      r.ok = false;
      r.reason = "aggregate " + std::to_string(agg) + " biased: z = " + std::to_string(z);
      return r;
    }
  }
  return r;
}

}  // namespace gradcomp::validation
