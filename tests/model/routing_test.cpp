// The MoE router and block against hand-computed cases, and the grouped
// (per-expert) evaluation against a direct per-token one.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "model/mla.h"
#include "model/moe.h"
#include "tensor/quants.h"

namespace owl {
namespace {

MoeOptions options(int64_t n_expert, int64_t k, ExpertGating gating) {
  MoeOptions o;
  o.n_expert = n_expert;
  o.n_expert_used = k;
  o.gating = gating;
  return o;
}

TEST(MoeRouting, SoftmaxTopKKeepsUnnormalisedProbabilities) {
  // probs = (1, 2, 3, 4) / 10
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  Routing r = route_experts(logits.data(), 1, options(4, 2, ExpertGating::Softmax), nullptr);
  ASSERT_EQ(r.k, 2);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{3, 2}));
  EXPECT_NEAR(r.weights[0], 0.4f, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.3f, 1e-6);
}

TEST(MoeRouting, NormalisedWeightsSumToOneThenScale) {
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  MoeOptions o = options(4, 2, ExpertGating::Softmax);
  o.norm_weights = true;
  Routing r = route_experts(logits.data(), 1, o, nullptr);
  EXPECT_NEAR(r.weights[0], 4.0f / 7.0f, 1e-6);
  EXPECT_NEAR(r.weights[1], 3.0f / 7.0f, 1e-6);
  o.weights_scale = 2.5f;
  r = route_experts(logits.data(), 1, o, nullptr);
  EXPECT_NEAR(r.weights[0], 2.5f * 4.0f / 7.0f, 1e-6);
  EXPECT_NEAR(r.weights[1], 2.5f * 3.0f / 7.0f, 1e-6);
}

TEST(MoeRouting, BiasSelectsButWeightsStayUnbiased) {
  // sigmoid(0) = 0.5 for all; the bias alone decides which experts win.
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};
  const std::vector<float> bias = {0.0f, 0.1f, 0.0f, 0.2f};
  Routing r = route_experts(logits.data(), 1, options(4, 2, ExpertGating::Sigmoid), bias.data());
  EXPECT_EQ(r.experts, (std::vector<int32_t>{3, 1}));
  EXPECT_NEAR(r.weights[0], 0.5f, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.5f, 1e-6);
}

TEST(MoeRouting, GroupLimitUsesSumOfTopTwoPerGroup) {
  // 8 experts in 4 groups of 2, keep 2 groups, pick 2 experts. Selection values
  // (sigmoid + bias):  g0: 1.4, 0.0   g1: 1.05, 0.75   g2: 1.35, 0.0   g3: 0.6, 0.5
  // Group scores 1.4, 1.8, 1.35, 1.1 keep g1 and g0. Without groups the second pick
  // would be expert 4 (1.35); with them it is expert 2 (1.05).
  std::vector<float> logits(8, 0.0f);
  logits[2] = std::log(3.0f);  // sigmoid = 0.75
  const std::vector<float> bias = {0.9f, -0.5f, 0.3f, 0.25f, 0.85f, -0.5f, 0.1f, 0.0f};
  MoeOptions o = options(8, 2, ExpertGating::Sigmoid);
  Routing ungrouped = route_experts(logits.data(), 1, o, bias.data());
  EXPECT_EQ(ungrouped.experts, (std::vector<int32_t>{0, 4}));

  o.n_group = 4;
  o.n_group_used = 2;
  o.norm_weights = true;
  o.weights_scale = 2.5f;
  Routing r = route_experts(logits.data(), 1, o, bias.data());
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 2}));
  // Unbiased sigmoid probs 0.5 and 0.75, normalised (0.4, 0.6), times 2.5.
  EXPECT_NEAR(r.weights[0], 1.0f, 1e-6);
  EXPECT_NEAR(r.weights[1], 1.5f, 1e-6);
}

TEST(MoeRouting, NormalisationClampsTinySums) {
  const std::vector<float> logits = {-20.0f, -20.0f, -30.0f};
  MoeOptions o = options(3, 2, ExpertGating::Sigmoid);
  o.norm_weights = true;
  Routing r = route_experts(logits.data(), 1, o, nullptr);
  const float p = 1.0f / (1.0f + std::exp(20.0f));
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(r.weights[0], p / 6.103515625e-5f, 1e-9);
}

