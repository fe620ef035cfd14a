#include "model/blocks.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "model/kv_rotation.h"
#include "model/trace.h"

namespace owl::blocks {

namespace tn = tensor_names;

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

kernels::Weight prepare_matmul_weight(const ModelSource& src, const TensorView& w) {
  kernels::PrepareOptions o = src.prepare;
  // Only a GGUF source's tensors all lie in its read-only file mapping (a Hugging Face source
  // may have converted some into memory of its own, which DONTNEED would zero).
  o.release_source = src.gguf_file() != nullptr;
  return kernels::prepare_weight(w, o);
}

void prepare_in_place(const ModelSource& src, kernels::Weight& w) {
  if (const TensorView* v = w.plain()) w = prepare_matmul_weight(src, *v);
}

Linear load_linear(const ModelSource& src, int64_t il, const TensorName& w, const TensorName& b, Bias bias, int64_t in,
                   int64_t out) {
  Linear l = load_linear(src, il, w, in, out);
  if (bias == Bias::Required) l.bias = load_vector(src, layer_tensor(il, b), out);
  if (bias == Bias::Optional) l.bias = load_optional_vector(src, layer_tensor(il, b), out);
  return l;
}

Linear load_linear(const ModelSource& src, int64_t il, const TensorName& w, int64_t in, int64_t out) {
  Linear l;
  l.w = prepare_matmul_weight(src, src.require(layer_tensor(il, w), {in, out}));
  return l;
}

namespace {
void add_bias(const Linear& l, int64_t n_rows, float* y) {
  if (l.bias.empty()) return;
  const int64_t out = l.out();
  for (int64_t r = 0; r < n_rows; ++r) kernels::add(y + r * out, l.bias.data(), y + r * out, out);
}
}  // namespace

void linear(const Linear& l, const float* x, int64_t n_rows, float* y) {
  kernels::matmul(l.w, x, n_rows, y);
  add_bias(l, n_rows, y);
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
  const std::vector<float> freq_factors = load_optional_vector(src, tn::kRopeFreqs.gguf, half);
  if (!freq_factors.empty()) {
    kernels::rope_inv_freq_factors(f, r.n_rot, c.rope_theta, freq_factors.data());
    return r;
  }
  switch (c.rope_scaling) {
    case RopeScaling::None:
      kernels::rope_inv_freq(f, r.n_rot, c.rope_theta);
      break;
    case RopeScaling::Linear:
      kernels::rope_inv_freq_linear(f, r.n_rot, c.rope_theta, c.rope_factor);
      break;
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
  const AttentionShape s = attention_shape(c);
  const Bias bias = c.attn_qkv_bias ? Bias::Required : Bias::Optional;
  AttentionWeights w;
  w.norm = load_vector(src, layer_tensor(il, tn::kAttnNorm), c.n_embd);
  w.q = load_linear(src, il, tn::kAttnQ, tn::kAttnQBias, bias, c.n_embd, s.n_head * s.head_dim);
  w.k = load_linear(src, il, tn::kAttnK, tn::kAttnKBias, bias, c.n_embd, s.n_head_kv * s.head_dim);
  w.v = load_linear(src, il, tn::kAttnV, tn::kAttnVBias, bias, c.n_embd, s.n_head_kv * s.head_dim_v);
  w.o = load_linear(src, il, tn::kAttnOutput, tn::kAttnOutputBias, Bias::Optional, s.n_head * s.head_dim_v, c.n_embd);
  if (c.attn_qk_norm) {
    w.q_norm = load_vector(src, layer_tensor(il, tn::kAttnQNorm), s.head_dim);
    w.k_norm = load_vector(src, layer_tensor(il, tn::kAttnKNorm), s.head_dim);
  }
  return w;
}

void qkv_projection(const AttentionWeights& w, const float* h, int64_t n_rows, float* q, float* k, float* v) {
  const kernels::Weight* ws[] = {&w.q.w, &w.k.w, &w.v.w};
  float* ys[] = {q, k, v};
  kernels::matmul_many(ws, h, n_rows, ys);
  add_bias(w.q, n_rows, q);
  add_bias(w.k, n_rows, k);
  add_bias(w.v, n_rows, v);
}

namespace {

struct AttendJob {
  const AttentionShape* s;
  const Batch* batch;
  const KVStore* kv;
  int layer;
  const float* q;
  float* att;
  const int64_t* rows;  // the batch rows attend_row computes, by task
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

// Every row's attention output into att: runs of one sequence by attention_rows, the rest by row.
void attend_rows(const AttendJob& job, int64_t n, std::vector<int64_t>& single) {
  const AttentionShape& s = *job.s;
  const Batch& b = *job.batch;
  single.clear();
  for (int64_t r0 = 0; r0 < n;) {
    int64_t r1 = r0 + 1;
    while (r1 < n && b.seq_ids[r1] == b.seq_ids[r0] && b.positions[r1] >= b.positions[r1 - 1]) ++r1;
    if (r1 - r0 >= kMinRowsTogether) {
      const int32_t seq = b.seq_ids[r0];
      kernels::attention_rows(job.q + r0 * s.n_head * s.head_dim, r1 - r0,
                              std::span<const int64_t>(b.positions.data() + r0, static_cast<size_t>(r1 - r0)), s.n_head,
                              s.n_head_kv, s.head_dim, s.head_dim_v, job.kv->keys(job.layer, seq),
                              job.kv->values(job.layer, seq), s.sliding_window, s.scale,
                              job.att + r0 * s.n_head * s.head_dim_v);
    } else {
      for (int64_t r = r0; r < r1; ++r) single.push_back(r);
    }
    r0 = r1;
  }
  ThreadPool& pool = default_pool();
  const int64_t n_single = static_cast<int64_t>(single.size());
  AttendJob row_job = job;
  row_job.rows = single.data();
  if (n_single < pool.size()) {
    // Few rows (decode): one row at a time, the kernel splits its heads over the pool.
    for (int64_t r : single) attend_row(row_job, r);
  } else {
    pool.run(
        static_cast<int>(n_single),
        [](void* j, int t, int) {
          const AttendJob& rj = *static_cast<AttendJob*>(j);
          attend_row(rj, rj.rows[t]);
        },
        &row_job);
  }
}

}  // namespace

void attention(const AttentionWeights& w, const AttentionShape& s, const Rope& rope, const float* x, const Batch& batch,
               KVStore& kv, int layer, AttentionScratch& ws, float* out) {
  const int64_t n = batch.size();
  const int64_t q_width = s.n_head * s.head_dim, k_width = s.n_head_kv * s.head_dim;
  const int64_t v_width = s.n_head_kv * s.head_dim_v, att_width = s.n_head * s.head_dim_v;
  float* h = grow(ws.h, n * s.n_embd);
  float* q = grow(ws.q, n * q_width);
  float* k = grow(ws.k, n * k_width);
  float* v = grow(ws.v, n * v_width);
  float* att = grow(ws.att, n * att_width);

  rms_norm_rows(x, w.norm, h, n, s.n_embd, s.eps);
  trace::tensor("attn_norm", layer, h, n, s.n_embd);
  qkv_projection(w, h, n, q, k, v);
  if (ws.rope_of != &rope || ws.rope_positions != batch.positions) {
    ws.rope_positions = batch.positions;
    ws.rope_of = &rope;
    float* cs = grow(ws.rope_cs, n * rope.n_rot);
    for (int64_t r = 0; r < n; ++r) rope.cos_sin(cs + r * rope.n_rot, batch.positions[r]);
  }
  for (int64_t r = 0; r < n; ++r) {
    float* qr = q + r * q_width;
    float* kr = k + r * k_width;
    if (!w.q_norm.empty()) rms_norm_rows(qr, w.q_norm, qr, s.n_head, s.head_dim, s.eps);
    if (!w.k_norm.empty()) rms_norm_rows(kr, w.k_norm, kr, s.n_head_kv, s.head_dim, s.eps);
    const float* cs = ws.rope_cs.data() + r * rope.n_rot;
    rope.rotate(qr, s.n_head, s.head_dim, cs);
    rope.rotate(kr, s.n_head_kv, s.head_dim, cs);
  }
  trace::tensor("q", layer, q, n, q_width);
  trace::tensor("k", layer, k, n, k_width);
  trace::tensor("v", layer, v, n, v_width);
  // A quantised cache holds Hadamard-rotated keys and values (model/kv_rotation.h): queries turn
  // with the keys, and the attention output turns back below.
  const int64_t rot_k = kv_rotation_block(kv.type(), s.head_dim), rot_v = kv_rotation_block(kv.type(), s.head_dim_v);
  if (rot_k > 0) {
    hadamard_blocks(q, n * q_width, rot_k);
    hadamard_blocks(k, n * k_width, rot_k);
  }
  if (rot_v > 0) hadamard_blocks(v, n * v_width, rot_v);
  for (int64_t r = 0; r < n; ++r)
    kv.store(layer, batch.seq_ids[r], batch.positions[r], k + r * k_width, v + r * v_width);
  // Every row's K/V is stored first, so each row sees its own sequence up to its own position.
  thread_local std::vector<int64_t> single_rows;
  attend_rows(AttendJob{&s, &batch, &kv, layer, q, att, nullptr}, n, single_rows);
  if (rot_v > 0) hadamard_blocks(att, n * att_width, rot_v);
  trace::tensor("attn_out", layer, att, n, att_width);
  linear(w.o, att, n, out);
  trace::tensor("attn_proj", layer, out, n, s.n_embd);
}

// ---- feed-forward ----

void mlp(const MlpWeights& w, const float* x, int64_t n_rows, MlpScratch& ws, float* out) {
  const int64_t ff = w.gate.out(), d = w.down.out();
  // The hidden rows go through in blocks whose [rows][ff] fit ws.max_floats (evened out):
  // the scratch lives as long as the model, and a whole 512-row prompt chunk of
  // DeepSeek-V2-Lite's dense layer (ff 10944) is 22 MB of it. Each block reads the weights
  // again, so a block may hold up to kMlpMinRows rows whatever ff. The matmuls compute every
  // row the same whatever the rows per call: the same bits as one call.
  const int64_t most = std::max(kMlpMinRows, ws.max_floats / std::max<int64_t>(ff, 1));
  const int64_t blocks = (n_rows + most - 1) / most;
  const int64_t rows = blocks > 0 ? (n_rows + blocks - 1) / blocks : 0;
  float* gate = grow(ws.gate, rows * ff);
  for (int64_t r0 = 0; r0 < n_rows; r0 += rows) {
    const int64_t m = std::min(rows, n_rows - r0);
    kernels::matmul_swiglu(w.gate.w, w.up.w, x + r0 * w.gate.in(), m, gate);
    linear(w.down, gate, m, out + r0 * d);
  }
}

FeedForward load_dense_ffn(const ModelSource& src, const ModelConfig& c, int64_t il, int64_t n_ff,
                           const TensorName& norm) {
  if (n_ff <= 0) throw Error("model '" + src.path() + "' has dense layers but no feed_forward_length");
  FeedForward f;
  f.norm = load_vector(src, layer_tensor(il, norm), c.n_embd);
  f.mlp.gate = load_linear(src, il, tn::kFfnGate, c.n_embd, n_ff);
  f.mlp.up = load_linear(src, il, tn::kFfnUp, c.n_embd, n_ff);
  f.mlp.down = load_linear(src, il, tn::kFfnDown, n_ff, c.n_embd);
  return f;
}

FeedForward load_moe_ffn(const ModelSource& src, const ModelConfig& c, int64_t il, const TensorName& norm,
                         bool require_probs_bias) {
  FeedForward f;
  f.norm = load_vector(src, layer_tensor(il, norm), c.n_embd);
  f.moe = load_moe_weights(src, il, require_probs_bias);
  return f;
}

void feed_forward(const FeedForward& f, const MoeOptions& moe, float eps, const float* x, int64_t n_rows,
                  FfnScratch& ws, float* out) {
  const int64_t d = static_cast<int64_t>(f.norm.size());
  float* h = grow(ws.h, n_rows * d);
  rms_norm_rows(x, f.norm, h, n_rows, d, eps);
  if (f.moe) {
    moe_forward(*f.moe, moe, h, n_rows, ws.moe, out);
  } else {
    mlp(f.mlp, h, n_rows, ws.mlp, out);
  }
}

// ---- embeddings and output ----

OutputHead load_output_head(const ModelSource& src, const ModelConfig& c) {
  OutputHead head;
  auto emb = src.find(tn::kTokenEmbd.gguf);
  if (!emb) throw Error("model '" + src.path() + "' lacks tensor '" + tn::kTokenEmbd.gguf + "'");
  if (emb->ne[0] != c.n_embd || emb->n_dims != 2)
    throw Error("model '" + src.path() + "': token_embd.weight has shape " + emb->shape_str() + ", expected [" +
                std::to_string(c.n_embd) + ", n_vocab]");
  head.token_embd = *emb;
  head.norm = load_vector(src, tn::kOutputNorm.gguf, c.n_embd);
  auto out = src.optional(tn::kOutput.gguf, {c.n_embd, emb->ne[1]});
  // Tied: the prepared copy serves the head and the embedding lookups alike.
  head.output = prepare_matmul_weight(src, out ? *out : *emb);
  head.tied = !out;
  return head;
}

void embed(const OutputHead& head, const Batch& batch, float* x) {
  // Tied: the rows come from the head's prepared copy (the file's pages were released).
  const kernels::Weight e = head.tied ? head.output : kernels::Weight(head.token_embd);
  const int64_t n_embd = e.in();
  for (int64_t r = 0; r < batch.size(); ++r) kernels::dequantize_weight_row(e, batch.tokens[r], x + r * n_embd);
}

std::span<const float> output_logits(const OutputHead& head, float eps, const float* x, const Batch& batch,
                                     HeadScratch& ws) {
  const int64_t n_embd = head.output.in(), n_vocab = head.output.out();
  const int64_t n_out = batch.n_logits();
  float* rows = grow(ws.rows, n_out * n_embd);
  int64_t j = 0;
  for (int64_t r = 0; r < batch.size(); ++r)
    if (batch.want_logits[r]) kernels::rms_norm(x + r * n_embd, head.norm.data(), rows + (j++) * n_embd, n_embd, eps);
  trace::tensor("result_norm", -1, rows, n_out, n_embd);
  float* logits = grow(ws.logits, n_out * n_vocab);
  if (n_out > 0) kernels::matmul(head.output, rows, n_out, logits);
  trace::tensor("logits", -1, logits, n_out, n_vocab);
  return {logits, static_cast<size_t>(n_out * n_vocab)};
}

// ---- the NextN / multi-token-prediction layer ----

NextnWeights load_nextn(const ModelSource& src, const ModelConfig& c, int64_t il, const OutputHead& trunk_head) {
  const int64_t d = c.n_embd, n_vocab = trunk_head.output.out();
  NextnWeights w;
  w.enorm = load_vector(src, layer_tensor(il, tn::kNextnEnorm), d);
  w.hnorm = load_vector(src, layer_tensor(il, tn::kNextnHnorm), d);
  w.eh_proj = load_linear(src, il, tn::kNextnEhProj, 2 * d, d);
  w.head = trunk_head;
  w.head.norm = load_vector(src, layer_tensor(il, tn::kNextnSharedHeadNorm), d);
  // DeepSeek's checkpoints carry the layer's own copies of the embedding and output matrices;
  // llama.cpp's GGUFs leave them out and the trunk's serve.
  const auto emb = src.optional(layer_tensor(il, tn::kNextnEmbedTokens), {d, n_vocab});
  const auto out = src.optional(layer_tensor(il, tn::kNextnSharedHeadHead), {d, n_vocab});
  if (emb) w.head.token_embd = *emb;
  if (out) w.head.output = prepare_matmul_weight(src, *out);
  w.head.tied = trunk_head.tied && !emb && !out;
  return w;
}

// ---- the layer stack ----

Decoder::Decoder(const ModelSource& src, ModelConfig config) : Model(std::move(config)) {
  if (src.shard.output_head) {
    head_ = load_output_head(src, config_);
    config_.n_vocab = head_.output.out();
  } else {
    // A pipeline stage past the first: only the vocabulary size is needed (batches are checked).
    auto emb = src.find(tn::kTokenEmbd.gguf);
    if (!emb) throw Error("model '" + src.path() + "' lacks tensor '" + tn::kTokenEmbd.gguf + "'");
    config_.n_vocab = emb->ne[1];
  }
  n_trunk_ = config_.n_layer - config_.n_nextn_layers;
  // The head's own weights go with the output head: in a pipeline, rank 0 runs them and the last
  // rank (which holds the NextN layer) its attention and FFN block.
  if (config_.n_nextn_layers > 0 && src.shard.output_head) nextn_ = load_nextn(src, config_, n_trunk_, head_);
}

void Decoder::load_ffn(const ModelSource& src, int64_t il, bool experts, const TensorName& norm_name,
                       bool require_probs_bias) {
  if (!src.shard.holds_layer(il)) {
    ffn_.emplace_back();
    return;
  }
  if (!experts || il < config_.n_leading_dense) {
    ffn_.push_back(load_dense_ffn(src, config_, il, config_.n_ff, norm_name));
    return;
  }
  if (moe_.n_expert == 0) {
    ExpertExchange* exchange = moe_.exchange;
    moe_ = MoeOptions::from_config(config_);
    moe_.part = src.shard.expert_part;
    moe_.parts = src.shard.expert_parts;
    moe_.exchange = exchange;
  }
  ffn_.push_back(load_moe_ffn(src, config_, il, norm_name, require_probs_bias));
}

namespace {
// Rows per pass through the layer stack of a dense model. A long prompt runs in chunks so the
// activation scratch (about 64 KB a row for a small model; 64 rows fill the kernels' activation blocks) stays a small
// share of the weights; the result is the same, since each row's K/V is cached before any later row attends. Mixture-
// of-experts models take the whole batch at once, so each expert's weights are read once per batch.
constexpr int64_t kDenseChunkRows = 64;
}  // namespace

void copy_rows(const Batch& from, int64_t begin, int64_t end, Batch& to) {
  to.tokens.assign(from.tokens.begin() + begin, from.tokens.begin() + end);
  to.positions.assign(from.positions.begin() + begin, from.positions.begin() + end);
  to.seq_ids.assign(from.seq_ids.begin() + begin, from.seq_ids.begin() + end);
  to.want_logits.assign(from.want_logits.begin() + begin, from.want_logits.begin() + end);
}

int64_t Decoder::chunk_rows(int64_t n) const { return config_.n_expert > 0 ? n : std::min(n, kDenseChunkRows); }

void Decoder::embed_rows(const Batch& chunk, float* x) const { embed(head_, chunk, x); }

void Decoder::run_layer_range(const Batch& chunk, KVStore& kv, float* x, int64_t begin, int64_t end) {
  const int64_t n = chunk.size(), d = config_.n_embd;
  float* y = grow(y_, n * d);
  for (int64_t il = begin; il < end; ++il) {
    attend(il, x, chunk, kv, y);
    kernels::add(x, y, x, n * d);
    trace::tensor("ffn_inp", il, x, n, d);
    feed_forward(ffn_[static_cast<size_t>(il)], moe_, config_.rms_eps, x, n, ffn_ws_, y);
    trace::tensor("ffn_out", il, y, n, d);
    kernels::add(x, y, x, n * d);
    trace::tensor("l_out", il, x, n, d);
  }
}

std::span<const float> Decoder::logits(const Batch& batch, const float* x) {
  // last_hidden() normalises these rows when asked (a pipeline's rank 0 passes its own buffer).
  last_x_ = x;
  last_rows_ = batch.size();
  last_hidden_ready_ = false;
  return output_logits(head_, config_.rms_eps, x, batch, head_ws_);
}

void Decoder::finish_loading(const ModelSource& src) {
  const gguf::File* f = src.gguf_file();
  if (!f || f->tensor_infos().empty()) return;
  // The whole mapping: tensor data and the metadata the reader has parsed into its own copies.
  const gguf::TensorInfo& first = f->tensor_infos().front();
  const auto start = reinterpret_cast<uintptr_t>(f->view(first).data) - first.offset - f->data_offset();
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = (start + page - 1) & ~(page - 1);
  const uintptr_t e = (start + f->file_size()) & ~(page - 1);
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // a hint: failure changes nothing
}

std::span<const float> Decoder::forward(const Batch& batch, KVStore& kv) {
  prepare_batch(batch, config_.n_vocab, kv);
  return forward_prepared(batch, kv);
}

std::span<const float> Decoder::forward_prepared(const Batch& batch, KVStore& kv) {
  const int64_t n = batch.size(), d = config_.n_embd;
  float* x = grow(x_, n * d);
  const int64_t chunk = chunk_rows(n);
  if (n <= chunk) {
    embed_rows(batch, x);
    run_layer_range(batch, kv, x, 0, n_trunk_);
  } else {
    for (int64_t b = 0; b < n; b += chunk) {
      copy_rows(batch, b, std::min(n, b + chunk), chunk_);
      embed_rows(chunk_, x + b * d);
      run_layer_range(chunk_, kv, x + b * d, 0, n_trunk_);
    }
  }
  return logits(batch, x);
}

std::span<const float> Decoder::last_hidden() const {
  const int64_t d = config_.n_embd;
  if (!last_hidden_ready_) {
    last_hidden_.resize(static_cast<size_t>(last_rows_ * d));
    rms_norm_rows(last_x_, head_.norm, last_hidden_.data(), last_rows_, d, config_.rms_eps);
    last_hidden_ready_ = true;
  }
  return last_hidden_;
}

std::vector<KVLayerShape> Decoder::mtp_kv_shape() const {
  if (!has_mtp()) return {};
  return {kv_shape().front()};  // the NextN block attends like a trunk layer
}

std::span<const float> Decoder::mtp_forward(const Batch& batch, const float* hidden, KVStore& kv) {
  if (!nextn_) return Model::mtp_forward(batch, hidden, kv);  // throws
  prepare_batch(batch, config_.n_vocab, kv);
  return mtp_forward_prepared(batch, hidden, kv);
}

std::span<const float> Decoder::mtp_forward_prepared(const Batch& batch, const float* hidden, KVStore& kv) {
  float* x = grow(mtp_x_, batch.size() * config_.n_embd);
  mtp_input(batch, hidden, x);
  mtp_block(batch, kv, x);
  return mtp_logits(batch, x);
}

void Decoder::mtp_input(const Batch& batch, const float* hidden, float* x) {
  if (!nextn_) throw Error("the NextN head's weights are not loaded in this process");
  const int64_t n = batch.size(), d = config_.n_embd;
  const float eps = config_.rms_eps;
  float* cat = grow(mtp_cat_, n * 2 * d);
  // x0 = eh_proj [RMSNorm(embed(t); enorm) ; RMSNorm(h; hnorm)], the embedding first.
  embed(nextn_->head, batch, x);
  for (int64_t r = 0; r < n; ++r) {
    kernels::rms_norm(x + r * d, nextn_->enorm.data(), cat + r * 2 * d, d, eps);
    kernels::rms_norm(hidden + r * d, nextn_->hnorm.data(), cat + r * 2 * d + d, d, eps);
  }
  linear(nextn_->eh_proj, cat, n, x);
}

void Decoder::mtp_block(const Batch& batch, KVStore& kv, float* x) {
  const int64_t n = batch.size(), d = config_.n_embd, il = n_trunk_;
  float* y = grow(y_, n * d);
  attend(il, x, batch, kv, y);
  kernels::add(x, y, x, n * d);
  feed_forward(ffn_[static_cast<size_t>(il)], moe_, config_.rms_eps, x, n, ffn_ws_, y);
  kernels::add(x, y, x, n * d);
}

std::span<const float> Decoder::mtp_logits(const Batch& batch, const float* x) {
  if (!nextn_) throw Error("the NextN head's weights are not loaded in this process");
  auto logits = output_logits(nextn_->head, config_.rms_eps, x, batch, mtp_head_ws_);
  mtp_hidden_ = {mtp_head_ws_.rows.data(), static_cast<size_t>(batch.n_logits() * config_.n_embd)};
  return logits;
}

GqaDecoder::GqaDecoder(const ModelSource& src, ModelConfig config) : Decoder(src, std::move(config)) {
  shape_ = attention_shape(config_);
  rope_ = make_rope(config_, src);
  for (int64_t il = 0; il < config_.n_layer; ++il)
    attn_.push_back(src.shard.holds_layer(il) ? load_attention(src, config_, il) : AttentionWeights{});
}

std::vector<KVLayerShape> GqaDecoder::kv_shape() const {
  return std::vector<KVLayerShape>(static_cast<size_t>(n_trunk_),
                                   {shape_.n_head_kv * shape_.head_dim, shape_.n_head_kv * shape_.head_dim_v});
}

void GqaDecoder::attend(int64_t il, const float* x, const Batch& batch, KVStore& kv, float* out) {
  attention(attn_[static_cast<size_t>(il)], shape_, rope_, x, batch, kv, kv_layer(il), attn_ws_, out);
}

}  // namespace owl::blocks
