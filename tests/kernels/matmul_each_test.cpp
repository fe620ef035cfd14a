// matmul_each and matmul_swiglu_each (several weights, each with its own input rows, in one pool
// dispatch: MoE decode's experts): every output equals the single-weight call's bit for bit,
// whatever the thread count, for odd output row counts, weights of different row lengths and
// types, inputs shared or not, expert slices of a packed 3-D stack, and rows past the wide
// kernels' threshold; malformed calls are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using kernels::Isa;
using test::make_weights;
using test::prepare_for;
using test::random_x;
using test::Weights;

class MatmulEachIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, MatmulEachIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MatmulEachIsa);

// What matmul(W, X, n_rows) gives on one thread.
std::vector<float> one_matmul(const kernels::Weight& W, const float* X, int64_t n_rows) {
  set_default_threads(1);
  std::vector<float> y(static_cast<size_t>(n_rows * W.out()), NAN);
  kernels::matmul(W, X, n_rows, y.data());
  return y;
}

std::vector<float> one_swiglu(const kernels::Weight& g, const kernels::Weight& u, const float* X, int64_t n_rows) {
  set_default_threads(1);
  std::vector<float> y(static_cast<size_t>(n_rows * g.out()), NAN);
  kernels::matmul_swiglu(g, u, X, n_rows, y.data());
  return y;
}

TEST_P(MatmulEachIsa, EqualsSeparateMatmulsBitForBit) {
  test::WithIsa scope(GetParam());
  // Row lengths 256 and 512, odd output counts (a partial tile, tails not a multiple of 8), packed
  // and plain weights of every activation type (Q8_K, Q8_0, F32).
  Weights a = make_weights(DType::Q4_K, 256, 2051, 1), b = make_weights(DType::Q6_K, 512, 37, 2),
          c = make_weights(DType::Q8_0, 256, 45, 3), f = make_weights(DType::F32, 512, 5, 4),
          e = make_weights(DType::Q5_0, 512, 1037, 5);
  const kernels::Weight pa = prepare_for(a.view, GetParam()), pb = prepare_for(b.view, GetParam()), pc = c.view,
                        pf = f.view, pe = prepare_for(e.view, GetParam());
  const kernels::Weight* Ws[] = {&pa, &pb, &pc, &pf, &pe, &pa};
  // The last weight again on the first's input (converted once), and 20 rows: the wide kernels.
  const int64_t rows[] = {1, 3, 1, 2, 20, 1};
  std::vector<std::vector<float>> xs;
  for (int i = 0; i < 5; ++i) xs.push_back(random_x(Ws[i]->in() * rows[i], 40 + static_cast<uint32_t>(i)));
  const float* Xs[] = {xs[0].data(), xs[1].data(), xs[2].data(), xs[3].data(), xs[4].data(), xs[0].data()};
  std::vector<std::vector<float>> want;
  for (int i = 0; i < 6; ++i) want.push_back(one_matmul(*Ws[i], Xs[i], rows[i]));
  for (int threads : {1, 2, 3}) {
    set_default_threads(threads);
    std::vector<std::vector<float>> ys(6);
    float* Ys[6];
    for (int i = 0; i < 6; ++i) {
      ys[i].assign(want[i].size(), NAN);
      Ys[i] = ys[i].data();
    }
    kernels::matmul_each(Ws, Xs, rows, Ys);
    for (int i = 0; i < 6; ++i)
      EXPECT_EQ(0, std::memcmp(want[i].data(), ys[i].data(), want[i].size() * 4))
          << "weight " << i << " threads " << threads;
  }
  set_default_threads(2);
}

// MoE decode: the chosen experts are slices of one packed 3-D stack, each with its own input row
// (the down projections) or the token's row for all (gate/up), plus shared experts of another
// shape; the hidden rows then go through the downs.
TEST_P(MatmulEachIsa, ExpertSlicesEqualPerExpertCallsBitForBit) {
  test::WithIsa scope(GetParam());
  // The downs take 256-long hidden rows (a K-quant's whole blocks) and give 201 (odd) here, so
  // the gate/up outputs (45 and 90 rows) are not chained into them: their inputs are random rows.
  const int64_t d = 256, ff = 45, fs = 90, n_exp = 6, dh = 256, dout = 201;
  Weights g = make_weights(DType::Q4_K, d, ff, 11, n_exp), u = make_weights(DType::Q4_K, d, ff, 12, n_exp),
          dn = make_weights(DType::Q6_K, dh, dout, 13, n_exp), sg = make_weights(DType::Q8_0, d, fs, 14),
          su = make_weights(DType::Q8_0, d, fs, 15);
  const kernels::Weight G = prepare_for(g.view, GetParam()), U = prepare_for(u.view, GetParam()),
                        D = prepare_for(dn.view, GetParam()), SG = sg.view, SU = su.view;
  const int chosen[] = {4, 0, 3, 5};
  std::vector<kernels::Weight> gs, us, ds;
  for (int e : chosen) {
    gs.push_back(kernels::matrix_slice(G, e));
    us.push_back(kernels::matrix_slice(U, e));
    ds.push_back(kernels::matrix_slice(D, e));
  }
  const auto token = random_x(d * 2, 21);    // two tokens
  const auto hidden = random_x(dh * 5, 22);  // each expert's own rows (expert 1: two)
  const int64_t rows[] = {1, 2, 1, 1, 2};    // the last: the shared experts on both tokens
  const float* gx[] = {token.data() + d, token.data(), token.data(), token.data() + d, token.data()};
  const float* dx[] = {hidden.data(), hidden.data() + dh, hidden.data() + 3 * dh, hidden.data() + 4 * dh,
                       hidden.data()};
  const kernels::Weight* gw[] = {&gs[0], &gs[1], &gs[2], &gs[3], &SG};
  const kernels::Weight* uw[] = {&us[0], &us[1], &us[2], &us[3], &SU};
  const kernels::Weight* dw[] = {&ds[0], &ds[1], &ds[2], &ds[3], &ds[0]};
  std::vector<std::vector<float>> want_h, want_y;
  for (int i = 0; i < 5; ++i) {
    want_h.push_back(one_swiglu(*gw[i], *uw[i], gx[i], rows[i]));
    want_y.push_back(one_matmul(*dw[i], dx[i], rows[i]));
  }
  for (int threads : {1, 2}) {
    set_default_threads(threads);
    std::vector<std::vector<float>> h(5), y(5);
    float* hp[5];
    float* yp[5];
    for (int i = 0; i < 5; ++i) {
      h[i].assign(want_h[i].size(), NAN);
      y[i].assign(want_y[i].size(), NAN);
      hp[i] = h[i].data();
      yp[i] = y[i].data();
    }
    kernels::matmul_swiglu_each(gw, uw, gx, rows, hp);
    kernels::matmul_each(dw, dx, rows, yp);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(0, std::memcmp(want_h[i].data(), h[i].data(), want_h[i].size() * 4))
          << "gate/up " << i << " threads " << threads;
      EXPECT_EQ(0, std::memcmp(want_y[i].data(), y[i].data(), want_y[i].size() * 4))
          << "down " << i << " threads " << threads;
    }
  }
  set_default_threads(2);
}

