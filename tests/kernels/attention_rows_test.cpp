// attention_rows (many query rows of one sequence, as in prefill) against the single-row
// attention() run row by row and against its scalar reference: odd shapes, F16/F32 caches, a
// prompt appended after cached tokens, sliding windows, thread counts, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "kv_cache_fixture.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using test::Cache;
using test::make_cache;
using test::randn;

struct Case {
  int64_t n_head, n_head_kv, dk, dv, n_rows, first_pos, window;
};

// A prompt of n_rows tokens at positions first_pos, first_pos + 1, ... (cached rows before it).
std::vector<int64_t> prompt_positions(const Case& c) {
  std::vector<int64_t> pos(static_cast<size_t>(c.n_rows));
  for (int64_t r = 0; r < c.n_rows; ++r) pos[static_cast<size_t>(r)] = c.first_pos + r;
  return pos;
}

struct Problem {
  Cache k, v;
  std::vector<float> q;
};

Problem make_problem(const Case& c, DType kt, DType vt, int64_t last_pos) {
  const int64_t valid = last_pos + 1;
  return {make_cache(kt, valid, valid + 5, 16, c.n_head_kv * c.dk, 31),
          make_cache(vt, valid, valid + 5, 16, c.n_head_kv * c.dv, 32), randn(c.n_rows * c.n_head * c.dk, 33)};
}

float scale_of(const Case& c) { return 1.0f / std::sqrt(static_cast<float>(c.dk)); }

std::vector<float> rows_kernel(const Case& c, const Problem& p, const std::vector<int64_t>& pos) {
  std::vector<float> out(static_cast<size_t>(c.n_rows * c.n_head * c.dv), NAN);
  kernels::attention_rows(p.q.data(), c.n_rows, pos, c.n_head, c.n_head_kv, c.dk, c.dv, p.k.span, p.v.span, c.window,
                          scale_of(c), out.data());
  return out;
}

// The single-row kernel for each row, with the row's own [begin, position] range.
std::vector<float> row_by_row(const Case& c, const Problem& p, const std::vector<int64_t>& pos) {
  std::vector<float> out(static_cast<size_t>(c.n_rows * c.n_head * c.dv), NAN);
  for (int64_t r = 0; r < c.n_rows; ++r) {
    const int64_t end = pos[static_cast<size_t>(r)] + 1;
    const int64_t begin = c.window > 0 ? std::max<int64_t>(0, end - c.window) : 0;
    kernels::attention(p.q.data() + r * c.n_head * c.dk, c.n_head, c.n_head_kv, c.dk, c.dv, p.k.span, p.v.span, begin,
                       end, scale_of(c), out.data() + r * c.n_head * c.dv);
  }
  return out;
}

// Outputs are convex combinations of V rows with N(0,1) entries: compared to 1e-5 absolute.
void expect_agree(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_FALSE(std::isnan(a[i])) << what << " at " << i;
    ASSERT_NEAR(a[i], b[i], 1e-5) << what << " at " << i;
  }
}

const Case kCases[] = {
    {16, 8, 128, 128, 64, 0, 0},    // Qwen3-0.6B, the first chunk of a prompt
    {16, 8, 128, 128, 64, 448, 0},  // ... and a later one
    {8, 2, 64, 64, 70, 13, 0},      // group 4, rows not a multiple of the block
    {6, 3, 40, 24, 33, 100, 0},     // dk != dv, neither a multiple of 32
    {4, 4, 19, 11, 17, 3, 0},       // no grouping, head dims not multiples of 8
    {5, 1, 12, 20, 9, 0, 0},        // one KV head, odd group of 5
    {8, 1, 16, 16, 4, 50, 0},       // few rows over one KV head: blocks of one row
    {4, 2, 32, 32, 1, 40, 0},       // a single row
    {4, 2, 32, 32, 2, 0, 0},        // two rows from the start
    {8, 2, 64, 48, 50, 200, 37},    // sliding window shorter than the prompt
    {4, 1, 24, 24, 40, 10, 100},    // sliding window longer than everything
    {3, 3, 8, 8, 65, 0, 1},         // window 1: every row sees only itself
    {48, 2, 16, 16, 20, 5, 0},      // group 24: AVX-512 blocks of 48 queries, 3 vectors of 16
};

