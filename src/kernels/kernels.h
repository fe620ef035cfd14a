// The arithmetic every model uses. Each kernel has a scalar reference; fast
// paths (AVX2/FMA/F16C, AVX-512 VNNI) are chosen from CPUID (see Isa).
// Layout conventions: activations are row-major float32 [n_rows][n]; a weight
// W has ne = {in, out} (ggml order), i.e. `out` stored rows (see Weight).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace owl::kernels {

// dst[0..n) = the n elements of one stored row of type t (n a multiple of the block size).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// ---- instruction sets ----
// The kernel families, each including the one before: the scalar references, AVX2 (+FMA, F16C),
// and AVX2 plus AVX-512 VNNI (the packed weights' kernels; results equal AVX2's bit for bit).
enum class Isa { Scalar, Avx2, Avx512Vnni };
const char* isa_name(Isa isa);      // "scalar", "avx2", "avx2+avx512vnni"
Isa best_isa();                     // the fastest this CPU runs (CPUID, read once)
std::vector<Isa> available_isas();  // Scalar .. best_isa(), for tests comparing each with the reference
// The one process-wide kernel switch: the ISA of the kernels for plain weights and every other
// op, and what prepare_weight gives a packed weight unless told otherwise (a packed weight keeps
// the ISA it was prepared for). Starts at best_isa(); set_default_isa clamps to it. Set it before
// loading a model, or around reference comparisons in tests; it is read once per call, never in
// inner loops.
void set_default_isa(Isa isa);
Isa default_isa();

// ---- weights ----
struct PackedLayout;  // repack.h: a packed copy's layout, storage and kernel

// A weight as matmul takes it, ne = {in, out[, n_mats]}: either plain (a TensorView whose rows
// are in their stored format, usually in the file mapping) or packed by prepare_weight into the
// 8-row interleaved layout of repack.h, with the kernel chosen for it then. A packed weight has
// no rows in the GGUF block format, so it is not a TensorView and has no row(); its rows are read
// with dequantize_weight_row. Copies share the packed storage.
class Weight {
 public:
  Weight() = default;
  Weight(TensorView plain) : view_(std::move(plain)) {}  // NOLINT: a plain weight is its view
  const std::string& name() const { return view_.name; }
  DType type() const { return view_.type; }  // the stored (original) type, packed or not
  int n_dims() const { return view_.n_dims; }
  const std::array<int64_t, 4>& ne() const { return view_.ne; }
  int64_t in() const { return view_.ne[0]; }
  int64_t out() const { return view_.ne[1]; }
  std::string shape_str() const { return view_.shape_str(); }
  bool packed() const { return layout_ != nullptr; }
  Isa isa() const;  // a packed weight's kernels; a plain weight's follow default_isa()
  // The view of a plain weight; null for a packed one.
  const TensorView* plain() const { return layout_ ? nullptr : &view_; }
  // For a matrix_slice of a 3-D stack: which matrix it is, and how many the stack holds (0 and 1
  // for a 2-D weight). The activation observer reports experts by these.
  int64_t matrix() const { return matrix_; }
  int64_t n_matrices() const { return n_matrices_; }

 private:
  friend struct WeightAccess;  // the kernels (repack.h)
  friend Weight matrix_slice(const Weight& W, int64_t i2);
  TensorView view_;  // name and shape; data: the stored rows, or this matrix's first packed group
  std::shared_ptr<const PackedLayout> layout_;  // null: plain
  int64_t matrix_ = 0, n_matrices_ = 1;
};

// Y[r][o] = sum_i W[o][i] * X[r][i] for r < n_rows, o < out. X has W.in() columns.
// Split over the default thread pool by output rows.
void matmul(const Weight& W, const float* X, int64_t n_rows, float* Y);

// Several weights that share the input X (Q/K/V; gate/up): Ys[i][r][o] = sum_j Ws[i][o][j] * X[r][j].
// X is converted once per activation type and ONE pool dispatch covers every output row of every
// weight, so the threads do not meet in between. All Ws take the same row length; 1..32 weights.
// Each output equals what matmul(*Ws[i], X, n_rows, Ys[i]) gives, bit for bit.
void matmul_many(std::span<const Weight* const> Ws, const float* X, int64_t n_rows, std::span<float* const> Ys);

// Y[r][o] = silu(gate[o] . X[r]) * (up[o] . X[r]) (gate, up: same shape), computed per output tile
// without a separate pass; bit-identical to matmul(gate), matmul(up), swiglu().
void matmul_swiglu(const Weight& gate, const Weight& up, const float* X, int64_t n_rows, float* Y);

// Weights (pairs) in one matmul_each / matmul_swiglu_each call.
constexpr int kMaxMatmulEach = 16;