// The most weights a call takes, one row each, many small tasks at 2 threads; a weight with no
// rows is left alone.
TEST_P(MatmulEachIsa, FullCallAndEmptyWeight) {
  test::WithIsa scope(GetParam());
  Weights w = make_weights(DType::Q4_K, 256, 77, 31, kernels::kMaxMatmulEach);
  const kernels::Weight P = prepare_for(w.view, GetParam());
  std::vector<kernels::Weight> slices;
  for (int e = 0; e < kernels::kMaxMatmulEach; ++e) slices.push_back(kernels::matrix_slice(P, e));
  const auto x = random_x(256 * kernels::kMaxMatmulEach, 32);
  std::vector<const kernels::Weight*> Ws;
  std::vector<const float*> Xs;
  std::vector<int64_t> rows;
  std::vector<std::vector<float>> want, ys;
  for (int e = 0; e < kernels::kMaxMatmulEach; ++e) {
    Ws.push_back(&slices[static_cast<size_t>(e)]);
    Xs.push_back(x.data() + e * 256);
    rows.push_back(e == 5 ? 0 : 1);
    want.push_back(e == 5 ? std::vector<float>(77, NAN) : one_matmul(*Ws.back(), Xs.back(), 1));
  }
  set_default_threads(2);
  std::vector<float*> Ys;
  for (int e = 0; e < kernels::kMaxMatmulEach; ++e) ys.emplace_back(77, NAN);
  for (auto& y : ys) Ys.push_back(y.data());
  kernels::matmul_each(Ws, Xs, rows, Ys);
  for (int e = 0; e < kernels::kMaxMatmulEach; ++e)
    EXPECT_EQ(0, std::memcmp(want[e].data(), ys[e].data(), 77 * 4)) << "weight " << e;
}

TEST(MatmulEach, RejectsMalformedCalls) {
  Weights a = make_weights(DType::Q8_0, 64, 4, 1), b = make_weights(DType::Q8_0, 64, 5, 2);
  const kernels::Weight wa = a.view, wb = b.view;
  std::vector<float> x(64), y(5);
  const kernels::Weight* Ws[] = {&wa, &wb};
  const float* Xs[] = {x.data(), x.data()};
  const int64_t rows[] = {1, 1};
  float* Ys[] = {y.data(), y.data()};
  // Counts that do not match.
  EXPECT_THROW(kernels::matmul_each(Ws, std::span(Xs, 1), rows, Ys), Error);
  EXPECT_THROW(kernels::matmul_each(Ws, Xs, std::span(rows, 1), Ys), Error);
  EXPECT_THROW(kernels::matmul_each(Ws, Xs, rows, std::span(Ys, 1)), Error);
  EXPECT_THROW(kernels::matmul_each(std::span<const kernels::Weight* const>(), std::span<const float* const>(),
                                    std::span<const int64_t>(), std::span<float* const>()),
               Error);
  // More than kMaxMatmulEach.
  std::vector<const kernels::Weight*> many(kernels::kMaxMatmulEach + 1, &wa);
  std::vector<const float*> mx(many.size(), x.data());
  std::vector<int64_t> mr(many.size(), 1);
  std::vector<float*> my(many.size(), y.data());
  EXPECT_THROW(kernels::matmul_each(many, mx, mr, my), Error);
  // A gate and an up of different shapes.
  const kernels::Weight* gates[] = {&wa};
  const kernels::Weight* ups[] = {&wb};
  EXPECT_THROW(kernels::matmul_swiglu_each(gates, ups, std::span(Xs, 1), std::span(rows, 1), std::span(Ys, 1)), Error);
  EXPECT_THROW(kernels::matmul_swiglu_each(gates, Ws, std::span(Xs, 1), std::span(rows, 1), std::span(Ys, 1)), Error);
}

}  // namespace
}  // namespace owl
