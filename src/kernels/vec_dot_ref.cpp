// Scalar reference dot products: integer sums inside a block (exact), one float
// multiply-add per block or sub-block scale, as ggml's reference does.
#include <cstring>

#include "kernels/vec_dot.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

template <class B>
const B* as(const void* p) {
  return static_cast<const B*>(p);
}

// Sum of the 32 activation quants of a Q8_0 block (needed by formats with an offset m).
inline int q8_sum(const BlockQ8_0& a) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += a.qs[j];
  return s;
}

float dot_q4_0(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ4_0>(vw);
  const auto* x = as<BlockQ8_0>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j)
      s += ((w[i].qs[j] & 0xF) - 8) * x[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
    acc += s * f16_to_f32(w[i].d) * f16_to_f32(x[i].d);
  }
  return acc;
}

float dot_q4_1(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ4_1>(vw);
  const auto* x = as<BlockQ8_0>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j) s += (w[i].qs[j] & 0xF) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + 16];
    const float dx = f16_to_f32(x[i].d);
    acc += s * f16_to_f32(w[i].d) * dx + f16_to_f32(w[i].m) * (dx * q8_sum(x[i]));
  }
  return acc;
}

template <class B>
int q5_sum(const B& w, const BlockQ8_0& x, int offset) {
  uint32_t qh;
  std::memcpy(&qh, w.qh, 4);
  int s = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = ((w.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - offset;
    const int hi = ((w.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset;
    s += lo * x.qs[j] + hi * x.qs[j + 16];
  }
  return s;
}

float dot_q5_0(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ5_0>(vw);
  const auto* x = as<BlockQ8_0>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) acc += q5_sum(w[i], x[i], 16) * f16_to_f32(w[i].d) * f16_to_f32(x[i].d);
  return acc;
}

float dot_q5_1(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ5_1>(vw);
  const auto* x = as<BlockQ8_0>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float dx = f16_to_f32(x[i].d);
    acc += q5_sum(w[i], x[i], 0) * f16_to_f32(w[i].d) * dx + f16_to_f32(w[i].m) * (dx * q8_sum(x[i]));
  }
  return acc;
}

float dot_q8_0(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ8_0>(vw);
  const auto* x = as<BlockQ8_0>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int s = 0;
    for (int j = 0; j < kQK; ++j) s += w[i].qs[j] * x[i].qs[j];
    acc += s * f16_to_f32(w[i].d) * f16_to_f32(x[i].d);
  }
  return acc;
}

float dot_iq4_nl(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockIQ4_NL>(vw);
  const auto* x = as<BlockQ8_0>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j)
      s += kIQ4NL[w[i].qs[j] & 0xF] * x[i].qs[j] + kIQ4NL[w[i].qs[j] >> 4] * x[i].qs[j + 16];
    acc += s * f16_to_f32(w[i].d) * f16_to_f32(x[i].d);
  }
  return acc;
}

// K-quants: dequantise the super-block's integer levels (and per-16 scales) to small arrays,
// then sum exactly in integers per super-block.
float dot_q2_k(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ2_K>(vw);
  const auto* x = as<BlockQ8_K>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0, summ = 0, k = 0;
    for (int c = 0; c < 2; ++c)
      for (int shift = 0; shift < 8; shift += 2)
        for (int half = 0; half < 2; ++half, ++k) {
          int s = 0;
          for (int l = 0; l < 16; ++l) s += ((w[i].qs[32 * c + 16 * half + l] >> shift) & 3) * x[i].qs[16 * k + l];
          sumi += (w[i].scales[k] & 0xF) * s;
          summ += (w[i].scales[k] >> 4) * x[i].bsums[k];
        }
    acc += x[i].d * (f16_to_f32(w[i].d) * sumi - f16_to_f32(w[i].dmin) * summ);
  }
  return acc;
}

float dot_q3_k(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ3_K>(vw);
  const auto* x = as<BlockQ8_K>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int8_t sc[16];
    for (int j = 0; j < 16; ++j) {  // same unpacking as quants.cpp's q3_k_scales
      const int lo = (w[i].scales[j % 8] >> (4 * (j / 8))) & 0xF;
      const int hi = (w[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3;
      sc[j] = static_cast<int8_t>((lo | hi << 4) - 32);
    }
    int sumi = 0, k = 0, run = 0;
    for (int c = 0; c < 2; ++c)
      for (int shift = 0; shift < 8; shift += 2, ++run)
        for (int half = 0; half < 2; ++half, ++k) {
          int s = 0;
          for (int l = 0; l < 16; ++l) {
            const int b = 16 * half + l;
            const int q = ((w[i].qs[32 * c + b] >> shift) & 3) - (((w[i].hmask[b] >> run) & 1) ? 0 : 4);
            s += q * x[i].qs[16 * k + l];
          }
          sumi += sc[k] * s;
        }
    acc += x[i].d * f16_to_f32(w[i].d) * sumi;
  }
  return acc;
}

template <class B, bool kFive>
float dot_q45_k(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<B>(vw);
  const auto* x = as<BlockQ8_K>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      k4_scale_min(j, w[i].scales, sc, mn);
      const uint8_t* q = w[i].qs + 32 * (j / 2);
      int s = 0;
      for (int l = 0; l < 32; ++l) {
        int v = (j % 2 ? q[l] >> 4 : q[l] & 0xF);
        if constexpr (kFive) v |= ((w[i].qh[l] >> j) & 1) << 4;
        s += v * x[i].qs[32 * j + l];
      }
      sumi += sc * s;
      summ += mn * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
    }
    acc += x[i].d * (f16_to_f32(w[i].d) * sumi - f16_to_f32(w[i].dmin) * summ);
  }
  return acc;
}

