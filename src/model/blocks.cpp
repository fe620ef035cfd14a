#include "model/blocks.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/thread_pool.h"

namespace owl::blocks {

float* scratch(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// ---- weights ----

std::vector<float> load_optional_vector(const ModelSource& src, const std::string& name, int64_t n) {
  auto t = src.optional(name, {n});
  if (!t) return {};
  std::vector<float> v(static_cast<size_t>(n));
  kernels::dequantize_row(t->type, t->data, v.data(), n);
  return v;
}

std::vector<float> load_vector(const ModelSource& src, const std::string& name, int64_t n) {
  src.require(name, {n});  // clear error when absent or misshapen
  return load_optional_vector(src, name, n);
}

Linear load_linear(const ModelSource& src, const std::string& name, int64_t in, int64_t out, Bias bias) {
  Linear l;
  l.w = src.require(name + ".weight", {in, out});
  if (bias == Bias::Required) l.bias = load_vector(src, name + ".bias", out);
  if (bias == Bias::Optional) l.bias = load_optional_vector(src, name + ".bias", out);
  return l;
}

void linear(const Linear& l, const float* x, int64_t n_rows, float* y) {
  kernels::matmul(l.w, x, n_rows, y);
  if (l.bias.empty()) return;
  const int64_t out = l.out();
  for (int64_t r = 0; r < n_rows; ++r) kernels::add(y + r * out, l.bias.data(), y + r * out, out);
}

void rms_norm_rows(const float* x, const std::vector<float>& w, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) kernels::rms_norm(x + r * n, w.empty() ? nullptr : w.data(), y + r * n, n, eps);
}

// ---- rope ----

Rope make_rope(const ModelConfig& c, const ModelSource& src) {
  Rope r;
  r.n_rot = c.n_rot;
  if (r.n_rot <= 0 || r.n_rot % 2 != 0 || r.n_rot > c.head_dim_k)
    throw Error("model '" + src.path() + "': rope dimension count " + std::to_string(r.n_rot) +
                " must be even and at most the head size " + std::to_string(c.head_dim_k));
  r.pairing = c.rope_type == RopeType::Neox ? kernels::RopePairing::Neox : kernels::RopePairing::Norm;
  const int64_t half = r.n_rot / 2;
  r.inv_freq.resize(static_cast<size_t>(half));
  float* f = r.inv_freq.data();
  // GGUF files carry Llama-3 scaling as per-pair divisors (F32 in every quant); when present
  // they are the whole scaling.
  const std::vector<float> freq_factors = load_optional_vector(src, "rope_freqs.weight", half);
  if (!freq_factors.empty()) {
    kernels::rope_inv_freq_factors(f, r.n_rot, c.rope_theta, freq_factors.data());
    return r;
  }
  switch (c.rope_scaling) {
    case RopeScaling::None: kernels::rope_inv_freq(f, r.n_rot, c.rope_theta); break;
    case RopeScaling::Linear: kernels::rope_inv_freq_linear(f, r.n_rot, c.rope_theta, c.rope_factor); break;
    case RopeScaling::Llama3:
      kernels::rope_inv_freq_llama3(f, r.n_rot, c.rope_theta, c.rope_factor, c.llama3_low_freq_factor,
                                    c.llama3_high_freq_factor, c.rope_orig_ctx);
      break;
    case RopeScaling::Yarn:  // plain YaRN (e.g. Qwen2.5 long context): cos/sin scaled by m
      kernels::rope_inv_freq_yarn(f, r.n_rot, c.rope_theta, c.rope_factor, c.rope_orig_ctx, c.yarn_beta_fast,
                                  c.yarn_beta_slow);
      r.mscale = kernels::yarn_mscale(c.rope_factor);
      break;
  }
  return r;
}

// ---- attention ----

AttentionShape attention_shape(const ModelConfig& c) {
  AttentionShape s;
  s.n_embd = c.n_embd;
  s.n_head = c.n_head;
  s.n_head_kv = c.n_head_kv;
  s.head_dim = c.head_dim_k;
  s.head_dim_v = c.head_dim_v;
  s.eps = c.rms_eps;
  s.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim_k));
  s.sliding_window = c.sliding_window;
  if (s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0)
    throw Error("model has " + std::to_string(s.n_head) + " query heads and " + std::to_string(s.n_head_kv) +
                " KV heads; the query heads must be a multiple of the KV heads");
  return s;
}

