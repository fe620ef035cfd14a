// Weights repacked by prepare_weight (8 interleaved rows), matmul_many and matmul_swiglu:
// packed layouts round-trip bit for bit, packed products (for each ISA this CPU has) agree with
// the scalar reference on the original weights (2e-6 of the output scale) for odd shapes, 3-D
// expert slices and any thread count, the ISAs agree bit for bit, and the multi-weight calls
// equal separate matmuls bit for bit.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"
#include "tensor/quants.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using kernels::Isa;
using test::make_weights;
using test::max_abs;
using test::prepare_for;
using test::random_x;
using test::run_matmul;
using test::Weights;

// The tests of packed weights, once per fast ISA of this CPU (the weights are prepared for it).
class RepackIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, RepackIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RepackIsa);

const DType kPackedTypes[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0};

int64_t block_elems(DType t) { return info(t).block_size; }

// A packed weight is no TensorView: it neither converts to one nor has row() (its bytes are not
// in the GGUF block layout).
template <class W>
concept HasRows = requires(const W& w) {
  w.row(0);
};
static_assert(HasRows<TensorView> && !HasRows<kernels::Weight>);
static_assert(!std::is_convertible_v<kernels::Weight, TensorView> &&
              !std::is_constructible_v<TensorView, kernels::Weight>);

TEST(Repack, PackedGroupsRebuildTheOriginalRowsExactly) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 3, out = 8;
    Weights w = make_weights(t, in, out, 21);
    const uint8_t* rows[kernels::kPackRows];
    for (int r = 0; r < 8; ++r) rows[r] = w.view.row(r);
    std::vector<uint8_t> group(kernels::packed_block_bytes(t) * 3), back(row_bytes(t, in));
    kernels::pack_group(t, rows, in, group.data());
    for (int r = 0; r < 8; ++r) {
      kernels::unpack_row(t, group.data(), r, in, back.data());
      EXPECT_EQ(0, std::memcmp(back.data(), w.view.row(r), back.size())) << dtype_name(t) << " row " << r;
    }
  }
}

TEST_P(RepackIsa, PreparedAgreesWithReferenceOnOddShapes) {
  for (DType t : kPackedTypes) {
    for (int64_t out : {1, 7, 8, 37, 45}) {  // rows not a multiple of the 8-row (16 with AVX-512) tiles
      const int64_t in = block_elems(t) * 3;
      Weights w = make_weights(t, in, out, 31 + static_cast<uint32_t>(out));
      const kernels::Weight p = prepare_for(w.view, GetParam());
      ASSERT_TRUE(p.packed()) << dtype_name(t);
      EXPECT_EQ(p.isa(), GetParam());
      EXPECT_EQ(p.type(), t);
      EXPECT_EQ(p.ne(), w.view.ne);
      for (int64_t n_rows : {1, 2, 3, 4, 5, 9, 70}) {  // 70: more than one activation block of 64
        auto x = random_x(in * n_rows, 200 + static_cast<uint32_t>(n_rows));
        auto ref = run_matmul(w.view, x, n_rows, Isa::Scalar);
        auto fast = run_matmul(p, x, n_rows, GetParam());
        auto fast_default_scalar = run_matmul(p, x, n_rows, Isa::Scalar);  // the weight keeps its kernels
        const double scale = max_abs(ref);
        for (size_t i = 0; i < ref.size(); ++i)
          ASSERT_NEAR(fast[i], ref[i], 2e-6 * scale)
              << dtype_name(t) << " out " << out << " rows " << n_rows << " at " << i;
        EXPECT_EQ(0, std::memcmp(fast.data(), fast_default_scalar.data(), fast.size() * 4)) << dtype_name(t);
      }
    }
  }
}

// The Qwen3-0.6B shapes the model uses, one decode row and a prefill tile.
TEST_P(RepackIsa, PreparedAgreesAtModelShapes) {
  for (DType t : kPackedTypes) {
    Weights w = make_weights(t, 1024, 96, 41);
    const kernels::Weight p = prepare_for(w.view, GetParam());
    for (int64_t n_rows : {1, 17}) {
      auto x = random_x(1024 * n_rows, 5);
      auto ref = run_matmul(w.view, x, n_rows, Isa::Scalar), fast = run_matmul(p, x, n_rows, GetParam());
      const double scale = max_abs(ref);
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(fast[i] - ref[i]) / scale);
      EXPECT_LE(worst, 2e-6) << dtype_name(t) << " rows " << n_rows;
    }
  }
}

