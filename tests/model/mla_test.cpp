// The two exact forms of MLA attention (absorbed and expanded) agree, on the real weights of
// the deepseek-v3 golden model, for a fresh prompt and for queries over a longer cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "model/mla.h"
#include "model/source.h"
#include "test_util.h"

namespace owl {
namespace {

// The absorbed and expanded attention outputs of layer 1 for the last n_new of n_cached + n_new
// random rows; the queries and cached rows come from `project` (default: the same weights).
struct Forms {
  std::vector<float> absorbed, expanded;
};
Forms run_forms(const MlaWeights& w, const MlaWeights& project, const MlaParams& p, int64_t n_cached, int64_t n_new) {
  const int64_t n = n_cached + n_new, d = p.n_embd, nh = p.n_head, cw = p.cache_width();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = nd(rng);
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[i] = i;

  MlaScratch ws;
  std::vector<float> q(static_cast<size_t>(n * nh * p.q_head_dim())), rows(static_cast<size_t>(n * cw));
  mla_project(project, p, x.data(), pos.data(), n, q.data(), rows.data(), ws);
  // One page holding every row.
  const void* page = rows.data();
  const kernels::KVSpan span{DType::F32, n, &page, cw};

  // The last n_new tokens query the cache.
  const float* qn = q.data() + n_cached * nh * p.q_head_dim();
  const int64_t* pn = pos.data() + n_cached;
  Forms f;
  f.absorbed.resize(static_cast<size_t>(n_new * nh * p.v_dim));
  f.expanded.resize(f.absorbed.size());
  mla_attend_absorbed(w, p, qn, pn, n_new, span, ws, f.absorbed.data());
  mla_attend_expanded(w, p, qn, pn, n_new, span, ws, f.expanded.data());
  return f;
}

double max_abs_of(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}
double max_diff_of(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

void check_forms_agree(const std::string& model, int64_t n_cached, int64_t n_new) {
  auto src = open_model_source(test::shared_path("golden/" + model + "/f32.gguf"));
  const MlaParams p = MlaParams::from_config(src->config());
  const MlaWeights w = load_mla_weights(*src, 1, p);
  const Forms f = run_forms(w, w, p, n_cached, n_new);
  const double max_abs = max_abs_of(f.absorbed);
  EXPECT_GT(max_abs, 0.01);  // a real signal
  EXPECT_LE(max_diff_of(f.absorbed, f.expanded), 1e-4 * std::max(1.0, max_abs))
      << model << " cached " << n_cached << " new " << n_new;
}

TEST(MlaForms, AbsorbedEqualsExpandedForAPrompt) {
  check_forms_agree("deepseek-v3", 0, 40);
  check_forms_agree("deepseek-v2-lite", 0, 40);
}

// k_b is repacked at load like the other quantised weights: the expanded form reads its rows back
// out of the packed copy (bit-identical to the file's rows, so the whole form is), the absorbed
// form multiplies by it (the packed kernels' float order; the attention output is quantised
// again for v_b, so a rounding flip can move it by ~1e-3 of its scale).
TEST(MlaForms, RepackedKbGivesTheSameAttention) {
  struct Case {
    const char* model;
    const char* file;
    int64_t cached, n_new;
  };
  for (const Case& c : {Case{"deepseek-v3", "q8_0.gguf", 0, 40}, Case{"deepseek-v2-lite", "q4_k_m.gguf", 0, 40},
                        Case{"deepseek-v3", "q4_k_m.gguf", 33, 5}}) {
    auto src = open_model_source(test::shared_path(std::string("golden/") + c.model + "/" + c.file));
    const MlaParams p = MlaParams::from_config(src->config());
    src->prepare.repack = false;
    const MlaWeights file_layout = load_mla_weights(*src, 1, p);
    src->prepare.repack = true;
    EXPECT_TRUE(load_mla_weights(*src, 1, p).k_b.packed()) << c.model << " " << c.file;
    MlaWeights packed_kb = file_layout;
    ASSERT_TRUE(file_layout.k_b.plain());
    packed_kb.k_b = kernels::prepare_weight(*file_layout.k_b.plain());
    ASSERT_TRUE(packed_kb.k_b.packed());
    const Forms plain = run_forms(file_layout, file_layout, p, c.cached, c.n_new);
    const Forms packed = run_forms(packed_kb, file_layout, p, c.cached, c.n_new);
    EXPECT_EQ(plain.expanded, packed.expanded) << c.model << " " << c.file;
    const double scale = max_abs_of(plain.absorbed);
    EXPECT_GT(scale, 0.01);
    EXPECT_LE(max_diff_of(plain.absorbed, packed.absorbed), 2e-3 * scale) << c.model << " " << c.file;
  }
}

TEST(MlaForms, AbsorbedEqualsExpandedOverALongerCache) {
  check_forms_agree("deepseek-v3", 70, 3);
  check_forms_agree("deepseek-v3", 33, 1);
  // A prompt chunk continuing a cache: 18 rows and more take attention_rows in the absorbed form.
  check_forms_agree("deepseek-v3", 70, 30);
  check_forms_agree("deepseek-v2-lite", 50, 18);
}

// The absorbed form's prompt path (attention_rows over the latent rows, all heads of a block of
// rows at once) gives each row the same bits whatever other rows share the call, as long as the
// call has enough rows to take that path; and the same bits for any thread count.
TEST(MlaForms, AbsorbedRowsDoNotDependOnTheCall) {
  auto src = open_model_source(test::shared_path("golden/deepseek-v3/q4_k_m.gguf"));
  const MlaParams p = MlaParams::from_config(src->config());
  const MlaWeights w = load_mla_weights(*src, 1, p);
  const int64_t n = 60, d = p.n_embd, nh = p.n_head, qd = p.q_head_dim(), vd = p.v_dim;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = nd(rng);
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[i] = i;
  MlaScratch ws;
  std::vector<float> q(static_cast<size_t>(n * nh * qd)), rows(static_cast<size_t>(n * p.cache_width()));
  mla_project(w, p, x.data(), pos.data(), n, q.data(), rows.data(), ws);
  const void* page = rows.data();
  const kernels::KVSpan span{DType::F32, n, &page, p.cache_width()};
  auto absorbed = [&](int64_t r0, int64_t r1, float* out) {
    mla_attend_absorbed(w, p, q.data() + r0 * nh * qd, pos.data() + r0, r1 - r0, span, ws, out + r0 * nh * vd);
  };
  std::vector<float> together(static_cast<size_t>(n * nh * vd)), pieces(together.size()), one_thread(together.size());
  absorbed(0, n, together.data());
  absorbed(0, 20, pieces.data());
  absorbed(20, n, pieces.data());
  EXPECT_GT(max_abs_of(together), 0.01);
  EXPECT_EQ(together, pieces);
  const int restore = default_pool().size();
  set_default_threads(1);
  absorbed(0, n, one_thread.data());
  set_default_threads(restore);
  EXPECT_EQ(together, one_thread);
}

// The expanded form's scratch stays within its budget however long the context: with a budget
// that holds the K/V of one or two heads over this context (instead of all of them) and blocks
// of 16 cached rows, the heads go in chunks and the rows in blocks, the buffers stay under the
// budget plus what does not grow with the context, and every output is the same bits as one
// pass over all heads and rows.
TEST(MlaForms, ExpandedScratchStaysWithinItsBudget) {
  auto src = open_model_source(test::shared_path("golden/deepseek-v2-lite/q4_k_m.gguf"));
  const MlaParams whole = MlaParams::from_config(src->config());
  const MlaWeights w = load_mla_weights(*src, 1, whole);
  const int64_t n_cached = 300, n_new = 40, n = n_cached + n_new, d = whole.n_embd, nh = whole.n_head;
  const int64_t qd = whole.q_head_dim(), vd = whole.v_dim, cw = whole.cache_width(), kvl = whole.kv_lora_rank;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = nd(rng);
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[i] = i;
  MlaScratch project_ws;
  std::vector<float> q(static_cast<size_t>(n * nh * qd)), rows(static_cast<size_t>(n * cw));
  mla_project(w, whole, x.data(), pos.data(), n, q.data(), rows.data(), project_ws);
  const void* page = rows.data();
  const kernels::KVSpan span{DType::F32, n, &page, cw};
  const float* qn = q.data() + n_cached * nh * qd;
  const int64_t* pn = pos.data() + n_cached;

  // Reference: every head at once, the context in one block.
  std::vector<float> one_pass(static_cast<size_t>(n_new * nh * vd));
  MlaScratch big_ws;
  ASSERT_EQ(mla_expanded_heads(whole, n), nh);
  mla_attend_expanded(w, whole, qn, pn, n_new, span, big_ws, one_pass.data());
  EXPECT_GT(max_abs_of(one_pass), 0.01);

  ASSERT_EQ(nh, 4);
  struct Case {
    int64_t fit, chunk;  // heads within the budget; heads per chunk (3 of 4 go as 2 + 2)
  };
  for (const Case& c : {Case{1, 1}, Case{2, 2}, Case{3, 2}}) {
    const int64_t heads = c.fit;
    MlaParams p = whole;
    p.expanded_kv_floats = heads * n * (qd + vd) + (qd + vd) - 1;  // `heads` of them fit, not one more
    p.expanded_block_rows = 16;
    const int64_t chunk = mla_expanded_heads(p, n);
    EXPECT_EQ(chunk, c.chunk) << heads;
    MlaScratch ws;
    std::vector<float> chunked(one_pass.size());
    mla_attend_expanded(w, p, qn, pn, n_new, span, ws, chunked.data());
    EXPECT_EQ(chunked, one_pass) << heads << " heads at a time";
    EXPECT_LE((ws.k.capacity() + ws.v.capacity()), static_cast<size_t>(p.expanded_kv_floats));
    // Beyond the K/V: one block of converted rows, the chunk's B_k, the chunk's gathered queries
    // and outputs; nothing per context row.
    const int64_t rest = p.expanded_block_rows * (cw + kvl + vd) + chunk * kvl * whole.nope + n_new * chunk * (qd + vd);
    EXPECT_LE(ws.bytes(), (static_cast<size_t>(p.expanded_kv_floats + rest)) * sizeof(float)) << heads;
  }
  // However small the budget, one head goes at a time: its K/V over the context, nothing more.
  MlaParams tiny = whole;
  tiny.expanded_kv_floats = 1000;
  tiny.expanded_block_rows = 16;
  EXPECT_EQ(mla_expanded_heads(tiny, n), 1);
  MlaScratch ws;
  std::vector<float> one_head(one_pass.size());
  mla_attend_expanded(w, tiny, qn, pn, n_new, span, ws, one_head.data());
  EXPECT_EQ(one_head, one_pass);
  EXPECT_EQ(ws.k.capacity() + ws.v.capacity(), static_cast<size_t>(n * (qd + vd)));
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
