// matmul: converts the activation rows once to the weight's vec-dot type (ggml's scheme, which
// the golden logits were computed with), then splits the output rows over the thread pool.
// Within a task, a tile of weight rows is swept for each group of kMaxNR activation rows so the
// tile stays in L1 while a block of activation rows is read from L2 (prefill); decode is one
// row, memory bound. The codebook types (IQ1_S .. IQ3_S) decode a tile's weight rows once for the
// whole block of activation rows (codebook_tile_avx2.cpp). The grouping of rows never changes
// what a row's result is.
// Every output element is computed by the same code whatever the thread count.
#include <atomic>
#include <algorithm>
#include <span>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/ops_avx2.h"
#include "kernels/repack.h"
#include "kernels/vec_dot.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

// The dot kernel of weight type t for the default ISA and the type its activations take (fn
// null: not a type matmul takes).
struct DotKernel {
  DType act = DType::F32;
  DotFn fn = nullptr;
};
DotKernel select_kernel(DType t) {
  const TypeTraits* tr = type_traits(t);
  if (!tr) return {};
  DotFn fast = default_isa() == Isa::Avx512Vnni && cpu_has_avx512_vbmi() ? dot_fn_avx512vbmi(t) : nullptr;
  if (!fast && use_avx2()) fast = dot_fn_avx2(t);
  return {tr->act, fast ? fast : dot_fn_ref(t)};
}

void quantize_q8_0_ref(const float* x, void* y, int64_t n) { quantize_row(DType::Q8_0, x, y, n); }
void quantize_q8_k_ref(const float* x, void* y, int64_t n) { quantize_row(DType::Q8_K, x, y, n); }

constexpr int64_t kTileRows = 16;              // weight rows swept per activation group (stay in L1)
constexpr int64_t kActBlock = 64;              // activation rows kept in L2 while a task's weight rows pass
constexpr int kMaxParts = 2 * kMaxMatmulEach;  // weights in one call (matmul_swiglu_each: gates and ups)
constexpr int64_t kPackM = 4;                  // activation rows per packed-kernel call (register tile: 4 x 8 rows)
// The AVX-512 prefill tiles (16 weight rows x up to kWideM activation rows) only for row blocks
// longer than this: up to 16 rows (speculative verify rows, small batches) the 4-row kernels in
// turn are faster (a 5-row verify forward took 1.8-2.2x one row with them, 2.9-3.6x with the
// wide tiles; 16 rows 4.9-5.6x against 6.4-6.5x; even at 32; docs/BENCHMARKS.md, issue 24).
constexpr int64_t kWideMinRows = 16;
static_assert(kTileRows % kPackRows == 0, "tiles hold whole packed groups");

// One weight of a (multi-weight) matmul, with everything the inner loops need precomputed:
// no per-row size computation or type lookup happens below.
struct Part {
  const uint8_t* w = nullptr;  // stored row 0
  size_t w_stride = 0;         // bytes per stored row (of the file's layout: what a row's bytes are)
  DotFn fn = nullptr;
  TileFn tfn = nullptr;         // for more than kMaxNR rows: each weight row decoded once (codebook types)
  const uint8_t* xa = nullptr;  // activations converted to fn's type
  size_t x_stride = 0;
  int64_t n_rows = 0;  // this weight's input rows (matmul_each: each weight its own)
  int64_t in = 0, out = 0;
  float* Y = nullptr;
  // A packed weight: groups of 8 interleaved rows, group_bytes each, and its kernel.
  PackedFn pfn = nullptr;
  WidePackedFn wide_fn = nullptr;  // AVX-512: 16 weight rows per call, for prefill
  size_t group_bytes = 0;
  const uint8_t* xw = nullptr;  // wide_fn's activations: tiles of kWideM rows (repack.h), xw_tile bytes each
  size_t xw_tile = 0;
};

// Task i computes output rows [tiles[i].t0, tiles[i].t1) * kTileRows of part tiles[i].part.
struct TaskTiles {  // no initialisers: a job's table is not cleared on each call
  int32_t part;
  int32_t t0, t1;
};
constexpr int kMaxTasks = 1024;

struct MatmulJob {
  Part parts[kMaxParts];
  int n_parts = 0;
  int task_parts = 0;  // the tasks cover parts [0, task_parts); swiglu: part i's up is part task_parts + i
  int64_t n_rows = 0;  // the most rows of any part
  TaskTiles tasks[kMaxTasks];
  int n_tasks = 0;
};

