// Building blocks shared by the model families: weights looked up by GGUF name
// and checked, and the forward pieces (norms, rope, grouped-query attention
// over the KV cache, SwiGLU MLP, output head). Activations are row-major
// float32 [n_rows][width]; the caller owns every buffer, so the hot path
// allocates nothing once the buffers have grown to the largest batch.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/scratch.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/kv_store.h"
#include "model/model.h"
#include "model/moe.h"
#include "model/source.h"
#include "model/tensor_names.h"

namespace owl::blocks {

// Consecutive rows of one sequence in prompt order at least this many go through
// kernels::attention_rows together (each cached K/V row read once per block of rows); shorter
// runs go row by row: decode steps of one or several sequences, and speculative verify batches
// (a sequence's next token and at most 16 drafts), whose rows must come out exactly as the same
// rows decoded one at a time (kernels::attention rounds differently from attention_rows). The
// dense attention (blocks.cpp) and MLA's forms (mla.cpp) both follow it.
inline constexpr int64_t kMinRowsTogether = 18;

// ---- weights ----

// A 1-D parameter (norm weight, bias) of n elements, converted to float whatever its stored type.
std::vector<float> load_vector(const ModelSource& src, const std::string& name, int64_t n);
// Same, or empty when the tensor is absent.
std::vector<float> load_optional_vector(const ModelSource& src, const std::string& name, int64_t n);

// The matmul form of a weight: repacked at load for the fast kernels where they have a layout for
// its type (kernels::prepare_weight with src.prepare; plain otherwise). When the bytes lie in a
// GGUF file mapping, the mapping's resident pages are dropped after the copy, so the weight is
// resident once (a tied embedding then reads its rows from the copy: kernels::dequantize_weight_row).
kernels::Weight prepare_matmul_weight(const ModelSource& src, const TensorView& w);
// The same in place: a plain w becomes its prepared form.
void prepare_in_place(const ModelSource& src, kernels::Weight& w);

// y = W x (+ b): W has ne {in, out}, stored in any type kernels::matmul handles.
struct Linear {
  kernels::Weight w;        // prepared (packed or plain)
  std::vector<float> bias;  // empty: no bias
  int64_t in() const { return w.in(); }
  int64_t out() const { return w.out(); }
};
enum class Bias { None, Optional, Required };
// blk.<il>.<w> with shape {in, out}, prepared for matmul; with a bias blk.<il>.<b> as `bias` says.
Linear load_linear(const ModelSource& src, int64_t il, const TensorName& w, int64_t in, int64_t out);
Linear load_linear(const ModelSource& src, int64_t il, const TensorName& w, const TensorName& b, Bias bias, int64_t in,
                   int64_t out);
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
  // The same in two steps: cs (n_rot floats) = the cos/sin table of pos, then rotate by it.
  void cos_sin(float* cs, int64_t pos) const { kernels::rope_cos_sin(cs, n_rot, pos, inv_freq.data(), mscale); }
  void rotate(float* x, int64_t n_heads, int64_t head_dim, const float* cs) const {
    kernels::rope_rotate(x, n_heads, head_dim, n_rot, cs, pairing);
  }
};
// The rope of a config: NORM or NEOX pairing, theta, linear / YaRN / Llama-3 scaling, and the
// per-pair divisors of an optional `rope_freqs.weight` (how GGUF stores Llama-3 scaling).
Rope make_rope(const ModelConfig& c, const ModelSource& src);

// ---- grouped-query attention ----

struct AttentionWeights {
  std::vector<float> norm;            // pre-attention RMSNorm
  Linear q, k, v, o;                  // q/k/v with optional bias (qwen2)
  std::vector<float> q_norm, k_norm;  // per-head RMSNorm before rope (qwen3); empty: none
};
struct AttentionShape {
  int64_t n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  float eps = 1e-6f;
  float scale = 0;             // softmax scale, usually 1/sqrt(head_dim)
  int64_t sliding_window = 0;  // 0: attend to the whole sequence
};
AttentionShape attention_shape(const ModelConfig& c);
// blk.<il>.attn_{norm,q,k,v,output}, optional q/k/v biases (required when c.attn_qkv_bias) and
// attn_{q,k}_norm (required when c.attn_qk_norm).
AttentionWeights load_attention(const ModelSource& src, const ModelConfig& c, int64_t il);

struct AttentionScratch {
  std::vector<float> h, q, k, v, att;
  // The rope tables of the rows of rope_positions (n_rot floats each) for rope_of: every layer of
  // a forward call rotates at the same positions, so the first computes them and the rest reuse.
  std::vector<float> rope_cs;
  std::vector<int64_t> rope_positions;
  const Rope* rope_of = nullptr;
};
// q, k, v = W_{q,k,v} h (+ biases) for n_rows rows: one matmul_many call, one pool dispatch.
void qkv_projection(const AttentionWeights& w, const float* h, int64_t n_rows, float* q, float* k, float* v);
// out = attention(norm(x)) for every row of the batch; stores the rows' K/V in layer `layer` of kv
// (which prepare_batch has grown) and attends causally within each row's sequence.
void attention(const AttentionWeights& w, const AttentionShape& s, const Rope& rope, const float* x, const Batch& batch,
               KVStore& kv, int layer, AttentionScratch& ws, float* out);

