// Internal to the kernels: weights repacked at load time (prepare_weight) into groups of 8 rows
// interleaved 4 bytes at a time, so one 256-bit register holds 4 weights of each of 8 rows.
// A dot product step broadcasts 4 activation bytes to all lanes and leaves one int32 per weight
// row: block scales then apply to 8 rows with one float multiply-add, and decode needs no
// horizontal sums. Every quant value, scale and fp16 factor is kept exactly, so the original
// rows can be rebuilt (unpack_row) bit for bit.
//
// Layout of one 8-row group, block by block (nb = in / block elements; rows past `out` are zero).
// A packed block is as large as the 8 rows' blocks (kPackedBytes<Block> = 8 x sizeof(Block)):
//   Q4_K (8 x 144 bytes per 256 elements): fp16 d[8], fp16 dmin[8], the rows' 12 bytes of packed
//     6-bit scales and mins as sc[3][8 r][4] (row r's bytes 4t .. 4t + 4 at t),
//     qs[4 j][8 g][8 r][4] = row r's qs[32 j + 4 g .. + 4).
//   Q6_K (8 x 210 bytes per 256): fp16 d[8], s8 scales[8][8][2] (pair k, row r: scales 2k, 2k+1),
//     ql[4 c][8 g][8 r][4]: byte i = low 4 bits of q[64c+4g+i] | low 4 bits of q[64c+32+4g+i] << 4,
//     qh[4 c][4 h][8 r][4]: byte i = the high 2 bits of q[64c+8h+i], q[64c+32+8h+i], q[64c+8h+4+i],
//     q[64c+32+8h+4+i] at bits 0, 2, 4, 6 (q: the 6-bit unsigned levels, value = q - 32).
//   Q8_0 (8 x 34 bytes per 32): fp16 d[8], qs[8 g][8 r][4] = row r's qs[4 g .. + 4).
//   Q5_0 (8 x 22 bytes per 32): fp16 d[8], u32 hbits[8 r] (byte k, bit g: the high bit of element
//     4g + k; bit 4 + g: of element 16 + 4g + k), qs[4 g][8 r][4] = row r's qs[4 g .. + 4) (low
//     nibbles: elements 4g + k, high nibbles: 16 + 4g + k).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/kernels.h"
#include "kernels/type_traits.h"
#include "tensor/dtype.h"
#include "tensor/quants.h"

