// Row kernels, RoPE tables and attention: the fast paths of each ISA this CPU has agree with the
// scalar references on random inputs with odd sizes (tails), plus known answers.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "attention_int8_reference.h"
#include "matmul_test_util.h"
#include "test_util.h"

namespace owl {
namespace {

std::vector<float> randn(int64_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

using kernels::Isa;

// Runs f(0) with the reference kernels, then f(1) with those of isa.
template <class F>
void both(Isa isa, F f) {
  {
    test::WithIsa scope(Isa::Scalar);
    f(0);
  }
  test::WithIsa scope(isa);
  f(1);
}

// The fast-vs-reference tests, once per fast ISA of this CPU.
class OpsIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, OpsIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(OpsIsa);

// |a - b| <= rel * (|a| + floor): floor is the scale of the inputs where results may cancel.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, double rel, const char* what,
                  double floor = 1e-3) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], rel * (std::fabs(a[i]) + floor)) << what << " at " << i;
}

const int64_t kSizes[] = {1, 7, 8, 15, 16, 33, 257, 1000};

TEST_P(OpsIsa, RowKernelsFastAgreeWithReference) {
  for (int64_t n : kSizes) {
    auto x = randn(n, 1, 3.0f), w = randn(n, 2), b = randn(n, 3);
    std::vector<float> r[2];
    // Bound: 1e-5 relative (float vs double sums of squares over 1000 terms; exp ~1 ulp).
    both(GetParam(), [&](int f) {
      r[f].assign(n, 0);
      kernels::rms_norm(x.data(), w.data(), r[f].data(), n, 1e-6f);
    });
    expect_close(r[0], r[1], 1e-5, "rms_norm");
    both(GetParam(), [&](int f) {
      r[f].assign(n, 0);
      kernels::rms_norm(x.data(), nullptr, r[f].data(), n, 1e-5f);
    });
    expect_close(r[0], r[1], 1e-5, "rms_norm without weight");
    both(GetParam(), [&](int f) {
      r[f] = x;
      kernels::softmax(r[f].data(), n);
    });
    expect_close(r[0], r[1], 1e-5, "softmax");
    both(GetParam(), [&](int f) {
      r[f] = x;
      kernels::silu(r[f].data(), n);
    });
    expect_close(r[0], r[1], 2e-6, "silu");
    both(GetParam(), [&](int f) {
      r[f].assign(n, 0);
      kernels::swiglu(x.data(), w.data(), r[f].data(), n);
    });
    expect_close(r[0], r[1], 2e-6, "swiglu");
    both(GetParam(), [&](int f) {
      r[f].assign(n, 0);
      kernels::add(x.data(), w.data(), r[f].data(), n);
    });
    expect_close(r[0], r[1], 0, "add");
    both(GetParam(), [&](int f) {
      r[f] = b;
      kernels::scale_add(r[f].data(), x.data(), 0.37f, n);
    });
    expect_close(r[0], r[1], 1e-6, "scale_add", 1.0);  // fused vs separate rounding
  }
}

TEST(Ops, KnownAnswers) {
  for (Isa isa : kernels::available_isas()) {
    test::WithIsa scope(isa);
    std::vector<float> x = {3, -4, 0, 0, 0, 0, 0, 0, 0, 0};  // rms = sqrt(25/10)
    std::vector<float> y(10);
    kernels::rms_norm(x.data(), nullptr, y.data(), 10, 0.0f);
    EXPECT_NEAR(y[0], 3 / std::sqrt(2.5f), 1e-6);
    std::vector<float> s = {0, std::log(3.0f), -INFINITY, 0, 0, 0, 0, 0, 0};
    kernels::softmax(s.data(), 9);
    EXPECT_NEAR(s[1], 3.0f / 10, 1e-6);  // 3 / (1 + 3 + 0 + 6 * 1)
    EXPECT_NEAR(s[2], 0.0f, 1e-30);
    std::vector<float> z = {0, 1, -1, 20, -20, 0, 0, 0, 0};
    kernels::silu(z.data(), 9);
    EXPECT_EQ(z[0], 0.0f);
    EXPECT_NEAR(z[1], 0.7310586f, 1e-6);
    EXPECT_NEAR(z[2], -0.2689414f, 1e-6);
    EXPECT_NEAR(z[3], 20.0f, 1e-5);
    EXPECT_NEAR(z[4], -20 * 2.0611537e-9f, 1e-12);
  }
  std::vector<float> g = {0, 1, -3};
  kernels::gelu(g.data(), 3);
  EXPECT_NEAR(g[1], 0.8411920f, 1e-6);
  EXPECT_NEAR(g[2], -0.0036373f, 1e-6);
  std::vector<float> ln = {1, 2, 3, 4}, lo(4);
  kernels::layer_norm(ln.data(), nullptr, nullptr, lo.data(), 4, 0.0f);  // mean 2.5, var 1.25
  EXPECT_NEAR(lo[0], -1.5f / std::sqrt(1.25f), 1e-6);
}