// The AVX-512 VNNI kernels sum the same exact integers as the AVX2 ones and apply the block
// scales in the same float order: their results must be equal bit for bit, for decode (1 row),
// prefill tiles of 1-4 rows (256-bit, also in turn up to 16 rows) and of more rows (the 512-bit
// kernels: 16 weight rows x up to 8 activation rows, for row blocks of more than 16, reading the
// wide activation layout; 85 rows end in a block of 21, i.e. a tile of 5; 37 and 45 outputs end
// in tiles of 5 and 13 rows; 65 rows end in an activation block of one row, which the 256-bit
// kernel takes while the other blocks take the wide ones). Skipped where the CPU lacks VNNI.
TEST(Repack, VnniEqualsAvx2BitForBit) {
  ASSERT_TRUE(kernels::fast_paths_available());
  if (kernels::best_isa() < Isa::Avx512Vnni) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  for (DType t : kPackedTypes)
    for (int64_t out : {37, 45}) {
      const int64_t in = block_elems(t) * 8;
      Weights w = make_weights(t, in, out, 77);
      const kernels::Weight pa = prepare_for(w.view, Isa::Avx2), pv = prepare_for(w.view, Isa::Avx512Vnni);
      ASSERT_EQ(pa.isa(), Isa::Avx2);
      ASSERT_EQ(pv.isa(), Isa::Avx512Vnni);
      for (int64_t n_rows : {1, 2, 3, 4, 5, 9, 16, 65, 70, 85}) {
        auto x = random_x(in * n_rows, 300 + static_cast<uint32_t>(n_rows));
        for (int64_t i = 0; i < in * n_rows; i += 97) x[static_cast<size_t>(i)] *= 40.0f;  // outliers: full int8 range
        auto avx2 = run_matmul(pa, x, n_rows, Isa::Avx2);
        auto vnni = run_matmul(pv, x, n_rows, Isa::Avx2);
        EXPECT_EQ(0, std::memcmp(avx2.data(), vnni.data(), avx2.size() * sizeof(float)))
            << dtype_name(t) << " out " << out << " rows " << n_rows;
      }
    }
}

// The wide Q8_0 kernel in both forms (activation rows 0-3 shuffled out of one load, as AMD CPUs
// run it, or every row broadcast from memory, as Intel CPUs do) equals the AVX2 kernel bit for
// bit, whichever form this CPU picks: the other one runs on the same packed bytes.
TEST(Repack, WideQ8_0BothBroadcastFormsEqualAvx2BitForBit) {
  ASSERT_TRUE(kernels::fast_paths_available());
  if (kernels::best_isa() < Isa::Avx512Vnni) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  const int64_t in = 32 * 8, out = 45;
  Weights w = make_weights(DType::Q8_0, in, out, 78);
  const kernels::Weight pa = prepare_for(w.view, Isa::Avx2), pv = prepare_for(w.view, Isa::Avx512Vnni);
  const kernels::PackedLayout& l = *kernels::WeightAccess::layout(pv);
  for (bool shuffle : {false, true}) {
    auto form = std::make_shared<kernels::PackedLayout>();
    form->type = l.type;
    form->in = l.in;
    form->out = l.out;
    form->n_mats = l.n_mats;
    form->group_bytes = l.group_bytes;
    form->matrix_bytes = l.matrix_bytes;
    form->isa = l.isa;
    form->fn = l.fn;
    form->wide_fn = kernels::wide_packed_kernel_avx512vnni(DType::Q8_0, shuffle);
    form->bytes = l.bytes;
    form->owns_bytes = false;  // pv's storage
    form->total = l.total;
    const kernels::Weight pf = kernels::WeightAccess::make(kernels::WeightAccess::view(pv), form);
    for (int64_t n_rows : {9, 70, 85}) {
      auto x = random_x(in * n_rows, 500 + static_cast<uint32_t>(n_rows));
      for (int64_t i = 0; i < in * n_rows; i += 97) x[static_cast<size_t>(i)] *= 40.0f;  // full int8 range
      const auto avx2 = run_matmul(pa, x, n_rows, Isa::Avx2), wide = run_matmul(pf, x, n_rows, Isa::Avx2);
      EXPECT_EQ(0, std::memcmp(avx2.data(), wide.data(), avx2.size() * sizeof(float)))
          << (shuffle ? "shuffles" : "broadcasts") << " rows " << n_rows;
    }
  }
}

