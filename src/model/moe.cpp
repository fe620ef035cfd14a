#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"

namespace owl {

MoeOptions MoeOptions::from_config(const ModelConfig& c) {
  MoeOptions o;
  o.n_expert = c.n_expert;
  o.n_expert_used = c.n_expert_used;
  o.gating = c.expert_gating;
  o.n_group = std::max<int64_t>(1, c.expert_group_count);
  o.n_group_used = std::max<int64_t>(1, c.expert_group_used);
  o.norm_weights = c.expert_weights_norm;
  o.weights_scale = c.expert_weights_scale;
  if (o.n_expert <= 0 || o.n_expert_used <= 0 || o.n_expert_used > o.n_expert)
    throw Error("model config: expert_used_count must be between 1 and expert_count (" +
                std::to_string(o.n_expert_used) + " of " + std::to_string(o.n_expert) + ")");
  if (o.n_group > 1) {
    if (o.n_expert % o.n_group != 0)
      throw Error("model config: expert_count " + std::to_string(o.n_expert) + " is not divisible by expert_group_count " +
                  std::to_string(o.n_group));
    if (o.n_group_used > o.n_group)
      throw Error("model config: expert_group_used_count exceeds expert_group_count");
    if (o.n_group_used * (o.n_expert / o.n_group) < o.n_expert_used)
      throw Error("model config: the kept expert groups hold fewer experts than expert_used_count");
  }
  return o;
}

Routing route_experts(const float* router_logits, int64_t n_tokens, const MoeOptions& opt, const float* probs_bias) {
  const int64_t n_exp = opt.n_expert, k = opt.n_expert_used;
  Routing r;
  r.k = k;
  r.experts.resize(static_cast<size_t>(n_tokens * k));
  r.weights.resize(static_cast<size_t>(n_tokens * k));

  std::vector<float> probs(static_cast<size_t>(n_exp)), sel(static_cast<size_t>(n_exp));
  const int64_t per_group = opt.n_group > 1 ? n_exp / opt.n_group : n_exp;
  std::vector<float> group_score(static_cast<size_t>(opt.n_group));
  std::vector<int32_t> idx(static_cast<size_t>(std::max(n_exp, opt.n_group)));
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::copy(router_logits + t * n_exp, router_logits + (t + 1) * n_exp, probs.begin());
    if (opt.gating == ExpertGating::Softmax) {
      kernels::softmax(probs.data(), n_exp);
    } else {
      for (float& p : probs) p = 1.0f / (1.0f + std::exp(-p));
    }
    for (int64_t e = 0; e < n_exp; ++e) sel[e] = probs[e] + (probs_bias ? probs_bias[e] : 0.0f);

    if (opt.n_group > 1) {
      // Group score: sum of the two best selection values of the group.
      const int64_t top = std::min<int64_t>(2, per_group);
      for (int64_t g = 0; g < opt.n_group; ++g) {
        kernels::top_k(sel.data() + g * per_group, per_group, top, idx.data());
        float s = 0;
        for (int64_t j = 0; j < top; ++j) s += sel[g * per_group + idx[j]];
        group_score[g] = s;
      }
      kernels::top_k(group_score.data(), opt.n_group, opt.n_group_used, idx.data());
      std::vector<bool> keep(static_cast<size_t>(opt.n_group), false);
      for (int64_t j = 0; j < opt.n_group_used; ++j) keep[idx[j]] = true;
      for (int64_t e = 0; e < n_exp; ++e)
        if (!keep[e / per_group]) sel[e] = -INFINITY;
    }

    int32_t* chosen = r.experts.data() + t * k;
    float* w = r.weights.data() + t * k;
    kernels::top_k(sel.data(), n_exp, k, chosen);
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      w[j] = probs[chosen[j]];
      sum += w[j];
    }
    if (opt.norm_weights) {
      const float inv = 1.0f / std::max(sum, 6.103515625e-5f);
      for (int64_t j = 0; j < k; ++j) w[j] *= inv;
    }
    if (opt.weights_scale != 0.0f && opt.weights_scale != 1.0f)
      for (int64_t j = 0; j < k; ++j) w[j] *= opt.weights_scale;
  }
  return r;
}

