// matmul for every weight type: the fast paths of each ISA this CPU has agree with the scalar
// reference, both agree with a float64 product of the dequantised weights (within the
// activation-quantisation error), and results are bit-identical for 1, 2 and 3 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"
#include "kernels/type_traits.h"
#include "kernels/vec_dot.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using kernels::Isa;
using test::make_weights;
using test::random_x;
using test::run_matmul;
using test::Weights;
using test::WithIsa;

const DType kAllTypes[] = {DType::F32,    DType::F16,    DType::BF16,    DType::Q4_0,  DType::Q4_1,  DType::Q5_0,
                           DType::Q5_1,   DType::Q8_0,   DType::Q2_K,    DType::Q3_K,  DType::Q4_K,  DType::Q5_K,
                           DType::Q6_K,   DType::IQ4_NL, DType::IQ4_XS,  DType::IQ1_S, DType::IQ1_M, DType::IQ2_XXS,
                           DType::IQ2_XS, DType::IQ2_S,  DType::IQ3_XXS, DType::IQ3_S};

int64_t block_of(DType t) { return info(t).block_size == 256 || t == DType::IQ4_XS ? 256 : 32; }

// The fast-vs-reference tests, once per fast ISA of this CPU.
class MatmulIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, MatmulIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MatmulIsa);

TEST(Matmul, ThisMachineHasTheFastPaths) {
  ASSERT_TRUE(kernels::fast_paths_available()) << "this machine is expected to have AVX2+FMA+F16C";
}

TEST_P(MatmulIsa, FastAgreesWithReference) {
  for (DType t : kAllTypes) {
    // Odd sizes: 3 blocks (plus a float tail of 5 for float types), 37 outputs, 1..9 rows.
    const int64_t in = block_of(t) * 3 + (info(t).quantized ? 0 : 5), out = 37;
    Weights w = make_weights(t, in, out, 11);
    for (int64_t n_rows : {1, 2, 3, 4, 5, 9}) {
      auto x = random_x(in * n_rows, 100 + static_cast<uint32_t>(n_rows));
      auto ref = run_matmul(w.view, x, n_rows, Isa::Scalar);
      auto fast = run_matmul(w.view, x, n_rows, GetParam());
      double max_ref = 0;
      for (float v : ref) max_ref = std::max(max_ref, static_cast<double>(std::fabs(v)));
      // Same integer sums, different float summation order: 2e-6 of the output scale.
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(fast[i], ref[i], 2e-6 * max_ref) << dtype_name(t) << " rows " << n_rows << " at " << i;
    }
  }
}

// The low-bit types' AVX2 kernels (codebook grid gathers, sign patterns, per-16 scales, IQ1
// deltas; Q2_K mins, Q3_K high bits and signed 6-bit scales) over several row lengths and odd row
// counts, so every activation-row group size 1..6 and a tail group are hit; random bits reach
// every grid index, sign pattern and scale.
TEST_P(MatmulIsa, LowbitFastAgreesWithReference) {
  for (DType t : {DType::IQ2_XXS, DType::IQ1_S, DType::IQ3_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_S, DType::IQ1_M,
                  DType::Q2_K, DType::Q3_K}) {
    for (int64_t in : {256, 512, 1280, 4096}) {
      const int64_t out = 19;
      Weights w = make_weights(t, in, out, 21 + static_cast<uint32_t>(in));
      for (int64_t n_rows : {1, 3, 5, 7, 13}) {
        auto x = random_x(in * n_rows, 300 + static_cast<uint32_t>(n_rows));
        auto ref = run_matmul(w.view, x, n_rows, Isa::Scalar);
        auto fast = run_matmul(w.view, x, n_rows, GetParam());
        double max_ref = 0;
        for (float v : ref) max_ref = std::max(max_ref, static_cast<double>(std::fabs(v)));
        for (size_t i = 0; i < ref.size(); ++i)
          ASSERT_NEAR(fast[i], ref[i], 2e-6 * max_ref)
              << dtype_name(t) << " in " << in << " rows " << n_rows << " at " << i;
      }
    }
  }
}