// y[(r - r0) * ld + (o - t0)] = W[o] . x[r] for r in [r0, r1), o in [t0, t1).
void matmul_tile(const Part& p, int64_t r0, int64_t r1, int64_t t0, int64_t t1, float* y, int64_t ld) {
  if (p.wide_fn && r1 - r0 > kWideMinRows) {  // prefill: 16 weight rows x up to kWideM activation rows
    for (int64_t r = r0; r < r1; r += kWideM) {
      const int m = static_cast<int>(std::min<int64_t>(kWideM, r1 - r));
      const uint8_t* x = p.xw + (r / kWideM) * p.xw_tile;  // r0 and so r are multiples of kWideM
      float* yr = y + (r - r0) * ld;
      for (int64_t o = t0; o < t1; o += 2 * kPackRows) {
        const int valid = static_cast<int>(std::min<int64_t>(2 * kPackRows, t1 - o));
        p.wide_fn(p.in, p.w + (o / kPackRows) * p.group_bytes, valid > kPackRows ? p.group_bytes : 0, x, m,
                  yr + (o - t0), ld, valid);
      }
    }
    return;
  }
  if (p.pfn) {  // t0 is a multiple of the group size (tiles and tasks are)
    for (int64_t r = r0; r < r1; r += kPackM) {
      const int m = static_cast<int>(std::min<int64_t>(kPackM, r1 - r));
      const uint8_t* x = p.xa + r * p.x_stride;
      float* yr = y + (r - r0) * ld;
      for (int64_t o = t0; o < t1; o += kPackRows)
        p.pfn(p.in, p.w + (o / kPackRows) * p.group_bytes, x, p.x_stride, m, yr + (o - t0), ld,
              static_cast<int>(std::min<int64_t>(kPackRows, t1 - o)));
    }
    return;
  }
  if (p.tfn && r1 - r0 > kMaxNR)  // same results as the loop below, bit for bit
    return p.tfn(p.in, p.w + t0 * p.w_stride, p.w_stride, t1 - t0, p.xa + r0 * p.x_stride, p.x_stride, r1 - r0, y, ld);
  for (int64_t r = r0; r < r1; r += kMaxNR) {
    const int nr = static_cast<int>(std::min<int64_t>(kMaxNR, r1 - r));
    const uint8_t* x = p.xa + r * p.x_stride;
    float* yr = y + (r - r0) * ld;
    const uint8_t* w = p.w + t0 * p.w_stride;
    for (int64_t o = t0; o < t1; ++o, w += p.w_stride) p.fn(p.in, w, x, p.x_stride, nr, yr + (o - t0), ld);
  }
}

void matmul_task(void* vjob, int task, int) {
  const MatmulJob& j = *static_cast<const MatmulJob*>(vjob);
  const TaskTiles& tt = j.tasks[task];
  const Part& p = j.parts[tt.part];
  const int64_t o_begin = tt.t0 * kTileRows, o_end = std::min(p.out, tt.t1 * kTileRows);
  for (int64_t r0 = 0; r0 < p.n_rows; r0 += kActBlock) {
    const int64_t r1 = std::min(p.n_rows, r0 + kActBlock);
    for (int64_t t0 = o_begin; t0 < o_end; t0 += kTileRows) {
      const int64_t t1 = std::min(o_end, t0 + kTileRows);
      matmul_tile(p, r0, r1, t0, t1, p.Y + r0 * p.out + t0, p.out);
    }
  }
}

// matmul_swiglu(_each): the tasks' part i = a gate (writes Y), part task_parts + i = its up (into
// a per-thread tile), then Y = silu(gate) * up on the tile while it is in L1.
void swiglu_task(void* vjob, int task, int) {
  const MatmulJob& j = *static_cast<const MatmulJob*>(vjob);
  const TaskTiles& tt = j.tasks[task];
  const Part& g = j.parts[tt.part];
  const Part& u = j.parts[j.task_parts + tt.part];
  thread_local std::vector<float> up_tile(static_cast<size_t>(kActBlock * kTileRows));
  const int64_t o_begin = tt.t0 * kTileRows, o_end = std::min(g.out, tt.t1 * kTileRows);
  for (int64_t r0 = 0; r0 < g.n_rows; r0 += kActBlock) {
    const int64_t r1 = std::min(g.n_rows, r0 + kActBlock);
    for (int64_t t0 = o_begin; t0 < o_end; t0 += kTileRows) {
      const int64_t t1 = std::min(o_end, t0 + kTileRows);
      float* y = g.Y + r0 * g.out + t0;
      matmul_tile(g, r0, r1, t0, t1, y, g.out);
      matmul_tile(u, r0, r1, t0, t1, up_tile.data(), kTileRows);
      for (int64_t r = r0; r < r1; ++r) {
        float* yr = y + (r - r0) * g.out;
        swiglu(yr, up_tile.data() + (r - r0) * kTileRows, yr, t1 - t0);
      }
    }
  }
}