using kernels::Isa;
using test::WithIsa;

// The fast-vs-reference tests, once per fast ISA of this CPU.
class AttentionRowsIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, AttentionRowsIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(AttentionRowsIsa);

TEST_P(AttentionRowsIsa, AgreesWithRowByRowAndReference) {
  for (const Case& c : kCases)
    for (DType kt : {DType::F32, DType::F16})
      for (DType vt : {DType::F32, DType::F16}) {
        const auto pos = prompt_positions(c);
        const Problem p = make_problem(c, kt, vt, pos.back());
        const std::string what = "rows " + std::to_string(c.n_rows) + " first " + std::to_string(c.first_pos) + " dk " +
                                 std::to_string(c.dk) + " K " + dtype_name(kt) + " V " + dtype_name(vt);
        std::vector<float> fast, single, reference, single_reference;
        {
          WithIsa scope(GetParam());
          fast = rows_kernel(c, p, pos);
          single = row_by_row(c, p, pos);
        }
        {
          WithIsa scope(Isa::Scalar);
          reference = rows_kernel(c, p, pos);
          single_reference = row_by_row(c, p, pos);
        }
        expect_agree(fast, single, what + " (fast vs attention per row)");
        expect_agree(fast, reference, what + " (fast vs reference)");
        // The reference of attention_rows is the reference of attention, row by row.
        ASSERT_EQ(0, std::memcmp(reference.data(), single_reference.data(), reference.size() * sizeof(float))) << what;
      }
}

// MLA's absorbed form passes the latent rows as both keys and values (the values are the first
// dv elements of each key row, one KV head for all query heads). The kernel then reads each row
// once, with the keys; the results equal those with the values in a separate copy of the same
// rows, bit for bit, and agree with attention() per row.
TEST_P(AttentionRowsIsa, ValuesInsideTheKeyRowsGiveTheSameBits) {
  for (const Case& c : {Case{16, 1, 96, 64, 40, 30, 0}, Case{16, 1, 576, 512, 20, 70, 0}, Case{4, 1, 40, 24, 18, 5, 0}})
    for (DType t : {DType::F32, DType::F16}) {
      const auto pos = prompt_positions(c);
      const int64_t valid = pos.back() + 1;
      const Cache rows = make_cache(t, valid, valid + 5, 16, c.dk, 31);
      const Cache copy = make_cache(t, valid, valid + 5, 16, c.dk, 31);  // the same values, other pages
      const auto q = randn(c.n_rows * c.n_head * c.dk, 33);
      const auto n_out = static_cast<size_t>(c.n_rows * c.n_head * c.dv);
      std::vector<float> shared(n_out, NAN), separate(n_out, NAN), single(n_out, NAN);
      WithIsa scope(GetParam());
      kernels::attention_rows(q.data(), c.n_rows, pos, c.n_head, 1, c.dk, c.dv, rows.span, rows.span, 0, scale_of(c),
                              shared.data());
      kernels::attention_rows(q.data(), c.n_rows, pos, c.n_head, 1, c.dk, c.dv, rows.span, copy.span, 0, scale_of(c),
                              separate.data());
      for (int64_t r = 0; r < c.n_rows; ++r)
        kernels::attention(q.data() + r * c.n_head * c.dk, c.n_head, 1, c.dk, c.dv, rows.span, rows.span, 0,
                           pos[static_cast<size_t>(r)] + 1, scale_of(c), single.data() + r * c.n_head * c.dv);
      const std::string what = "dk " + std::to_string(c.dk) + " dv " + std::to_string(c.dv) + " " + dtype_name(t);
      ASSERT_EQ(0, std::memcmp(shared.data(), separate.data(), n_out * sizeof(float))) << what;
      expect_agree(shared, single, what + " (against attention per row)");
    }
}

