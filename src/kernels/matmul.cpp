// matmul: converts the activation rows once to the weight's vec-dot type (ggml's scheme, which
// the golden logits were computed with), then splits the output rows over the thread pool.
// Within a task, a tile of weight rows is swept for each group of kMaxNR activation rows so the
// tile stays in L1 while a block of activation rows is read from L2 (prefill); decode is one
// row, memory bound. The grouping of rows never changes what a row's result is.
// Every output element is computed by the same code whatever the thread count.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/ops_avx2.h"
#include "kernels/vec_dot.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

std::atomic<bool> g_fast{true};

DotKernel select_kernel(DType t) {
  if (g_fast.load(std::memory_order_relaxed) && cpu_has_avx2_fma_f16c()) {
    DotKernel k = dot_kernel_avx2(t);
    if (k.fn) return k;
  }
  return dot_kernel_ref(t);
}

void quantize_q8_0_ref(const float* x, void* y, int64_t n) { quantize_row(DType::Q8_0, x, y, n); }
void quantize_q8_k_ref(const float* x, void* y, int64_t n) { quantize_row(DType::Q8_K, x, y, n); }

constexpr int64_t kTileRows = 16;  // weight rows swept per activation group (stay in L1)
constexpr int64_t kActBlock = 64;  // activation rows kept in L2 while a task's weight rows pass

struct MatmulJob {
  const TensorView* W;
  DotFn fn;
  const uint8_t* xa;  // converted activations
  size_t x_stride;
  int64_t n_rows, in, out, rows_per_task;
  float* Y;
};

void matmul_task(void* vjob, int task, int) {
  const MatmulJob& j = *static_cast<const MatmulJob*>(vjob);
  const int64_t o_begin = task * j.rows_per_task, o_end = std::min(j.out, o_begin + j.rows_per_task);
  for (int64_t r0 = 0; r0 < j.n_rows; r0 += kActBlock) {
    const int64_t r1 = std::min(j.n_rows, r0 + kActBlock);
    for (int64_t t0 = o_begin; t0 < o_end; t0 += kTileRows) {
      const int64_t t1 = std::min(o_end, t0 + kTileRows);
      for (int64_t r = r0; r < r1; r += kMaxNR) {
        const int nr = static_cast<int>(std::min<int64_t>(kMaxNR, r1 - r));
        const uint8_t* x = j.xa + r * j.x_stride;
        for (int64_t o = t0; o < t1; ++o) j.fn(j.in, j.W->row(o), x, j.x_stride, nr, j.Y + r * j.out + o, j.out);
      }
    }
  }
}

using QuantizeFn = void (*)(const float* x, void* y, int64_t n);

struct QuantizeJob {
  QuantizeFn fn;
  bool q8_0;
  const float* X;
  uint8_t* xa;
  size_t x_stride;
  int64_t in, rows_per_task, n_rows;
};

void quantize_task(void* vjob, int task, int) {
  const QuantizeJob& j = *static_cast<const QuantizeJob*>(vjob);
  const int64_t r1 = std::min(j.n_rows, (task + 1) * j.rows_per_task);
  for (int64_t r = task * j.rows_per_task; r < r1; ++r) {
    uint8_t* row = j.xa + r * j.x_stride;
    j.fn(j.X + r * j.in, row, j.in);
    if (j.q8_0) {  // append the float32 copies of the block scales (see vec_dot.h)
      const int64_t nb = j.in / kQK;
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
      float* d = reinterpret_cast<float*>(row + q8_0_act_scales_offset(j.in));
      for (int64_t i = 0; i < nb; ++i) d[i] = f16_to_f32(b[i].d);
    }
  }
}

}  // namespace

bool fast_paths_available() { return cpu_has_avx2_fma_f16c(); }
void set_fast_paths(bool on) { g_fast.store(on); }
bool fast_paths_enabled() { return g_fast.load() && cpu_has_avx2_fma_f16c(); }

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  if (t == DType::F16 && fast_paths_enabled()) return avx2::dequantize_f16(static_cast<const uint16_t*>(src), dst, n);
  dequantize_row_ref(t, src, dst, n);  // the scalar dequantisers are not the bottleneck anywhere
}

