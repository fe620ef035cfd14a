// attention() for one query token (decode): the fast kernels of each ISA against the scalar
// reference over every KV cache type, odd head sizes, GQA ratios, contexts long enough to be
// split into several parts, MLA's shared latent rows (K and V the same cached rows); and
// bit-identical results for any thread count, called alone or from inside a pool task. Where a
// kernel scores Q8_0/Q4_0 keys against an int8 query (AVX-512 VNNI), it is held to the scalar
// reference of that arithmetic (attention_int8_reference.h) as tightly as the others are to the
// exact one, and to the exact f32 attention within the int8 query's measured bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "attention_int8_reference.h"
#include "kv_cache_fixture.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using kernels::Isa;

using test::Cache;
using test::make_cache;
using test::randn;

struct Case {
  int64_t n_head, n_head_kv, dk, dv, begin, end;
};

std::string describe(const Case& c, DType kt, DType vt) {
  return std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " heads, dk " + std::to_string(c.dk) + " dv " +
         std::to_string(c.dv) + ", tokens [" + std::to_string(c.begin) + ", " + std::to_string(c.end) + "), K " +
         dtype_name(kt) + " V " + dtype_name(vt);
}

std::vector<float> run(const Case& c, const std::vector<float>& q, const kernels::KVSpan& k, const kernels::KVSpan& v) {
  std::vector<float> out(static_cast<size_t>(c.n_head * c.dv), NAN);
  kernels::attention(q.data(), c.n_head, c.n_head_kv, c.dk, c.dv, k, v, c.begin, c.end,
                     1.0f / std::sqrt(static_cast<float>(c.dk)), out.data());
  return out;
}

// Outputs are convex combinations of V rows with N(0,1) entries: compared to 1e-5 absolute.
void expect_agree(const std::vector<float>& a, const std::vector<float>& b, const std::string& what,
                  double tol = 1e-5) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_FALSE(std::isnan(a[i])) << what << " at " << i;
    ASSERT_NEAR(a[i], b[i], tol) << what << " at " << i;
  }
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// The fast kernel's result against the scalar reference it must match: the exact one, or the
// int8 query's (test::attention_int8_query_reference) where the ISA takes the integer key dot
// for these cache types; then also against the exact result within kInt8QueryBound. Returns the
// int8 query's distance from the exact result (0 where it does not apply).
double expect_matches_reference(Isa isa, const Case& c, const std::vector<float>& q, const kernels::KVSpan& k,
                                const kernels::KVSpan& v, const std::string& what) {
  std::vector<float> fast, exact;
  {
    test::WithIsa scope(isa);
    fast = run(c, q, k, v);
  }
  {
    test::WithIsa scope(Isa::Scalar);
    exact = run(c, q, k, v);
  }
  if (!test::int8_query(isa, k.type, v.type)) {
    expect_agree(fast, exact, what);
    return 0;
  }
  std::vector<float> ref(fast.size());
  test::attention_int8_query_reference(q.data(), c.n_head, c.n_head_kv, c.dk, c.dv, k, v, c.begin, c.end,
                                       1.0f / std::sqrt(static_cast<float>(c.dk)), ref.data());
  expect_agree(fast, ref, "int8 query, " + what);
  expect_agree(fast, exact, "int8 query against exact, " + what, test::kInt8QueryBound);
  return max_abs_diff(fast, exact);
}

const Case kCases[] = {
    {16, 8, 128, 128, 0, 1},       // Qwen3-0.6B, the first token
    {16, 8, 128, 128, 0, 300},     // ... a short context (one part, heads split)
    {16, 8, 128, 128, 0, 2100},    // ... eight parts of 288 tokens (pages of 16: parts cut pages)
    {16, 8, 128, 128, 500, 5000},  // ... a sliding window's range
    {8, 2, 64, 64, 0, 777},        // group 4
    {10, 2, 96, 64, 3, 1234},      // group 5 (tiles of 4 leave 1), dk != dv
    {12, 4, 64, 96, 1, 1301},      // group 3, dv 96: value slices of one vector in a block's second half
    {16, 8, 128, 128, 7, 2110},    // parts and chunks starting mid-quad, a last chunk of 7 keys
    {3, 1, 32, 32, 0, 35},         // group 3, a last chunk of 3 keys
    {4, 4, 19, 11, 0, 300},        // no grouping, head dims not multiples of 8 (F32/F16 only)
    {6, 3, 40, 24, 7, 650},        // multiples of 8, not 16 (F32/F16 only)
    {7, 7, 8, 8, 0, 4097},         // tiny heads over a long context
};

class AttentionDecodeIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, AttentionDecodeIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(AttentionDecodeIsa);

TEST_P(AttentionDecodeIsa, AgreesWithReferenceOverCacheTypes) {
  double worst = 0;
  for (const Case& c : kCases) {
    const bool blocks_fit = c.dk % kQK == 0 && c.dv % kQK == 0;
    std::vector<std::pair<DType, DType>> types = {{DType::F32, DType::F32}, {DType::F16, DType::F16}};
    if (blocks_fit)
      types.insert(types.end(), {{DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0}, {DType::F16, DType::Q8_0}});
    for (auto [kt, vt] : types) {
      const Cache k = make_cache(kt, c.end, c.end + 5, 16, c.n_head_kv * c.dk, 41);
      const Cache v = make_cache(vt, c.end, c.end + 5, 16, c.n_head_kv * c.dv, 42);
      const auto q = randn(c.n_head * c.dk, 43);
      worst = std::max(worst, expect_matches_reference(GetParam(), c, q, k.span, v.span, describe(c, kt, vt)));
    }
  }
  if (worst > 0) std::printf("[int8 query] max |fast - exact f32| over the cases: %.3g\n", worst);
}