TEST_P(RepackIsa, BitIdenticalForAnyThreadCount) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 4, out = 301;
    Weights w = make_weights(t, in, out, 3);
    const kernels::Weight p = prepare_for(w.view, GetParam());
    for (int64_t n_rows : {1, 7}) {
      auto x = random_x(in * n_rows, 4);
      std::vector<std::vector<float>> results;
      for (int threads : {1, 2, 3}) {
        set_default_threads(threads);
        results.push_back(run_matmul(p, x, n_rows, GetParam()));
      }
      for (size_t k = 1; k < results.size(); ++k)
        EXPECT_EQ(0, std::memcmp(results[0].data(), results[k].data(), results[0].size() * 4))
            << dtype_name(t) << " rows " << n_rows << " threads " << k + 1;
    }
  }
  set_default_threads(2);
}

TEST_P(RepackIsa, ExpertSlicesOfAPreparedStack) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 2, out = 13, n_exp = 3;
    Weights w = make_weights(t, in, out, 8, n_exp);
    const kernels::Weight p = prepare_for(w.view, GetParam());
    ASSERT_TRUE(p.packed());
    EXPECT_EQ(p.ne()[2], n_exp);
    auto x = random_x(in * 2, 12);
    for (int64_t e = 0; e < n_exp; ++e) {
      auto ref = run_matmul(kernels::matrix_slice(w.view, e), x, 2, Isa::Scalar);
      const kernels::Weight slice = kernels::matrix_slice(p, e);
      ASSERT_TRUE(slice.packed());
      EXPECT_EQ(slice.ne()[2], 1);
      auto fast = run_matmul(slice, x, 2, GetParam());
      const double scale = max_abs(ref);
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(fast[i], ref[i], 2e-6 * scale) << dtype_name(t) << " expert " << e << " at " << i;
    }
  }
}

// An expert cache prepares one expert at a time into its own slot (prepare_weight_into): the
// products equal those of that expert's slice of the stack prepared whole, bit for bit, for
// packed types and for types that stay plain (copied into the slot).
TEST_P(RepackIsa, OneExpertPreparedIntoCallerStorageEqualsTheStacksSlice) {
  std::vector<DType> types(std::begin(kPackedTypes), std::end(kPackedTypes));
  types.push_back(DType::Q4_1);  // no packed layout: stays plain
  for (DType t : types) {
    const int64_t in = block_elems(t) * 2, out = 13, n_exp = 3;
    Weights w = make_weights(t, in, out, 9, n_exp);
    kernels::PrepareOptions o;
    o.isa = GetParam();
    const kernels::Weight whole = kernels::prepare_weight(w.view, o);
    auto x = random_x(in * 3, 13);
    for (int64_t e = 0; e < n_exp; ++e) {
      const TensorView one = *kernels::matrix_slice(w.view, e).plain();
      const auto want = run_matmul(kernels::matrix_slice(whole, e), x, 3, GetParam());
      const size_t bytes = kernels::prepared_bytes(one, o);
      std::vector<uint8_t> slot(bytes + 1, 0xAB);
      const kernels::Weight mine = kernels::prepare_weight_into(one, o, slot.data());
      EXPECT_EQ(mine.packed(), whole.packed()) << dtype_name(t);
      EXPECT_EQ(slot[bytes], 0xAB) << dtype_name(t) << ": wrote past prepared_bytes";
      std::fill(w.bytes.begin() + static_cast<std::ptrdiff_t>(e * one.n_bytes()),
                w.bytes.begin() + static_cast<std::ptrdiff_t>((e + 1) * one.n_bytes()),
                0);  // the read buffer is reused
      const auto got = run_matmul(mine, x, 3, GetParam());
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
          << dtype_name(t) << " expert " << e;
    }
  }
}