// Multiply-adds below which a matmul runs on the calling thread alone.
constexpr int64_t kInlineWork = int64_t{1} << 16;

void matmul(const TensorView& W, const float* X, int64_t n_rows, float* Y) {
  const int64_t in = W.ne[0], out = W.ne[1];
  if (n_rows <= 0 || out <= 0) return;
  const DotKernel k = select_kernel(W.type);
  if (!k.fn)
    throw Error(std::string("matmul: weight type ") + dtype_name(W.type) + " of tensor '" + W.name +
                "' is not supported; convert the model to a supported type (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 "
                "Q8_0 Q2_K..Q6_K IQ4_NL IQ4_XS)");
  if (in % info(k.act).block_size != 0)
    throw Error("matmul: row length " + std::to_string(in) + " of '" + W.name + "' is not a multiple of " +
                std::to_string(info(k.act).block_size));
  ThreadPool& pool = default_pool();
  // Small products (a tiny model's 64x64 layers) cost less than waking the workers:
  // run their tasks on the calling thread. The split into tasks is the same, so the
  // result does not change.
  const bool inline_run = in * out * n_rows < kInlineWork;
  auto run_tasks = [&](int n, ThreadPool::TaskFn fn, void* ctx) {
    if (inline_run) {
      for (int t = 0; t < n; ++t) fn(ctx, t, 0);
    } else {
      pool.run(n, fn, ctx);
    }
  };

  const uint8_t* xa = reinterpret_cast<const uint8_t*>(X);
  size_t x_stride = static_cast<size_t>(in) * sizeof(float);
  if (k.act != DType::F32) {
    // Reused per calling thread: decode performs no allocation here after the first token.
    thread_local std::vector<uint8_t> buffer;
    x_stride = k.act == DType::Q8_0 ? q8_0_act_row_bytes(in) : row_bytes(k.act, in);
    if (buffer.size() < x_stride * static_cast<size_t>(n_rows)) buffer.resize(x_stride * static_cast<size_t>(n_rows));
    QuantizeFn qfn = k.act == DType::Q8_0 ? quantize_q8_0_ref : quantize_q8_k_ref;
    if (fast_paths_enabled()) qfn = k.act == DType::Q8_0 ? quantize_q8_0_avx2 : quantize_q8_k_avx2;
    QuantizeJob qj{qfn, k.act == DType::Q8_0, X, buffer.data(), x_stride, in, 0, n_rows};
    const int q_tasks = static_cast<int>(std::min<int64_t>(n_rows, pool.size()));
    qj.rows_per_task = (n_rows + q_tasks - 1) / q_tasks;
    run_tasks(q_tasks, quantize_task, &qj);
    xa = buffer.data();
  }

  // Tasks of whole tiles; several per thread so uneven progress still balances.
  const int64_t tiles = (out + kTileRows - 1) / kTileRows;
  const int64_t n_tasks = std::min<int64_t>(tiles, 4 * static_cast<int64_t>(pool.size()));
  MatmulJob job{&W, k.fn, xa, x_stride, n_rows, in, out, 0, Y};
  job.rows_per_task = (tiles + n_tasks - 1) / n_tasks * kTileRows;
  const int tasks = static_cast<int>((out + job.rows_per_task - 1) / job.rows_per_task);
  run_tasks(tasks, matmul_task, &job);
}

TensorView matrix_slice(const TensorView& W, int64_t i2) {
  TensorView v = W;
  v.n_dims = 2;
  v.ne = {W.ne[0], W.ne[1], 1, 1};
  v.data = static_cast<const uint8_t*>(W.data) + static_cast<size_t>(i2) * v.n_bytes();
  return v;
}

}  // namespace owl::kernels
