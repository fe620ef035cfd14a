// Shared by the kernel tests: random weights of any type, random activations, matmul run with
// a given instruction set (Scalar: the reference), and the ISA parameter of the fast-vs-reference
// tests, which run once per ISA this CPU has.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::test {

struct Weights {
  std::vector<uint8_t> bytes;
  TensorView view;
};

// Random weights of type t: n_mats matrices (3-D when n_mats > 1) of `out` quantised N(0,1)
// rows, or (Q2_K/Q3_K and the IQ1/IQ2/IQ3 codebook types, which owl does not quantise) random
// bits with small fp16 scales.
inline Weights make_weights(DType t, int64_t in, int64_t out, uint32_t seed, int64_t n_mats = 1) {
  Weights w;
  const size_t rb = row_bytes(t, in);
  w.bytes.resize(rb * static_cast<size_t>(out * n_mats));
  std::mt19937 rng(seed);
  // The low-bit types take random bits (every grid index, sign pattern and scale), the others
  // quantised Gaussian rows.
  const bool random_bits = is_codebook_type(t) || t == DType::Q2_K || t == DType::Q3_K || !can_quantize(t);
  if (!random_bits) {
    std::normal_distribution<float> nd;
    std::vector<float> row(static_cast<size_t>(in));
    for (int64_t o = 0; o < out * n_mats; ++o) {
      for (auto& v : row) v = nd(rng);
      quantize_row(t, row.data(), w.bytes.data() + rb * o, in);
    }
  } else {
    for (auto& b : w.bytes) b = static_cast<uint8_t>(rng());
    const size_t bs = info(t).type_size;
    for (size_t off = 0; off < w.bytes.size(); off += bs) {
      const uint16_t d = f32_to_f16(0.01f + 0.001f * static_cast<float>(rng() % 16));
      if (t == DType::Q2_K) {  // d, dmin at the end
        std::memcpy(&w.bytes[off + bs - 4], &d, 2);
        std::memcpy(&w.bytes[off + bs - 2], &d, 2);
      } else if (t == DType::IQ1_M) {  // d in the top nibbles of the 4 uint16 scale words at the end
        for (int k = 0; k < 4; ++k) {
          uint8_t& hi = w.bytes[off + bs - 8 + 2 * k + 1];
          hi = static_cast<uint8_t>((hi & 0x0F) | (((d >> (4 * k)) & 0xF) << 4));
        }
      } else if (t != DType::Q3_K) {  // the other codebook types: d first
        std::memcpy(&w.bytes[off], &d, 2);
      } else {  // Q3_K: d at the end
        std::memcpy(&w.bytes[off + bs - 2], &d, 2);
      }
    }
  }
  w.view.name = "w";
  w.view.type = t;
  w.view.n_dims = n_mats > 1 ? 3 : 2;
  w.view.ne = {in, out, n_mats, 1};
  w.view.data = w.bytes.data();
  return w;
}

inline std::vector<float> random_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

// The ISAs of this CPU past the scalar reference: AVX2, and AVX-512 VNNI where present.
inline std::vector<kernels::Isa> fast_isas() {
  std::vector<kernels::Isa> v = kernels::available_isas();
  v.erase(std::remove(v.begin(), v.end(), kernels::Isa::Scalar), v.end());
  return v;
}
// Test name suffixes: /Scalar, /Avx2, /Avx512Vnni.
inline std::string isa_test_name(const testing::TestParamInfo<kernels::Isa>& i) {
  switch (i.param) {
    case kernels::Isa::Avx512Vnni:
      return "Avx512Vnni";
    case kernels::Isa::Avx2:
      return "Avx2";
    default:
      return "Scalar";
  }
}

// default_isa() = isa within a scope.
class WithIsa {
 public:
  explicit WithIsa(kernels::Isa isa) : saved_(kernels::default_isa()) { kernels::set_default_isa(isa); }
  ~WithIsa() { kernels::set_default_isa(saved_); }
  WithIsa(const WithIsa&) = delete;
  WithIsa& operator=(const WithIsa&) = delete;

 private:
  kernels::Isa saved_;
};

// matmul with default_isa() = isa (Scalar: the reference everywhere). A packed weight runs the
// kernels it was prepared for, whatever isa says.
inline std::vector<float> run_matmul(const kernels::Weight& W, const std::vector<float>& x, int64_t n_rows,
                                     kernels::Isa isa) {
  WithIsa scope(isa);
  std::vector<float> y(static_cast<size_t>(n_rows * W.out()), NAN);
  kernels::matmul(W, x.data(), n_rows, y.data());
  return y;
}

// A weight prepared for isa's packed kernels.
inline kernels::Weight prepare_for(const TensorView& W, kernels::Isa isa) {
  kernels::PrepareOptions o;
  o.isa = isa;
  return kernels::prepare_weight(W, o);
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float f : v) m = std::max(m, static_cast<double>(std::fabs(f)));
  return m;
}

}  // namespace owl::test
