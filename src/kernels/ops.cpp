// Row kernels: scalar references, dispatching to the AVX2 versions when fast paths are on.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
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

float fp16_to_fp32(uint16_t h) { return f16_to_f32(h); }
uint16_t fp32_to_fp16(float f) { return f32_to_f16(f); }
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
  if (use_avx2()) return avx2::quantize_f16(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  if (use_avx2()) return avx2::rms_norm(x, w, y, n, eps);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  float s = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s * (w ? w[i] : 1.0f);
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  double mean = 0, var = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  float s = 1.0f / std::sqrt(static_cast<float>(var) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i] - mean) * s * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
}

void softmax(float* x, int64_t n) {
  if (use_avx2()) return avx2::softmax(x, n);
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu(float* x, int64_t n) {
  if (use_avx2()) return avx2::silu(x, n);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void gelu(float* x, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
  }
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  if (use_avx2()) return avx2::swiglu(gate, up, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  if (use_avx2()) return avx2::add(a, b, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void scale_add(float* y, const float* x, float s, int64_t n) {
  if (use_avx2()) return avx2::scale_add(y, x, s, n);
  for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos, const float* inv_freq,
          RopePairing pairing, float mscale) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    float theta = static_cast<float>(pos) * inv_freq[i];
    float c = std::cos(theta) * mscale, s = std::sin(theta) * mscale;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* hx = x + h * head_dim;
      int64_t a = pairing == RopePairing::Norm ? 2 * i : i;
      int64_t b = pairing == RopePairing::Norm ? 2 * i + 1 : i + half;
      float x0 = hx[a], x1 = hx[b];
      hx[a] = x0 * c - x1 * s;
      hx[b] = x0 * s + x1 * c;
    }
  }
}

bool is_kv_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::Q8_0 || t == DType::Q4_0; }

size_t kv_bytes(DType t, int64_t n) {
  const auto count = static_cast<size_t>(n);
  switch (t) {
    case DType::F32:
      return count * 4;
    case DType::F16:
      return count * 2;
    case DType::Q8_0:
      return count / kQK * sizeof(BlockQ8_0);
    case DType::Q4_0:
      return count / kQK * sizeof(BlockQ4_0);
    default:
      throw Error(std::string("KV cache type ") + dtype_name(t) + " is not supported; use F32, F16, Q8_0 or Q4_0");
  }
}

const uint8_t* kv_row(const KVSpan& s, int64_t t, int64_t offset) {
  const uint8_t* page = static_cast<const uint8_t*>(s.pages[t / s.page_tokens]);
  return page + kv_bytes(s.type, (t % s.page_tokens) * s.row_stride + offset);
}

namespace {
struct AttentionJob {
  const float* q;
  int64_t n_head, group, dk, dv, heads_per_task, tasks_per_group;
  const KVSpan *k, *v;
  int64_t kv_begin, kv_end;
  float scale;
  float* out;
};

void attention_task(void* vjob, int task, int) {
  const AttentionJob& j = *static_cast<const AttentionJob*>(vjob);
  const int64_t g = task / j.tasks_per_group;
  const int64_t h0 = g * j.group + (task % j.tasks_per_group) * j.heads_per_task;
  const int64_t h1 = std::min((g + 1) * j.group, h0 + j.heads_per_task);
  if (h0 < h1) avx2::attention_heads(j.q, h0, h1, g, j.dk, j.dv, *j.k, *j.v, j.kv_begin, j.kv_end, j.scale, j.out);
}

// Splits the heads over the pool when the context is long enough to pay for it: each task
// takes some heads of one KV group (so shared K/V rows stay in cache). Every head is computed
// by the same code whatever the split, so results do not depend on the thread count.
void attention_fast(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
                    const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  ThreadPool& pool = default_pool();
  const int64_t group = n_head / n_head_kv;
  const int64_t work = (kv_end - kv_begin) * n_head * (dk + dv);
  int64_t tasks_per_group = 1;
  if (work >= (1 << 16) && pool.size() > 1)
    tasks_per_group = std::min<int64_t>(group, (pool.size() + n_head_kv - 1) / n_head_kv);
  AttentionJob job{
      q,  n_head,   group,  dk,    dv, (group + tasks_per_group - 1) / tasks_per_group, tasks_per_group, &k,
      &v, kv_begin, kv_end, scale, out};
  const int n_tasks = static_cast<int>(n_head_kv * tasks_per_group);
  if (work < (1 << 16)) {
    for (int t = 0; t < n_tasks; ++t) attention_task(&job, t, 0);
  } else {
    pool.run(n_tasks, attention_task, &job);
  }
}
}  // namespace

