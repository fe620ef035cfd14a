// prepare_weight: copies a weight into the 8-row interleaved layout of repack.h, a packed Weight
// that carries its layout and kernel, and optionally drops the resident pages of the source
// mapping.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/packed_memory.h"
#include "kernels/repack.h"
#include "kernels/vec_dot.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

constexpr size_t kQ4KBytes = kPackedBytes<BlockQ4_K>;
constexpr size_t kQ6KBytes = kPackedBytes<BlockQ6_K>;
constexpr size_t kQ8_0Bytes = kPackedBytes<BlockQ8_0>;
constexpr size_t kQ5_0Bytes = kPackedBytes<BlockQ5_0>;

// Q6_K levels (0..63) of one block, in element order, and back (see tensor/quants.cpp).
void q6k_levels_get(const BlockQ6_K& b, uint8_t q[256]) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    for (int r = 0; r < 4; ++r)
      for (int l = 0; l < 32; ++l)
        q[128 * half + 32 * r + l] =
            static_cast<uint8_t>(((ql[l + 32 * (r % 2)] >> (4 * (r / 2))) & 0xF) | ((qh[l] >> (2 * r)) & 3) << 4);
  }
}
void q6k_levels_set(const uint8_t q[256], BlockQ6_K& b) {
  std::memset(b.ql, 0, sizeof b.ql);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int half = 0; half < 2; ++half) {
    uint8_t* ql = b.ql + 64 * half;
    uint8_t* qh = b.qh + 32 * half;
    for (int r = 0; r < 4; ++r)
      for (int l = 0; l < 32; ++l) {
        const uint8_t v = q[128 * half + 32 * r + l];
        ql[l + 32 * (r % 2)] |= static_cast<uint8_t>((v & 0xF) << (4 * (r / 2)));
        qh[l] |= static_cast<uint8_t>((v >> 4) << (2 * r));
      }
  }
}

// Q4_K's 12 bytes of 6-bit scales and mins stay packed (decoded in registers by the kernels,
// so the copy is no larger than the file): bytes 0-3, 4-7 and 8-11 of each row go to three
// [8 rows][4] tables.
void pack_q4_k(const uint8_t* const rows[kPackRows], int64_t nb, uint8_t* dst) {
  for (int64_t i = 0; i < nb; ++i, dst += kQ4KBytes) {
    std::memset(dst, 0, kQ4KBytes);
    for (int r = 0; r < kPackRows; ++r) {
      if (!rows[r]) continue;
      const auto& b = reinterpret_cast<const BlockQ4_K*>(rows[r])[i];
      std::memcpy(dst + 2 * r, &b.d, 2);
      std::memcpy(dst + 16 + 2 * r, &b.dmin, 2);
      for (int t = 0; t < 3; ++t) std::memcpy(dst + 32 + 32 * t + 4 * r, b.scales + 4 * t, 4);
      for (int j = 0; j < 4; ++j)
        for (int g = 0; g < 8; ++g) std::memcpy(dst + 128 + ((j * 8 + g) * 8 + r) * 4, b.qs + 32 * j + 4 * g, 4);
    }
  }
}

void unpack_q4_k(const uint8_t* src, int r, int64_t nb, uint8_t* out) {
  for (int64_t i = 0; i < nb; ++i, src += kQ4KBytes) {
    auto& b = reinterpret_cast<BlockQ4_K*>(out)[i];
    std::memcpy(&b.d, src + 2 * r, 2);
    std::memcpy(&b.dmin, src + 16 + 2 * r, 2);
    for (int t = 0; t < 3; ++t) std::memcpy(b.scales + 4 * t, src + 32 + 32 * t + 4 * r, 4);
    for (int j = 0; j < 4; ++j)
      for (int g = 0; g < 8; ++g) std::memcpy(b.qs + 32 * j + 4 * g, src + 128 + ((j * 8 + g) * 8 + r) * 4, 4);
  }
}