TEST(Rope, NormAndNeoxPairingWithPartialRotation) {
  // head_dim 6, n_rot 4: pairs i = 0, 1; inv_freq chosen so pos 1 rotates pair 0 by 90 degrees.
  const float inv_freq[2] = {static_cast<float>(M_PI / 2), 0.0f};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 1, 0, 0, 1, 7, 7};  // 2 heads
  auto n = x;
  kernels::rope(n.data(), 2, 6, 4, 1, inv_freq, kernels::RopePairing::Norm);
  // Norm: pair 0 = (x0, x1) rotated 90 degrees -> (-x1, x0); pair 1 = (x2, x3) angle 0.
  EXPECT_NEAR(n[0], -2, 1e-6);
  EXPECT_NEAR(n[1], 1, 1e-6);
  EXPECT_NEAR(n[2], 3, 1e-6);
  EXPECT_NEAR(n[3], 4, 1e-6);
  EXPECT_EQ(n[4], 5);  // beyond n_rot: untouched
  EXPECT_NEAR(n[6], 0, 1e-6);
  EXPECT_NEAR(n[7], 1, 1e-6);
  auto q = x;
  kernels::rope(q.data(), 2, 6, 4, 1, inv_freq, kernels::RopePairing::Neox, 2.0f);
  // Neox: pair 0 = (x0, x2) -> (-x2, x0) * mscale 2; pair 1 = (x1, x3) angle 0, scaled by 2.
  EXPECT_NEAR(q[0], -6, 1e-5);
  EXPECT_NEAR(q[2], 2, 1e-5);
  EXPECT_NEAR(q[1], 4, 1e-5);
  EXPECT_NEAR(q[3], 8, 1e-5);
  EXPECT_EQ(q[5], 6);
}

TEST(Rope, InvFreqTables) {
  std::vector<float> f(32), g(32);
  kernels::rope_inv_freq(f.data(), 64, 10000.0f);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[16], 0.01f, 1e-9);  // 10000^(-32/64)
  kernels::rope_inv_freq_linear(g.data(), 64, 10000.0f, 4.0f);
  EXPECT_NEAR(g[16], 0.0025f, 1e-9);
  // YaRN with the deepseek-v3 golden's preset (base 1e4, n_rot 32, factor 40, orig 4096):
  // c(32) = 32 ln(4096 / (64 pi)) / (2 ln 1e4) = 5.24 -> lo 5; c(1) = 11.26 -> hi 12.
  std::vector<float> y(16), p(16);
  kernels::rope_inv_freq(p.data(), 32, 10000.0f);
  kernels::rope_inv_freq_yarn(y.data(), 32, 10000.0f, 40.0f, 4096);
  EXPECT_FLOAT_EQ(y[5], p[5]);            // r = 1: extrapolation
  EXPECT_FLOAT_EQ(y[12], p[12] / 40.0f);  // r = 0: interpolation
  EXPECT_FLOAT_EQ(y[15], p[15] / 40.0f);
  EXPECT_FLOAT_EQ(y[8], p[8] * (4.0f / 7 + (3.0f / 7) / 40.0f));  // r = 1 - 3/7
  EXPECT_NEAR(kernels::yarn_mscale(40.0f, 0.707f), 1 + 0.0707 * std::log(40.0), 1e-6);
  EXPECT_EQ(kernels::yarn_mscale(1.0f), 1.0f);
}

TEST(Rope, Llama3ScalingMatchesConverterFactors) {
  // The llama-rope-scaled golden: base 5e5, llama3 x32, low 1, high 4, orig 8192, n_rot 64.
  auto file = gguf::File::open(test::shared_path("golden/llama-rope-scaled/f32.gguf"));
  auto rf = file->tensor("rope_freqs.weight");
  ASSERT_TRUE(rf.has_value());
  ASSERT_EQ(rf->n_elements(), 32);
  std::vector<float> a(32), b(32);
  kernels::rope_inv_freq_factors(a.data(), 64, 500000.0f, static_cast<const float*>(rf->data));
  kernels::rope_inv_freq_llama3(b.data(), 64, 500000.0f, 32.0f, 1.0f, 4.0f, 8192);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(b[i], a[i], 1e-6 * a[i]) << i;
}

