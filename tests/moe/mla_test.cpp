// The two exact forms of MLA attention (absorbed and expanded) agree, on the real weights of
// the deepseek-v3 golden model, for a fresh prompt and for queries over a longer cache.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "base/error.h"
#include "model/mla.h"
#include "model/source.h"
#include "test_util.h"

namespace owl {
namespace {

void check_forms_agree(const std::string& model, int64_t n_cached, int64_t n_new) {
  auto src = open_model_source(test::shared_path("golden/" + model + "/f32.gguf"));
  const MlaParams p = MlaParams::from_config(src->config());
  const MlaWeights w = load_mla_weights(*src, 1, p);
  const int64_t n = n_cached + n_new, d = p.n_embd, nh = p.n_head, cw = p.cache_width();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = nd(rng);
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[i] = i;

  MlaScratch ws;
  std::vector<float> q(static_cast<size_t>(n * nh * p.q_head_dim())), rows(static_cast<size_t>(n * cw));
  mla_project(w, p, x.data(), pos.data(), n, q.data(), rows.data(), ws);
  // One page holding every row.
  const void* page = rows.data();
  const kernels::KVSpan span{DType::F32, n, &page, cw};

  // The last n_new tokens query the cache.
  const float* qn = q.data() + n_cached * nh * p.q_head_dim();
  const int64_t* pn = pos.data() + n_cached;
  std::vector<float> a(static_cast<size_t>(n_new * nh * p.v_dim)), e(a.size());
  mla_attend_absorbed(w, p, qn, pn, n_new, span, ws, a.data());
  mla_attend_expanded(w, p, qn, pn, n_new, span, ws, e.data());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - e[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(a[i])));
  }
  EXPECT_GT(max_abs, 0.01);  // a real signal
  EXPECT_LE(max_diff, 1e-4 * std::max(1.0, max_abs)) << model << " cached " << n_cached << " new " << n_new;
}

TEST(MlaForms, AbsorbedEqualsExpandedForAPrompt) {
  check_forms_agree("deepseek-v3", 0, 40);
  check_forms_agree("deepseek-v2-lite", 0, 40);
}

TEST(MlaForms, AbsorbedEqualsExpandedOverALongerCache) {
  check_forms_agree("deepseek-v3", 70, 3);
  check_forms_agree("deepseek-v3", 33, 1);
}

TEST(MlaForms, CostModelPicksAbsorbedForDecodeAndExpandedForPrefill) {
  ModelConfig c;
  c.n_embd = 7168;
  c.n_head = 128;
  c.kv_lora_rank = 512;
  c.qk_nope_dim = 128;
  c.qk_rope_dim = 64;
  c.v_head_dim = 128;
  const MlaParams p = MlaParams::from_config(c);
  const std::vector<int64_t> decode = {4000};
  EXPECT_FALSE(mla_prefer_expanded(p, decode.data(), 1));
  std::vector<int64_t> prefill(512);
  for (int64_t i = 0; i < 512; ++i) prefill[i] = i;
  EXPECT_TRUE(mla_prefer_expanded(p, prefill.data(), 512));
}

TEST(MlaWeightsLoad, MissingTensorIsAClearError) {
  // Asking for a layer the file does not have names the missing tensor.
  auto src = open_model_source(test::shared_path("golden/deepseek-v3/f32.gguf"));
  const MlaParams p = MlaParams::from_config(src->config());
  try {
    load_mla_weights(*src, 99, p);
    FAIL() << "loaded a layer that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.99."), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace owl