void pack_q6_k(const uint8_t* const rows[kPackRows], int64_t nb, uint8_t* dst) {
  uint8_t q[256];
  for (int64_t i = 0; i < nb; ++i, dst += kQ6KBytes) {
    std::memset(dst, 0, kQ6KBytes);
    for (int r = 0; r < kPackRows; ++r) {
      if (!rows[r]) continue;
      const auto& b = reinterpret_cast<const BlockQ6_K*>(rows[r])[i];
      std::memcpy(dst + 2 * r, &b.d, 2);
      for (int s = 0; s < 16; ++s) dst[16 + ((s / 2) * 8 + r) * 2 + s % 2] = static_cast<uint8_t>(b.scales[s]);
      q6k_levels_get(b, q);
      for (int c = 0; c < 4; ++c) {
        for (int g = 0; g < 8; ++g)
          for (int k = 0; k < 4; ++k)
            dst[144 + ((c * 8 + g) * 8 + r) * 4 + k] =
                static_cast<uint8_t>((q[64 * c + 4 * g + k] & 0xF) | (q[64 * c + 32 + 4 * g + k] & 0xF) << 4);
        for (int h = 0; h < 4; ++h)
          for (int k = 0; k < 4; ++k) {
            const int e = 64 * c + 8 * h + k;
            dst[1168 + ((c * 4 + h) * 8 + r) * 4 + k] = static_cast<uint8_t>(
                (q[e] >> 4) | (q[e + 32] >> 4) << 2 | (q[e + 4] >> 4) << 4 | (q[e + 36] >> 4) << 6);
          }
      }
    }
  }
}

void unpack_q6_k(const uint8_t* src, int r, int64_t nb, uint8_t* out) {
  uint8_t q[256];
  for (int64_t i = 0; i < nb; ++i, src += kQ6KBytes) {
    auto& b = reinterpret_cast<BlockQ6_K*>(out)[i];
    std::memcpy(&b.d, src + 2 * r, 2);
    for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(src[16 + ((s / 2) * 8 + r) * 2 + s % 2]);
    for (int c = 0; c < 4; ++c) {
      for (int g = 0; g < 8; ++g)
        for (int k = 0; k < 4; ++k) {
          const uint8_t v = src[144 + ((c * 8 + g) * 8 + r) * 4 + k];
          q[64 * c + 4 * g + k] = v & 0xF;
          q[64 * c + 32 + 4 * g + k] = v >> 4;
        }
      for (int h = 0; h < 4; ++h)
        for (int k = 0; k < 4; ++k) {
          const int e = 64 * c + 8 * h + k;
          const uint8_t v = src[1168 + ((c * 4 + h) * 8 + r) * 4 + k];
          q[e] |= static_cast<uint8_t>((v & 3) << 4);
          q[e + 32] |= static_cast<uint8_t>(((v >> 2) & 3) << 4);
          q[e + 4] |= static_cast<uint8_t>(((v >> 4) & 3) << 4);
          q[e + 36] |= static_cast<uint8_t>(((v >> 6) & 3) << 4);
        }
    }
    q6k_levels_set(q, b);
  }
}

void pack_q8_0(const uint8_t* const rows[kPackRows], int64_t nb, uint8_t* dst) {
  for (int64_t i = 0; i < nb; ++i, dst += kQ8_0Bytes) {
    std::memset(dst, 0, kQ8_0Bytes);
    for (int r = 0; r < kPackRows; ++r) {
      if (!rows[r]) continue;
      const auto& b = reinterpret_cast<const BlockQ8_0*>(rows[r])[i];
      std::memcpy(dst + 2 * r, &b.d, 2);
      for (int g = 0; g < 8; ++g) std::memcpy(dst + 16 + (g * 8 + r) * 4, b.qs + 4 * g, 4);
    }
  }
}

void unpack_q8_0(const uint8_t* src, int r, int64_t nb, uint8_t* out) {
  for (int64_t i = 0; i < nb; ++i, src += kQ8_0Bytes) {
    auto& b = reinterpret_cast<BlockQ8_0*>(out)[i];
    std::memcpy(&b.d, src + 2 * r, 2);
    for (int g = 0; g < 8; ++g) std::memcpy(b.qs + 4 * g, src + 16 + (g * 8 + r) * 4, 4);
  }
}