// ---- feed-forward ----

inline constexpr int64_t kMlpScratchFloats = int64_t{2} << 20;
inline constexpr int64_t kMlpMinRows = 64;
struct MlpWeights {
  Linear gate, up, down;
};
struct MlpScratch {
  std::vector<float> gate;
  int64_t max_floats = kMlpScratchFloats;  // the hidden rows' budget (tests set small ones)
};
// out = down(silu(gate(x)) * up(x)) for n_rows rows of x (already normalised), in blocks of at
// most max(kMlpMinRows, ws.max_floats / n_ff) rows (8 MiB of hidden activations), evened out.
void mlp(const MlpWeights& w, const float* x, int64_t n_rows, MlpScratch& ws, float* out);

// The FFN half of a layer: RMSNorm, then a SwiGLU MLP (dense layers) or a mixture of experts.
struct FeedForward {
  std::vector<float> norm;
  MlpWeights mlp;                 // dense layers
  std::optional<MoeWeights> moe;  // MoE layers
};
// blk.<il>.<norm_name>.weight and blk.<il>.ffn_{gate,up,down} (n_ff wide).
FeedForward load_dense_ffn(const ModelSource& src, const ModelConfig& c, int64_t il, int64_t n_ff,
                           const TensorName& norm);
// blk.<il>.<norm_name>.weight and the expert tensors (see load_moe_weights).
FeedForward load_moe_ffn(const ModelSource& src, const ModelConfig& c, int64_t il, const TensorName& norm,
                         bool require_probs_bias);
struct FfnScratch {
  std::vector<float> h;
  MlpScratch mlp;
  MoeScratch moe;
};
// out = FFN(norm(x)); moe is used by MoE layers only.
void feed_forward(const FeedForward& f, const MoeOptions& moe, float eps, const float* x, int64_t n_rows,
                  FfnScratch& ws, float* out);

// ---- embeddings and output ----

struct OutputHead {
  TensorView token_embd;    // {n_embd, n_vocab}, the file's layout (row lookups when untied)
  std::vector<float> norm;  // output_norm
  kernels::Weight output;   // output.weight, or token_embd when tied; prepared for matmul
  // Tied: embedding rows are read from the prepared head (kernels::dequantize_weight_row), so
  // the table is resident once.
  bool tied = false;
};
OutputHead load_output_head(const ModelSource& src, const ModelConfig& c);
// x[r] = embedding row of batch.tokens[r].
void embed(const OutputHead& head, const Batch& batch, float* x);
struct HeadScratch {
  std::vector<float> rows;
  std::vector<float> logits;
};
// Logits of the rows with want_logits: [n_logits][n_vocab], in ws.logits.
std::span<const float> output_logits(const OutputHead& head, float eps, const float* x, const Batch& batch,
                                     HeadScratch& ws);

// ---- the NextN / multi-token-prediction layer ----

// blk.<il>.nextn.*: the layer's own norms and projection; its block (attention, FFN) is loaded
// like a trunk layer's. `head` is the trunk's output head with shared_head_norm as its norm (and
// nextn.embed_tokens / nextn.shared_head_head in place of the trunk's when the file has them).
struct NextnWeights {
  std::vector<float> enorm, hnorm;
  Linear eh_proj;  // {2 n_embd, n_embd}: [RMSNorm(embedding) ; RMSNorm(hidden)] -> n_embd
  OutputHead head;
};
NextnWeights load_nextn(const ModelSource& src, const ModelConfig& c, int64_t il, const OutputHead& trunk_head);

// ---- the layer stack ----

// to = rows [begin, end) of from.
void copy_rows(const Batch& from, int64_t begin, int64_t end, Batch& to);

// The skeleton of every family: embed; per layer x += attention(x), x += FFN(x); output head.
// A family supplies its attention (attend, kv_shape) and one FeedForward per layer.
class Decoder : public Model {
 public:
  std::span<const float> forward(const Batch& batch, KVStore& kv) final;

  // ---- the pieces of forward(), for distributed runs (src/dist) ----
  // forward() after prepare_batch: the batch is checked and kv grown.
  std::span<const float> forward_prepared(const Batch& batch, KVStore& kv);
  // Rows per pass through the layer stack for a batch of n rows (forward runs longer batches in
  // chunks of this many rows; a pipeline passes the same chunks from stage to stage).
  int64_t chunk_rows(int64_t n) const;
  int64_t n_trunk() const { return n_trunk_; }
  // x[r] = the embedding of chunk.tokens[r] (needs the output head: ModelShard::output_head).
  void embed_rows(const Batch& chunk, float* x) const;
  // Runs trunk layers [begin, end) over the chunk's hidden states x, in place.
  void run_layer_range(const Batch& chunk, KVStore& kv, float* x, int64_t begin, int64_t end);
  // The logits of the batch's rows with want_logits from their final hidden states x.
  std::span<const float> logits(const Batch& batch, const float* x);
  // Expert split: the exchange every MoE layer gathers the other parts' rows through.
  void set_expert_exchange(ExpertExchange* exchange) { moe_.exchange = exchange; }

