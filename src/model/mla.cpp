#include "model/mla.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "base/error.h"

namespace owl {

std::vector<float> yarn_inv_freq(int64_t n_rot, float base, float factor, int64_t orig_ctx, float beta_fast,
                                 float beta_slow) {
  const int64_t half = n_rot / 2;
  std::vector<float> f(static_cast<size_t>(half));
  // c(beta): the pair index whose wavelength fits `beta` times into the original context.
  auto corr_dim = [&](float beta) {
    return static_cast<double>(n_rot) * std::log(static_cast<double>(orig_ctx) / (2.0 * std::numbers::pi * beta)) /
           (2.0 * std::log(static_cast<double>(base)));
  };
  const double lo = std::max(0.0, std::floor(corr_dim(beta_fast)));
  const double hi = std::min(static_cast<double>(n_rot - 1), std::ceil(corr_dim(beta_slow)));
  for (int64_t i = 0; i < half; ++i) {
    double inv = std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (factor > 1.0f) {
      // r = 1 keeps the original frequency (high-frequency pairs), r = 0 interpolates by 1/factor.
      const double ramp = std::clamp((static_cast<double>(i) - lo) / std::max(0.001, hi - lo), 0.0, 1.0);
      const double r = 1.0 - ramp;
      inv *= r + (1.0 - r) / factor;
    }
    f[i] = static_cast<float>(inv);
  }
  return f;
}

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
    throw Error("deepseek2 metadata: kv_lora_rank, key_length_mla, rope.dimension_count (even) and "
                "value_length_mla must give positive sizes (got kv_lora " + std::to_string(p.kv_lora_rank) +
                ", nope " + std::to_string(p.nope) + ", rope " + std::to_string(p.rope) + ", v " +
                std::to_string(p.v_dim) + ")");
  const bool yarn = c.rope_scaling == RopeScaling::Yarn && c.rope_factor > 1.0f;
  p.inv_freq = yarn_inv_freq(p.rope, c.rope_theta, yarn ? c.rope_factor : 1.0f, c.rope_orig_ctx, c.yarn_beta_fast,
                             c.yarn_beta_slow);
  // The converter stores yarn_log_multiplier = 0.1 * mscale_all_dim; the softmax scale grows by m^2.
  const float m = yarn ? 1.0f + c.yarn_log_multiplier * std::log(c.rope_factor) : 1.0f;
  p.kq_scale = m * m / std::sqrt(static_cast<float>(p.nope + p.rope));
  return p;
}

MlaWeights load_mla_weights(const ModelSource& src, int64_t layer, const MlaParams& p) {
  const std::string b = "blk." + std::to_string(layer) + ".";
  const int64_t d = p.n_embd, nh = p.n_head, qd = p.q_head_dim(), kvl = p.kv_lora_rank;
  MlaWeights w;
  if (p.q_lora_rank > 0) {
    w.q_a = src.require(b + "attn_q_a.weight", {d, p.q_lora_rank});
    w.q_a_norm = src.require(b + "attn_q_a_norm.weight", {p.q_lora_rank});
    w.q_b = src.require(b + "attn_q_b.weight", {p.q_lora_rank, nh * qd});
  } else {
    w.q = src.require(b + "attn_q.weight", {d, nh * qd});
  }
  w.kv_a_mqa = src.require(b + "attn_kv_a_mqa.weight", {d, kvl + p.rope});
  w.kv_a_norm = src.require(b + "attn_kv_a_norm.weight", {kvl});
  if (!src.find(b + "attn_k_b.weight") && src.find(b + "attn_kv_b.weight"))
    throw Error("model '" + src.path() + "' stores MLA as one legacy attn_kv_b tensor; owl needs the split "
                "attn_k_b/attn_v_b layout: reconvert it with a current convert_hf_to_gguf.py");
  w.k_b = src.require(b + "attn_k_b.weight", {p.nope, kvl, nh});
  w.v_b = src.require(b + "attn_v_b.weight", {kvl, p.v_dim, nh});
  w.output = src.require(b + "attn_output.weight", {nh * p.v_dim, d});
  auto check_f32 = [&](const TensorView& t) {
    if (t.type != DType::F32)
      throw Error("model '" + src.path() + "': norm weight " + t.name + " must be F32, is " + dtype_name(t.type));
  };
  check_f32(w.kv_a_norm);
  if (w.q_a_norm) check_f32(*w.q_a_norm);
  return w;
}

