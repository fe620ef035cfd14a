#include "model/mla.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"
#include "base/scratch.h"
#include "model/blocks.h"
#include "model/trace.h"

namespace owl {

MlaParams MlaParams::from_config(const ModelConfig& c) {
  MlaParams p;
  p.n_embd = c.n_embd;
  p.n_head = c.n_head;
  p.q_lora_rank = c.q_lora_rank;
  p.kv_lora_rank = c.kv_lora_rank;
  p.nope = c.qk_nope_dim;
  p.rope = c.qk_rope_dim;
  p.v_dim = c.v_head_dim;
  p.eps = c.rms_eps;
  if (p.kv_lora_rank <= 0 || p.nope <= 0 || p.rope <= 0 || p.rope % 2 != 0 || p.v_dim <= 0)
    throw Error(
        "deepseek2 metadata: kv_lora_rank, key_length_mla, rope.dimension_count (even) and "
        "value_length_mla must give positive sizes (got kv_lora " +
        std::to_string(p.kv_lora_rank) + ", nope " + std::to_string(p.nope) + ", rope " + std::to_string(p.rope) +
        ", v " + std::to_string(p.v_dim) + ")");
  const bool yarn = c.rope_scaling == RopeScaling::Yarn && c.rope_factor > 1.0f;
  p.inv_freq.resize(static_cast<size_t>(p.rope / 2));
  kernels::rope_inv_freq_yarn(p.inv_freq.data(), p.rope, c.rope_theta, yarn ? c.rope_factor : 1.0f, c.rope_orig_ctx,
                              c.yarn_beta_fast, c.yarn_beta_slow);
  // The converter stores yarn_log_multiplier = 0.1 * mscale_all_dim; the softmax scale grows by m^2.
  const float m = yarn ? 1.0f + c.yarn_log_multiplier * std::log(c.rope_factor) : 1.0f;
  p.kq_scale = m * m / std::sqrt(static_cast<float>(p.nope + p.rope));
  return p;
}

MlaWeights load_mla_weights(const ModelSource& src, int64_t layer, const MlaParams& p) {
  namespace tn = tensor_names;
  auto name = [layer](const TensorName& t) { return layer_tensor(layer, t); };
  const int64_t d = p.n_embd, nh = p.n_head, qd = p.q_head_dim(), kvl = p.kv_lora_rank;
  MlaWeights w;
  if (p.q_lora_rank > 0) {
    w.q_a = src.require(name(tn::kAttnQA), {d, p.q_lora_rank});
    w.q_a_norm = src.require(name(tn::kAttnQANorm), {p.q_lora_rank});
    w.q_b = src.require(name(tn::kAttnQB), {p.q_lora_rank, nh * qd});
  } else {
    w.q = src.require(name(tn::kAttnQ), {d, nh * qd});
  }
  w.kv_a_mqa = src.require(name(tn::kAttnKvAMqa), {d, kvl + p.rope});
  w.kv_a_norm = src.require(name(tn::kAttnKvANorm), {kvl});
  if (!src.find(name(tn::kAttnKB)) && src.find(name(tn::kAttnKvB)))
    throw Error("model '" + src.path() +
                "' stores MLA as one legacy attn_kv_b tensor; owl needs the split "
                "attn_k_b/attn_v_b layout: reconvert it with a current convert_hf_to_gguf.py");
  w.k_b = src.require(name(tn::kAttnKB), {p.nope, kvl, nh});
  w.v_b = src.require(name(tn::kAttnVB), {kvl, p.v_dim, nh});
  w.output = src.require(name(tn::kAttnOutput), {nh * p.v_dim, d});
  auto check_f32 = [&](const TensorView& t) {
    if (t.type != DType::F32)
      throw Error("model '" + src.path() + "': norm weight " + t.name + " must be F32, is " + dtype_name(t.type));
  };
  check_f32(w.kv_a_norm);
  if (w.q_a_norm) check_f32(*w.q_a_norm);
  auto prepare = [&](kernels::Weight& t) { blocks::prepare_in_place(src, t); };
  for (auto* t : {&w.q_a, &w.q_b, &w.q})
    if (*t) prepare(**t);
  prepare(w.kv_a_mqa);
  prepare(w.k_b);
  prepare(w.v_b);
  prepare(w.output);
  return w;
}

namespace {

// Cached row t of a span, converted to float.
void read_row(const kernels::KVSpan& s, int64_t t, int64_t width, float* out) {
  kernels::dequantize_row(s.type, kernels::kv_row(s, t), out, width);
}

}  // namespace

void mla_project(const MlaWeights& w, const MlaParams& p, const float* x, const int64_t* pos, int64_t n, float* q,
                 float* kv_rows, MlaScratch& ws) {
  const int64_t nh = p.n_head, qd = p.q_head_dim(), kvl = p.kv_lora_rank, cw = p.cache_width();
  // The query projection (or its low-rank first half) and the compressed KV rows share x: one
  // dispatch for both.
  if (w.q_a) {
    float* qa = grow(ws.qa, n * p.q_lora_rank);
    const kernels::Weight* ws_[] = {&*w.q_a, &w.kv_a_mqa};
    float* ys[] = {qa, kv_rows};
    kernels::matmul_many(ws_, x, n, ys);
    const float* nw = static_cast<const float*>(w.q_a_norm->data);
    for (int64_t t = 0; t < n; ++t)
      kernels::rms_norm(qa + t * p.q_lora_rank, nw, qa + t * p.q_lora_rank, p.q_lora_rank, p.eps);
    kernels::matmul(*w.q_b, qa, n, q);
  } else {
    const kernels::Weight* ws_[] = {&*w.q, &w.kv_a_mqa};
    float* ys[] = {q, kv_rows};
    kernels::matmul_many(ws_, x, n, ys);
  }
  // Compressed KV rows: normalised latent, roped k_pe (one head shared by all query heads).
  const float* kvn = static_cast<const float*>(w.kv_a_norm.data);
  for (int64_t t = 0; t < n; ++t) {
    float* row = kv_rows + t * cw;
    kernels::rms_norm(row, kvn, row, kvl, p.eps);
    kernels::rope(row + kvl, 1, p.rope, p.rope, pos[t], p.inv_freq.data(), kernels::RopePairing::Norm);
    kernels::rope(q + t * nh * qd + p.nope, nh, qd, p.rope, pos[t], p.inv_freq.data(), kernels::RopePairing::Norm);
  }
}

bool mla_prefer_expanded(const MlaParams& p, const int64_t* pos, int64_t n) {
  if (p.form != MlaForm::Auto) return p.form == MlaForm::Expanded;
  // A few rows continuing a sequence (a decode step, or a speculative verify batch of the next
  // token and at most 16 drafts) take the absorbed form whatever the context, so each row comes
  // out exactly as it would decoded alone.
  if (n < blocks::kMinRowsTogether && pos[0] > 0) return false;
  double pairs = 0, len = 0;
  for (int64_t i = 0; i < n; ++i) {
    pairs += static_cast<double>(pos[i] + 1);
    len = std::max(len, static_cast<double>(pos[i] + 1));
  }
  const double nh = static_cast<double>(p.n_head), kvl = static_cast<double>(p.kv_lora_rank);
  const double nope = static_cast<double>(p.nope), rope = static_cast<double>(p.rope), v = static_cast<double>(p.v_dim);
  const double absorbed = static_cast<double>(n) * nh * (nope + v) * kvl + pairs * nh * (2 * kvl + rope);
  const double expanded = len * nh * (nope + v) * kvl + pairs * nh * (nope + rope + v);
  return expanded < absorbed;
}

void mla_attend_absorbed(const MlaWeights& w, const MlaParams& p, const float* q, const int64_t* pos, int64_t n,
                         const kernels::KVSpan& rows, MlaScratch& ws, float* heads) {
  const int64_t nh = p.n_head, qd = p.q_head_dim(), kvl = p.kv_lora_rank, ad = p.absorbed_head_dim(), vd = p.v_dim;
  // q_abs[t][h] = [W_kb,h^T q_nope | q_pe]: one matmul per head over the n rows. The heads are
  // the pool's tasks (each head's matmul runs on its task's thread): one dispatch, not n_head.
  // qn and qk hold one head's rows per thread (not per head: 16 heads x 512 rows of kv_lora
  // floats would be 16.8 MB each).
  float* q_abs = grow(ws.k, n * nh * ad);
  const int64_t qn_w = n * std::max(p.nope, kvl), qk_w = n * std::max(kvl, vd);
  float* qn = grow(ws.qn, default_pool().size() * qn_w);
  float* qk = grow(ws.qk, default_pool().size() * qk_w);
  default_pool().parallel_for(nh, [&](int64_t h0, int64_t h1, int thread) {
    for (int64_t h = h0; h < h1; ++h) {
      float* qn_h = qn + thread * qn_w;
      float* qk_h = qk + thread * qk_w;
      for (int64_t t = 0; t < n; ++t) std::copy_n(q + (t * nh + h) * qd, p.nope, qn_h + t * p.nope);
      kernels::matmul(kernels::matrix_slice(w.k_b, h), qn_h, n, qk_h);
      for (int64_t t = 0; t < n; ++t) {
        float* dst = q_abs + (t * nh + h) * ad;
        std::copy_n(qk_h + t * kvl, kvl, dst);
        std::copy_n(q + (t * nh + h) * qd + p.nope, p.rope, dst + kvl);
      }
    }
  });
  // Keys are the whole cached row, values its first kv_lora floats (the latent).
  float* lat = grow(ws.lat, n * nh * kvl);
  if (n >= blocks::kMinRowsTogether && std::is_sorted(pos, pos + n)) {
    // A run of a prompt's rows: the latent rows are one KV head shared by every query head, so
    // attention_rows scores a block of rows x all heads against each latent row it reads (a
    // GEMM-shaped product, the queries across the vector lanes) instead of reading the whole
    // context once per row.
    kernels::attention_rows(q_abs, n, std::span<const int64_t>(pos, static_cast<size_t>(n)), nh, 1, ad, kvl, rows, rows,
                            0, p.kq_scale, lat);
  } else {
    // One call per row with all its heads: the kernel reads each latent row once for them all
    // while it splits the context over the pool, so a single decoded token uses every thread.
    // Several rows go one per task instead (each call then runs inline); the kernel's results
    // do not depend on which.
    auto attend = [&](int64_t t) {
      kernels::attention(q_abs + t * nh * ad, nh, 1, ad, kvl, rows, rows, 0, pos[t] + 1, p.kq_scale,
                         lat + t * nh * kvl);
    };
    if (n < default_pool().size()) {
      for (int64_t t = 0; t < n; ++t) attend(t);
    } else {
      default_pool().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) attend(t);
      });
    }
  }
  // Per head back out of latent space through W_vb, again one task per head.
  default_pool().parallel_for(nh, [&](int64_t h0, int64_t h1, int thread) {
    for (int64_t h = h0; h < h1; ++h) {
      float* lh = qn + thread * qn_w;
      float* vh = qk + thread * qk_w;
      for (int64_t t = 0; t < n; ++t) std::copy_n(lat + (t * nh + h) * kvl, kvl, lh + t * kvl);
      kernels::matmul(kernels::matrix_slice(w.v_b, h), lh, n, vh);
      for (int64_t t = 0; t < n; ++t) std::copy_n(vh + t * vd, vd, heads + (t * nh + h) * vd);
    }
  });
}