  // The NextN head: the first NextN layer (the one DeepSeek-V3/R1 and GLM-4.5 ship) over its own
  // KV cache, whose layer 0 it is (kv_layer).
  std::vector<KVLayerShape> mtp_kv_shape() const override;
  std::span<const float> last_hidden() const override;
  std::span<const float> mtp_forward(const Batch& batch, const float* hidden, KVStore& kv) override;
  std::span<const float> mtp_hidden() const override { return mtp_hidden_; }

  // ---- the NextN head in pieces, for distributed runs (src/dist) ----
  // mtp_forward() after prepare_batch on kv.
  std::span<const float> mtp_forward_prepared(const Batch& batch, const float* hidden, KVStore& kv);
  // x = eh_proj [RMSNorm(embed(t); enorm) ; RMSNorm(hidden; hnorm)] for the batch's rows (needs the
  // head's own weights: ModelShard::output_head).
  void mtp_input(const Batch& batch, const float* hidden, float* x);
  // The NextN block (attention over kv, then the FFN) over x, in place (needs its layer loaded).
  void mtp_block(const Batch& batch, KVStore& kv, float* x);
  // The head's logits of the want_logits rows from the block's output x; sets mtp_hidden().
  std::span<const float> mtp_logits(const Batch& batch, const float* x);

 protected:
  // Loads the output head (setting n_vocab; unless the shard leaves it out), counts the trunk
  // layers (all but the trailing NextN/MTP layers, whose blocks the family loads like the others)
  // and loads the first NextN layer's own tensors.
  Decoder(const ModelSource& src, ModelConfig config);
  // out = attention(norm(x)) of layer il for the batch's rows, storing their K/V in kv.
  virtual void attend(int64_t il, const float* x, const Batch& batch, KVStore& kv, float* out) = 0;
  // Loads layer il's FFN: dense below c.n_leading_dense or when `experts` is false, else MoE
  // (setting the routing options from the config on first use). A layer outside src.shard is
  // left empty.
  void load_ffn(const ModelSource& src, int64_t il, bool experts, const TensorName& norm_name,
                bool require_probs_bias = false);
  // The end of every family's constructor: drops the process's resident pages of a GGUF file's
  // mapping. The repacked weights have their own copies and the metadata is parsed; reading them
  // (and, through the kernel's 64 KiB fault-around, their neighbours) left pages mapped that would
  // count twice. What is still read from the file (embedding rows, small tensors) faults back in.
  void finish_loading(const ModelSource& src);

  // The layer of a KV cache that layer il uses: trunk layers in the model's cache, NextN layers
  // in the head's own (mtp_kv_shape), from 0.
  int kv_layer(int64_t il) const { return static_cast<int>(il < n_trunk_ ? il : il - n_trunk_); }

  int64_t n_trunk_ = 0;
  OutputHead head_;
  std::optional<NextnWeights> nextn_;  // the first NextN layer, when the file has one
  std::vector<FeedForward> ffn_;       // per layer
  MoeOptions moe_;

 private:
  // Activations, grown to the largest batch (x) or chunk (the rest) seen and then reused.
  std::vector<float> x_, y_;
  Batch chunk_;
  FfnScratch ffn_ws_;
  HeadScratch head_ws_;
  const float* last_x_ = nullptr;           // the final hidden rows of the last logits() call
  int64_t last_rows_ = 0;                   //   and their count
  mutable std::vector<float> last_hidden_;  // their output_norm, computed when asked for
  mutable bool last_hidden_ready_ = false;
  std::span<const float> mtp_hidden_;  // into mtp_head_ws_.rows
  std::vector<float> mtp_x_, mtp_cat_;
  HeadScratch mtp_head_ws_;
};

// The grouped-query attention families (llama, qwen2/3, qwen3moe, glm4moe): GQA in every layer
// (load_attention), FFN per layer as the family loads it.
class GqaDecoder : public Decoder {
 public:
  std::vector<KVLayerShape> kv_shape() const override;

 protected:
  GqaDecoder(const ModelSource& src, ModelConfig config);
  void attend(int64_t il, const float* x, const Batch& batch, KVStore& kv, float* out) override;

 private:
  AttentionShape shape_;
  Rope rope_;
  std::vector<AttentionWeights> attn_;  // per layer
  AttentionScratch attn_ws_;
};

}  // namespace owl::blocks