float dot_q6_k(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockQ6_K>(vw);
  const auto* x = as<BlockQ8_K>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0;
    for (int c = 0; c < 2; ++c) {
      const uint8_t* ql = w[i].ql + 64 * c;
      const uint8_t* qh = w[i].qh + 32 * c;
      for (int r = 0; r < 4; ++r)
        for (int half = 0; half < 2; ++half) {
          int s = 0;
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int q = (((ql[l + 32 * (r % 2)] >> (4 * (r / 2))) & 0xF) | (((qh[l] >> (2 * r)) & 3) << 4)) - 32;
            s += q * x[i].qs[128 * c + 32 * r + l];
          }
          sumi += w[i].scales[8 * c + 2 * r + half] * s;
        }
    }
    acc += x[i].d * f16_to_f32(w[i].d) * sumi;
  }
  return acc;
}

float dot_iq4_xs(int64_t n, const void* vw, const void* vx) {
  const auto* w = as<BlockIQ4_XS>(vw);
  const auto* x = as<BlockQ8_K>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((w[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((w[i].scales_h >> (2 * ib)) & 3) << 4);
      const uint8_t* qs = w[i].qs + 16 * ib;
      const int8_t* a = x[i].qs + 32 * ib;
      int s = 0;
      for (int j = 0; j < 16; ++j) s += kIQ4NL[qs[j] & 0xF] * a[j] + kIQ4NL[qs[j] >> 4] * a[j + 16];
      sumi += (ls - 32) * s;
    }
    acc += x[i].d * f16_to_f32(w[i].d) * sumi;
  }
  return acc;
}

float dot_f32(int64_t n, const void* vw, const void* vx) {
  const float* w = static_cast<const float*>(vw);
  const float* x = static_cast<const float*>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += w[i] * x[i];
  return acc;
}

float dot_f16(int64_t n, const void* vw, const void* vx) {
  const uint16_t* w = static_cast<const uint16_t*>(vw);
  const float* x = static_cast<const float*>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += f16_to_f32(w[i]) * x[i];
  return acc;
}

float dot_bf16(int64_t n, const void* vw, const void* vx) {
  const uint16_t* w = static_cast<const uint16_t*>(vw);
  const float* x = static_cast<const float*>(vx);
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += bf16_to_f32(w[i]) * x[i];
  return acc;
}

// Codebook types (IQ1_S .. IQ3_S): each weight block is decoded once to integer levels and
// per-16 scales (tensor/quants.h), then dotted with each activation row's Q8_K block in integers.
template <DType T>
void rows_codebook(int64_t n, const void* vw, const void* vx, size_t x_stride, int nr, float* y, int64_t y_stride) {
  const size_t block_bytes = info(T).type_size;
  float acc[kMaxNR] = {};
  IQLevels lv;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    iq_decode(T, static_cast<const uint8_t*>(vw) + i * block_bytes, lv);
    const float dw = lv.d * lv.mult;
    for (int r = 0; r < nr; ++r) {
      const auto& a = as<BlockQ8_K>(static_cast<const uint8_t*>(vx) + r * x_stride)[i];
      int32_t sumi = 0;
      for (int k = 0; k < kQKK / 16; ++k) {
        int32_t s = 0;
        for (int j = 0; j < 16; ++j) s += lv.levels[16 * k + j] * a.qs[16 * k + j];
        sumi += lv.scales[k] * s;
      }
      acc[r] += a.d * dw * static_cast<float>(sumi);
    }
  }
  for (int r = 0; r < nr; ++r) y[r * y_stride] = acc[r];
}

template <float (*F)(int64_t, const void*, const void*)>
void rows(int64_t n, const void* w, const void* x, size_t x_stride, int nr, float* y, int64_t y_stride) {
  for (int r = 0; r < nr; ++r) y[r * y_stride] = F(n, w, static_cast<const uint8_t*>(x) + r * x_stride);
}

}  // namespace

DotFn dot_fn_ref(DType t) {
  switch (t) {
    case DType::F32:
      return rows<dot_f32>;
    case DType::F16:
      return rows<dot_f16>;
    case DType::BF16:
      return rows<dot_bf16>;
    case DType::Q4_0:
      return rows<dot_q4_0>;
    case DType::Q4_1:
      return rows<dot_q4_1>;
    case DType::Q5_0:
      return rows<dot_q5_0>;
    case DType::Q5_1:
      return rows<dot_q5_1>;
    case DType::Q8_0:
      return rows<dot_q8_0>;
    case DType::IQ4_NL:
      return rows<dot_iq4_nl>;
    case DType::Q2_K:
      return rows<dot_q2_k>;
    case DType::Q3_K:
      return rows<dot_q3_k>;
    case DType::Q4_K:
      return rows<dot_q45_k<BlockQ4_K, false>>;
    case DType::Q5_K:
      return rows<dot_q45_k<BlockQ5_K, true>>;
    case DType::Q6_K:
      return rows<dot_q6_k>;
    case DType::IQ4_XS:
      return rows<dot_iq4_xs>;
    case DType::IQ2_XXS:
      return rows_codebook<DType::IQ2_XXS>;
    case DType::IQ2_XS:
      return rows_codebook<DType::IQ2_XS>;
    case DType::IQ2_S:
      return rows_codebook<DType::IQ2_S>;
    case DType::IQ3_XXS:
      return rows_codebook<DType::IQ3_XXS>;
    case DType::IQ3_S:
      return rows_codebook<DType::IQ3_S>;
    case DType::IQ1_S:
      return rows_codebook<DType::IQ1_S>;
    case DType::IQ1_M:
      return rows_codebook<DType::IQ1_M>;
    default:
      return nullptr;
  }
}

}  // namespace owl::kernels