// MoE stacks are packed an expert at a time on first use (prepare_weight_deferred, then
// pack_matrix per expert, in any order): each packed expert's products equal those of the stack
// prepared whole, bit for bit, and the packed bytes are the same; a type without a packed
// layout stays plain and pack_matrix leaves it alone; a mismatched source is refused.
TEST_P(RepackIsa, DeferredStackPackedExpertByExpertEqualsTheWholeStack) {
  std::vector<DType> types(std::begin(kPackedTypes), std::end(kPackedTypes));
  types.push_back(DType::Q4_1);  // no packed layout: stays plain
  for (DType t : types) {
    const int64_t in = block_elems(t) * 2, out = 13, n_exp = 4;
    Weights w = make_weights(t, in, out, 10, n_exp);
    kernels::PrepareOptions o;
    o.isa = GetParam();
    const kernels::Weight whole = kernels::prepare_weight(w.view, o);
    const kernels::Weight lazy = kernels::prepare_weight_deferred(w.view, o);
    ASSERT_EQ(lazy.packed(), whole.packed()) << dtype_name(t);
    auto x = random_x(in * 3, 14);
    for (const int64_t e : {2, 0, 3, 1}) {
      kernels::pack_matrix(lazy, w.view, e, o);
      const auto want = run_matmul(kernels::matrix_slice(whole, e), x, 3, GetParam());
      const auto got = run_matmul(kernels::matrix_slice(lazy, e), x, 3, GetParam());
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
          << dtype_name(t) << " expert " << e;
    }
    if (!whole.packed()) continue;
    const auto* a = kernels::WeightAccess::layout(whole);
    const auto* b = kernels::WeightAccess::layout(lazy);
    ASSERT_EQ(a->total, b->total);
    EXPECT_EQ(0, std::memcmp(a->bytes, b->bytes, a->total)) << dtype_name(t);
    EXPECT_THROW(kernels::pack_matrix(lazy, w.view, n_exp, o), Error);
    Weights other = make_weights(t, in, out + 8, 11, n_exp);
    EXPECT_THROW(kernels::pack_matrix(lazy, other.view, 0, o), Error);
  }
}

// A tied embedding reads its rows from the prepared copy: the same floats as from the original.
TEST(Repack, RowsDequantiseFromThePreparedCopy) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 2;
    Weights w = make_weights(t, in, 11, 13, 2);  // 2 matrices of 11 rows: 22 rows in all
    const kernels::Weight p = kernels::prepare_weight(w.view);
    ASSERT_TRUE(p.packed());
    std::vector<float> a(static_cast<size_t>(in)), b(static_cast<size_t>(in));
    for (int64_t r = 0; r < 22; ++r) {
      kernels::dequantize_row(t, w.view.row(r), a.data(), in);
      kernels::dequantize_weight_row(p, r, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << dtype_name(t) << " row " << r;
    }
    EXPECT_THROW(kernels::dequantize_weight_row(p, 22, b.data()), Error);
    // A slice counts its own rows.
    const kernels::Weight s1 = kernels::matrix_slice(p, 1);
    for (int64_t r = 0; r < 11; ++r) {
      kernels::dequantize_row(t, w.view.row(11 + r), a.data(), in);
      kernels::dequantize_weight_row(s1, r, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << dtype_name(t) << " slice row " << r;
    }
    EXPECT_THROW(kernels::dequantize_weight_row(s1, 11, b.data()), Error);
  }
}

TEST(Repack, OtherTypesRepackOffAndScalarGivePlainWeights) {
  Weights q5 = make_weights(DType::Q4_0, 64, 9, 1);  // no packed layout
  kernels::Weight p = kernels::prepare_weight(q5.view);
  EXPECT_FALSE(p.packed());
  ASSERT_TRUE(p.plain());
  EXPECT_EQ(p.plain()->data, q5.view.data);
  Weights q4 = make_weights(DType::Q4_K, 256, 9, 1);
  kernels::PrepareOptions off;
  off.repack = false;
  p = kernels::prepare_weight(q4.view, off);
  ASSERT_TRUE(p.plain());
  EXPECT_EQ(p.plain()->data, q4.view.data);
  p = prepare_for(q4.view, Isa::Scalar);  // no packed kernels for the reference
  ASSERT_TRUE(p.plain());
  EXPECT_EQ(p.plain()->data, q4.view.data);
  EXPECT_TRUE(prepare_for(q4.view, Isa::Avx2).packed());
  EXPECT_EQ(prepare_for(q4.view, Isa::Avx512Vnni).isa(), kernels::best_isa());  // clamped to the CPU's
}