int64_t mla_expanded_heads(const MlaParams& p, int64_t len) {
  const int64_t per_head = std::max<int64_t>(len, 1) * (p.q_head_dim() + p.v_dim);
  const int64_t fit = std::clamp<int64_t>(p.expanded_kv_floats / per_head, 1, std::min<int64_t>(p.n_head, 16));
  const int64_t chunks = (p.n_head + fit - 1) / fit;
  return (p.n_head + chunks - 1) / chunks;
}

namespace {

// At least n elements in buf, its old contents dropped: a larger buffer is allocated only after
// the old one is freed (resize would hold both while it copies: the peak of two K/V buffers).
float* grow_fresh(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) {
    std::vector<float>().swap(buf);
    buf.resize(static_cast<size_t>(n));
  }
  return buf.data();
}

}  // namespace

void mla_attend_expanded(const MlaWeights& w, const MlaParams& p, const float* q, const int64_t* pos, int64_t n,
                         const kernels::KVSpan& rows, MlaScratch& ws, float* heads) {
  const int64_t nh = p.n_head, qd = p.q_head_dim(), kvl = p.kv_lora_rank, vd = p.v_dim, cw = p.cache_width();
  int64_t len = 0;
  for (int64_t i = 0; i < n; ++i) len = std::max(len, pos[i] + 1);
  const int64_t chunk = mla_expanded_heads(p, len);
  // K/V rows [len][chunk heads][qd or vd]. A prompt filled chunk by chunk would regrow them at
  // every call: they are sized for the context rounded up to 4096 rows where that stays within
  // the budget, else to the budget itself (which the chunk's heads fit; one head over a context
  // longer than the budget holds exceeds it: the least the expanded form can do).
  const int64_t cap = (len + 4095) / 4096 * 4096;
  const int64_t room = p.expanded_kv_floats / (qd + vd);  // rows x heads within the budget
  float* k = grow_fresh(ws.k, std::max(len * chunk, std::min(cap * chunk, room)) * qd);
  float* v = grow_fresh(ws.v, std::max(len * chunk, std::min(cap * chunk, room)) * vd);
  // A block of cached rows [block][latent | k_pe] as floats, its latents alone [block][kv_lora]
  // (matmul's input rows) and one head's V [block][v]; the chunk's B_k [chunk][kv_lora][nope].
  const int64_t block = std::clamp<int64_t>(p.expanded_block_rows, 1, std::max<int64_t>(len, 1));
  float* cache = grow(ws.qa, block * cw);
  float* lat = grow(ws.lat, block * kvl);
  float* vn = grow(ws.vn, block * vd);
  float* bk = grow(ws.kn, chunk * kvl * p.nope);
  for (int64_t h0 = 0; h0 < nh; h0 += chunk) {
    const int64_t h1 = std::min(nh, h0 + chunk), nc = h1 - h0;
    // attn_k_b's rows (kv_lora of nope) are B_k's rows; it may be a prepared (repacked) copy:
    // dequantize_weight_row reads the file's values.
    for (int64_t h = h0; h < h1; ++h) {
      const kernels::Weight kb = kernels::matrix_slice(w.k_b, h);
      float* bk_h = bk + (h - h0) * kvl * p.nope;
      for (int64_t r = 0; r < kvl; ++r) kernels::dequantize_weight_row(kb, r, bk_h + r * p.nope);
    }
    for (int64_t t0 = 0; t0 < len; t0 += block) {
      const int64_t m = std::min(block, len - t0);
      default_pool().parallel_for(m, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
          read_row(rows, t0 + r, cw, cache + r * cw);
          std::copy_n(cache + r * cw, kvl, lat + r * kvl);
        }
      });
      for (int64_t h = h0; h < h1; ++h) {
        // K_h = latents B_k straight into the head's columns of the K rows, split over the pool
        // by context rows (each element one fused multiply-add chain: the same bits whatever
        // the threads and the blocking of rows).
        float* kh = k + (t0 * nc + (h - h0)) * qd;
        kernels::gemm_f32(lat, kvl, bk + (h - h0) * kvl * p.nope, p.nope, kh, nc * qd, m, kvl, p.nope);
        // V_h through attn_v_b as stored (its quantised kernels, as the absorbed form's W_vb
        // product; a row's result does not depend on the rows beside it), then into the head's
        // columns of the V rows.
        kernels::matmul(kernels::matrix_slice(w.v_b, h), lat, m, vn);
        float* vh = v + (t0 * nc + (h - h0)) * vd;
        default_pool().parallel_for(m, [&](int64_t r0, int64_t r1, int) {
          for (int64_t r = r0; r < r1; ++r) {
            std::copy_n(vn + r * vd, vd, vh + r * nc * vd);
            std::copy_n(cache + r * cw + kvl, p.rope, kh + r * nc * qd + p.nope);
          }
        });
      }
    }
    const void* kpage = k;
    const void* vpage = v;
    const kernels::KVSpan ks{DType::F32, len, &kpage, nc * qd}, vs{DType::F32, len, &vpage, nc * vd};
    if (std::is_sorted(pos, pos + n)) {
      // The chunk's heads at once (rows contiguous): blocks of rows share each K/V chunk. A part
      // of the heads (a long context) gathers their queries and scatters their outputs.
      const bool all = nc == nh;
      const float* cq = q;
      float* co = heads;
      if (!all) {
        float* gathered = grow(ws.qn, n * nc * qd);
        for (int64_t t = 0; t < n; ++t) std::copy_n(q + (t * nh + h0) * qd, nc * qd, gathered + t * nc * qd);
        cq = gathered;
        co = grow(ws.qk, n * nc * vd);
      }
      kernels::attention_rows(cq, n, std::span<const int64_t>(pos, static_cast<size_t>(n)), nc, nc, qd, vd, ks, vs, 0,
                              p.kq_scale, co);
      if (!all)
        for (int64_t t = 0; t < n; ++t) std::copy_n(co + t * nc * vd, nc * vd, heads + (t * nh + h0) * vd);
    } else {
      default_pool().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t)
          kernels::attention(q + (t * nh + h0) * qd, nc, nc, qd, vd, ks, vs, 0, pos[t] + 1, p.kq_scale,
                             heads + (t * nh + h0) * vd);
      });
    }
  }
}