AttentionWeights load_attention(const ModelSource& src, const ModelConfig& c, int64_t il) {
  const std::string p = "blk." + std::to_string(il) + ".";
  const AttentionShape s = attention_shape(c);
  const Bias bias = c.attn_qkv_bias ? Bias::Required : Bias::Optional;
  AttentionWeights w;
  w.norm = load_vector(src, p + "attn_norm.weight", c.n_embd);
  w.q = load_linear(src, p + "attn_q", c.n_embd, s.n_head * s.head_dim, bias);
  w.k = load_linear(src, p + "attn_k", c.n_embd, s.n_head_kv * s.head_dim, bias);
  w.v = load_linear(src, p + "attn_v", c.n_embd, s.n_head_kv * s.head_dim_v, bias);
  w.o = load_linear(src, p + "attn_output", s.n_head * s.head_dim_v, c.n_embd, Bias::Optional);
  if (c.attn_qk_norm) {
    w.q_norm = load_vector(src, p + "attn_q_norm.weight", s.head_dim);
    w.k_norm = load_vector(src, p + "attn_k_norm.weight", s.head_dim);
  }
  return w;
}

namespace {

struct AttendJob {
  const AttentionShape* s;
  const Batch* batch;
  const KVStore* kv;
  int layer;
  const float* q;
  float* att;
};

// Attention of batch row r over its sequence's cached rows [begin, position].
void attend_row(const AttendJob& j, int64_t r) {
  const AttentionShape& s = *j.s;
  const int32_t seq = j.batch->seq_ids[r];
  const int64_t end = j.batch->positions[r] + 1;
  const int64_t begin = s.sliding_window > 0 ? std::max<int64_t>(0, end - s.sliding_window) : 0;
  kernels::attention(j.q + r * s.n_head * s.head_dim, s.n_head, s.n_head_kv, s.head_dim, s.head_dim_v,
                     j.kv->keys(j.layer, seq), j.kv->values(j.layer, seq), begin, end, s.scale,
                     j.att + r * s.n_head * s.head_dim_v);
}

}  // namespace

void attention(const AttentionWeights& w, const AttentionShape& s, const Rope& rope, const float* x,
               const Batch& batch, KVStore& kv, int layer, AttentionScratch& ws, float* out) {
  const int64_t n = batch.size();
  const int64_t q_width = s.n_head * s.head_dim, k_width = s.n_head_kv * s.head_dim;
  const int64_t v_width = s.n_head_kv * s.head_dim_v, att_width = s.n_head * s.head_dim_v;
  float* h = scratch(ws.h, n * s.n_embd);
  float* q = scratch(ws.q, n * q_width);
  float* k = scratch(ws.k, n * k_width);
  float* v = scratch(ws.v, n * v_width);
  float* att = scratch(ws.att, n * att_width);

  rms_norm_rows(x, w.norm, h, n, s.n_embd, s.eps);
  linear(w.q, h, n, q);
  linear(w.k, h, n, k);
  linear(w.v, h, n, v);
  for (int64_t r = 0; r < n; ++r) {
    float* qr = q + r * q_width;
    float* kr = k + r * k_width;
    if (!w.q_norm.empty()) rms_norm_rows(qr, w.q_norm, qr, s.n_head, s.head_dim, s.eps);
    if (!w.k_norm.empty()) rms_norm_rows(kr, w.k_norm, kr, s.n_head_kv, s.head_dim, s.eps);
    rope.apply(qr, s.n_head, s.head_dim, batch.positions[r]);
    rope.apply(kr, s.n_head_kv, s.head_dim, batch.positions[r]);
    kv.store(layer, batch.seq_ids[r], batch.positions[r], kr, v + r * v_width);
  }
  // Every row's K/V is stored first, so each row sees its own sequence up to its own position.
  AttendJob job{&s, &batch, &kv, layer, q, att};
  ThreadPool& pool = default_pool();
  if (n < pool.size()) {
    // Few rows (decode): one row at a time, the kernel splits its heads over the pool.
    for (int64_t r = 0; r < n; ++r) attend_row(job, r);
  } else {
    pool.run(static_cast<int>(n), [](void* j, int r, int) { attend_row(*static_cast<AttendJob*>(j), r); }, &job);
  }
  linear(w.o, att, n, out);
}