namespace owl::kernels {

// The packed one-row kernels' software prefetch (repack_simd.h): each block asks for its lines
// kPackedPrefetchBytes ahead, into L1 (prefetcht0, locality 3) or L2 only (prefetcht1, 2). On the
// Xeon (Sapphire/Emerald Rapids class) dev box, L2 streamed Q6_K 3-8% and Q8_0 3-9% faster from
// DRAM on one core, Q4_K 1-4% slower; distances of 1-16 KiB measured the same. Exactly one
// prefetch per line and nothing ahead of it: a second level, the same line twice, even one far
// prefetch per 4 KiB page lost 25-47%, one per two lines 4-24% (docs/BENCHMARKS.md, branch
// gemv4). Here so that bench_kernels' load-only twin (BM_GemvAccess) asks for the same lines.
constexpr int kPackedPrefetchBytes = 4096;
constexpr int packed_prefetch_locality(DType t) { return t == DType::Q6_K || t == DType::Q8_0 ? 2 : 3; }

// y[k * ld + r] = dot(weight row r of the group, activation row k) for k < m (1 <= m <= 4),
// r < valid (1 <= valid <= 8). xa: activations converted to the type's vec-dot type (Q8_K for
// Q4_K/Q6_K, Q8_0 with float scales and sums for Q8_0 and Q5_0), rows x_stride bytes apart.
using PackedFn = void (*)(int64_t in, const uint8_t* group, const uint8_t* xa, size_t x_stride, int m, float* y,
                          int64_t ld, int valid);
PackedFn packed_kernel_avx2(DType t);        // null where none
PackedFn packed_kernel_avx512vnni(DType t);  // null where none; same results as AVX2, bit for bit

// Prefill tiles on 512-bit registers: y[k * ld + r] for k < m (1 <= m <= kWideM) and r < valid
// (1 <= valid <= 16), rows 0-7 from the group at `group`, rows 8-15 from the next one, gb bytes
// on (gb = 0 when valid <= 8: the one group is read twice, and only its rows are stored). Same
// results as the 8-row kernels, bit for bit.
// xw: the kWideM activation rows of the tile in the wide layout below (rows past m unused).
constexpr int kWideM = 8;
using WidePackedFn = void (*)(int64_t in, const uint8_t* group, size_t gb, const uint8_t* xw, int m, float* y,
                              int64_t ld, int valid);
WidePackedFn wide_packed_kernel_avx512vnni(DType t);  // null where none
// The same with the Q8_0 kernel's activation rows 0-3 taken from one load by shuffles (shuffle:
// what the one-argument form picks on AMD) or each broadcast from memory (on Intel); both give
// the same bits (tests run the one this CPU does not pick).
WidePackedFn wide_packed_kernel_avx512vnni(DType t, bool shuffle);

// The wide kernels' activations: kWideM rows interleaved block by block, so that one pointer
// with constant offsets reaches every row's 4 bytes (the broadcasts of a tile need no per-row
// address arithmetic and no spilled row pointers), and each row's block constants sit together.
// One interleaved block of act type Q8_0 (per 32 elements) or Q8_K (per 256):
//   Q8_0: qs[8 g][kWideM m][4] (row m's qs[4g .. 4g + 4)), float d[kWideM], int32 s[kWideM] =
//         -128 * the sum of row m's 32 quants.
//   Q8_K: qs[64 g][kWideM m][4] (row m's qs[4g ..)), float d[kWideM], int16 bsums[kWideM][16].
// Rows are numbered from a multiple of kWideM: rows [8k, 8k + 8) of a matrix form its tile k,
// wide_act_tile_bytes(act, in) bytes on from tile k - 1.
size_t wide_act_block_bytes(DType act);  // 0: no wide layout for act
inline size_t wide_act_tile_bytes(DType act, int64_t in) {
  return static_cast<size_t>(in / (act == DType::Q8_0 ? kQK : kQKK)) * wide_act_block_bytes(act);
}
// Writes activation row `row` (converted to act: q8_0_act_row_bytes' layout of vec_dot.h for
// Q8_0, Q8_K blocks otherwise) into its place m (0 <= m < kWideM) of the tile at `tile`.
void wide_act_put_row(DType act, const uint8_t* row, int64_t in, int m, uint8_t* tile);

// A packed weight's copy: n_mats matrices of `out` rows (padded to groups), the kernel chosen for
// it at prepare time, and the storage (unmapped when the last Weight sharing it goes).
struct PackedLayout {
  DType type = DType::F32;  // the original weight type
  int64_t in = 0, out = 0, n_mats = 1;
  size_t group_bytes = 0;   // one group of 8 rows, all blocks
  size_t matrix_bytes = 0;  // one matrix (ceil(out / 8) groups)
  Isa isa = Isa::Avx2;
  PackedFn fn = nullptr;
  WidePackedFn wide_fn = nullptr;  // for tiles of more than 4 activation rows; null: fn only
  uint8_t* bytes = nullptr;        // n_mats * matrix_bytes
  bool owns_bytes = true;          // false: the caller's storage (prepare_weight_into)
  size_t total = 0;
  PackedLayout() = default;
  PackedLayout(const PackedLayout&) = delete;
  PackedLayout& operator=(const PackedLayout&) = delete;
  ~PackedLayout();
};

// The kernels' access to a Weight's bytes and layout.
struct WeightAccess {
  static const TensorView& view(const Weight& w) { return w.view_; }
  static const PackedLayout* layout(const Weight& w) { return w.layout_.get(); }
  static const std::shared_ptr<const PackedLayout>& shared_layout(const Weight& w) { return w.layout_; }
  static Weight make(TensorView v, std::shared_ptr<const PackedLayout> l) {
    Weight w(std::move(v));
    w.layout_ = std::move(l);
    return w;
  }
};

// Packs rows[0..8) (nullptr: a padding row of zeros) of type t, in elements each, into dst.
void pack_group(DType t, const uint8_t* const rows[kPackRows], int64_t in, uint8_t* dst);
// Rebuilds row r of a packed group in t's original block format.
void unpack_row(DType t, const uint8_t* group, int r, int64_t in, uint8_t* dst);

}  // namespace owl::kernels