// MLA (absorbed form): one cached row per token, [latent (512) | k_pe (64)]; the keys are the
// whole row and the values its first 512 entries, read through the same span.
TEST_P(AttentionDecodeIsa, SharedLatentRowsAgreeWithReference) {
  double worst = 0;
  for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0})
    for (int64_t end : {1, 100, 3000}) {
      const Case c{16, 1, 576, 512, 0, end};
      const Cache rows = make_cache(t, end, end + 3, 32, 576, 51);
      const auto q = randn(16 * 576, 52);
      worst = std::max(
          worst, expect_matches_reference(GetParam(), c, q, rows.span, rows.span, "shared rows, " + describe(c, t, t)));
    }
  if (worst > 0) std::printf("[int8 query] max |fast - exact f32| over MLA's rows: %.3g\n", worst);
}

// The int8 query's rounding: ties go to even (x * 127 / amax = k + 0.5 exactly, as the reference
// rounds them), an all-zero block quantises to zeros with scale 0, and a block's largest value
// maps to +-127. A query of such blocks (amax 127, so x * (127 / amax) = x) against Q8_0/Q4_0
// keys: one unit in any query integer moves a score by d_key * d_query * key, far above 1e-5.
TEST_P(AttentionDecodeIsa, Int8QueryRoundsTiesToEvenAndKeepsZeroBlocks) {
  const Case c{2, 1, 128, 32, 0, 70};
  std::vector<float> q(2 * 128);
  for (int64_t i = 0; i < 128; ++i) {
    q[static_cast<size_t>(i)] = i % 32 == 0 ? 127.0f : static_cast<float>(i % 9) - 4.5f;  // ties at every element
    q[static_cast<size_t>(128 + i)] = i < 32 ? 0.0f : (i % 32 == 5 ? -127.0f : static_cast<float>(i % 7) * 2.5f);
  }
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    const Cache k = make_cache(t, c.end, c.end, 16, c.dk, 81);
    const Cache v = make_cache(t, c.end, c.end, 16, c.dv, 82);
    // Scores spread over ~+-150: scaled by 0.01 the softmax stays soft, and rounding a tie the
    // other way (half the elements) moves a score by ~0.1.
    const float scale = 0.01f;
    std::vector<float> fast(static_cast<size_t>(2 * c.dv)), ref(fast.size());
    {
      test::WithIsa scope(GetParam());
      kernels::attention(q.data(), 2, 1, 128, 32, k.span, v.span, 0, c.end, scale, fast.data());
    }
    if (test::int8_query(GetParam(), t, t)) {
      test::attention_int8_query_reference(q.data(), 2, 1, 128, 32, k.span, v.span, 0, c.end, scale, ref.data());
    } else {
      test::WithIsa scope(Isa::Scalar);
      kernels::attention(q.data(), 2, 1, 128, 32, k.span, v.span, 0, c.end, scale, ref.data());
    }
    expect_agree(fast, ref, std::string("ties and zero blocks, ") + dtype_name(t));
  }
}

TEST(AttentionDecode, BitIdenticalForAnyThreadCountAndNested) {
  const int restore = default_pool().size();
  for (const Case& c : {Case{16, 8, 128, 128, 0, 5000}, Case{16, 1, 576, 512, 0, 2000}, Case{8, 2, 64, 64, 0, 100}})
    for (DType t : {DType::F16, DType::Q8_0, DType::Q4_0}) {
      const Cache k = make_cache(t, c.end, c.end, 32, c.n_head_kv * c.dk, 61);
      const Cache v = make_cache(t, c.end, c.end, 32, c.n_head_kv * c.dv, 62);
      const auto q = randn(c.n_head * c.dk, 63);
      set_default_threads(1);
      const auto one = run(c, q, k.span, v.span);
      for (int threads : {2, 3}) {
        set_default_threads(threads);
        const auto many = run(c, q, k.span, v.span);
        ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
            << threads << " threads, " << describe(c, t, t);
        // Called from a pool task (as the engine does for a batch of decode rows): runs inline.
        std::vector<float> nested;
        default_pool().run(1, [&](int, int) { nested = run(c, q, k.span, v.span); });
        ASSERT_EQ(0, std::memcmp(one.data(), nested.data(), one.size() * sizeof(float)))
            << "nested, " << threads << " threads, " << describe(c, t, t);
      }
    }
  set_default_threads(restore);
}

TEST(AttentionDecode, EmptyRangeGivesZeros) {
  const Cache k = make_cache(DType::F16, 4, 4, 2, 16, 71), v = make_cache(DType::F16, 4, 4, 2, 16, 72);
  const auto q = randn(32, 73);
  for (Isa isa : kernels::available_isas()) {
    test::WithIsa scope(isa);
    const auto out = run(Case{2, 1, 16, 16, 3, 3}, q, k.span, v.span);
    for (float x : out) EXPECT_EQ(x, 0.0f) << kernels::isa_name(isa);
  }
}

}  // namespace
}  // namespace owl