// Several weights, each with its OWN input rows (MoE experts: each chosen expert's down
// projection takes its own hidden row): Ys[i][r][o] = Ws[i][o] . Xs[i][r] for r < n_rows[i].
// One pool dispatch covers every output row of every weight in tasks of row ranges (decode:
// guided, see split_tasks), so the threads reach the one join together; inputs passed more
// than once (same pointer and rows) are converted once. 1..kMaxMatmulEach weights; each output
// equals what matmul(*Ws[i], Xs[i], n_rows[i], Ys[i]) gives, bit for bit.
void matmul_each(std::span<const Weight* const> Ws, std::span<const float* const> Xs, std::span<const int64_t> n_rows,
                 std::span<float* const> Ys);

// matmul_swiglu for several (gates[i], ups[i]) pairs, each with its own input rows, in ONE pool
// dispatch (the chosen experts' gate/up); Ys[i] equals matmul_swiglu(*gates[i], *ups[i], Xs[i],
// n_rows[i], Ys[i])'s, bit for bit. 1..kMaxMatmulEach pairs.
void matmul_swiglu_each(std::span<const Weight* const> gates, std::span<const Weight* const> ups,
                        std::span<const float* const> Xs, std::span<const int64_t> n_rows, std::span<float* const> Ys);

// Sees every matmul input: called by matmul, matmul_many and matmul_swiglu once per weight with
// the rows X (n_rows x W.in() floats) before the product. Calls may come from several threads at
// once (MoE experts run in parallel), so observe() must be thread-safe. `owl imatrix` uses it.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual void observe(const Weight& W, const float* X, int64_t n_rows) = 0;
};
// Installs the process-wide observer (null, the default, removes it); not owned.
void set_activation_observer(ActivationObserver* observer);

// The 2-D matrix number i2 of a 3-D stack (e.g. expert i2 of ffn_*_exps), plain or packed.
Weight matrix_slice(const Weight& W, int64_t i2);

// dst[0..W.in()) = stored row `row` of W (counting across a 3-D stack), dequantised; works on
// plain and packed weights alike, so a tied embedding looks its rows up in the packed head and
// the file's pages can be released.
void dequantize_weight_row(const Weight& W, int64_t row, float* dst);

// ---- weights repacked at load time ----
// prepare_weight copies a weight used by matmul into a layout interleaving 8 rows block by block
// (Q4_K, Q6_K, Q8_0, Q5_0, for the AVX2 or AVX-512 VNNI kernels), and picks those kernels now;
// other types, options.repack false or isa Scalar give back the plain weight. Products on the
// packed weight agree with W's within float rounding (2e-6 of the output scale; bit-identical for
// any thread count and either ISA).
struct PrepareOptions {
  bool repack = true;      // false: keep the file's layout (owl bench --no-repack)
  std::optional<Isa> isa;  // the packed kernels' ISA (clamped to best_isa()); unset: default_isa()
  // After copying, drop the process's resident pages of W's bytes (madvise DONTNEED). Only for W
  // inside a read-only FILE mapping (anonymous memory would be zeroed).
  bool release_source = false;
};
Weight prepare_weight(const TensorView& W, const PrepareOptions& options = {});
// The same into storage the caller owns (an expert cache's slot): prepared_bytes(W, options)
// bytes at dst, which must stay in place while the Weight is used. A weight that stays plain is
// copied there, so W's bytes (a read buffer) may be reused at once. Packs on the calling thread
// (no pool dispatch): safe from I/O threads while the pool computes. Products equal
// prepare_weight's bit for bit.
size_t prepared_bytes(const TensorView& W, const PrepareOptions& options = {});
Weight prepare_weight_into(const TensorView& W, const PrepareOptions& options, uint8_t* dst);
// The same, packed later (MoE expert stacks, whose experts are packed on first use): the packed
// Weight of W with its storage reserved but no matrix packed; pack_matrix(deferred, W, i2, options)
// packs matrix i2 on the calling thread (distinct matrices from several threads at once) into the
// bytes prepare_weight would give, dropping W's pages of that matrix when options.release_source.
// Its pages are touched (zeroed by the kernel) only then, so a load costs nothing for matrices
// that are never used. A matrix must be packed before a product reads it. A weight that stays
// plain is returned as it is, and pack_matrix leaves it alone.
Weight prepare_weight_deferred(const TensorView& W, const PrepareOptions& options = {});
void pack_matrix(const Weight& deferred, const TensorView& W, int64_t i2, const PrepareOptions& options = {});

}  // namespace owl::kernels

namespace owl::kernels {

// ---- element-wise and row kernels (x, y: n floats; y may alias x) ----
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);  // w may be null
void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);
void softmax(float* x, int64_t n);
void silu(float* x, int64_t n);
void gelu(float* x, int64_t n);                                        // tanh approximation
void swiglu(const float* gate, const float* up, float* y, int64_t n);  // y = silu(gate) * up
void add(const float* a, const float* b, float* y, int64_t n);         // y = a + b
void scale_add(float* y, const float* x, float s, int64_t n);          // y += s * x