// ---- feed-forward ----

MlpWeights load_mlp(const ModelSource& src, const ModelConfig& c, int64_t il, int64_t n_ff,
                    const std::string& norm_name) {
  const std::string p = "blk." + std::to_string(il) + ".";
  MlpWeights w;
  w.norm = load_vector(src, p + norm_name + ".weight", c.n_embd);
  w.gate = load_linear(src, p + "ffn_gate", c.n_embd, n_ff);
  w.up = load_linear(src, p + "ffn_up", c.n_embd, n_ff);
  w.down = load_linear(src, p + "ffn_down", n_ff, c.n_embd);
  return w;
}

void mlp(const MlpWeights& w, float eps, const float* x, int64_t n_rows, MlpScratch& ws, float* out) {
  const int64_t n_embd = w.gate.in(), n_ff = w.gate.out();
  float* h = scratch(ws.h, n_rows * n_embd);
  float* gate = scratch(ws.gate, n_rows * n_ff);
  float* up = scratch(ws.up, n_rows * n_ff);
  rms_norm_rows(x, w.norm, h, n_rows, n_embd, eps);
  linear(w.gate, h, n_rows, gate);
  linear(w.up, h, n_rows, up);
  kernels::swiglu(gate, up, gate, n_rows * n_ff);
  linear(w.down, gate, n_rows, out);
}

// ---- embeddings and output ----

OutputHead load_output_head(const ModelSource& src, const ModelConfig& c) {
  OutputHead head;
  auto emb = src.find("token_embd.weight");
  if (!emb) throw Error("model '" + src.path() + "' lacks tensor 'token_embd.weight'");
  if (emb->ne[0] != c.n_embd || emb->n_dims != 2)
    throw Error("model '" + src.path() + "': token_embd.weight has shape " + emb->shape_str() + ", expected [" +
                std::to_string(c.n_embd) + ", n_vocab]");
  head.token_embd = *emb;
  head.norm = load_vector(src, "output_norm.weight", c.n_embd);
  auto out = src.optional("output.weight", {c.n_embd, emb->ne[1]});
  head.output = out ? *out : *emb;  // tied embeddings
  return head;
}

void embed(const TensorView& token_embd, const Batch& batch, float* x) {
  const int64_t n_embd = token_embd.ne[0];
  for (int64_t r = 0; r < batch.size(); ++r)
    kernels::dequantize_row(token_embd.type, token_embd.row(batch.tokens[r]), x + r * n_embd, n_embd);
}

std::span<const float> output_logits(const OutputHead& head, float eps, const float* x, const Batch& batch,
                                     HeadScratch& ws) {
  const int64_t n_embd = head.output.ne[0], n_vocab = head.output.ne[1];
  const int64_t n_out = batch.n_logits();
  float* rows = scratch(ws.rows, n_out * n_embd);
  int64_t j = 0;
  for (int64_t r = 0; r < batch.size(); ++r)
    if (batch.want_logits[r]) kernels::rms_norm(x + r * n_embd, head.norm.data(), rows + (j++) * n_embd, n_embd, eps);
  float* logits = scratch(ws.logits, n_out * n_vocab);
  if (n_out > 0) kernels::matmul(head.output, rows, n_out, logits);
  return {logits, static_cast<size_t>(n_out * n_vocab)};
}

}  // namespace owl::blocks