using QuantizeFn = void (*)(const float* x, void* y, int64_t n);

// One input of a call converted to one activation type: rows [first, first + n_rows) of the
// call's conversion job.
struct QuantizeSeg {
  QuantizeFn fn;
  bool q8_0;
  const float* X;
  uint8_t* xa;
  size_t x_stride;
  int64_t in, n_rows, first;
  uint8_t* xw;  // also the wide kernels' layout (tiles of xw_tile bytes) when set
  size_t xw_tile;
};

struct QuantizeJob {
  QuantizeSeg segs[kMaxParts];
  int n_segs = 0;
  int64_t rows_per_task = 0, n_rows = 0;
};

void quantize_rows(const QuantizeSeg& j, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    uint8_t* row = j.xa + r * j.x_stride;
    j.fn(j.X + r * j.in, row, j.in);
    if (j.q8_0) {  // append the float32 copies of the block scales and the quant sums (see vec_dot.h)
      const int64_t nb = j.in / kQK;
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
      float* d = reinterpret_cast<float*>(row + q8_0_act_scales_offset(j.in));
      int32_t* sums = reinterpret_cast<int32_t*>(row + q8_0_act_sums_offset(j.in));
      for (int64_t i = 0; i < nb; ++i) {
        d[i] = f16_to_f32(b[i].d);
        int32_t sum = 0;
        for (int k = 0; k < kQK; ++k) sum += b[i].qs[k];
        sums[i] = sum;
      }
    }
    if (j.xw)
      wide_act_put_row(j.q8_0 ? DType::Q8_0 : DType::Q8_K, row, j.in, static_cast<int>(r % kWideM),
                       j.xw + (r / kWideM) * j.xw_tile);
  }
}