TEST(MoeRouting, EachTokenRoutedIndependently) {
  const std::vector<float> logits = {5.0f, 0.0f, 0.0f,   // token 0 -> expert 0
                                     0.0f, 0.0f, 5.0f};  // token 1 -> expert 2
  Routing r = route_experts(logits.data(), 2, options(3, 1, ExpertGating::Softmax), nullptr);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 2}));
  EXPECT_NEAR(r.weights[0], r.weights[1], 1e-7);
}

TEST(MoeRouting, ConfigErrorsAreClear) {
  ModelConfig c;
  c.n_expert = 16;
  c.n_expert_used = 4;
  c.expert_group_count = 3;  // 16 experts do not split into 3 groups
  EXPECT_THROW(MoeOptions::from_config(c), Error);
  c.expert_group_count = 4;
  c.expert_group_used = 1;  // the one kept group of 4 experts supplies 4 experts
  EXPECT_NO_THROW(MoeOptions::from_config(c));
  c.n_expert_used = 5;  // but not 5
  EXPECT_THROW(MoeOptions::from_config(c), Error);
  c.n_expert_used = 0;
  EXPECT_THROW(MoeOptions::from_config(c), Error);
}

// ---- the block ----

TensorView f32_view(const std::vector<float>& v, int64_t ne0, int64_t ne1, int64_t ne2 = 1) {
  TensorView t;
  t.type = DType::F32;
  t.n_dims = ne2 > 1 ? 3 : 2;
  t.ne = {ne0, ne1, ne2, 1};
  t.data = v.data();
  return t;
}