// Against float64 on the dequantised weights: the only error left is the activation quantisation
// (Q8_0/Q8_K, ~0.4% relative per element; float types: none beyond float32 rounding).
TEST_P(MatmulIsa, MatchesDequantisedProduct) {
  for (DType t : kAllTypes) {
    const int64_t in = block_of(t) * 4, out = 24, n_rows = 3;
    Weights w = make_weights(t, in, out, 5);
    auto x = random_x(in * n_rows, 9);
    for (Isa isa : {Isa::Scalar, GetParam()}) {
      auto y = run_matmul(w.view, x, n_rows, isa);
      std::vector<float> row(static_cast<size_t>(in));
      double err = 0, norm = 0;
      for (int64_t o = 0; o < out; ++o) {
        dequantize_row_ref(t, w.view.row(o), row.data(), in);
        for (int64_t r = 0; r < n_rows; ++r) {
          double s = 0;
          for (int64_t i = 0; i < in; ++i) s += static_cast<double>(row[i]) * x[r * in + i];
          err += (y[r * out + o] - s) * (y[r * out + o] - s);
          norm += s * s;
        }
      }
      // The codebook types' random-bit weights have per-16 scales from 1 to 15 (IQ1: 1 to 15 with
      // levels near 0), so fewer elements carry the product and the activation error averages less.
      const double bound = is_codebook_type(t) ? 0.015 : info(t).quantized ? 0.01 : 1e-6;
      EXPECT_LE(std::sqrt(err / norm), bound) << dtype_name(t) << " " << kernels::isa_name(isa);
    }
  }
}

TEST_P(MatmulIsa, BitIdenticalForAnyThreadCount) {
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0, DType::F32, DType::F16, DType::IQ1_M,
                  DType::IQ2_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ3_XXS, DType::Q2_K, DType::Q3_K}) {
    const int64_t in = 512, out = 301;
    Weights w = make_weights(t, in, out, 3);
    for (int64_t n_rows : {1, 7}) {
      auto x = random_x(in * n_rows, 4);
      std::vector<std::vector<float>> results;
      for (int threads : {1, 2, 3}) {
        set_default_threads(threads);
        results.push_back(run_matmul(w.view, x, n_rows, GetParam()));
      }
      for (size_t k = 1; k < results.size(); ++k)
        EXPECT_EQ(0, std::memcmp(results[0].data(), results[k].data(), results[0].size() * 4))
            << dtype_name(t) << " rows " << n_rows << " threads " << k + 1;
    }
  }
  set_default_threads(2);
}

// More than 6 activation rows take the codebook types' prefill tiles (codebook_tile_avx2.cpp:
// each weight row decoded once for all rows of the block); every row must come out exactly as
// it does alone through the per-row kernel, over odd sizes: 71 rows are a block of 64 (ten
// groups of 6 and one of 4) and a tail of 7, 37 outputs cross the 16-row tiles unevenly.
// LowbitFastAgreesWithReference covers the tiles against the reference (7 and 13 rows).
TEST_P(MatmulIsa, CodebookTilesEqualPerRowBitForBit) {
  for (DType t :
       {DType::IQ2_XXS, DType::IQ1_S, DType::IQ3_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_S, DType::IQ1_M}) {
    for (int64_t in : {256, 1280}) {
      const int64_t out = 37, n_rows = 71;
      Weights w = make_weights(t, in, out, 51 + static_cast<uint32_t>(in));
      auto x = random_x(in * n_rows, 500);
      auto all = run_matmul(w.view, x, n_rows, GetParam());
      for (int64_t r = 0; r < n_rows; ++r) {
        const std::vector<float> xr(x.begin() + r * in, x.begin() + (r + 1) * in);
        auto one = run_matmul(w.view, xr, 1, GetParam());
        ASSERT_EQ(0, std::memcmp(one.data(), all.data() + r * out, static_cast<size_t>(out) * sizeof(float)))
            << dtype_name(t) << " in " << in << " row " << r;
      }
    }
  }
}