// Copies and slices share the packed storage, which outlives the weight they came from.
TEST(Repack, SlicesKeepTheStorageAlive) {
  Weights w = make_weights(DType::Q8_0, 64, 16, 2, 2);
  auto x = random_x(64, 3);
  std::vector<float> want, got;
  kernels::Weight slice;
  {
    const kernels::Weight p = kernels::prepare_weight(w.view);
    ASSERT_TRUE(p.packed());
    slice = kernels::matrix_slice(p, 1);
    want = run_matmul(slice, x, 1, kernels::best_isa());
  }
  got = run_matmul(slice, x, 1, kernels::best_isa());
  EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4));
}

// release_source on a read-only file mapping: the original view still reads the file's bytes.
TEST(Repack, ReleasingTheSourceMappingKeepsItReadable) {
  Weights w = make_weights(DType::Q4_K, 512, 64, 6);
  char path[] = "/tmp/owl_repack_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(static_cast<ssize_t>(w.bytes.size()), write(fd, w.bytes.data(), w.bytes.size()));
  void* map = mmap(nullptr, w.bytes.size(), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  TensorView fv = w.view;
  fv.data = map;
  auto x = random_x(512, 3);
  auto before = run_matmul(fv, x, 1, kernels::best_isa());
  kernels::PrepareOptions release;
  release.release_source = true;
  const kernels::Weight p = kernels::prepare_weight(fv, release);
  ASSERT_TRUE(p.packed());
  EXPECT_EQ(0, std::memcmp(map, w.bytes.data(), w.bytes.size()));
  auto after = run_matmul(fv, x, 1, kernels::best_isa());
  EXPECT_EQ(0, std::memcmp(before.data(), after.data(), before.size() * 4));
  munmap(map, w.bytes.size());
  close(fd);
  unlink(path);
}

class MatmulManyIsa : public RepackIsa {};
INSTANTIATE_TEST_SUITE_P(Isa, MatmulManyIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MatmulManyIsa);

TEST_P(MatmulManyIsa, EqualsSeparateMatmulsBitForBit) {
  const int64_t in = 512;
  Weights q = make_weights(DType::Q4_K, in, 40, 1), k = make_weights(DType::Q6_K, in, 24, 2),
          v = make_weights(DType::Q8_0, in, 16, 3), f = make_weights(DType::F32, in, 5, 4);
  const kernels::Weight pq = prepare_for(q.view, GetParam()), pk = k.view, pv = v.view, pf = f.view;
  test::WithIsa scope(GetParam());
  for (int threads : {1, 2, 3}) {
    set_default_threads(threads);
    for (int64_t n_rows : {1, 6}) {
      auto x = random_x(in * n_rows, 9);
      const kernels::Weight* Ws[] = {&pq, &pk, &pv, &pf};
      std::vector<std::vector<float>> ys(4);
      float* Ys[4];
      for (int i = 0; i < 4; ++i) {
        ys[i].assign(static_cast<size_t>(n_rows * Ws[i]->out()), NAN);
        Ys[i] = ys[i].data();
      }
      kernels::matmul_many(Ws, x.data(), n_rows, Ys);
      for (int i = 0; i < 4; ++i) {
        auto one = run_matmul(*Ws[i], x, n_rows, GetParam());
        EXPECT_EQ(0, std::memcmp(one.data(), ys[i].data(), one.size() * 4))
            << "weight " << i << " rows " << n_rows << " threads " << threads;
      }
    }
  }
  set_default_threads(2);
}

// Decode and verify rows (up to 16) are split into "guided" tasks (matmul.cpp split_tasks): long
// first, short last, over all the weights of a call together, as many as the thread count asks.
// Outputs large enough for dozens of uneven tasks that end inside a tile: every row must come
// out as from one thread and one weight.
TEST_P(MatmulManyIsa, GuidedDecodeSplitEqualsOneThreadBitForBit) {
  const int64_t in = 256;
  Weights a = make_weights(DType::Q4_K, in, 4099, 11), b = make_weights(DType::Q6_K, in, 1037, 12),
          c = make_weights(DType::Q8_0, in, 2051, 13), u = make_weights(DType::Q4_K, in, 4099, 14);
  const kernels::Weight pa = prepare_for(a.view, GetParam()), pb = prepare_for(b.view, GetParam()), pc = c.view,
                        pu = prepare_for(u.view, GetParam());
  test::WithIsa scope(GetParam());
  const kernels::Weight* Ws[] = {&pa, &pb, &pc};
  for (int64_t n_rows : {1, 3, 16}) {
    auto x = random_x(in * n_rows, 15 + static_cast<uint32_t>(n_rows));
    set_default_threads(1);
    std::vector<std::vector<float>> want;
    for (const kernels::Weight* w : Ws) want.push_back(run_matmul(*w, x, n_rows, GetParam()));
    std::vector<float> want_swiglu(static_cast<size_t>(n_rows * 4099));
    kernels::matmul_swiglu(pa, pu, x.data(), n_rows, want_swiglu.data());
    for (int threads : {2, 3, 4}) {
      set_default_threads(threads);
      std::vector<std::vector<float>> ys(3);
      float* Ys[3];
      for (int i = 0; i < 3; ++i) {
        ys[i].assign(want[i].size(), NAN);
        Ys[i] = ys[i].data();
      }
      kernels::matmul_many(Ws, x.data(), n_rows, Ys);
      for (int i = 0; i < 3; ++i)
        EXPECT_EQ(0, std::memcmp(want[i].data(), ys[i].data(), want[i].size() * 4))
            << "weight " << i << " rows " << n_rows << " threads " << threads;
      std::vector<float> got(want_swiglu.size(), NAN);
      kernels::matmul_swiglu(pa, pu, x.data(), n_rows, got.data());
      EXPECT_EQ(0, std::memcmp(want_swiglu.data(), got.data(), got.size() * 4))
          << "swiglu rows " << n_rows << " threads " << threads;
    }
  }
  set_default_threads(2);
}

TEST(MatmulMany, RejectsWeightsOfDifferentRowLengths) {
  Weights a = make_weights(DType::Q8_0, 64, 4, 1), b = make_weights(DType::Q8_0, 96, 4, 2);
  std::vector<float> x(96), ya(4), yb(4);
  const kernels::Weight wa = a.view, wb = b.view;
  const kernels::Weight* Ws[] = {&wa, &wb};
  float* Ys[] = {ya.data(), yb.data()};
  EXPECT_THROW(kernels::matmul_many(Ws, x.data(), 1, Ys), Error);
  float* one[] = {ya.data()};
  EXPECT_THROW(kernels::matmul_many(Ws, x.data(), 1, one), Error);
}

TEST(MatmulSwiglu, RejectsGateAndUpOfDifferentRowLengths) {
  Weights g = make_weights(DType::Q8_0, 64, 4, 1), u = make_weights(DType::Q8_0, 96, 4, 2);
  std::vector<float> x(96), y(4);
  try {
    kernels::matmul_swiglu(g.view, u.view, x.data(), 1, y.data());
    FAIL() << "gate and up of different row lengths were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matmul_swiglu: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("same row length"), std::string::npos) << e.what();
  }
}

TEST_P(MatmulManyIsa, SwigluEqualsMatmulsThenSwigluBitForBit) {
  test::WithIsa scope(GetParam());
  for (bool prepared : {false, true}) {
    const int64_t in = 256, out = 45;  // 45: a partial tile and a tail that is not a multiple of 8
    Weights g = make_weights(DType::Q4_K, in, out, 7), u = make_weights(DType::Q4_K, in, out, 8);
    const kernels::Weight G = prepared ? prepare_for(g.view, GetParam()) : kernels::Weight(g.view);
    const kernels::Weight U = prepared ? prepare_for(u.view, GetParam()) : kernels::Weight(u.view);
    for (int64_t n_rows : {1, 5, 70}) {
      auto x = random_x(in * n_rows, 10);
      auto yg = run_matmul(G, x, n_rows, GetParam()), yu = run_matmul(U, x, n_rows, GetParam());
      std::vector<float> want(yg.size()), got(yg.size(), NAN);
      for (int64_t r = 0; r < n_rows; ++r)
        kernels::swiglu(yg.data() + r * out, yu.data() + r * out, want.data() + r * out, out);
      kernels::matmul_swiglu(G, U, x.data(), n_rows, got.data());
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4))
          << "rows " << n_rows << " prepared " << prepared;
    }
  }
}

}  // namespace
}  // namespace owl
