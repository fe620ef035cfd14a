// inv_freq tables for the RoPE variants (see kernels.h for the formulas).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace owl::kernels {

void rope_inv_freq(float* inv_freq, int64_t n_rot, float base) {
  for (int64_t i = 0; i < n_rot / 2; ++i)
    inv_freq[i] = static_cast<float>(
        std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot)));
}

void rope_inv_freq_linear(float* inv_freq, int64_t n_rot, float base, float factor) {
  rope_inv_freq(inv_freq, n_rot, base);
  for (int64_t i = 0; i < n_rot / 2; ++i) inv_freq[i] /= factor;
}

void rope_inv_freq_factors(float* inv_freq, int64_t n_rot, float base, const float* factors) {
  rope_inv_freq(inv_freq, n_rot, base);
  for (int64_t i = 0; i < n_rot / 2; ++i) inv_freq[i] /= factors[i];
}

std::vector<float> llama3_rope_factors(int64_t n_rot, float base, float factor, float low_freq_factor,
                                       float high_freq_factor, int64_t orig_ctx) {
  // As the Hugging Face -> GGUF converter computes rope_freqs.weight: base^(2i/n_rot) and its
  // inverse rounded to float32 step by step (as torch does), then per frequency 1 (high
  // frequencies), factor (low ones) or the smooth blend in between, in double.
  const double pi = 3.14159265358979323846;
  const double low_wavelen = static_cast<double>(orig_ctx) / low_freq_factor;
  const double high_wavelen = static_cast<double>(orig_ctx) / high_freq_factor;
  std::vector<float> f(static_cast<size_t>(n_rot / 2));
  for (size_t i = 0; i < f.size(); ++i) {
    const float exponent = static_cast<float>(static_cast<double>(2 * i) / static_cast<double>(n_rot));
    const float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    const float freq = static_cast<float>(1.0 / static_cast<double>(power));
    const double wavelen = 2 * pi / freq;
    if (wavelen < high_wavelen) {
      f[i] = 1.0f;
    } else if (wavelen > low_wavelen) {
      f[i] = factor;
    } else {
      const double smooth =
          (static_cast<double>(orig_ctx) / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      f[i] = static_cast<float>(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
  return f;
}

void rope_inv_freq_llama3(float* inv_freq, int64_t n_rot, float base, float factor, float low_freq_factor,
                          float high_freq_factor, int64_t orig_ctx) {
  const std::vector<float> factors =
      llama3_rope_factors(n_rot, base, factor, low_freq_factor, high_freq_factor, orig_ctx);
  rope_inv_freq_factors(inv_freq, n_rot, base, factors.data());
}

void rope_inv_freq_yarn(float* inv_freq, int64_t n_rot, float base, float factor, int64_t orig_ctx, float beta_fast,
                        float beta_slow) {
  const double pi = 3.14159265358979323846;
  // c(beta): the pair index whose wavelength fits `beta` times into the original context.
  auto corr_dim = [&](double beta) {
    return static_cast<double>(n_rot) * std::log(static_cast<double>(orig_ctx) / (2 * pi * beta)) /
           (2 * std::log(static_cast<double>(base)));
  };
  const double lo = std::max(0.0, std::floor(corr_dim(beta_fast)));
  const double hi = std::min(static_cast<double>(n_rot - 1), std::ceil(corr_dim(beta_slow)));
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    // In double throughout, rounded once: r = 1 keeps the frequency, r = 0 divides it by factor.
    const double plain =
        std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    const double r = 1 - std::clamp((static_cast<double>(i) - lo) / std::max(0.001, hi - lo), 0.0, 1.0);
    inv_freq[i] = static_cast<float>(factor > 1.0f ? plain * (r + (1 - r) / factor) : plain);
  }
}

float yarn_mscale(float factor, float mscale) {
  if (factor <= 1.0f) return 1.0f;
  return 1.0f + 0.1f * mscale * std::log(factor);
}

}  // namespace owl::kernels
