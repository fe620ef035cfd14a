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
#include "tensor/quantize_kv.h"

namespace owl::kernels {

float fp16_to_fp32(uint16_t h) { return f16_to_f32(h); }
uint16_t fp32_to_fp16(float f) { return f32_to_f16(f); }
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
  if (use_avx2()) return avx2::quantize_f16(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void quantize_kv_row(DType t, const float* src, void* dst, int64_t n) {
  if (use_avx2() && (t == DType::Q8_0 || t == DType::Q4_0) && n % kQK == 0)
    return avx2::quantize_kv_row(t, src, dst, n);
  owl::quantize_kv_row(t, src, dst, n);  // also the one place bad input is reported
}

void hadamard_blocks(float* x, int64_t n, int64_t block) {
  if (use_avx2() && block % 8 == 0) return avx2::hadamard_blocks(x, n, block);
  const float norm = 1.0f / std::sqrt(static_cast<float>(block));
  for (int64_t base = 0; base < n; base += block) {
    float* v = x + base;
    // Butterflies over strides 1, 2, 4, ...: the Sylvester-ordered transform, then 1/sqrt(block).
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          const float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
    for (int64_t i = 0; i < block; ++i) v[i] *= norm;
  }
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

void rope_cos_sin(float* cs, int64_t n_rot, int64_t pos, const float* inv_freq, float mscale) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const float theta = static_cast<float>(pos) * inv_freq[i];
    cs[2 * i] = std::cos(theta) * mscale;
    cs[2 * i + 1] = std::sin(theta) * mscale;
  }
}

void rope_rotate(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cs, RopePairing pairing) {
  const int64_t half = n_rot / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* hx = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const int64_t a = pairing == RopePairing::Norm ? 2 * i : i;
      const int64_t b = pairing == RopePairing::Norm ? 2 * i + 1 : i + half;
      const float x0 = hx[a], x1 = hx[b];
      hx[a] = x0 * c - x1 * s;
      hx[b] = x0 * s + x1 * c;
    }
  }
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos, const float* inv_freq,
          RopePairing pairing, float mscale) {
  thread_local std::vector<float> cs;
  cs.resize(static_cast<size_t>(n_rot));
  rope_cos_sin(cs.data(), n_rot, pos, inv_freq, mscale);
  rope_rotate(x, n_heads, head_dim, n_rot, cs.data(), pairing);
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
// One query token (decode) is split over the pool by context, not only by head: the tokens are
// cut into parts whose length depends on the context length alone, each part's heads are
// computed by one task (walking its rows once for all KV heads), and the parts' partial results
// are merged per head in part order. So results never depend on the thread count or on whether
// the call runs nested inside another pool task, and MLA's single latent "head" still keeps
// every thread busy. Short contexts (few parts) split the heads into blocks as well.
constexpr int64_t kDecodeTasks = 8;      // tasks wanted per call (parts x head blocks)
constexpr int64_t kMinDecodePart = 256;  // tokens: shorter parts cost more to merge than they save

struct DecodeJob {
  const float* q;
  int64_t n_head, group, dk, dv;
  const KVSpan *k, *v;
  int64_t kv_begin, kv_end, part_len, n_blocks;
  const int64_t* block_heads;  // head block b is [block_heads[b], block_heads[b + 1])
  float scale;
  float *acc, *mx, *l;  // per part: [n_head][dv], [n_head], [n_head]
  bool avx512;
};

void decode_task(void* vjob, int task, int) {
  const DecodeJob& j = *static_cast<const DecodeJob*>(vjob);
  const int64_t part = task / j.n_blocks, b = task % j.n_blocks;
  const int64_t h0 = j.block_heads[b], h1 = j.block_heads[b + 1];
  const int64_t t0 = j.kv_begin + part * j.part_len, t1 = std::min(j.kv_end, t0 + j.part_len);
  float* acc = j.acc + (part * j.n_head + h0) * j.dv;
  float* mx = j.mx + part * j.n_head + h0;
  float* l = j.l + part * j.n_head + h0;
  if (j.avx512)
    avx512vnni::attention_decode_part(j.q, j.group, h0, h1, j.dk, j.dv, *j.k, *j.v, t0, t1, j.scale, acc, mx, l);
  else
    avx2::attention_decode_part(j.q, j.group, h0, h1, j.dk, j.dv, *j.k, *j.v, t0, t1, j.scale, acc, mx, l);
}

void attention_fast(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
                    const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  const int64_t len = kv_end - kv_begin;
  if (len <= 0) {
    std::fill(out, out + n_head * dv, 0.0f);
    return;
  }
  const int64_t group = n_head / n_head_kv;
  const int64_t part_len = std::max(kMinDecodePart, (len + kDecodeTasks * 32 - 1) / (kDecodeTasks * 32) * 32);
  const int64_t n_parts = (len + part_len - 1) / part_len;
  // Head blocks: whole KV groups while there are enough of them, else groups cut in pieces.
  const int64_t want = (kDecodeTasks + n_parts - 1) / n_parts;
  thread_local std::vector<int64_t> heads;
  heads.clear();
  if (want <= n_head_kv) {
    for (int64_t b = 0; b <= want; ++b) heads.push_back(group * (b * n_head_kv / want));
  } else {
    const int64_t pieces = std::min(group, (want + n_head_kv - 1) / n_head_kv);
    for (int64_t g = 0; g < n_head_kv; ++g)
      for (int64_t p = 0; p < pieces; ++p) heads.push_back(g * group + p * group / pieces);
    heads.push_back(n_head);
  }
  const int64_t n_blocks = static_cast<int64_t>(heads.size()) - 1;
  thread_local std::vector<float> partial;
  partial.resize(static_cast<size_t>(n_parts * n_head * (dv + 2)));
  float* acc = partial.data();
  float* mx = acc + n_parts * n_head * dv;
  float* l = mx + n_parts * n_head;
  DecodeJob job{q,
                n_head,
                group,
                dk,
                dv,
                &k,
                &v,
                kv_begin,
                kv_end,
                part_len,
                n_blocks,
                heads.data(),
                scale,
                acc,
                mx,
                l,
                default_isa() == Isa::Avx512Vnni};
  const int n_tasks = static_cast<int>(n_parts * n_blocks);
  ThreadPool& pool = default_pool();
  if (len * n_head * (dk + dv) < (1 << 16) || pool.size() == 1) {
    for (int t = 0; t < n_tasks; ++t) decode_task(&job, t, 0);
  } else {
    pool.run(n_tasks, decode_task, &job);
  }
  // Merge the parts in order: out = sum_p e^(mx_p - M) acc_p / sum_p e^(mx_p - M) l_p.
  thread_local std::vector<float> w;
  w.resize(static_cast<size_t>(n_parts));
  for (int64_t h = 0; h < n_head; ++h) {
    float m = -INFINITY;
    for (int64_t p = 0; p < n_parts; ++p) m = std::max(m, mx[p * n_head + h]);
    float sum = 0;
    for (int64_t p = 0; p < n_parts; ++p) {
      w[static_cast<size_t>(p)] = std::exp(mx[p * n_head + h] - m);
      sum += w[static_cast<size_t>(p)] * l[p * n_head + h];
    }
    const float inv = sum > 0 ? 1.0f / sum : 0.0f;
    float* o = out + h * dv;
    for (int64_t e = 0; e < dv; ++e) o[e] = acc[h * dv + e] * (w[0] * inv);
    for (int64_t p = 1; p < n_parts; ++p) {
      const float wp = w[static_cast<size_t>(p)] * inv;
      const float* a = acc + (p * n_head + h) * dv;
      for (int64_t e = 0; e < dv; ++e) o[e] += a[e] * wp;
    }
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
  bool avx512 = false;  // the 16-lane block (attention_rows_avx512vnni.cpp)
};

// Task t: KV head t % n_head_kv of row block n_blocks - 1 - t / n_head_kv (the causally longest
// blocks first, so the pool's last tasks are short ones).
void rows_task(void* vjob, int task, int) {
  const RowsJob& j = *static_cast<const RowsJob*>(vjob);
  const int64_t g = task % j.n_head_kv, block = j.n_blocks - 1 - task / j.n_head_kv;
  const int64_t r0 = block * j.block_rows, r1 = std::min(j.n_rows, r0 + j.block_rows);
  if (j.avx512)
    return avx512vnni::attention_rows_block(j.q, j.n_head, j.n_head / j.n_head_kv, g, r0, r1, j.begins, j.ends, j.dk,
                                            j.dv, *j.k, *j.v, j.scale, j.out);
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
  const bool avx512 = default_isa() == Isa::Avx512Vnni;
  const int64_t block_queries = avx512 ? 64 : 32;
  // About 32 query vectors (rows x the group's heads) per block: each converted K/V chunk serves
  // them all, and the block's outputs (32 x dv floats) stay in L1. The AVX-512 block takes 64
  // (4 vectors of 16 queries): half the K/V conversions per multiply-add, ~5% less time than 32
  // in BM_AttentionPrefill/512/512/0/1. Few rows over few KV heads take smaller blocks, so that
  // there are about 8 tasks for the pool (a rule of the shapes alone: the split, hence the
  // rounding, never depends on the thread count).
  const int64_t group = n_head / n_head_kv;
  const int64_t min_blocks = (8 + n_head_kv - 1) / n_head_kv;
  const int64_t block_rows =
      std::clamp<int64_t>((n_rows + min_blocks - 1) / min_blocks, 1, std::max<int64_t>(1, block_queries / group));
  const int64_t n_blocks = (n_rows + block_rows - 1) / block_rows;
  RowsJob job{q, n_rows, n_head, n_head_kv, dk, dv, block_rows, n_blocks, begins, ends, &k, &v, scale, out};
  job.avx512 = avx512;
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