namespace {
void check_attention_args(const char* what, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v) {
  if (!is_kv_type(k.type) || !is_kv_type(v.type))
    throw Error(std::string(what) + ": KV cache type must be F32, F16, Q8_0 or Q4_0");
  auto blocks_fit = [](const KVSpan& s, int64_t d) {
    return (s.type != DType::Q8_0 && s.type != DType::Q4_0) || d % kQK == 0;
  };
  if (!blocks_fit(k, dk) || !blocks_fit(v, dv))
    throw Error(std::string(what) + ": head dims " + std::to_string(dk) + "/" + std::to_string(dv) +
                " are not multiples of 32, which a Q8_0 or Q4_0 KV cache needs; use an F16 cache");
  if (n_head_kv <= 0 || n_head % n_head_kv != 0)
    throw Error(std::string(what) + ": " + std::to_string(n_head) + " query heads cannot be grouped over " +
                std::to_string(n_head_kv) + " KV heads");
}

// The scalar reference of attention() for one query token.
void attention_reference(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
                         const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  const int64_t group = n_head / n_head_kv;
  std::vector<float> acc(static_cast<size_t>(dv)), kr(static_cast<size_t>(dk)), vr(static_cast<size_t>(dv));
  for (int64_t h = 0; h < n_head; ++h) {
    const int64_t g = h / group;
    const float* qh = q + h * dk;
    float m = -INFINITY, l = 0;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t t = kv_begin; t < kv_end; ++t) {
      dequantize_row(k.type, kv_row(k, t, g * dk), kr.data(), dk);
      float s = 0;
      for (int64_t i = 0; i < dk; ++i) s += qh[i] * kr[i];
      s *= scale;
      float m_new = std::max(m, s);
      float corr = std::exp(m - m_new), p = std::exp(s - m_new);
      l = l * corr + p;
      dequantize_row(v.type, kv_row(v, t, g * dv), vr.data(), dv);
      for (int64_t i = 0; i < dv; ++i) acc[i] = acc[i] * corr + p * vr[i];
      m = m_new;
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t i = 0; i < dv; ++i) out[h * dv + i] = acc[i] * inv;
  }
}
}  // namespace

void attention(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
               const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  check_attention_args("attention", n_head, n_head_kv, dk, dv, k, v);
  if (use_avx2()) return attention_fast(q, n_head, n_head_kv, dk, dv, k, v, kv_begin, kv_end, scale, out);
  attention_reference(q, n_head, n_head_kv, dk, dv, k, v, kv_begin, kv_end, scale, out);
}

namespace {
struct RowsJob {
  const float* q;
  int64_t n_rows, n_head, n_head_kv, dk, dv, block_rows, n_blocks;
  const int64_t *begins, *ends;
  const KVSpan *k, *v;
  float scale;
  float* out;
};

// Task t: KV head t % n_head_kv of row block n_blocks - 1 - t / n_head_kv (the causally longest
// blocks first, so the pool's last tasks are short ones).
void rows_task(void* vjob, int task, int) {
  const RowsJob& j = *static_cast<const RowsJob*>(vjob);
  const int64_t g = task % j.n_head_kv, block = j.n_blocks - 1 - task / j.n_head_kv;
  const int64_t r0 = block * j.block_rows, r1 = std::min(j.n_rows, r0 + j.block_rows);
  avx2::attention_rows_block(j.q, j.n_head, j.n_head / j.n_head_kv, g, r0, r1, j.begins, j.ends, j.dk, j.dv, *j.k, *j.v,
                             j.scale, j.out);
}
}  // namespace

void attention_rows(const float* q, int64_t n_rows, std::span<const int64_t> positions, int64_t n_head,
                    int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k, const KVSpan& v, int64_t window,
                    float scale, float* out) {
  check_attention_args("attention_rows", n_head, n_head_kv, dk, dv, k, v);
  if (n_rows < 0 || static_cast<int64_t>(positions.size()) != n_rows)
    throw Error("attention_rows: " + std::to_string(n_rows) + " query rows but " + std::to_string(positions.size()) +
                " positions; pass one position per row");
  thread_local std::vector<int64_t> ranges;
  ranges.resize(static_cast<size_t>(2 * n_rows));
  int64_t* begins = ranges.data();
  int64_t* ends = begins + n_rows;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t p = positions[static_cast<size_t>(r)];
    if (p < 0 || (r > 0 && p < positions[static_cast<size_t>(r - 1)]))
      throw Error("attention_rows: row " + std::to_string(r) + " has position " + std::to_string(p) +
                  "; positions must be >= 0 and non-decreasing (one sequence's rows in order)");
    ends[r] = p + 1;
    begins[r] = window > 0 ? std::max<int64_t>(0, ends[r] - window) : 0;
  }
  if (!use_avx2()) {
    for (int64_t r = 0; r < n_rows; ++r)
      attention_reference(q + r * n_head * dk, n_head, n_head_kv, dk, dv, k, v, begins[r], ends[r], scale,
                          out + r * n_head * dv);
    return;
  }
  if (n_rows == 0) return;
  // About 32 query vectors (rows x the group's heads) per block: each converted K/V chunk serves
  // them all, and the block's outputs (32 x dv floats) stay in L1. Few rows over few KV heads
  // take smaller blocks, so that there are about 8 tasks for the pool (a rule of the shapes
  // alone: the split, hence the rounding, never depends on the thread count).
  const int64_t group = n_head / n_head_kv;
  const int64_t min_blocks = (8 + n_head_kv - 1) / n_head_kv;
  const int64_t block_rows =
      std::clamp<int64_t>((n_rows + min_blocks - 1) / min_blocks, 1, std::max<int64_t>(1, 32 / group));
  const int64_t n_blocks = (n_rows + block_rows - 1) / block_rows;
  RowsJob job{q, n_rows, n_head, n_head_kv, dk, dv, block_rows, n_blocks, begins, ends, &k, &v, scale, out};
  const int n_tasks = static_cast<int>(n_blocks * n_head_kv);
  int64_t work = 0;  // multiply-adds, roughly
  for (int64_t r = 0; r < n_rows; ++r) work += (ends[r] - begins[r]) * n_head * (dk + dv);
  if (work < (1 << 16) || default_pool().size() == 1) {
    for (int t = 0; t < n_tasks; ++t) rows_task(&job, t, 0);
  } else {
    default_pool().run(n_tasks, rows_task, &job);
  }
}

void top_k(const float* x, int64_t n, int64_t k, int32_t* idx) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  std::copy(order.begin(), order.begin() + k, idx);
}

}  // namespace owl::kernels