// ---- rotary position embedding ----
enum class RopePairing { Norm, Neox };  // Norm: (2i, 2i+1); Neox: (i, i + n_rot/2)
// Rotates the first n_rot dims of each of n_heads heads (head i at x + i*head_dim) by
// angle pos * inv_freq[i] for pair i < n_rot/2, and scales cos/sin by mscale.
// inv_freq already folds in every scaling (linear, YaRN ramp, Llama-3 factors).
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos, const float* inv_freq,
          RopePairing pairing, float mscale = 1.0f);
// rope() in two steps, so the cos/sin of a position serve every head and layer that rotates at it
// (a decode step of Qwen3-0.6B computed the same 128 sincos for each of its 56 rope calls):
// cs[2i], cs[2i+1] = cos, sin of pos * inv_freq[i] times mscale (n_rot floats), then the
// rotation by them. Results are identical to rope()'s.
void rope_cos_sin(float* cs, int64_t n_rot, int64_t pos, const float* inv_freq, float mscale = 1.0f);
void rope_rotate(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cs, RopePairing pairing);

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
// a row has row_stride elements of `type`, head h starts at h * head_dim. Q8_0 and Q4_0 rows
// are blocks of 32 elements (one F16 scale each), so row_stride and the head dims must then be
// multiples of 32; the kernels read such rows directly, a chunk of a head's keys at a time.
struct KVSpan {
  DType type = DType::F32;
  int64_t page_tokens = 0;
  const void* const* pages = nullptr;
  int64_t row_stride = 0;
};
// Whether a KV cache may hold elements of type t (F32, F16, Q8_0, Q4_0).
bool is_kv_type(DType t);
// Bytes of n elements of KV type t (n a multiple of 32 for the block types).
size_t kv_bytes(DType t, int64_t n);
// The first byte of token t's row, and of its element `offset` (a block boundary).
const uint8_t* kv_row(const KVSpan& s, int64_t t, int64_t offset = 0);
// One query token: out[h][dv] = sum_t softmax_t(scale * q[h]·k[t][g]) v[t][g] for t in
// [kv_begin, kv_end), g = h / (n_head / n_head_kv) (grouped-query heads). Streaming
// (online) softmax: no buffer proportional to the context. The fast paths split the context
// into parts whose length depends only on kv_end - kv_begin and merge them in order, so results
// do not depend on the thread count, nor on whether the call runs inside a pool task (then
// inline); K and V given as the same span with one KV head (MLA's latent rows, dv <= dk) are
// read once. Over a Q8_0/Q4_0 cache (K and V of one type) the AVX-512 VNNI kernel scores keys
// as integer dot products with the query quantised to int8 per 32-value block (as llama.cpp's
// CPU path does): its outputs are not those of the exact f32 arithmetic but within ~1e-2 of
// them (the tests' N(0,1) data; attention_int8_keys.h); other ISAs and cache types are exact.
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
// rounding (1e-5 of the values' scale; attention_rows keeps the exact f32 query over Q8_0/Q4_0
// caches, so there it agrees with attention() up to that kernel's int8 query).
void attention_rows(const float* q, int64_t n_rows, std::span<const int64_t> positions, int64_t n_head,
                    int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k, const KVSpan& v, int64_t window,
                    float scale, float* out);

// ---- float matrix product ----
// C[i][j] = sum_r A[i][r] * B[r][j] for i < m, j < n (A: m x k, B: k x n, C: m x n, row-major with
// leading dimensions lda, ldb, ldc in floats). Each element is one chain of fused multiply-adds
// in r order, so the result is the same bits on every ISA and for any thread count (MLA's
// decompression of cached latents into per-head keys and values, model/mla.cpp). Split over
// the default pool by rows of C (inline inside a pool task).
void gemm_f32(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t m, int64_t k,
              int64_t n);

// ---- selection ----
// Indices of the k largest values of x[0..n), largest first (ties: lower index first).
void top_k(const float* x, int64_t n, int64_t k, int32_t* idx);

// f16 <-> f32 conversions (IEEE binary16, round-to-nearest-even).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
// dst[i] = fp32_to_fp16(src[i]) for n values (F16C where available: the same results).
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);
// The KV cache writer's Q8_0/Q4_0 rows: owl::quantize_kv_row (tensor/quantize_kv.h), the same
// bytes on every ISA (AVX2 evaluates the scale candidates 8 values at a time), the same errors.
void quantize_kv_row(DType t, const float* src, void* dst, int64_t n);
// model/kv_rotation.h's hadamard_blocks (the rotation of a quantised cache's keys and values):
// the same floats on every ISA.
void hadamard_blocks(float* x, int64_t n, int64_t block);

}  // namespace owl::kernels

namespace owl::kernels {

// ---- kernel selection (for tests and benchmarks) ----
// Whether this CPU has the AVX2+FMA+F16C fast paths (best_isa() >= Avx2).
bool fast_paths_available();

}  // namespace owl::kernels