void mla_project(const MlaWeights& w, const MlaParams& p, const float* x, const int64_t* pos, int64_t n, float* q_abs,
                 float* kv_rows) {
  const int64_t nh = p.n_head, qd = p.q_head_dim(), kvl = p.kv_lora_rank, ad = p.absorbed_head_dim();
  const int64_t cw = p.cache_width();

  // Queries, per head [nope | rope].
  std::vector<float> q(static_cast<size_t>(n * nh * qd));
  if (w.q_a) {
    std::vector<float> qa(static_cast<size_t>(n * p.q_lora_rank));
    kernels::matmul(*w.q_a, x, n, qa.data());
    const float* nw = static_cast<const float*>(w.q_a_norm->data);
    for (int64_t t = 0; t < n; ++t)
      kernels::rms_norm(qa.data() + t * p.q_lora_rank, nw, qa.data() + t * p.q_lora_rank, p.q_lora_rank, p.eps);
    kernels::matmul(*w.q_b, qa.data(), n, q.data());
  } else {
    kernels::matmul(*w.q, x, n, q.data());
  }

  // Compressed KV rows: normalised latent, roped k_pe (one head shared by all query heads).
  kernels::matmul(w.kv_a_mqa, x, n, kv_rows);
  const float* kvn = static_cast<const float*>(w.kv_a_norm.data);
  for (int64_t t = 0; t < n; ++t) {
    float* row = kv_rows + t * cw;
    kernels::rms_norm(row, kvn, row, kvl, p.eps);
    kernels::rope(row + kvl, 1, p.rope, p.rope, pos[t], p.inv_freq.data(), kernels::RopePairing::Norm);
    kernels::rope(q.data() + t * nh * qd + p.nope, nh, qd, p.rope, pos[t], p.inv_freq.data(),
                  kernels::RopePairing::Norm);
  }

  // Absorb W_kb into the query: per head, q_nope (n rows) -> latent space.
  std::vector<float> qn(static_cast<size_t>(n * p.nope)), qk(static_cast<size_t>(n * kvl));
  for (int64_t h = 0; h < nh; ++h) {
    for (int64_t t = 0; t < n; ++t) {
      const float* src = q.data() + (t * nh + h) * qd;
      std::copy(src, src + p.nope, qn.data() + t * p.nope);
    }
    kernels::matmul(kernels::matrix_slice(w.k_b, h), qn.data(), n, qk.data());
    for (int64_t t = 0; t < n; ++t) {
      float* dst = q_abs + (t * nh + h) * ad;
      std::copy(qk.data() + t * kvl, qk.data() + (t + 1) * kvl, dst);
      const float* pe = q.data() + (t * nh + h) * qd + p.nope;
      std::copy(pe, pe + p.rope, dst + kvl);
    }
  }
}

void mla_attend(const MlaParams& p, const float* q_abs, const kernels::KVSpan& rows, int64_t kv_end, float* latent) {
  // Keys are the whole cached row; values its first kv_lora floats (the latent).
  kernels::attention(q_abs, p.n_head, 1, p.absorbed_head_dim(), p.kv_lora_rank, rows, rows, 0, kv_end, p.kq_scale,
                     latent);
}

void mla_output(const MlaWeights& w, const MlaParams& p, const float* latent, int64_t n, float* y) {
  const int64_t nh = p.n_head, kvl = p.kv_lora_rank, vd = p.v_dim;
  std::vector<float> lh(static_cast<size_t>(n * kvl)), vh(static_cast<size_t>(n * vd)),
      heads(static_cast<size_t>(n * nh * vd));
  for (int64_t h = 0; h < nh; ++h) {
    for (int64_t t = 0; t < n; ++t) {
      const float* src = latent + (t * nh + h) * kvl;
      std::copy(src, src + kvl, lh.data() + t * kvl);
    }
    kernels::matmul(kernels::matrix_slice(w.v_b, h), lh.data(), n, vh.data());
    for (int64_t t = 0; t < n; ++t) std::copy(vh.data() + t * vd, vh.data() + (t + 1) * vd, heads.data() + (t * nh + h) * vd);
  }
  kernels::matmul(w.output, heads.data(), n, y);
}

}  // namespace owl
