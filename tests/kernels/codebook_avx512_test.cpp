// The AVX-512 VBMI one-row kernels of the codebook types (codebook_avx512vbmi.cpp) against the
// AVX2 kernels they replace, bit for bit: rows whose blocks walk through every grid index (IQ2_XXS
// and IQ3_XXS 256, IQ2_XS and IQ3_S 512, IQ2_S 1024, IQ1_S and IQ1_M 2048) with random sign patterns, scales and
// deltas, for 1..6 activation rows.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/vec_dot.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

// n_out rows of n weights, random bits, each block's grid indices set to consecutive values
// (counting on from the previous block) so every index occurs; d a small positive f16.
std::vector<uint8_t> weights_walking_indices(DType t, int64_t n, int64_t n_out, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t rb = row_bytes(t, n);
  std::vector<uint8_t> w(rb * static_cast<size_t>(n_out));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  uint32_t c = 0;
  const int64_t n_blocks = n / kQKK * n_out;
  for (int64_t i = 0; i < n_blocks; ++i) {
    const uint16_t d = f32_to_f16(0.001f * static_cast<float>(1 + rng() % 16));
    if (t == DType::IQ2_XXS) {
      auto* b = reinterpret_cast<BlockIQ2_XXS*>(w.data()) + i;
      b->d = d;
      auto* qs = reinterpret_cast<uint8_t*>(b->qs);
      for (int ib = 0; ib < kQKK / 32; ++ib)
        for (int k = 0; k < 4; ++k) qs[8 * ib + k] = static_cast<uint8_t>(c++);
    } else if (t == DType::IQ3_XXS) {
      auto* b = reinterpret_cast<BlockIQ3_XXS*>(w.data()) + i;
      b->d = d;
      for (int j = 0; j < kQKK / 4; ++j) b->qs[j] = static_cast<uint8_t>(c++);
    } else if (t == DType::IQ2_XS) {
      auto* b = reinterpret_cast<BlockIQ2_XS*>(w.data()) + i;
      b->d = d;
      for (auto& q : b->qs) q = static_cast<uint16_t>((q & 0xFE00) | (c++ & 511));  // random sign patterns
    } else if (t == DType::IQ2_S) {
      auto* b = reinterpret_cast<BlockIQ2_S*>(w.data()) + i;
      b->d = d;
      for (int ib = 0; ib < kQKK / 32; ++ib) {
        uint32_t h = 0;
        for (int k = 0; k < 4; ++k, ++c) {
          b->qs[4 * ib + k] = static_cast<uint8_t>(c);
          h |= ((c >> 8) & 3) << (2 * k);
        }
        b->qh[ib] = static_cast<uint8_t>(h);
      }
    } else if (t == DType::IQ3_S) {
      auto* b = reinterpret_cast<BlockIQ3_S*>(w.data()) + i;
      b->d = d;
      for (int ib = 0; ib < kQKK / 32; ++ib) {
        uint32_t h = 0;
        for (int k = 0; k < 8; ++k, ++c) {
          b->qs[8 * ib + k] = static_cast<uint8_t>(c);
          h |= ((c >> 8) & 1) << k;
        }
        b->qh[ib] = static_cast<uint8_t>(h);
      }
    } else if (t == DType::IQ1_M) {
      // d lives in the top nibbles of the four scale words (nibble k: bits 4k..4k+3 of d).
      auto* b = reinterpret_cast<BlockIQ1_M*>(w.data()) + i;
      for (int k = 0; k < 4; ++k)
        b->scales[2 * k + 1] = static_cast<uint8_t>((b->scales[2 * k + 1] & 0x0F) | ((d >> (4 * k)) & 0xF) << 4);
      for (int ib = 0; ib < kQKK / 32; ++ib) {
        uint32_t h = b->qh[2 * ib] | uint32_t{b->qh[2 * ib + 1]} << 8;
        h &= 0x8888;  // random delta signs
        for (int k = 0; k < 4; ++k, ++c) {
          b->qs[4 * ib + k] = static_cast<uint8_t>(c);
          h |= ((c >> 8) & 7) << (4 * k);
        }
        b->qh[2 * ib] = static_cast<uint8_t>(h);
        b->qh[2 * ib + 1] = static_cast<uint8_t>(h >> 8);
      }
    } else {
      auto* b = reinterpret_cast<BlockIQ1_S*>(w.data()) + i;
      b->d = d;
      for (int ib = 0; ib < kQKK / 32; ++ib) {
        uint16_t h = b->qh[ib] & 0xF000;  // random scale and delta sign
        for (int k = 0; k < 4; ++k, ++c) {
          b->qs[4 * ib + k] = static_cast<uint8_t>(c);
          h = static_cast<uint16_t>(h | ((c >> 8) & 7) << (3 * k));
        }
        b->qh[ib] = h;
      }
    }
  }
  return w;
}

TEST(CodebookAvx512, OneRowKernelsEqualAvx2BitForBit) {
  if (!kernels::cpu_has_avx512_vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VBMI";
  for (DType t :
       {DType::IQ2_XXS, DType::IQ1_S, DType::IQ3_XXS, DType::IQ1_M, DType::IQ2_S, DType::IQ3_S, DType::IQ2_XS}) {
    // 2048 IQ1_S indices = 64 blocks: 4 rows of 16 blocks; IQ2_XXS and IQ3_XXS walk their 256
    // several times.
    const int64_t n = 16 * kQKK, n_out = 4;
    const auto w = weights_walking_indices(t, n, n_out, 7);
    const kernels::DotFn fast = kernels::dot_fn_avx512vbmi(t), base = kernels::dot_fn_avx2(t);
    ASSERT_NE(fast, nullptr) << dtype_name(t);
    ASSERT_NE(base, nullptr) << dtype_name(t);
    const size_t xs = row_bytes(DType::Q8_K, n);
    std::vector<uint8_t> x(xs * kernels::kMaxNR);
    const auto xf = test::random_x(n * kernels::kMaxNR, 11);
    for (int r = 0; r < kernels::kMaxNR; ++r) quantize_row(DType::Q8_K, xf.data() + r * n, x.data() + r * xs, n);
    const size_t rb = row_bytes(t, n);
    for (int nr = 1; nr <= kernels::kMaxNR; ++nr)
      for (int64_t o = 0; o < n_out; ++o) {
        std::vector<float> a(static_cast<size_t>(nr)), b(static_cast<size_t>(nr));
        fast(n, w.data() + rb * static_cast<size_t>(o), x.data(), xs, nr, a.data(), 1);
        base(n, w.data() + rb * static_cast<size_t>(o), x.data(), xs, nr, b.data(), 1);
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
            << dtype_name(t) << " nr " << nr << " row " << o << ": " << a[0] << " vs " << b[0];
        EXPECT_NE(a[0], 0.0f) << dtype_name(t);
      }
  }
}

}  // namespace
}  // namespace owl
