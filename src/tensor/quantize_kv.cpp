#include "tensor/quantize_kv.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl {

namespace {

// A symmetric integer grid: Q4_0 stores q + 8 in a nibble (q in [-8, 7]), Q8_0 an int8 limited
// to [-127, 127] as every Q8_0 writer does.
struct Grid {
  float lo, hi;
};

// x rounded to the nearest integer (halves to even) and clamped to the grid, as a float: adding
// and subtracting 1.5 * 2^23 rounds any |x| < 2^22 in the current (nearest) rounding mode, and
// unlike a library call it vectorises.
inline float snap(float x, Grid g) {
  constexpr float kRound = 12582912.0f;
  return std::clamp((x + kRound) - kRound, g.lo, g.hi);
}

// The block's scale: among candidate scales d = m / t (m the largest-magnitude value with its
// sign, t stepping from the grid's end a quarter of the way towards its middle, and the mirrored
// orientation that maps m to the grid's other end), each block is snapped to the grid and its
// scale refitted by least squares (d = sum x q / sum q^2, whose squared error is
// sum x^2 - (sum x q)^2 / sum q^2); the refit with the least error wins, and two more rounds of
// snap and refit polish it. The first candidate is ggml's rule (m maps to -8 in Q4_0, to -127 in
// Q8_0), refitted, so a block's error exceeds the closed form's only by the rounding of d to fp16.
float best_scale(const float* x, Grid g) {
  // Sums in double: for Q8_0 the candidates' errors differ by ~1e-6 of sum x^2.
  double sxx = 0;
  float m = 0, amax = 0;
  for (int i = 0; i < kQK; ++i) {
    sxx += static_cast<double>(x[i]) * x[i];
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      m = x[i];
    }
  }
  if (amax == 0) return 0;
  float best_d = 0;
  double best_err = INFINITY;
  auto consider = [&](float inv) {
    double sxq = 0, sqq = 0;
    for (int i = 0; i < kQK; ++i) {
      const float q = snap(x[i] * inv, g);
      sxq += static_cast<double>(x[i]) * q;
      sqq += static_cast<double>(q) * q;
    }
    if (sqq == 0) return false;
    const double err = sxx - sxq * sxq / sqq;
    if (!(err < best_err)) return false;
    best_err = err;
    best_d = static_cast<float>(sxq / sqq);
    return true;
  };
  constexpr int kSteps = 8;
  for (int s = 0; s <= kSteps; ++s) {
    const float shrink = 1.0f - 0.25f * static_cast<float>(s) / kSteps;
    consider(g.lo * shrink / m);
    consider(g.hi * shrink / m);
  }
  for (int r = 0; r < 2; ++r)
    if (!consider(1 / best_d)) break;
  return best_d;
}

// x's block against the scale stored (rounded to fp16): the integers nearest x / d.
template <class Put>
void quantize_blocks(const float* x, int64_t nb, Grid g, Put put) {
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    const uint16_t d16 = f32_to_f16(best_scale(x, g));
    const float d = f16_to_f32(d16);
    const float inv = d != 0 ? 1 / d : 0;
    int q[kQK];
    for (int i = 0; i < kQK; ++i) q[i] = static_cast<int>(snap(x[i] * inv, g));
    put(b, d16, q);
  }
}

}  // namespace

void quantize_kv_row(DType t, const float* src, void* dst, int64_t n) {
  if (n % kQK != 0) throw Error("KV row of " + std::to_string(n) + " values is not a multiple of 32");
  const int64_t nb = n / kQK;
  if (t == DType::Q8_0) {
    auto* y = static_cast<BlockQ8_0*>(dst);
    quantize_blocks(src, nb, {-127, 127}, [&](int64_t b, uint16_t d, const int* q) {
      y[b].d = d;
      for (int i = 0; i < kQK; ++i) y[b].qs[i] = static_cast<int8_t>(q[i]);
    });
  } else if (t == DType::Q4_0) {
    auto* y = static_cast<BlockQ4_0*>(dst);
    quantize_blocks(src, nb, {-8, 7}, [&](int64_t b, uint16_t d, const int* q) {
      y[b].d = d;
      for (int i = 0; i < kQK / 2; ++i) y[b].qs[i] = static_cast<uint8_t>((q[i] + 8) | (q[i + kQK / 2] + 8) << 4);
    });
  } else {
    throw Error(std::string("KV rows are quantised to Q8_0 or Q4_0, not ") + dtype_name(t));
  }
}

double kv_row_squared_error(DType t, const float* x, const void* row, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row_ref(t, row, y.data(), n);
  double err = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(x[i]) - y[static_cast<size_t>(i)];
    err += e * e;
  }
  return err;
}

}  // namespace owl
