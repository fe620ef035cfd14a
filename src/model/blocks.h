// Building blocks shared by the model families: weights looked up by GGUF name
// and checked, and the forward pieces (norms, rope, grouped-query attention
// over the KV cache, SwiGLU MLP, output head). Activations are row-major
// float32 [n_rows][width]; the caller owns every buffer, so the hot path
// allocates nothing once the buffers have grown to the largest batch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/kv_store.h"
#include "model/model.h"
#include "model/source.h"

namespace owl::blocks {

// Grows buf to at least n floats (never shrinks) and returns its data.
float* scratch(std::vector<float>& buf, int64_t n);

// ---- weights ----

// A 1-D parameter (norm weight, bias) of n elements, converted to float whatever its stored type.
std::vector<float> load_vector(const ModelSource& src, const std::string& name, int64_t n);
// Same, or empty when the tensor is absent.
std::vector<float> load_optional_vector(const ModelSource& src, const std::string& name, int64_t n);

// y = W x (+ b): W has ne {in, out}, stored in any type kernels::matmul handles.
struct Linear {
  TensorView w;
  std::vector<float> bias;  // empty: no bias
  int64_t in() const { return w.ne[0]; }
  int64_t out() const { return w.ne[1]; }
};
enum class Bias { None, Optional, Required };
Linear load_linear(const ModelSource& src, const std::string& name, int64_t in, int64_t out, Bias bias = Bias::None);
void linear(const Linear& l, const float* x, int64_t n_rows, float* y);

// RMSNorm of each of n_rows rows of width n (y may alias x).
void rms_norm_rows(const float* x, const std::vector<float>& w, float* y, int64_t n_rows, int64_t n, float eps);

// ---- rotary position embedding ----

struct Rope {
  std::vector<float> inv_freq;  // n_rot / 2 frequencies, every scaling folded in
  kernels::RopePairing pairing = kernels::RopePairing::Norm;
  int64_t n_rot = 0;
  float mscale = 1.0f;  // cos/sin multiplier (YaRN)
  // Rotates the first n_rot dims of each of n_heads heads of width head_dim at position pos.
  void apply(float* x, int64_t n_heads, int64_t head_dim, int64_t pos) const {
    kernels::rope(x, n_heads, head_dim, n_rot, pos, inv_freq.data(), pairing, mscale);
  }
};
// The rope of a config: NORM or NEOX pairing, theta, linear / YaRN / Llama-3 scaling, and the
// per-pair divisors of an optional `rope_freqs.weight` (how GGUF stores Llama-3 scaling).
Rope make_rope(const ModelConfig& c, const ModelSource& src);

// ---- grouped-query attention ----

struct AttentionWeights {
  std::vector<float> norm;          // pre-attention RMSNorm
  Linear q, k, v, o;                // q/k/v with optional bias (qwen2)
  std::vector<float> q_norm, k_norm;  // per-head RMSNorm before rope (qwen3); empty: none
};
struct AttentionShape {
  int64_t n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  float eps = 1e-6f;
  float scale = 0;              // softmax scale, usually 1/sqrt(head_dim)
  int64_t sliding_window = 0;   // 0: attend to the whole sequence
};
AttentionShape attention_shape(const ModelConfig& c);
// blk.<il>.attn_{norm,q,k,v,output}, optional q/k/v biases (required when c.attn_qkv_bias) and
// attn_{q,k}_norm (required when c.attn_qk_norm).
AttentionWeights load_attention(const ModelSource& src, const ModelConfig& c, int64_t il);

struct AttentionScratch {
  std::vector<float> h, q, k, v, att;
};
// out = attention(norm(x)) for every row of the batch; stores the rows' K/V in layer `layer` of kv
// (which prepare_batch has grown) and attends causally within each row's sequence.
void attention(const AttentionWeights& w, const AttentionShape& s, const Rope& rope, const float* x,
               const Batch& batch, KVStore& kv, int layer, AttentionScratch& ws, float* out);

// ---- feed-forward ----

struct MlpWeights {
  std::vector<float> norm;  // pre-FFN RMSNorm
  Linear gate, up, down;
};
// blk.<il>.ffn_{norm,gate,up,down}; norm_name overrides the norm tensor (glm4moe: post_attention_norm).
MlpWeights load_mlp(const ModelSource& src, const ModelConfig& c, int64_t il, int64_t n_ff,
                    const std::string& norm_name = "ffn_norm");
struct MlpScratch {
  std::vector<float> h, gate, up;
};
// out = down(silu(gate(norm(x))) * up(norm(x))).
void mlp(const MlpWeights& w, float eps, const float* x, int64_t n_rows, MlpScratch& ws, float* out);

// ---- embeddings and output ----

struct OutputHead {
  TensorView token_embd;     // {n_embd, n_vocab}
  std::vector<float> norm;   // output_norm
  TensorView output;         // output.weight, or token_embd when tied
};
OutputHead load_output_head(const ModelSource& src, const ModelConfig& c);
// x[r] = embedding row of batch.tokens[r].
void embed(const TensorView& token_embd, const Batch& batch, float* x);
struct HeadScratch {
  std::vector<float> rows;
  std::vector<float> logits;
};
// Logits of the rows with want_logits: [n_logits][n_vocab], in ws.logits.
std::span<const float> output_logits(const OutputHead& head, float eps, const float* x, const Batch& batch,
                                     HeadScratch& ws);

}  // namespace owl::blocks