// Q5_0: the high bits of each row's 32 levels are regrouped so the kernels find those of 4
// consecutive elements with one shift: byte k of the packed word holds, at bit g, the high bit
// of element 4g + k (g < 4) and at bit 4 + g that of element 16 + 4g + k.
uint32_t q5_0_high_bits_pack(uint32_t h) {
  uint32_t out = 0;
  for (int k = 0; k < 4; ++k)
    for (int g = 0; g < 4; ++g) {
      out |= ((h >> (4 * g + k)) & 1u) << (8 * k + g);
      out |= ((h >> (16 + 4 * g + k)) & 1u) << (8 * k + 4 + g);
    }
  return out;
}
uint32_t q5_0_high_bits_unpack(uint32_t p) {
  uint32_t h = 0;
  for (int k = 0; k < 4; ++k)
    for (int g = 0; g < 4; ++g) {
      h |= ((p >> (8 * k + g)) & 1u) << (4 * g + k);
      h |= ((p >> (8 * k + 4 + g)) & 1u) << (16 + 4 * g + k);
    }
  return h;
}

void pack_q5_0(const uint8_t* const rows[kPackRows], int64_t nb, uint8_t* dst) {
  for (int64_t i = 0; i < nb; ++i, dst += kQ5_0Bytes) {
    std::memset(dst, 0, kQ5_0Bytes);
    for (int r = 0; r < kPackRows; ++r) {
      if (!rows[r]) continue;
      const auto& b = reinterpret_cast<const BlockQ5_0*>(rows[r])[i];
      std::memcpy(dst + 2 * r, &b.d, 2);
      uint32_t h;
      std::memcpy(&h, b.qh, 4);
      const uint32_t hp = q5_0_high_bits_pack(h);
      std::memcpy(dst + 16 + 4 * r, &hp, 4);
      for (int g = 0; g < 4; ++g) std::memcpy(dst + 48 + (g * 8 + r) * 4, b.qs + 4 * g, 4);
    }
  }
}

void unpack_q5_0(const uint8_t* src, int r, int64_t nb, uint8_t* out) {
  for (int64_t i = 0; i < nb; ++i, src += kQ5_0Bytes) {
    auto& b = reinterpret_cast<BlockQ5_0*>(out)[i];
    std::memcpy(&b.d, src + 2 * r, 2);
    uint32_t hp;
    std::memcpy(&hp, src + 16 + 4 * r, 4);
    const uint32_t h = q5_0_high_bits_unpack(hp);
    std::memcpy(b.qh, &h, 4);
    for (int g = 0; g < 4; ++g) std::memcpy(b.qs + 4 * g, src + 48 + (g * 8 + r) * 4, 4);
  }
}