std::vector<float> randn(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// expert(x) computed directly from the stacked weights, one token at a time.
std::vector<float> expert_direct(const std::vector<float>& gate, const std::vector<float>& up,
                                 const std::vector<float>& down, int64_t e, const float* x, int64_t d, int64_t ff) {
  std::vector<float> h(static_cast<size_t>(ff)), y(static_cast<size_t>(d), 0.0f);
  for (int64_t j = 0; j < ff; ++j) {
    double g = 0, u = 0;
    for (int64_t i = 0; i < d; ++i) {
      g += gate[(e * ff + j) * d + i] * x[i];
      u += up[(e * ff + j) * d + i] * x[i];
    }
    h[j] = static_cast<float>(g / (1 + std::exp(-g)) * u);
  }
  for (int64_t o = 0; o < d; ++o) {
    double acc = 0;
    for (int64_t j = 0; j < ff; ++j) acc += down[(e * d + o) * ff + j] * h[j];
    y[o] = static_cast<float>(acc);
  }
  return y;
}

// moe_forward against a per-token sum of directly evaluated experts. Seven tokens take the
// grouped path (each expert's matmuls over the pool); one token the decode path (whole experts
// and the shared expert as the pool's tasks).
void check_moe_block(int64_t n_tok) {
  const int64_t d = 16, ff = 8, n_exp = 6, k = 2;
  std::mt19937 rng(42);
  auto router = randn(d * n_exp, rng, 1.0f), bias = randn(n_exp, rng, 0.1f);
  auto gate = randn(n_exp * ff * d, rng, 0.3f), up = randn(n_exp * ff * d, rng, 0.3f);
  auto down = randn(n_exp * d * ff, rng, 0.3f);
  auto sg = randn(ff * d, rng, 0.3f), su = randn(ff * d, rng, 0.3f), sd = randn(d * ff, rng, 0.3f);
  auto x = randn(n_tok * d, rng, 1.0f);

  MoeWeights w;
  w.gate_inp = f32_view(router, d, n_exp);
  w.probs_bias = f32_view(bias, n_exp, 1);
  w.gate_exps = f32_view(gate, d, ff, n_exp);
  w.up_exps = f32_view(up, d, ff, n_exp);
  w.down_exps = f32_view(down, ff, d, n_exp);
  w.gate_shexp = f32_view(sg, d, ff);
  w.up_shexp = f32_view(su, d, ff);
  w.down_shexp = f32_view(sd, ff, d);
  MoeOptions o = options(n_exp, k, ExpertGating::Sigmoid);
  o.n_group = 3;
  o.n_group_used = 2;
  o.norm_weights = true;
  o.weights_scale = 2.5f;

  std::vector<float> out(static_cast<size_t>(n_tok * d));
  MoeScratch ws;
  moe_forward(w, o, x.data(), n_tok, ws, out.data());

  std::vector<float> logits(static_cast<size_t>(n_tok * n_exp));
  kernels::matmul(w.gate_inp, x.data(), n_tok, logits.data());
  Routing r = route_experts(logits.data(), n_tok, o, bias.data());
  std::set<int32_t> used;
  for (int64_t t = 0; t < n_tok; ++t) {
    const float* xt = x.data() + t * d;
    // Shared expert: the same SwiGLU with a single "expert".
    std::vector<float> ref = expert_direct(sg, su, sd, 0, xt, d, ff);
    for (int64_t j = 0; j < k; ++j) {
      used.insert(r.experts[t * k + j]);
      auto y = expert_direct(gate, up, down, r.experts[t * k + j], xt, d, ff);
      for (int64_t i = 0; i < d; ++i) ref[i] += r.weights[t * k + j] * y[i];
    }
    for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(out[t * d + i], ref[i], 1e-4) << "token " << t << " dim " << i;
  }
  if (n_tok > 1) {
    EXPECT_GT(used.size(), 2u);  // the case exercises several experts with several tokens each
  }
}

TEST(MoeBlock, GroupedEvaluationEqualsPerTokenSum) { check_moe_block(7); }
TEST(MoeBlock, SingleTokenEvaluationEqualsPerTokenSum) { check_moe_block(1); }

// A token's MoE output does not depend on the rows beside it, bit for bit, whichever way the
// block runs: each row alone and two rows together (at most two rows per expert: whole experts
// are the pool's tasks, as in a speculative verify) and 24 rows (each expert's matmuls split over
// the pool). F32 weights and packed Q4_K ones (the packed kernels take 4 activation rows per
// pass, the AVX-512 wide tiles 8).
void check_rows_independent(DType type) {
  const int64_t d = 256, ff = 256, n_exp = 4, k = 2, n_tok = 24;
  std::mt19937 rng(7);
  auto router = randn(d * n_exp, rng, 1.0f);
  auto x = randn(n_tok * d, rng, 1.0f);
  // Weights of `type`: quantised rows (kept alive in `store`), packed for the kernels.
  std::vector<std::vector<uint8_t>> store;
  auto weight = [&](int64_t in, int64_t out, int64_t mats) {
    const std::vector<float> v = randn(static_cast<size_t>(in * out * mats), rng, 0.1f);
    TensorView t = f32_view(v, in, out, mats);
    store.emplace_back(row_bytes(type, in) * static_cast<size_t>(out * mats));
    if (type == DType::F32) {
      std::copy_n(reinterpret_cast<const uint8_t*>(v.data()), store.back().size(), store.back().data());
    } else {
      for (int64_t r = 0; r < out * mats; ++r)
        quantize_row(type, v.data() + r * in, store.back().data() + static_cast<size_t>(r) * row_bytes(type, in), in);
    }
    t.type = type;
    t.data = store.back().data();
    return kernels::prepare_weight(t);
  };
  MoeWeights w;
  w.gate_inp = f32_view(router, d, n_exp);
  w.gate_exps = weight(d, ff, n_exp);
  w.up_exps = weight(d, ff, n_exp);
  w.down_exps = weight(ff, d, n_exp);
  w.gate_shexp = weight(d, ff, 1);
  w.up_shexp = weight(d, ff, 1);
  w.down_shexp = weight(ff, d, 1);
  const MoeOptions o = options(n_exp, k, ExpertGating::Softmax);

  // Two rows route 4 rows to at least 2 experts: whole experts as tasks; 24 rows route 48 rows to
  // at most 4 experts: split experts.
  MoeScratch ws;
  std::vector<float> alone(static_cast<size_t>(n_tok * d)), two(static_cast<size_t>(2 * d)),
      all(static_cast<size_t>(n_tok * d));
  for (int64_t t = 0; t < n_tok; ++t) moe_forward(w, o, x.data() + t * d, 1, ws, alone.data() + t * d);
  moe_forward(w, o, x.data(), 2, ws, two.data());
  moe_forward(w, o, x.data(), n_tok, ws, all.data());
  for (int64_t i = 0; i < 2 * d; ++i) ASSERT_EQ(two[i], alone[i]) << dtype_name(type) << " row " << i / d;
  for (int64_t i = 0; i < n_tok * d; ++i) ASSERT_EQ(all[i], alone[i]) << dtype_name(type) << " row " << i / d;
}

TEST(MoeBlock, RowsGiveTheSameBitsAloneAndInAnyBatch) {
  // Two threads: whole experts as tasks need at least as many tasks as threads (3 to 5 here).
  const int restore = default_pool().size();
  set_default_threads(2);
  check_rows_independent(DType::F32);
  check_rows_independent(DType::Q4_K);
  set_default_threads(restore);
}

// ---- MLA helpers ----

// kernels::rope_inv_freq_yarn as a vector (MLA's rope uses it).
std::vector<float> yarn_inv_freq(int64_t n_rot, float base, float factor, int64_t orig_ctx, float beta_fast,
                                 float beta_slow) {
  std::vector<float> f(static_cast<size_t>(n_rot / 2));
  kernels::rope_inv_freq_yarn(f.data(), n_rot, base, factor, orig_ctx, beta_fast, beta_slow);
  return f;
}

TEST(MlaParams, YarnFrequenciesFollowTheRamp) {
  // DeepSeek-V3 preset: 32 rotated dims, base 1e4, original context 4096, beta 32/1. The ramp
  // runs from pair lo = floor(5.24) = 5 to hi = ceil(11.26) = 12.
  auto f = yarn_inv_freq(32, 10000.0f, 40.0f, 4096, 32.0f, 1.0f);
  ASSERT_EQ(f.size(), 16u);
  auto base = [](int i) { return std::pow(10000.0, -2.0 * i / 32.0); };
  for (int i = 0; i <= 5; ++i) EXPECT_NEAR(f[i], base(i), 1e-7 * base(i)) << i;
  for (int i = 12; i < 16; ++i) EXPECT_NEAR(f[i], base(i) / 40, 1e-6 * base(i)) << i;
  const double r8 = 1.0 - 3.0 / 7.0;
  EXPECT_NEAR(f[8], base(8) * (r8 + (1 - r8) / 40), 1e-6 * base(8));
  // factor 1: plain rope
  auto g = yarn_inv_freq(32, 10000.0f, 1.0f, 4096, 32.0f, 1.0f);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(g[i], base(i), 1e-7 * base(i));
}

TEST(MlaParams, KqScaleFoldsTheYarnMagnitude) {
  ModelConfig c;
  c.n_embd = 256;
  c.n_head = 4;
  c.kv_lora_rank = 256;
  c.qk_nope_dim = 64;
  c.qk_rope_dim = 32;
  c.v_head_dim = 64;
  c.rope_scaling = RopeScaling::Yarn;
  c.rope_factor = 40;
  c.rope_orig_ctx = 4096;
  c.yarn_log_multiplier = 0.1f;
  MlaParams p = MlaParams::from_config(c);
  const double m = 1 + 0.1 * std::log(40.0);
  EXPECT_NEAR(p.kq_scale, m * m / std::sqrt(96.0), 1e-6);
  EXPECT_EQ(p.cache_width(), 288);
  c.rope_scaling = RopeScaling::None;
  EXPECT_NEAR(MlaParams::from_config(c).kq_scale, 1 / std::sqrt(96.0), 1e-7);
  c.qk_rope_dim = 0;
  EXPECT_THROW(MlaParams::from_config(c), Error);
}

}  // namespace
}  // namespace owl