struct Cache {
  std::vector<std::vector<uint8_t>> pages;
  std::vector<const void*> ptrs;
  kernels::KVSpan span;
};

// n_tokens rows of `row` floats in pages of page_tokens, stored as F32 or F16.
Cache make_cache(DType t, int64_t n_tokens, int64_t page_tokens, int64_t row, uint32_t seed) {
  Cache c;
  auto v = randn(n_tokens * row, seed);
  const size_t esz = t == DType::F16 ? 2 : 4;
  for (int64_t p = 0; p * page_tokens < n_tokens; ++p) {
    c.pages.emplace_back(static_cast<size_t>(page_tokens * row) * esz);
    for (int64_t j = 0; j < page_tokens && p * page_tokens + j < n_tokens; ++j)
      for (int64_t i = 0; i < row; ++i) {
        const float x = v[(p * page_tokens + j) * row + i];
        if (t == DType::F16) {
          const uint16_t h = f32_to_f16(x);
          std::memcpy(&c.pages.back()[(j * row + i) * 2], &h, 2);
        } else {
          std::memcpy(&c.pages.back()[(j * row + i) * 4], &x, 4);
        }
      }
  }
  for (auto& p : c.pages) c.ptrs.push_back(p.data());
  c.span = {t, page_tokens, c.ptrs.data(), row};
  return c;
}

TEST_P(OpsIsa, AttentionFastAgreesWithReference) {
  const struct {
    int64_t n_head, n_head_kv, dk, dv, tokens, begin;
  } cases[] = {{4, 2, 64, 64, 1, 0},
               {4, 2, 64, 64, 300, 0},
               {8, 1, 40, 24, 77, 5},
               {6, 3, 128, 128, 1500, 0},
               {4, 4, 19, 11, 130, 129}};
  for (const auto& c : cases)
    for (DType t : {DType::F32, DType::F16}) {
      Cache k = make_cache(t, c.tokens, 16, c.n_head_kv * c.dk, 21);
      Cache v = make_cache(t, c.tokens, 16, c.n_head_kv * c.dv, 22);
      auto q = randn(c.n_head * c.dk, 23);
      std::vector<float> out[2];
      both(GetParam(), [&](int f) {
        out[f].assign(c.n_head * c.dv, NAN);
        kernels::attention(q.data(), c.n_head, c.n_head_kv, c.dk, c.dv, k.span, v.span, c.begin, c.tokens,
                           1.0f / std::sqrt(static_cast<float>(c.dk)), out[f].data());
      });
      // Outputs are convex combinations of V rows (|v| ~ 1): 1e-5 absolute.
      for (size_t i = 0; i < out[0].size(); ++i)
        ASSERT_NEAR(out[0][i], out[1][i], 1e-5) << dtype_name(t) << " tokens " << c.tokens << " at " << i;
    }
}

// The rows of a Q8_0 or Q4_0 cache (quantised from the same values as make_cache's) and an F32
// cache of exactly what those rows dequantise to.
std::pair<Cache, Cache> make_quantised_cache(DType t, int64_t n_tokens, int64_t page_tokens, int64_t row,
                                             uint32_t seed) {
  Cache f = make_cache(DType::F32, n_tokens, page_tokens, row, seed);
  Cache qc;
  for (size_t p = 0; p < f.pages.size(); ++p) {
    qc.pages.emplace_back(kernels::kv_bytes(t, page_tokens * row));
    for (int64_t j = 0; j < page_tokens && static_cast<int64_t>(p) * page_tokens + j < n_tokens; ++j) {
      float* src = reinterpret_cast<float*>(f.pages[p].data()) + j * row;
      uint8_t* dst = qc.pages.back().data() + kernels::kv_bytes(t, j * row);
      quantize_row(t, src, dst, row);
      dequantize_row_ref(t, dst, src, row);  // the F32 twin holds the quantised values
    }
  }
  for (auto& p : qc.pages) qc.ptrs.push_back(p.data());
  qc.span = {t, page_tokens, qc.ptrs.data(), row};
  return {std::move(qc), std::move(f)};
}

