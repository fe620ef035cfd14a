// Multi-head latent attention (DeepSeek-V2/V3/R1, Kimi K2), evaluated in the
// "absorbed" form that llama.cpp uses, so the KV cache holds one compressed
// row per token: [latent (kv_lora) | k_pe (rope)], shared by all heads.
//
//   q      = q_b(rmsnorm(q_a(x)))  or  attn_q(x)        per head [nope | rope]
//   kv     = kv_a_mqa(x) = [latent | k_pe]; latent = rmsnorm(latent); k_pe roped
//   score  = (W_kb,h^T q_nope,h)·latent_t + q_pe,h·k_pe,t     (attn_k_b: {nope, kv_lora, n_head})
//   out_h  = W_vb,h (sum_t p_t latent_t)                      (attn_v_b: {kv_lora, v, n_head})
//   y      = attn_output(concat_h out_h)
// RoPE pairs adjacent dims (NORM); YaRN frequencies and kq_scale = m^2/sqrt(nope+rope) as in
// ../shared/golden/README.md ("deepseek2 YaRN").
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/kv_store.h"
#include "model/model.h"
#include "model/source.h"
#include "tensor/tensor.h"

namespace owl {

struct MlaParams {
  int64_t n_embd = 0, n_head = 0;
  int64_t q_lora_rank = 0;  // 0: direct query projection (V2-Lite)
  int64_t kv_lora_rank = 0, nope = 0, rope = 0, v_dim = 0;
  float eps = 1e-6f;
  float kq_scale = 1.0f;
  std::vector<float> inv_freq;   // rope/2 entries, YaRN already folded in
  MlaForm form = MlaForm::Auto;  // Auto: by cost (mla_prefer_expanded); else forced (ModelSource::mla_form)
  // The expanded form's decompressed K/V (floats, K and V together) for one chunk of heads: 24 MB.
  // `owl bench` allows the process 5% over file + KV cache; for DeepSeek-V2-Lite-8l (3.0 GB)
  // that is 153-166 MB from 4k to 32k tokens, of which ~115 MB went to buffers that do not
  // grow with the context (512-row prompt chunks: the FFN's 44 MB, MLA's queries, outputs and
  // blocks ~30 MB, the rest of the process 30-41 MB; measured at 4k and 16k). Chunks of heads
  // are attended one after another: every head's K/V is read once per block of rows whatever
  // the chunk. At least one head goes at a time, so over a context longer than budget /
  // (qd + v) rows (19.6k for V2) the K/V are one head's, len (qd + v) floats.
  int64_t expanded_kv_floats = int64_t{6} << 20;
  // Cached rows converted (and decompressed) per step: the latents' float copies are this many
  // rows, not the whole context.
  int64_t expanded_block_rows = 1024;

  int64_t q_head_dim() const { return nope + rope; }
  int64_t cache_width() const { return kv_lora_rank + rope; }  // floats cached per token
  int64_t absorbed_head_dim() const { return kv_lora_rank + rope; }

  static MlaParams from_config(const ModelConfig& c);
};

struct MlaWeights {
  std::optional<kernels::Weight> q_a, q_b;  // q_lora_rank > 0
  std::optional<TensorView> q_a_norm;
  std::optional<kernels::Weight> q;  // q_lora_rank == 0
  TensorView kv_a_norm;
  // Prepared for matmul (k_b too: the expanded form reads its rows with dequantize_weight_row).
  kernels::Weight kv_a_mqa, k_b, v_b, output;
};
MlaWeights load_mla_weights(const ModelSource& src, int64_t layer, const MlaParams& p);

// The rows of one sequence within a batch (in batch order) and their positions.
struct MlaSequenceRows {
  int32_t seq = 0;
  std::vector<int64_t> rows, positions;
};

// Scratch space, grown to the largest batch and then reused.
struct MlaScratch {
  std::vector<float> qa, qn, qk, lat, k, v, kn, vn;
  std::vector<float> h, q, kv_rows, heads, group_q, group_heads;  // mla_attention
  std::vector<MlaSequenceRows> groups;                            // entries beyond n_groups are spare
  size_t n_groups = 0;

  // Bytes held by the float buffers (what the scratch adds to the process's footprint).
  size_t bytes() const {
    size_t n = 0;
    for (const auto* b : {&qa, &qn, &qk, &lat, &k, &v, &kn, &vn, &h, &q, &kv_rows, &heads, &group_q, &group_heads})
      n += b->capacity() * sizeof(float);
    return n;
  }
};

// For n tokens (x: normalised hidden states [n][n_embd], positions pos[n]) computes the roped
// queries q [n][n_head][nope + rope] and the rows to cache kv_rows [n][kv_lora + rope].
void mla_project(const MlaWeights& w, const MlaParams& p, const float* x, const int64_t* pos, int64_t n, float* q,
                 float* kv_rows, MlaScratch& ws);

// The attention half of an MLA layer for a batch: out = attn_output(MLA(rmsnorm(x, norm))), storing
// each row's [latent | k_pe] in layer `layer` of kv (which prepare_batch has grown). Each
// sequence's rows attend over its cache in whichever form (below) costs fewer multiply-adds.
void mla_attention(const MlaWeights& w, const std::vector<float>& norm, const MlaParams& p, const float* x,
                   const Batch& batch, KVStore& kv, int layer, MlaScratch& ws, float* out);

// Two exact evaluations of the attention of a sequence's new query rows over its cached rows:
//  * absorbed: per query, q_nope moves into latent space and attends over the cached rows
//    directly (per (query, key) pair ~ n_head * (2 kv_lora + rope) multiply-adds) — decode, and
//    short prompt chunks at depth (18 rows or more go through kernels::attention_rows: all heads
//    of a block of rows share each latent row read);
//  * expanded: the cached rows are decompressed (kernels::gemm_f32, per call: the whole context
//    again for every chunk of a prompt) into per-head K/V, then ordinary attention (per pair
//    ~ n_head * (nope + rope + v)) — long prefill chunks. The heads go in chunks whose K/V fit
//    MlaParams::expanded_kv_floats (mla_expanded_heads), the cached rows are converted
//    expanded_block_rows at a time: the scratch does not grow with the context beyond that.
// mla_prefer_expanded compares the multiply-adds of both for n queries at positions pos (up to
// 17 rows continuing a sequence always take the absorbed form, as a single decode row does).
// MlaParams::form (from ModelSource::mla_form at load) forces one instead (tests, A/B runs).
bool mla_prefer_expanded(const MlaParams& p, const int64_t* pos, int64_t n);

// Heads decompressed together by the expanded form over a context of len rows: as many as fit
// expanded_kv_floats (at least 1, at most 16), evened out over the chunks (16 heads that fit 12
// at a time go as 8 + 8, not 12 + 4).
int64_t mla_expanded_heads(const MlaParams& p, int64_t len);

// Absorbed: heads [n][n_head][v] for n queries q [n][n_head][nope + rope] at positions pos, all of
// one sequence whose cached rows (including these tokens') `rows` spans.
void mla_attend_absorbed(const MlaWeights& w, const MlaParams& p, const float* q, const int64_t* pos, int64_t n,
                         const kernels::KVSpan& rows, MlaScratch& ws, float* heads);
// Expanded: same contract.
void mla_attend_expanded(const MlaWeights& w, const MlaParams& p, const float* q, const int64_t* pos, int64_t n,
                         const kernels::KVSpan& rows, MlaScratch& ws, float* heads);

}  // namespace owl
