// inv_freq tables for the RoPE variants (see kernels.h for the formulas).
#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace owl::kernels {

void rope_inv_freq(float* inv_freq, int64_t n_rot, float base) {
  for (int64_t i = 0; i < n_rot / 2; ++i)
    inv_freq[i] = static_cast<float>(std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot)));
}

void rope_inv_freq_linear(float* inv_freq, int64_t n_rot, float base, float factor) {
  rope_inv_freq(inv_freq, n_rot, base);
  for (int64_t i = 0; i < n_rot / 2; ++i) inv_freq[i] /= factor;
}

void rope_inv_freq_factors(float* inv_freq, int64_t n_rot, float base, const float* factors) {
  rope_inv_freq(inv_freq, n_rot, base);
  for (int64_t i = 0; i < n_rot / 2; ++i) inv_freq[i] /= factors[i];
}

void rope_inv_freq_llama3(float* inv_freq, int64_t n_rot, float base, float factor, float low_freq_factor,
                          float high_freq_factor, int64_t orig_ctx) {
  rope_inv_freq(inv_freq, n_rot, base);
  const double pi = 3.14159265358979323846;
  const double low_wavelen = static_cast<double>(orig_ctx) / low_freq_factor;
  const double high_wavelen = static_cast<double>(orig_ctx) / high_freq_factor;
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double f = inv_freq[i], wavelen = 2 * pi / f;
    double scaled = f;
    if (wavelen > low_wavelen) {
      scaled = f / factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth = (static_cast<double>(orig_ctx) / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      scaled = (1 - smooth) * f / factor + smooth * f;
    }
    inv_freq[i] = static_cast<float>(scaled);
  }
}

void rope_inv_freq_yarn(float* inv_freq, int64_t n_rot, float base, float factor, int64_t orig_ctx, float beta_fast,
                        float beta_slow) {
  rope_inv_freq(inv_freq, n_rot, base);
  const double pi = 3.14159265358979323846;
  auto corr_dim = [&](double beta) {
    return static_cast<double>(n_rot) * std::log(static_cast<double>(orig_ctx) / (2 * pi * beta)) /
           (2 * std::log(static_cast<double>(base)));
  };
  const double lo = std::max(0.0, std::floor(corr_dim(beta_fast)));
  const double hi = std::min(static_cast<double>(n_rot - 1), std::ceil(corr_dim(beta_slow)));
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double r = 1 - std::clamp((static_cast<double>(i) - lo) / std::max(0.001, hi - lo), 0.0, 1.0);
    inv_freq[i] = static_cast<float>(inv_freq[i] * (r + (1 - r) / factor));
  }
}

float yarn_mscale(float factor, float mscale) {
  if (factor <= 1.0f) return 1.0f;
  return 1.0f + 0.1f * mscale * std::log(factor);
}

}  // namespace owl::kernels