// Task i converts rows [i, i + 1) * rows_per_task of the segments laid end to end.
void quantize_task(void* vjob, int task, int) {
  const QuantizeJob& j = *static_cast<const QuantizeJob*>(vjob);
  const int64_t b = task * j.rows_per_task, e = std::min(j.n_rows, b + j.rows_per_task);
  for (int i = 0; i < j.n_segs; ++i) {
    const QuantizeSeg& sg = j.segs[i];
    const int64_t r0 = std::max(b, sg.first), r1 = std::min(e, sg.first + sg.n_rows);
    if (r0 < r1) quantize_rows(sg, r0 - sg.first, r1 - sg.first);
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  if (t == DType::F16 && use_avx2()) return avx2::dequantize_f16(static_cast<const uint16_t*>(src), dst, n);
  dequantize_row_ref(t, src, dst, n);  // the scalar dequantisers are not the bottleneck anywhere
}

namespace {
std::atomic<ActivationObserver*> g_observer{nullptr};

void notify(std::span<const Weight* const> Ws, const float* X, int64_t n_rows) {
  if (ActivationObserver* o = g_observer.load(std::memory_order_acquire))
    for (const Weight* w : Ws) o->observe(*w, X, n_rows);
}
}  // namespace

void set_activation_observer(ActivationObserver* observer) { g_observer.store(observer, std::memory_order_release); }

// Multiply-adds below which a matmul runs on the calling thread alone.
constexpr int64_t kInlineWork = int64_t{1} << 16;

namespace {

DotKernel checked_kernel(const Weight& W) {
  const DotKernel k = select_kernel(W.type());
  if (!k.fn) {
    std::string types;
    for (const TypeTraits& e : kTypeTraits) types += std::string(types.empty() ? "" : " ") + dtype_name(e.type);
    throw Error(std::string("matmul: weight type ") + dtype_name(W.type()) + " of tensor '" + W.name() +
                "' is not supported; convert the model to a supported type (" + types + ")");
  }
  if (W.in() % info(k.act).block_size != 0)
    throw Error("matmul: row length " + std::to_string(W.in()) + " of '" + W.name() + "' is not a multiple of " +
                std::to_string(info(k.act).block_size));
  return k;
}

// Runs n tasks on the pool, or inline for products too small to be worth waking the workers
// (the split into tasks is the same, so the result does not change).
void run_tasks(bool inline_run, int n, ThreadPool::TaskFn fn, void* ctx) {
  if (inline_run) {
    for (int t = 0; t < n; ++t) fn(ctx, t, 0);
  } else {
    default_pool().run(n, fn, ctx);
  }
}

// The inputs of a call: each distinct (X, rows, row length) converted once per activation type
// (slot 0 F32: used as it is; 1 Q8_0; 2 Q8_K), with `wide` also in the wide kernels' layout.
struct Input {
  const float* X;
  int64_t n_rows, in;
  int slot;
  bool wide;
  const uint8_t* xa;  // filled by convert_inputs
  size_t x_stride;
  const uint8_t* xw;
  size_t xw_tile;
};

// Rows converted on the calling thread below this many floats in all: waking the workers costs
// more than quantising a few decode rows (matmul_each's experts: one row of 768-2048 each).
constexpr int64_t kInlineQuantFloats = int64_t{1} << 14;

// Converts every input in ONE pass (one dispatch at most) into per-calling-thread buffers that
// are reused: decode performs no allocation here after the first token.
void convert_inputs(Input* inputs, int n_inputs, bool inline_run) {
  thread_local std::vector<uint8_t> buf, wbuf;
  constexpr size_t kAlign = 64;  // each input's rows start on a cache line
  auto up = [](size_t n) { return (n + kAlign - 1) / kAlign * kAlign; };
  size_t need = 0, wneed = 0;
  for (int i = 0; i < n_inputs; ++i) {
    Input& in = inputs[i];
    if (in.slot == 0) {
      in.x_stride = static_cast<size_t>(in.in) * sizeof(float);
      in.xa = reinterpret_cast<const uint8_t*>(in.X);
      continue;
    }
    const DType act = in.slot == 1 ? DType::Q8_0 : DType::Q8_K;
    in.x_stride = act == DType::Q8_0 ? q8_0_act_row_bytes(in.in) : row_bytes(act, in.in);
    need += up(in.x_stride * static_cast<size_t>(in.n_rows));
    if (in.wide) {
      in.xw_tile = wide_act_tile_bytes(act, in.in);
      wneed += up(in.xw_tile * static_cast<size_t>((in.n_rows + kWideM - 1) / kWideM));
    }
  }
  if (buf.size() < need) buf.resize(need);
  if (wbuf.size() < wneed) wbuf.resize(wneed);
  QuantizeJob qj;
  size_t at = 0, wat = 0;
  int64_t floats = 0;
  for (int i = 0; i < n_inputs; ++i) {
    Input& in = inputs[i];
    if (in.slot == 0) continue;
    const bool q8_0 = in.slot == 1;
    QuantizeFn qfn = q8_0 ? quantize_q8_0_ref : quantize_q8_k_ref;
    if (use_avx2()) qfn = q8_0 ? quantize_q8_0_avx2 : quantize_q8_k_avx2;
    uint8_t* xa = buf.data() + at;
    uint8_t* xw = in.wide ? wbuf.data() + wat : nullptr;
    at += up(in.x_stride * static_cast<size_t>(in.n_rows));
    if (in.wide) wat += up(in.xw_tile * static_cast<size_t>((in.n_rows + kWideM - 1) / kWideM));
    in.xa = xa;
    in.xw = xw;
    qj.segs[qj.n_segs++] = {qfn, q8_0, in.X, xa, in.x_stride, in.in, in.n_rows, qj.n_rows, xw, in.xw_tile};
    qj.n_rows += in.n_rows;
    floats += in.n_rows * in.in;
  }
  if (qj.n_rows == 0) return;
  const int q_tasks = static_cast<int>(std::min<int64_t>(qj.n_rows, default_pool().size()));
  qj.rows_per_task = (qj.n_rows + q_tasks - 1) / q_tasks;
  run_tasks(inline_run || floats < kInlineQuantFloats, q_tasks, quantize_task, &qj);
}

// Tasks of whole tiles over the output rows of job.parts[0 .. task_parts), in order (the rest of the
// parts follow part 0's split: matmul_swiglu's up). Which task computes a row never changes what
// the row's result is, so the split is free to follow the thread count and the row count.
//
// Batches (more than kWideMinRows rows, compute-bound): each part in about 4 tasks per thread, so
// uneven progress still balances. Decode (memory-bound, one or a few rows): "guided" tasks over
// all the parts together, each a 1/(2 threads) share of the tiles still unassigned, at most the
// 1/(4 threads) of all the tiles that an equal split gave, down to a floor of kMinTaskBytes of
// weights. The first tasks are long (a claim per ~100 KB-1 MB, not per tile), the last ones
// short, so the threads reach the join within a few microseconds of each other: with 4 equal
// tasks per thread, a thread that streams a little slower (or starts late) left the other idle
// for up to one task, 1/8 of the matrix (16 MB of Qwen3-0.6B's Q6_K output head at 2 threads).
// The cap keeps the first tasks no longer than those: a thread the OS deschedules while it holds
// one (a loaded machine) keeps the others waiting at the join for the rest of it.
constexpr int64_t kMinTaskBytes = 32 << 10;

void split_tasks(MatmulJob& job, int task_parts, int pool_size) {
  job.task_parts = task_parts;
  int64_t tiles[kMaxParts], total = 0;
  for (int i = 0; i < task_parts; ++i) {
    tiles[i] = (job.parts[i].out + kTileRows - 1) / kTileRows;
    total += tiles[i];
  }
  job.n_tasks = 0;
  auto add = [&](int part, int64_t t0, int64_t t1) {
    job.tasks[job.n_tasks++] = {part, static_cast<int32_t>(t0), static_cast<int32_t>(t1)};
  };
  if (job.n_rows > kWideMinRows) {
    const int64_t per_part = std::min<int64_t>(4 * static_cast<int64_t>(pool_size), kMaxTasks / task_parts);
    for (int i = 0; i < task_parts; ++i) {
      const int64_t n = std::max<int64_t>(1, std::min<int64_t>(tiles[i], per_part));
      const int64_t step = (tiles[i] + n - 1) / n;
      for (int64_t t = 0; t < tiles[i]; t += step) add(i, t, std::min(tiles[i], t + step));
    }
    return;
  }
  // At most kMaxTasks: the floor is at least total / (kMaxTasks / 2) tiles, and the guided phase
  // takes ~2 threads x ln(total / floor) tasks.
  int64_t remaining = total;
  const int64_t share = 2 * static_cast<int64_t>(pool_size), cap = (total + 2 * share - 1) / (2 * share);
  for (int i = 0; i < task_parts; ++i) {
    const Part& p = job.parts[i];
    const int64_t tile_bytes = std::max<int64_t>(1, kTileRows * static_cast<int64_t>(p.w_stride));
    const int64_t min_tiles =
        std::max({int64_t{1}, (kMinTaskBytes + tile_bytes - 1) / tile_bytes, total / (kMaxTasks / 2)});
    for (int64_t t = 0; t < tiles[i];) {
      int64_t n = std::max(min_tiles, std::min(cap, (remaining + share - 1) / share));
      if (job.n_tasks >= kMaxTasks - task_parts) n = tiles[i] - t;  // never reached (see above); a guard
      n = std::min(n, tiles[i] - t);
      add(i, t, t + n);
      t += n;
      remaining -= n;
    }
  }
}

// Fills job.parts for weights Ws, each with its input rows Xs[i] (n_rows[i] rows of Ws[i]->in()
// floats) and output Ys[i], and job.tasks over the first task_parts of them. Inputs that several
// weights share are converted once.
void plan(MatmulJob& job, std::span<const Weight* const> Ws, std::span<const float* const> Xs,
          std::span<const int64_t> n_rows, std::span<float* const> Ys, int task_parts, bool* inline_run) {
  int64_t work = 0;
  DotKernel kernels[kMaxParts];
  Input inputs[kMaxParts];
  int input_of[kMaxParts], n_inputs = 0;
  job.n_rows = 0;
  for (size_t i = 0; i < Ws.size(); ++i) {
    kernels[i] = checked_kernel(*Ws[i]);
    const int64_t in = Ws[i]->in();
    work += in * Ws[i]->out() * n_rows[i];
    job.n_rows = std::max(job.n_rows, n_rows[i]);
    const int slot = kernels[i].act == DType::F32 ? 0 : kernels[i].act == DType::Q8_0 ? 1 : 2;
    int k = 0;
    while (k < n_inputs &&
           !(inputs[k].X == Xs[i] && inputs[k].n_rows == n_rows[i] && inputs[k].in == in && inputs[k].slot == slot))
      ++k;
    if (k == n_inputs) inputs[n_inputs++] = {Xs[i], n_rows[i], in, slot, false, nullptr, 0, nullptr, 0};
    input_of[i] = k;
    // Wide tiles for a packed weight with more than kWideMinRows rows to take.
    const PackedLayout* pk = WeightAccess::layout(*Ws[i]);
    if (pk && pk->wide_fn && n_rows[i] > kWideMinRows && slot != 0) inputs[k].wide = true;
  }
  *inline_run = work < kInlineWork;
  convert_inputs(inputs, n_inputs, *inline_run);
  job.n_parts = static_cast<int>(Ws.size());
  for (size_t i = 0; i < Ws.size(); ++i) {
    const Input& x = inputs[input_of[i]];
    Part& p = job.parts[i];
    const TensorView& v = WeightAccess::view(*Ws[i]);
    p.w = static_cast<const uint8_t*>(v.data);
    p.w_stride = v.row_size();
    if (const PackedLayout* pk = WeightAccess::layout(*Ws[i])) {
      p.group_bytes = pk->group_bytes;
      p.pfn = pk->fn;
      p.wide_fn = x.xw ? pk->wide_fn : nullptr;  // null: no tile of this weight has more than kWideMinRows rows
      p.xw = x.xw;
      p.xw_tile = x.xw_tile;
    }
    p.fn = kernels[i].fn;
    if (!p.pfn && use_avx2()) p.tfn = tile_fn_avx2(Ws[i]->type());
    p.xa = x.xa;
    p.x_stride = x.x_stride;
    p.n_rows = n_rows[i];
    p.in = Ws[i]->in();
    p.out = Ws[i]->out();
    p.Y = Ys[i];
  }
  split_tasks(job, task_parts, default_pool().size());
}

// The weights of matmul_many / matmul_swiglu (`what`): one input for all, with the same row length.
void check_shared_input(const char* what, std::span<const Weight* const> Ws, std::span<float* const> Ys,
                        int max_weights) {
  if (Ws.size() != Ys.size() || Ws.empty() || Ws.size() > static_cast<size_t>(max_weights))
    throw Error(std::string(what) + ": " + std::to_string(Ws.size()) + " weights and " + std::to_string(Ys.size()) +
                " outputs; pass 1 to " + std::to_string(max_weights) + " weights, one output each");
  for (const Weight* w : Ws)
    if (w->in() != Ws[0]->in())
      throw Error(std::string(what) + ": '" + w->name() + "' takes " + std::to_string(w->in()) + " inputs, '" +
                  Ws[0]->name() + "' " + std::to_string(Ws[0]->in()) +
                  "; weights sharing an input must have the same row length");
}

void check_each(const char* what, size_t n, size_t n_xs, size_t n_rows, size_t n_ys) {
  if (n == 0 || n > static_cast<size_t>(kMaxMatmulEach) || n_xs != n || n_rows != n || n_ys != n)
    throw Error(std::string(what) + ": " + std::to_string(n) + " weights, " + std::to_string(n_xs) + " inputs, " +
                std::to_string(n_rows) + " row counts and " + std::to_string(n_ys) + " outputs; pass 1 to " +
                std::to_string(kMaxMatmulEach) + " of each");
}

}  // namespace

void matmul(const Weight& W, const float* X, int64_t n_rows, float* Y) {
  const Weight* Ws[1] = {&W};
  float* Ys[1] = {Y};
  matmul_many(Ws, X, n_rows, Ys);
}

void matmul_many(std::span<const Weight* const> Ws, const float* X, int64_t n_rows, std::span<float* const> Ys) {
  check_shared_input("matmul_many", Ws, Ys, kMaxParts);
  if (n_rows <= 0) return;
  notify(Ws, X, n_rows);
  const float* Xs[kMaxParts];
  int64_t rows[kMaxParts];
  std::fill_n(Xs, Ws.size(), X);
  std::fill_n(rows, Ws.size(), n_rows);
  MatmulJob job;
  bool inline_run = false;
  plan(job, Ws, std::span(Xs, Ws.size()), std::span(rows, Ws.size()), Ys, static_cast<int>(Ws.size()), &inline_run);
  run_tasks(inline_run, job.n_tasks, matmul_task, &job);
}

void matmul_each(std::span<const Weight* const> Ws, std::span<const float* const> Xs, std::span<const int64_t> n_rows,
                 std::span<float* const> Ys) {
  check_each("matmul_each", Ws.size(), Xs.size(), n_rows.size(), Ys.size());
  for (size_t i = 0; i < Ws.size(); ++i)
    if (n_rows[i] > 0) notify(Ws.subspan(i, 1), Xs[i], n_rows[i]);
  MatmulJob job;
  bool inline_run = false;
  plan(job, Ws, Xs, n_rows, Ys, static_cast<int>(Ws.size()), &inline_run);
  run_tasks(inline_run, job.n_tasks, matmul_task, &job);
}

void matmul_swiglu(const Weight& gate, const Weight& up, const float* X, int64_t n_rows, float* Y) {
  if (n_rows <= 0) return;
  if (gate.out() != up.out())
    throw Error("matmul_swiglu: '" + gate.name() + "' has " + std::to_string(gate.out()) + " outputs, '" + up.name() +
                "' " + std::to_string(up.out()) + "; gate and up must have the same shape");
  const Weight* Ws[2] = {&gate, &up};
  float* Ys[2] = {Y, Y};
  check_shared_input("matmul_swiglu", Ws, Ys, 2);
  notify(Ws, X, n_rows);
  const float* Xs[2] = {X, X};
  const int64_t rows[2] = {n_rows, n_rows};
  MatmulJob job;
  bool inline_run = false;
  plan(job, Ws, Xs, rows, Ys, /*task_parts=*/1, &inline_run);
  run_tasks(inline_run, job.n_tasks, swiglu_task, &job);
}

void matmul_swiglu_each(std::span<const Weight* const> gates, std::span<const Weight* const> ups,
                        std::span<const float* const> Xs, std::span<const int64_t> n_rows, std::span<float* const> Ys) {
  const size_t n = gates.size();
  check_each("matmul_swiglu_each", n, Xs.size(), n_rows.size(), Ys.size());
  if (ups.size() != n)
    throw Error("matmul_swiglu_each: " + std::to_string(n) + " gates but " + std::to_string(ups.size()) + " ups");
  const Weight* Ws[kMaxParts];
  const float* X2[kMaxParts];
  int64_t rows[kMaxParts];
  float* Y2[kMaxParts];
  for (size_t i = 0; i < n; ++i) {
    if (gates[i]->out() != ups[i]->out() || gates[i]->in() != ups[i]->in())
      throw Error("matmul_swiglu_each: '" + gates[i]->name() + "' and '" + ups[i]->name() +
                  "' differ in shape; each gate and its up must have the same shape");
    if (n_rows[i] > 0) {
      const Weight* pair[2] = {gates[i], ups[i]};
      notify(pair, Xs[i], n_rows[i]);
    }
    Ws[i] = gates[i];
    Ws[n + i] = ups[i];
    X2[i] = X2[n + i] = Xs[i];
    rows[i] = rows[n + i] = n_rows[i];
    Y2[i] = Y2[n + i] = Ys[i];
  }
  MatmulJob job;
  bool inline_run = false;
  plan(job, std::span(Ws, 2 * n), std::span(X2, 2 * n), std::span(rows, 2 * n), std::span(Y2, 2 * n),
       static_cast<int>(n), &inline_run);
  run_tasks(inline_run, job.n_tasks, swiglu_task, &job);
}

Weight matrix_slice(const Weight& W, int64_t i2) {
  TensorView v = WeightAccess::view(W);
  const PackedLayout* pk = WeightAccess::layout(W);
  v.n_dims = 2;
  v.ne = {v.ne[0], v.ne[1], 1, 1};
  v.data = static_cast<const uint8_t*>(v.data) + static_cast<size_t>(i2) * (pk ? pk->matrix_bytes : v.n_bytes());
  Weight slice = WeightAccess::make(std::move(v), WeightAccess::shared_layout(W));  // shares the packed storage
  slice.matrix_ = i2;
  slice.n_matrices_ = W.ne()[2];
  return slice;
}

}  // namespace owl::kernels