// Drops this process's resident pages of [p, p + n) (whole pages inside the range only); for a
// file mapping they are read back from the file if touched again.
void release_pages(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace

void pack_group(DType t, const uint8_t* const rows[kPackRows], int64_t in, uint8_t* dst) {
  const int64_t nb = in / info(t).block_size;
  switch (t) {
    case DType::Q4_K:
      return pack_q4_k(rows, nb, dst);
    case DType::Q6_K:
      return pack_q6_k(rows, nb, dst);
    case DType::Q8_0:
      return pack_q8_0(rows, nb, dst);
    case DType::Q5_0:
      return pack_q5_0(rows, nb, dst);
    default:
      throw Error(std::string("pack_group: no packed layout for ") + dtype_name(t));
  }
}

void unpack_row(DType t, const uint8_t* group, int r, int64_t in, uint8_t* dst) {
  const int64_t nb = in / info(t).block_size;
  switch (t) {
    case DType::Q4_K:
      return unpack_q4_k(group, r, nb, dst);
    case DType::Q6_K:
      return unpack_q6_k(group, r, nb, dst);
    case DType::Q8_0:
      return unpack_q8_0(group, r, nb, dst);
    case DType::Q5_0:
      return unpack_q5_0(group, r, nb, dst);
    default:
      throw Error(std::string("unpack_row: no packed layout for ") + dtype_name(t));
  }
}

size_t wide_act_block_bytes(DType act) {
  if (act == DType::Q8_0) return kWideM * (kQK + sizeof(float) + sizeof(int32_t));
  if (act == DType::Q8_K) return kWideM * (kQKK + sizeof(float) + 16 * sizeof(int16_t));
  return 0;
}

void wide_act_put_row(DType act, const uint8_t* row, int64_t in, int m, uint8_t* tile) {
  const size_t bb = wide_act_block_bytes(act);
  if (act == DType::Q8_0) {
    const int64_t nb = in / kQK;
    const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
    const auto* d = reinterpret_cast<const float*>(row + q8_0_act_scales_offset(in));
    const auto* sums = reinterpret_cast<const int32_t*>(row + q8_0_act_sums_offset(in));
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* t = tile + static_cast<size_t>(i) * bb;
      for (int g = 0; g < kQK / 4; ++g) std::memcpy(t + (g * kWideM + m) * 4, b[i].qs + 4 * g, 4);
      std::memcpy(t + kWideM * kQK + 4 * m, d + i, 4);
      const int32_t s = -128 * sums[i];
      std::memcpy(t + kWideM * (kQK + 4) + 4 * m, &s, 4);
    }
  } else if (act == DType::Q8_K) {
    const int64_t nb = in / kQKK;
    const auto* b = reinterpret_cast<const BlockQ8_K*>(row);
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* t = tile + static_cast<size_t>(i) * bb;
      for (int g = 0; g < kQKK / 4; ++g) std::memcpy(t + (g * kWideM + m) * 4, b[i].qs + 4 * g, 4);
      std::memcpy(t + kWideM * kQKK + 4 * m, &b[i].d, 4);
      std::memcpy(t + kWideM * (kQKK + 4) + 32 * m, b[i].bsums, 32);
    }
  } else {
    throw Error(std::string("wide_act_put_row: no wide activation layout for ") + dtype_name(act));
  }
}

PackedLayout::~PackedLayout() {
  if (owns_bytes) free_packed(bytes, total);
}

Isa Weight::isa() const { return layout_ ? layout_->isa : default_isa(); }

void dequantize_weight_row(const Weight& W, int64_t row, float* dst) {
  const TensorView& v = WeightAccess::view(W);
  const PackedLayout* pk = WeightAccess::layout(W);
  if (!pk) return dequantize_row(v.type, v.row(row), dst, v.ne[0]);
  const int64_t rows = v.ne[1] * v.ne[2] * v.ne[3];  // of this weight (a slice: one matrix)
  if (row < 0 || row >= rows)
    throw Error("dequantize_weight_row: row " + std::to_string(row) + " is outside '" + v.name + "' (" +
                std::to_string(rows) + " rows)");
  const int64_t mat = row / pk->out, o = row % pk->out;
  const auto* group = static_cast<const uint8_t*>(v.data) + mat * pk->matrix_bytes + (o / kPackRows) * pk->group_bytes;
  thread_local std::vector<uint8_t> buf;
  buf.resize(row_bytes(pk->type, pk->in));
  unpack_row(pk->type, group, static_cast<int>(o % kPackRows), pk->in, buf.data());
  dequantize_row(pk->type, buf.data(), dst, pk->in);
}