TEST(AttentionRows, RepeatedAndGappedPositions) {
  // Non-decreasing is all that is asked: equal positions (two queries over the same keys) and
  // gaps are computed like any other row.
  const Case c{8, 4, 32, 16, 12, 0, 0};
  const std::vector<int64_t> pos = {0, 0, 3, 3, 3, 9, 20, 21, 40, 40, 41, 90};
  for (DType t : {DType::F32, DType::F16}) {
    const Problem p = make_problem(c, t, t, pos.back());
    expect_agree(rows_kernel(c, p, pos), row_by_row(c, p, pos), dtype_name(t));
  }
}

TEST(AttentionRows, FirstRowAtPositionZeroReturnsItsValue) {
  const Case c{2, 1, 8, 8, 3, 0, 0};
  const auto pos = prompt_positions(c);
  const Problem p = make_problem(c, DType::F32, DType::F32, pos.back());
  for (Isa isa : kernels::available_isas()) {
    WithIsa scope(isa);
    const auto out = rows_kernel(c, p, pos);
    const float* v0 = reinterpret_cast<const float*>(p.v.pages[0].data());
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(out[static_cast<size_t>(h * 8 + i)], v0[i]) << kernels::isa_name(isa);
  }
}

TEST(AttentionRows, BitIdenticalForAnyThreadCount) {
  const int restore = default_pool().size();
  for (const Case& c : {Case{16, 8, 128, 128, 64, 448, 0}, Case{8, 2, 64, 48, 50, 200, 37},
                        Case{6, 3, 40, 24, 33, 100, 0}, Case{5, 1, 12, 20, 9, 0, 0}}) {
    const auto pos = prompt_positions(c);
    const Problem p = make_problem(c, DType::F16, DType::F16, pos.back());
    set_default_threads(1);
    const auto one = rows_kernel(c, p, pos);
    for (int threads : {2, 3}) {
      set_default_threads(threads);
      const auto many = rows_kernel(c, p, pos);
      ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float))) << threads << " threads";
    }
  }
  set_default_threads(restore);
}

TEST(AttentionRowsBadInput, RowsPositionsHeadsAndCacheType) {
  const Case c{4, 2, 8, 8, 3, 0, 0};
  const Problem p = make_problem(c, DType::F32, DType::F32, 10);
  std::vector<float> out(static_cast<size_t>(3 * 4 * 8));
  const std::vector<int64_t> pos = {1, 2, 3};
  auto call = [&](int64_t n_rows, const std::vector<int64_t>& positions, int64_t n_head, int64_t n_head_kv,
                  const kernels::KVSpan& k) {
    kernels::attention_rows(p.q.data(), n_rows, positions, n_head, n_head_kv, 8, 8, k, p.v.span, 0, 1.0f, out.data());
  };
  for (Isa isa : kernels::available_isas()) {
    WithIsa scope(isa);
    EXPECT_NO_THROW(call(3, pos, 4, 2, p.k.span));
    EXPECT_THROW(call(2, pos, 4, 2, p.k.span), Error);         // rows != positions
    EXPECT_THROW(call(3, {1, 3, 2}, 4, 2, p.k.span), Error);   // decreasing
    EXPECT_THROW(call(3, {-1, 0, 1}, 4, 2, p.k.span), Error);  // negative
    EXPECT_THROW(call(3, pos, 4, 3, p.k.span), Error);         // heads not divisible
    EXPECT_THROW(call(3, pos, 4, 0, p.k.span), Error);         // no KV heads
    kernels::KVSpan bad = p.k.span;
    bad.type = DType::Q8_0;
    EXPECT_THROW(call(3, pos, 4, 2, bad), Error);  // cache type
  }
  try {
    call(2, pos, 4, 2, p.k.span);
    ADD_FAILURE() << "no error for 2 rows with 3 positions";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 query rows but 3 positions"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace owl
