// The arithmetic every model uses. Each kernel has a scalar reference; fast
// paths (AVX2/FMA/F16C) are chosen once at start-up from CPUID.
// Layout conventions: activations are row-major float32 [n_rows][n]; a weight
// W is a TensorView with ne = {in, out} (ggml order), i.e. `out` stored rows.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tensor/tensor.h"

namespace owl::kernels {

// dst[0..n) = the n elements of one stored row of type t (n a multiple of the block size).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Y[r][o] = sum_i W[o][i] * X[r][i] for r < n_rows, o < out. X has W.ne[0] columns.
// Split over the default thread pool by output rows.
void matmul(const TensorView& W, const float* X, int64_t n_rows, float* Y);

// Several weights that share the input X (Q/K/V; gate/up): Ys[i][r][o] = sum_j Ws[i][o][j] * X[r][j].
// X is converted once per activation type and ONE pool dispatch covers every output row of every
// weight, so the threads do not meet in between. All Ws take the same row length; 1..8 weights.
// Each output equals what matmul(*Ws[i], X, n_rows, Ys[i]) gives, bit for bit.
void matmul_many(std::span<const TensorView* const> Ws, const float* X, int64_t n_rows, std::span<float* const> Ys);

// Y[r][o] = silu(gate[o] . X[r]) * (up[o] . X[r]) (gate, up: same shape), computed per output tile
// without a separate pass; bit-identical to matmul(gate), matmul(up), swiglu().
void matmul_swiglu(const TensorView& gate, const TensorView& up, const float* X, int64_t n_rows, float* Y);

// The 2-D matrix number i2 of a 3-D stack (e.g. expert i2 of ffn_*_exps); works on prepared weights.
TensorView matrix_slice(const TensorView& W, int64_t i2);

// ---- weights repacked at load time ----
// prepare_weight copies a weight used by matmul into a layout interleaving 8 rows block by block
// (Q4_K, Q6_K, Q8_0, Q5_0 where AVX2 exists; other types come back as the plain view, storage null).
// The returned view keeps W's name, type and shape; matmul, matmul_many, matmul_swiglu and
// matrix_slice (3-D expert stacks) recognise its data pointer, and give the same results as on
// W within float rounding (2e-6 of the output scale; bit-identical for any thread count).
// Keep `storage` alive as long as the view is used. The prepared view's bytes are NOT in the
// GGUF block layout: row()/dequantize_row on it are wrong. A tied embedding looks its rows up
// with dequantize_weight_row(prepared view, token, dst) (then W's pages can be released too),
// or keeps using W for row lookups and passes release_source = false.
// release_source: after copying, drop the process's resident pages of W's bytes (madvise
// DONTNEED). Only for W inside a read-only FILE mapping (anonymous memory would be zeroed).
struct PreparedWeight {
  TensorView view;
  std::shared_ptr<const void> storage;
};
PreparedWeight prepare_weight(const TensorView& W, bool release_source = false);
bool is_prepared(const TensorView& W);  // W's data is a prepare_weight copy
// dst[0..W.ne[0]) = stored row `row` of W (counting across a 3-D stack), dequantised; works on
// plain and prepared views alike, so a tied embedding can look rows up in its prepared copy
// and release the file's pages.
void dequantize_weight_row(const TensorView& W, int64_t row, float* dst);
// A/B switch: false makes prepare_weight return plain views (already prepared ones stay packed).
void set_repack(bool on);
bool repack_enabled();
// A/B switch for the AVX-512 VNNI kernels of prepared weights (used where the CPU has them;
// their results equal the AVX2 kernels' bit for bit). Off: AVX2.
void set_vnni(bool on);
bool vnni_available();
// The kernels matmul uses now: "avx2+avx512vnni", "avx2" or "scalar".
const char* kernel_set();

}  // namespace owl::kernels

namespace owl::kernels {

// ---- element-wise and row kernels (x, y: n floats; y may alias x) ----
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);  // w may be null
void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);
void softmax(float* x, int64_t n);
void silu(float* x, int64_t n);
void gelu(float* x, int64_t n);  // tanh approximation
void swiglu(const float* gate, const float* up, float* y, int64_t n);  // y = silu(gate) * up
void add(const float* a, const float* b, float* y, int64_t n);          // y = a + b
void scale_add(float* y, const float* x, float s, int64_t n);           // y += s * x

// ---- rotary position embedding ----
enum class RopePairing { Norm, Neox };  // Norm: (2i, 2i+1); Neox: (i, i + n_rot/2)
// Rotates the first n_rot dims of each of n_heads heads (head i at x + i*head_dim) by
// angle pos * inv_freq[i] for pair i < n_rot/2, and scales cos/sin by mscale.
// inv_freq already folds in every scaling (linear, YaRN ramp, Llama-3 factors).
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos, const float* inv_freq,
          RopePairing pairing, float mscale = 1.0f);