namespace {

// The packed layout prepare_weight gives W under options o (bytes not yet set), or null when W
// stays plain (no packed kernel for its type or ISA, repacking off, odd shapes).
std::shared_ptr<PackedLayout> packed_layout_for(const TensorView& W, const PrepareOptions& o) {
  const Isa isa = std::min(o.isa.value_or(default_isa()), best_isa());
  const PackedFn fn = isa == Isa::Avx512Vnni ? packed_kernel_avx512vnni(W.type)
                      : isa == Isa::Avx2     ? packed_kernel_avx2(W.type)
                                             : nullptr;
  const size_t block_bytes = packed_block_bytes(W.type);
  if (!o.repack || !fn || block_bytes == 0 || W.n_dims < 2 || W.ne[0] % info(W.type).block_size != 0) return nullptr;
  auto pi = std::make_shared<PackedLayout>();
  pi->type = W.type;
  pi->in = W.ne[0];
  pi->out = W.ne[1];
  pi->n_mats = W.ne[2] * W.ne[3];
  pi->isa = isa;
  pi->fn = fn;
  if (isa == Isa::Avx512Vnni) pi->wide_fn = wide_packed_kernel_avx512vnni(W.type);
  const int64_t groups = (pi->out + kPackRows - 1) / kPackRows;
  pi->group_bytes = static_cast<size_t>(pi->in / info(W.type).block_size) * block_bytes;
  pi->matrix_bytes = static_cast<size_t>(groups) * pi->group_bytes;
  pi->total = pi->matrix_bytes * static_cast<size_t>(pi->n_mats);
  if (pi->total == 0) return nullptr;
  return pi;
}

// Packs groups [b, e) (counted over all matrices) of W into l.bytes.
void pack_groups(const TensorView& W, const PackedLayout& l, int64_t b, int64_t e) {
  const int64_t groups = (l.out + kPackRows - 1) / kPackRows;
  for (int64_t gi = b; gi < e; ++gi) {
    const int64_t mat = gi / groups, g = gi % groups;
    const uint8_t* rows[kPackRows];
    for (int r = 0; r < kPackRows; ++r) {
      const int64_t ro = g * kPackRows + r;
      rows[r] = ro < l.out ? W.row(mat * l.out + ro) : nullptr;
    }
    pack_group(W.type, rows, l.in, l.bytes + mat * l.matrix_bytes + g * l.group_bytes);
  }
}

int64_t all_groups(const PackedLayout& l) { return (l.out + kPackRows - 1) / kPackRows * l.n_mats; }

}  // namespace

Weight prepare_weight(const TensorView& W, const PrepareOptions& o) {
  if (W.data == nullptr) return W;
  auto pi = packed_layout_for(W, o);
  if (!pi) return W;
  pi->bytes = allocate_packed(pi->total);
  const PackedLayout& l = *pi;
  default_pool().parallel_for(all_groups(l), [&](int64_t b, int64_t e, int) { pack_groups(W, l, b, e); });
  if (o.release_source) release_pages(W.data, W.n_bytes());
  TensorView v = W;
  v.data = pi->bytes;
  return WeightAccess::make(std::move(v), std::move(pi));
}

Weight prepare_weight_deferred(const TensorView& W, const PrepareOptions& o) {
  if (W.data == nullptr) return W;
  auto pi = packed_layout_for(W, o);
  if (!pi) return W;
  pi->bytes = allocate_packed(pi->total);
  TensorView v = W;
  v.data = pi->bytes;
  return WeightAccess::make(std::move(v), std::move(pi));
}

void pack_matrix(const Weight& deferred, const TensorView& W, int64_t i2, const PrepareOptions& o) {
  const PackedLayout* l = WeightAccess::layout(deferred);
  if (!l) return;
  if (i2 < 0 || i2 >= l->n_mats || W.ne[0] != l->in || W.ne[1] != l->out || W.type != l->type)
    throw Error("pack_matrix: matrix " + std::to_string(i2) + " of '" + W.name + "' does not match its packed layout");
  const int64_t groups = (l->out + kPackRows - 1) / kPackRows;
  pack_groups(W, *l, i2 * groups, (i2 + 1) * groups);
  const size_t bytes = W.n_bytes() / static_cast<size_t>(W.ne[2] * W.ne[3]);
  if (o.release_source) release_pages(static_cast<const uint8_t*>(W.data) + static_cast<size_t>(i2) * bytes, bytes);
}

size_t prepared_bytes(const TensorView& W, const PrepareOptions& o) {
  auto pi = packed_layout_for(W, o);
  return pi ? pi->total : W.n_bytes();
}

Weight prepare_weight_into(const TensorView& W, const PrepareOptions& o, uint8_t* dst) {
  TensorView v = W;
  v.data = dst;
  auto pi = packed_layout_for(W, o);
  if (!pi) {
    std::memcpy(dst, W.data, W.n_bytes());
    return v;
  }
  pi->bytes = dst;
  pi->owns_bytes = false;
  pack_groups(W, *pi, 0, all_groups(*pi));
  return WeightAccess::make(std::move(v), std::move(pi));
}

}  // namespace owl::kernels