namespace {

// Groups the batch's rows by sequence into ws.groups (reusing its vectors).
void group_by_sequence(const Batch& batch, MlaScratch& ws) {
  ws.n_groups = 0;
  for (int64_t r = 0; r < batch.size(); ++r) {
    size_t g = 0;
    while (g < ws.n_groups && ws.groups[g].seq != batch.seq_ids[r]) ++g;
    if (g == ws.n_groups) {
      if (ws.groups.size() <= g) ws.groups.emplace_back();
      ws.groups[g].seq = batch.seq_ids[r];
      ws.groups[g].rows.clear();
      ws.groups[g].positions.clear();
      ++ws.n_groups;
    }
    ws.groups[g].rows.push_back(r);
    ws.groups[g].positions.push_back(batch.positions[r]);
  }
}

}  // namespace

void mla_attention(const MlaWeights& w, const std::vector<float>& norm, const MlaParams& p, const float* x,
                   const Batch& batch, KVStore& kv, int layer, MlaScratch& ws, float* out) {
  const int64_t n = batch.size(), d = p.n_embd;
  const int64_t nh = p.n_head, cw = p.cache_width(), qd = p.q_head_dim(), vd = p.v_dim;
  float* h = grow(ws.h, n * d);
  float* q = grow(ws.q, n * nh * qd);
  float* rows = grow(ws.kv_rows, n * cw);
  float* heads = grow(ws.heads, n * nh * vd);
  for (int64_t r = 0; r < n; ++r) kernels::rms_norm(x + r * d, norm.data(), h + r * d, d, p.eps);
  trace::tensor("attn_norm", layer, h, n, d);
  mla_project(w, p, h, batch.positions.data(), n, q, rows, ws);
  trace::tensor("q", layer, q, n, nh * qd);
  trace::tensor("kv_latent", layer, rows, n, cw);  // [normalised latent | roped k_pe], as cached
  for (int64_t r = 0; r < n; ++r) kv.store(layer, batch.seq_ids[r], batch.positions[r], rows + r * cw, nullptr);
  group_by_sequence(batch, ws);
  for (size_t gi = 0; gi < ws.n_groups; ++gi) {
    const MlaSequenceRows& g = ws.groups[gi];
    const int64_t m = static_cast<int64_t>(g.rows.size());
    const kernels::KVSpan span = kv.keys(layer, g.seq);
    // A batch of one sequence (prefill, single-stream decode) needs no gathering.
    const bool whole = ws.n_groups == 1;
    float* gq = whole ? q : grow(ws.group_q, m * nh * qd);
    float* gheads = whole ? heads : grow(ws.group_heads, m * nh * vd);
    if (!whole)
      for (int64_t i = 0; i < m; ++i) std::copy_n(q + g.rows[i] * nh * qd, nh * qd, gq + i * nh * qd);
    if (mla_prefer_expanded(p, g.positions.data(), m))
      mla_attend_expanded(w, p, gq, g.positions.data(), m, span, ws, gheads);
    else
      mla_attend_absorbed(w, p, gq, g.positions.data(), m, span, ws, gheads);
    if (!whole)
      for (int64_t i = 0; i < m; ++i) std::copy_n(gheads + i * nh * vd, nh * vd, heads + g.rows[i] * nh * vd);
  }
  trace::tensor("attn_out", layer, heads, n, nh * vd);
  kernels::matmul(w.output, heads, n, out);
  trace::tensor("attn_proj", layer, out, n, d);
}

}  // namespace owl