MoeWeights load_moe_weights(const ModelSource& src, int64_t layer, bool require_bias) {
  const ModelConfig& c = src.config();
  const std::string p = "blk." + std::to_string(layer) + ".";
  const int64_t d = c.n_embd, ne = c.n_expert, ff = c.n_ff_exp;
  if (ff <= 0)
    throw Error("model '" + src.path() + "': MoE layer " + std::to_string(layer) +
                " needs expert_feed_forward_length in the metadata");
  MoeWeights w;
  w.gate_inp = src.require(p + "ffn_gate_inp.weight", {d, ne});
  if (w.gate_inp.type != DType::F32)
    throw Error("model '" + src.path() + "': router " + w.gate_inp.name + " is " + dtype_name(w.gate_inp.type) +
                ", expected F32 (routing is kept in full precision)");
  w.probs_bias = require_bias ? std::optional(src.require(p + "exp_probs_b.bias", {ne}))
                              : src.optional(p + "exp_probs_b.bias", {ne});
  if (w.probs_bias && w.probs_bias->type != DType::F32)
    throw Error("model '" + src.path() + "': " + w.probs_bias->name + " must be F32");
  w.gate_exps = src.require(p + "ffn_gate_exps.weight", {d, ff, ne});
  w.up_exps = src.require(p + "ffn_up_exps.weight", {d, ff, ne});
  w.down_exps = src.require(p + "ffn_down_exps.weight", {ff, d, ne});
  if (c.n_expert_shared > 0) {
    const int64_t fs = c.n_ff_shexp > 0 ? c.n_ff_shexp : ff * c.n_expert_shared;
    w.gate_shexp = src.require(p + "ffn_gate_shexp.weight", {d, fs});
    w.up_shexp = src.require(p + "ffn_up_shexp.weight", {d, fs});
    w.down_shexp = src.require(p + "ffn_down_shexp.weight", {fs, d});
  }
  return w;
}

int64_t nextn_predict_layers(const ModelSource& src) {
  const ModelConfig& c = src.config();
  int64_t n = 0;
  if (const gguf::File* f = src.gguf_file()) n = f->metadata().get_int(c.arch + ".nextn_predict_layers").value_or(0);
  if (n < 0 || n >= c.n_layer)
    throw Error("model '" + src.path() + "': nextn_predict_layers " + std::to_string(n) + " leaves no trunk layers of " +
                std::to_string(c.n_layer));
  return n;
}

namespace {
float* grow(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}
}  // namespace

void swiglu_ffn(const TensorView& gate, const TensorView& up, const TensorView& down, const float* x,
                int64_t n_rows, MoeScratch& ws, float* y) {
  const int64_t ff = gate.ne[1];
  float* g = grow(ws.gate, n_rows * ff);
  float* u = grow(ws.up, n_rows * ff);
  kernels::matmul(gate, x, n_rows, g);
  kernels::matmul(up, x, n_rows, u);
  kernels::swiglu(g, u, g, n_rows * ff);
  kernels::matmul(down, g, n_rows, y);
}

void moe_forward(const MoeWeights& w, const MoeOptions& opt, const float* x, int64_t n_tokens, MoeScratch& ws,
                 float* out) {
  const int64_t d = w.gate_inp.ne[0], n_exp = opt.n_expert;
  float* logits = grow(ws.logits, n_tokens * n_exp);
  kernels::matmul(w.gate_inp, x, n_tokens, logits);
  const Routing r =
      route_experts(logits, n_tokens, opt, w.probs_bias ? static_cast<const float*>(w.probs_bias->data) : nullptr);

  // Shared experts first: they initialise `out`.
  if (w.gate_shexp) {
    swiglu_ffn(*w.gate_shexp, *w.up_shexp, *w.down_shexp, x, n_tokens, ws, out);
  } else {
    std::fill(out, out + n_tokens * d, 0.0f);
  }

  // Bucket the (token, weight) pairs by expert, then run each used expert once on its rows.
  ws.rows.resize(static_cast<size_t>(n_exp));
  for (auto& list : ws.rows) list.clear();
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t j = 0; j < r.k; ++j) ws.rows[r.experts[t * r.k + j]].emplace_back(t, r.weights[t * r.k + j]);

  for (int64_t e = 0; e < n_exp; ++e) {
    const auto& list = ws.rows[e];
    if (list.empty()) continue;
    const int64_t m = static_cast<int64_t>(list.size());
    float* xin = grow(ws.xin, m * d);
    float* y = grow(ws.y, m * d);
    for (int64_t i = 0; i < m; ++i) std::copy(x + list[i].first * d, x + (list[i].first + 1) * d, xin + i * d);
    swiglu_ffn(kernels::matrix_slice(w.gate_exps, e), kernels::matrix_slice(w.up_exps, e),
               kernels::matrix_slice(w.down_exps, e), xin, m, ws, y);
    for (int64_t i = 0; i < m; ++i) kernels::scale_add(out + list[i].first * d, y + i * d, list[i].second, d);
  }
}

}  // namespace owl