// Q8_0 / Q4_0 caches are read directly by both kernels (one query row, many rows); the
// results are those of an F32 cache holding the dequantised values, up to float rounding (or,
// where one query row's keys meet an int8 query, up to that query's rounding).
TEST_P(OpsIsa, AttentionReadsQuantisedCaches) {
  const struct {
    int64_t n_head, n_head_kv, dk, dv, tokens;
  } cases[] = {{4, 2, 64, 64, 1}, {4, 2, 64, 64, 300}, {8, 1, 576, 512, 70}, {6, 3, 128, 32, 130}};
  for (const auto& c : cases)
    for (DType t : {DType::Q8_0, DType::Q4_0}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " tokens " + std::to_string(c.tokens));
      auto [kq, kf] = make_quantised_cache(t, c.tokens, 16, c.n_head_kv * c.dk, 31);
      auto [vq, vf] = make_quantised_cache(t, c.tokens, 16, c.n_head_kv * c.dv, 32);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
      test::WithIsa scope(GetParam());
      // One query token over the whole cache.
      auto q = randn(c.n_head * c.dk, 33);
      std::vector<float> got(c.n_head * c.dv), want(c.n_head * c.dv);
      kernels::attention(q.data(), c.n_head, c.n_head_kv, c.dk, c.dv, kq.span, vq.span, 0, c.tokens, scale, got.data());
      kernels::attention(q.data(), c.n_head, c.n_head_kv, c.dk, c.dv, kf.span, vf.span, 0, c.tokens, scale,
                         want.data());
      if (test::int8_query(GetParam(), t, t)) {
        // The integer key dot quantises the query: exact against its own reference, within the
        // int8 query's bound of the F32 cache's result.
        std::vector<float> ref(got.size());
        test::attention_int8_query_reference(q.data(), c.n_head, c.n_head_kv, c.dk, c.dv, kq.span, vq.span, 0, c.tokens,
                                             scale, ref.data());
        for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-5) << i;
        for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], test::kInt8QueryBound) << i;
      } else {
        for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << i;
      }
      // The last rows of a prompt, causally.
      const int64_t n_rows = std::min<int64_t>(c.tokens, 20);
      std::vector<int64_t> pos(static_cast<size_t>(n_rows));
      for (int64_t r = 0; r < n_rows; ++r) pos[r] = c.tokens - n_rows + r;
      auto qr = randn(n_rows * c.n_head * c.dk, 34);
      std::vector<float> got_rows(n_rows * c.n_head * c.dv), want_rows(got_rows.size());
      kernels::attention_rows(qr.data(), n_rows, pos, c.n_head, c.n_head_kv, c.dk, c.dv, kq.span, vq.span, 0, scale,
                              got_rows.data());
      kernels::attention_rows(qr.data(), n_rows, pos, c.n_head, c.n_head_kv, c.dk, c.dv, kf.span, vf.span, 0, scale,
                              want_rows.data());
      for (size_t i = 0; i < got_rows.size(); ++i) ASSERT_NEAR(got_rows[i], want_rows[i], 1e-5) << i;
    }
}

TEST(Attention, SingleTokenReturnsItsValue) {
  Cache k = make_cache(DType::F32, 3, 2, 8, 1), v = make_cache(DType::F32, 3, 2, 8, 2);
  std::vector<float> q = randn(8, 3), out(8);
  for (Isa isa : kernels::available_isas()) {
    test::WithIsa scope(isa);
    kernels::attention(q.data(), 1, 1, 8, 8, k.span, v.span, 2, 3, 0.5f, out.data());
    for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(out[i], reinterpret_cast<const float*>(v.pages[1].data())[i]);
  }
}

TEST(AttentionBadInput, HeadsNotDivisibleAndWrongCacheType) {
  Cache k = make_cache(DType::F32, 2, 2, 8, 1), v = make_cache(DType::F32, 2, 2, 8, 2);
  std::vector<float> q(24), out(24);
  EXPECT_THROW(kernels::attention(q.data(), 3, 2, 4, 4, k.span, v.span, 0, 2, 1.0f, out.data()), Error);
  kernels::KVSpan bad = k.span;
  bad.type = DType::BF16;
  EXPECT_THROW(kernels::attention(q.data(), 2, 2, 4, 4, bad, v.span, 0, 2, 1.0f, out.data()), Error);
  bad.type = DType::Q8_0;  // heads of 4 values do not fill Q8_0's blocks of 32
  EXPECT_THROW(kernels::attention(q.data(), 2, 2, 4, 4, bad, v.span, 0, 2, 1.0f, out.data()), Error);
}

TEST(TopK, LargestFirstTiesByIndex) {
  const float x[] = {1, 5, 3, 5, -2, 3};
  int32_t idx[4];
  kernels::top_k(x, 6, 4, idx);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 3);
  EXPECT_EQ(idx[2], 2);
  EXPECT_EQ(idx[3], 5);
}

}  // namespace
}  // namespace owl
