// The importance-weighted quantisers of Q2_K, Q3_K and the seven codebook types: on Gaussian rows
// the relative RMS error stays within each type's bound (measured; a broken packer or search lands
// far above), the bytes decode through the scalar and fast dequantisers alike, the importance
// weights move the error away from the columns they favour, and rows whose lengths are not a
// multiple of 256 are refused with one clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/kernels.h"
#include "tensor/quants.h"

namespace owl {
namespace {

struct TypeBound {
  DType type;
  double max_rel_rms;  // sqrt(sum (x - q)^2 / sum x^2) on unit Gaussians
};

// Bounds: what owl's quantisers reach on this data (Q2_K 0.271, Q3_K 0.144, IQ1_S 0.448, IQ1_M
// 0.421, IQ2_XXS 0.330, IQ2_XS 0.286, IQ2_S 0.239, IQ3_XXS 0.177, IQ3_S 0.129) plus about 10%.
const TypeBound kTypes[] = {
    {DType::Q2_K, 0.30},   {DType::Q3_K, 0.16},  {DType::IQ1_S, 0.50},   {DType::IQ1_M, 0.47},  {DType::IQ2_XXS, 0.37},
    {DType::IQ2_XS, 0.32}, {DType::IQ2_S, 0.27}, {DType::IQ3_XXS, 0.20}, {DType::IQ3_S, 0.145},
};

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

// Dequantised copy of x after quantising to t (also checks the fast dequantiser agrees).
std::vector<float> round_trip(DType t, const std::vector<float>& x, const float* importance) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(row_bytes(t, n));
  quantize_weight_row(t, x.data(), q.data(), n, importance);
  std::vector<float> y(x.size()), fast(x.size());
  dequantize_row_ref(t, q.data(), y.data(), n);
  kernels::dequantize_row(t, q.data(), fast.data(), n);
  EXPECT_EQ(0, std::memcmp(y.data(), fast.data(), y.size() * 4)) << dtype_name(t);
  return y;
}

double weighted_sq_error(const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& w) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e += w[i] * (x[i] - y[i]) * (x[i] - y[i]);
  return e;
}

TEST(LowbitQuantize, RelativeErrorWithinTheTypesBound) {
  const std::vector<float> x = gaussian(256 * 16, 7);
  double sx = 0;
  for (float v : x) sx += v * v;
  for (const auto& [t, bound] : kTypes) {
    const std::vector<float> y = round_trip(t, x, nullptr);
    const double rel = std::sqrt(weighted_sq_error(x, y, std::vector<float>(x.size(), 1.0f)) / sx);
    std::printf("  %-8s relative RMS error %.3f (bound %.2f)\n", dtype_name(t), rel, bound);
    EXPECT_LE(rel, bound) << dtype_name(t);
    EXPECT_GT(rel, 0.01) << dtype_name(t) << ": too good for its bits; is the row copied?";
  }
}

TEST(LowbitQuantize, ImportanceMovesTheErrorToUnimportantColumns) {
  const int64_t n = 256 * 8;
  const std::vector<float> x = gaussian(n, 11);
  std::vector<float> imp(static_cast<size_t>(n));
  std::mt19937 rng(3);
  for (auto& v : imp) v = rng() % 4 == 0 ? 30.0f : 0.1f;  // a quarter of the columns matter
  for (const auto& [t, bound] : kTypes) {
    const double plain = weighted_sq_error(x, round_trip(t, x, nullptr), imp);
    const double weighted = weighted_sq_error(x, round_trip(t, x, imp.data()), imp);
    EXPECT_LT(weighted, 0.9 * plain) << dtype_name(t);
  }
}

TEST(LowbitQuantize, ZeroAndTinyRowsStayFinite) {
  for (const auto& [t, bound] : kTypes) {
    std::vector<float> zero(256, 0.0f);
    for (float v : round_trip(t, zero, nullptr)) EXPECT_EQ(v, 0.0f) << dtype_name(t);
    std::vector<float> tiny = gaussian(256, 5);
    for (auto& v : tiny) v *= 1e-6f;
    for (float v : round_trip(t, tiny, nullptr)) EXPECT_TRUE(std::isfinite(v)) << dtype_name(t);
  }
}

TEST(LowbitQuantize, RowNotAMultipleOfTheBlockIsOneClearError) {
  std::vector<float> x(300, 1.0f);
  std::vector<uint8_t> q(1024);
  for (const auto& [t, bound] : kTypes) {
    try {
      quantize_weight_row(t, x.data(), q.data(), 300, nullptr);
      ADD_FAILURE() << dtype_name(t) << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a multiple of the"), std::string::npos) << e.what();
    }
  }
}

TEST(LowbitQuantize, TheVeryLowTypesWantAnImportanceMatrix) {
  for (DType t : {DType::IQ1_S, DType::IQ1_M, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S})
    EXPECT_TRUE(needs_importance(t)) << dtype_name(t);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::IQ3_XXS, DType::IQ3_S, DType::Q4_K})
    EXPECT_FALSE(needs_importance(t)) << dtype_name(t);
}

}  // namespace
}  // namespace owl