// The AVX2 activation quantisers must produce exactly quantize_row's bytes (so the fast and
// reference matmuls see the same integers).
TEST(Matmul, ActivationQuantisersBitIdentical) {
  const int64_t n = 4096;
  auto x = random_x(n, 77);
  for (int i = 0; i < 64; ++i) x[static_cast<size_t>(i)] = 0;  // an all-zero block
  x[300] = 50;                                                 // outlier, positive max
  x[700] = -50;                                                // negative max
  for (int i = 1024; i < 1056; ++i) x[static_cast<size_t>(i)] = 0.5f * static_cast<float>(i % 5);  // exact halves
  for (DType t : {DType::Q8_0, DType::Q8_K}) {
    std::vector<uint8_t> a(row_bytes(t, n)), b(row_bytes(t, n));
    quantize_row(t, x.data(), a.data(), n);
    if (t == DType::Q8_0) {
      kernels::quantize_q8_0_avx2(x.data(), b.data(), n);
    } else {
      kernels::quantize_q8_k_avx2(x.data(), b.data(), n);
    }
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size())) << dtype_name(t);
  }
}

TEST_P(MatmulIsa, DequantizeEqualsReferenceForEveryType) {
  WithIsa scope(GetParam());
  for (DType t : kAllTypes) {
    const int64_t n = block_of(t) * 2 + (info(t).quantized ? 0 : 13);  // float types: odd tail
    Weights w = make_weights(t, n, 1, 8);
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    dequantize_row_ref(t, w.view.row(0), a.data(), n);
    kernels::dequantize_row(t, w.view.row(0), b.data(), n);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << dtype_name(t);
  }
}

// The KV cache's F32 -> F16 row conversion: F16C equals the scalar rounding (nearest even) on
// ordinary values, halfway cases, subnormals, overflow to infinity and signed zeros.
TEST(Fp16Row, FastEqualsScalarRounding) {
  std::vector<float> x;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  for (int i = 0; i < 1000; ++i) x.push_back(nd(rng));
  for (float v : {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 1e-9f, -3e-6f,
                  1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 2049.0f, 2051.0f})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::infinity());
  std::vector<uint16_t> fast(x.size()), ref(x.size());
  kernels::fp32_to_fp16_row(x.data(), fast.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ref[i] = f32_to_f16(x[i]);
  EXPECT_EQ(fast, ref);
}

TEST(Matmul, MatrixSliceSelectsExpert) {
  const int64_t in = 64, out = 8;
  Weights w = make_weights(DType::Q8_0, in, out * 3, 1);
  w.view.n_dims = 3;
  w.view.ne = {in, out, 3, 1};
  const kernels::Weight e2 = kernels::matrix_slice(w.view, 2);
  EXPECT_EQ(e2.out(), out);
  ASSERT_TRUE(e2.plain());
  EXPECT_EQ(e2.plain()->data, w.bytes.data() + 2 * out * row_bytes(DType::Q8_0, in));
}

// The kernels' traits table agrees with the type registry (dtype.cpp), every type in it has a
// reference dot kernel, and exactly the types with a packed layout have packed kernels.
TEST(TypeTraits, AgreeWithTypeInfoAndKernels) {
  for (const kernels::TypeTraits& e : kernels::kTypeTraits) {
    EXPECT_EQ(e.block_elems, info(e.type).block_size) << dtype_name(e.type);
    EXPECT_EQ(e.block_bytes, info(e.type).type_size) << dtype_name(e.type);
    EXPECT_NE(kernels::dot_fn_ref(e.type), nullptr) << dtype_name(e.type);
    EXPECT_EQ(e.packed_bytes != 0, kernels::packed_kernel_avx2(e.type) != nullptr) << dtype_name(e.type);
    EXPECT_EQ(e.packed_bytes != 0, kernels::packed_kernel_avx512vnni(e.type) != nullptr) << dtype_name(e.type);
  }
  EXPECT_EQ(kernels::type_traits(DType::TQ1_0), nullptr);
}

TEST(MatmulBadInput, UnsupportedWeightType) {
  std::vector<uint8_t> bytes(1024);
  TensorView w;
  w.name = "blk.0.ffn_up.weight";
  w.type = DType::TQ2_0;
  w.n_dims = 2;
  w.ne = {256, 2, 1, 1};
  w.data = bytes.data();
  std::vector<float> x(256), y(2);
  try {
    kernels::matmul(w, x.data(), 1, y.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("TQ2_0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace owl