// inv_freq tables for rope() (n_rot / 2 entries; pair i rotates by pos * inv_freq[i]).
// Plain: inv_freq[i] = base^(-2i / n_rot).
void rope_inv_freq(float* inv_freq, int64_t n_rot, float base);
// Linear scaling (position interpolation): plain / factor.
void rope_inv_freq_linear(float* inv_freq, int64_t n_rot, float base, float factor);
// Per-pair divisors, e.g. GGUF's rope_freqs.weight written by the Llama-3 converter: plain / factors[i].
void rope_inv_freq_factors(float* inv_freq, int64_t n_rot, float base, const float* factors);
// Llama-3 frequency scaling from its hyperparameters (HF rope_scaling "llama3"): wavelengths
// above orig_ctx / low_freq_factor are divided by factor, below orig_ctx / high_freq_factor kept,
// and smoothly interpolated in between. llama3_rope_factors gives the n_rot / 2 divisors exactly
// as the HF -> GGUF converter stores them (rope_freqs.weight); rope_inv_freq_llama3 applies them.
std::vector<float> llama3_rope_factors(int64_t n_rot, float base, float factor, float low_freq_factor,
                                       float high_freq_factor, int64_t orig_ctx);
void rope_inv_freq_llama3(float* inv_freq, int64_t n_rot, float base, float factor, float low_freq_factor,
                          float high_freq_factor, int64_t orig_ctx);
// YaRN (as llama.cpp / DeepSeek-V2/V3): pair i gets plain * (r + (1 - r) / factor) with the ramp
// r = 1 - clamp((i - lo) / max(0.001, hi - lo), 0, 1), lo = max(0, floor(c(beta_fast))),
// hi = min(n_rot - 1, ceil(c(beta_slow))), c(b) = n_rot * ln(orig_ctx / (2 pi b)) / (2 ln base).
void rope_inv_freq_yarn(float* inv_freq, int64_t n_rot, float base, float factor, int64_t orig_ctx,
                        float beta_fast = 32.0f, float beta_slow = 1.0f);
// YaRN's magnitude factor m = 1 + 0.1 * mscale * ln(factor) (1 when factor <= 1). DeepSeek-2/3
// multiply the attention scale by m^2 with mscale = mscale_all_dim (and keep rope's mscale 1);
// plain YaRN passes m (mscale 1) as rope()'s mscale.
float yarn_mscale(float factor, float mscale = 1.0f);

// ---- attention over a (paged) KV cache ----
// Keys or values of one sequence: token t lives in page t / page_tokens, row t % page_tokens;
// a row has row_stride elements of `type` (F32 or F16), head h starts at h * head_dim.
struct KVSpan {
  DType type = DType::F32;
  int64_t page_tokens = 0;
  const void* const* pages = nullptr;
  int64_t row_stride = 0;
};
// One query token: out[h][dv] = sum_t softmax_t(scale * q[h]·k[t][g]) v[t][g] for t in
// [kv_begin, kv_end), g = h / (n_head / n_head_kv) (grouped-query heads). Streaming
// (online) softmax: no buffer proportional to the context.
void attention(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
               const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out);
// Many query rows of ONE sequence at once (a prompt's rows): row r (queries at q + r*n_head*dk,
// output at out + r*n_head*dv) gets what attention() gives over [kv_begin_r, positions[r] + 1),
// with kv_begin_r = 0, or max(0, positions[r] + 1 - window) when window > 0 (sliding window).
// positions: n_rows values, >= 0 and non-decreasing (rows in prompt order, each row's K/V
// already cached). Blocks of query rows x the heads of one KV group are scored against chunks
// of keys together, so each K/V row is read (and converted from F16) once per block rather
// than once per row and head. Split over the default pool by (KV head, row block); results
// do not depend on the thread count, and agree with attention() per row within float
// rounding (1e-5 of the values' scale).
void attention_rows(const float* q, int64_t n_rows, std::span<const int64_t> positions, int64_t n_head,
                    int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k, const KVSpan& v, int64_t window,
                    float scale, float* out);

// ---- selection ----
// Indices of the k largest values of x[0..n), largest first (ties: lower index first).
void top_k(const float* x, int64_t n, int64_t k, int32_t* idx);

// f16 <-> f32 conversions (IEEE binary16, round-to-nearest-even).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
// dst[i] = fp32_to_fp16(src[i]) for n values (F16C where available: the same results).
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace owl::kernels

namespace owl::kernels {

// ---- kernel selection (for tests and benchmarks) ----
// Whether this CPU has the AVX2+FMA+F16C fast paths; they are used by default when it does.
bool fast_paths_available();
// true: fastest available kernels (default); false: the scalar references everywhere.
void set_fast_paths(bool on);
bool fast_paths_enabled();

}  // namespace owl::kernels
