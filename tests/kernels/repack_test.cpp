// Weights repacked by prepare_weight (8 interleaved rows), matmul_many and matmul_swiglu:
// packed layouts round-trip bit for bit, packed products agree with the scalar reference on the
// original weights (2e-6 of the output scale) for odd shapes, 3-D expert slices and any thread
// count, and the multi-weight calls equal separate matmuls bit for bit.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"
#include "tensor/quants.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using test::make_weights;
using test::max_abs;
using test::random_x;
using test::run_matmul;
using test::Weights;

const DType kPackedTypes[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0};

int64_t block_elems(DType t) { return info(t).block_size; }

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

TEST(Repack, PreparedAgreesWithReferenceOnOddShapes) {
  ASSERT_TRUE(kernels::fast_paths_available());
  for (DType t : kPackedTypes) {
    for (int64_t out : {1, 7, 8, 37}) {  // rows not a multiple of the 8-row groups
      const int64_t in = block_elems(t) * 3;
      Weights w = make_weights(t, in, out, 31 + static_cast<uint32_t>(out));
      kernels::PreparedWeight p = kernels::prepare_weight(w.view);
      ASSERT_TRUE(p.storage) << dtype_name(t);
      ASSERT_TRUE(kernels::is_prepared(p.view));
      EXPECT_NE(p.view.data, w.view.data);
      for (int64_t n_rows : {1, 2, 3, 4, 5, 9, 70}) {  // 70: more than one activation block of 64
        auto x = random_x(in * n_rows, 200 + static_cast<uint32_t>(n_rows));
        auto ref = run_matmul(w.view, x, n_rows, false);
        auto fast = run_matmul(p.view, x, n_rows, true);
        auto rebuilt = run_matmul(p.view, x, n_rows, false);  // packed rows rebuilt for the reference
        const double scale = max_abs(ref);
        for (size_t i = 0; i < ref.size(); ++i) {
          ASSERT_NEAR(fast[i], ref[i], 2e-6 * scale) << dtype_name(t) << " out " << out << " rows " << n_rows << " at " << i;
          ASSERT_EQ(rebuilt[i], ref[i]) << dtype_name(t) << " at " << i;
        }
      }
    }
  }
}

// The Qwen3-0.6B shapes the model uses, one decode row and a prefill tile.
TEST(Repack, PreparedAgreesAtModelShapes) {
  for (DType t : kPackedTypes) {
    Weights w = make_weights(t, 1024, 96, 41);
    kernels::PreparedWeight p = kernels::prepare_weight(w.view);
    for (int64_t n_rows : {1, 17}) {
      auto x = random_x(1024 * n_rows, 5);
      auto ref = run_matmul(w.view, x, n_rows, false), fast = run_matmul(p.view, x, n_rows, true);
      const double scale = max_abs(ref);
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(fast[i] - ref[i]) / scale);
      EXPECT_LE(worst, 2e-6) << dtype_name(t) << " rows " << n_rows;
    }
  }
}

// The AVX-512 VNNI kernels sum the same exact integers as the AVX2 ones and apply the block
// scales in the same float order: their results must be equal bit for bit, for decode (1 row)
// and prefill tiles of 1-4 rows. (Where the CPU lacks VNNI both runs take the AVX2 kernels.)
TEST(Repack, VnniEqualsAvx2BitForBit) {
  ASSERT_TRUE(kernels::fast_paths_available());
  std::printf("AVX-512 VNNI kernels %s on this CPU\n", kernels::vnni_available() ? "present" : "absent");
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 8, out = 37;
    Weights w = make_weights(t, in, out, 77);
    kernels::PreparedWeight p = kernels::prepare_weight(w.view);
    for (int64_t n_rows : {1, 2, 3, 4, 9}) {
      auto x = random_x(in * n_rows, 300 + static_cast<uint32_t>(n_rows));
      for (int64_t i = 0; i < in * n_rows; i += 97) x[static_cast<size_t>(i)] *= 40.0f;  // outliers: full int8 range
      kernels::set_vnni(false);
      EXPECT_EQ(std::string(kernels::kernel_set()), "avx2");
      auto avx2 = run_matmul(p.view, x, n_rows, true);
      kernels::set_vnni(true);
      EXPECT_EQ(std::string(kernels::kernel_set()), kernels::vnni_available() ? "avx2+avx512vnni" : "avx2");
      auto vnni = run_matmul(p.view, x, n_rows, true);
      EXPECT_EQ(0, std::memcmp(avx2.data(), vnni.data(), avx2.size() * sizeof(float)))
          << dtype_name(t) << " rows " << n_rows;
    }
  }
}

TEST(Repack, BitIdenticalForAnyThreadCount) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 4, out = 301;
    Weights w = make_weights(t, in, out, 3);
    kernels::PreparedWeight p = kernels::prepare_weight(w.view);
    for (int64_t n_rows : {1, 7}) {
      auto x = random_x(in * n_rows, 4);
      std::vector<std::vector<float>> results;
      for (int threads : {1, 2, 3}) {
        set_default_threads(threads);
        results.push_back(run_matmul(p.view, x, n_rows, true));
      }
      for (size_t k = 1; k < results.size(); ++k)
        EXPECT_EQ(0, std::memcmp(results[0].data(), results[k].data(), results[0].size() * 4))
            << dtype_name(t) << " rows " << n_rows << " threads " << k + 1;
    }
  }
  set_default_threads(2);
}

TEST(Repack, ExpertSlicesOfAPreparedStack) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 2, out = 13, n_exp = 3;
    Weights w = make_weights(t, in, out, 8, n_exp);
    kernels::PreparedWeight p = kernels::prepare_weight(w.view);
    ASSERT_TRUE(p.storage);
    EXPECT_EQ(p.view.ne[2], n_exp);
    auto x = random_x(in * 2, 12);
    for (int64_t e = 0; e < n_exp; ++e) {
      auto ref = run_matmul(kernels::matrix_slice(w.view, e), x, 2, false);
      auto fast = run_matmul(kernels::matrix_slice(p.view, e), x, 2, true);
      const double scale = max_abs(ref);
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(fast[i], ref[i], 2e-6 * scale) << dtype_name(t) << " expert " << e << " at " << i;
    }
  }
}

// A tied embedding reads its rows from the prepared copy: the same floats as from the original.
TEST(Repack, RowsDequantiseFromThePreparedCopy) {
  for (DType t : kPackedTypes) {
    const int64_t in = block_elems(t) * 2;
    Weights w = make_weights(t, in, 11, 13, 2);  // 2 matrices of 11 rows: 22 rows in all
    kernels::PreparedWeight p = kernels::prepare_weight(w.view);
    ASSERT_TRUE(p.storage);
    std::vector<float> a(static_cast<size_t>(in)), b(static_cast<size_t>(in));
    for (int64_t r = 0; r < 22; ++r) {
      kernels::dequantize_row(t, w.view.row(r), a.data(), in);
      kernels::dequantize_weight_row(p.view, r, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << dtype_name(t) << " row " << r;
    }
    EXPECT_THROW(kernels::dequantize_weight_row(p.view, 22, b.data()), Error);
  }
}

TEST(Repack, OtherTypesAndRepackOffGivePlainViews) {
  Weights q5 = make_weights(DType::Q4_0, 64, 9, 1);  // no packed layout
  kernels::PreparedWeight p = kernels::prepare_weight(q5.view);
  EXPECT_FALSE(p.storage);
  EXPECT_EQ(p.view.data, q5.view.data);
  Weights q4 = make_weights(DType::Q4_K, 256, 9, 1);
  kernels::set_repack(false);
  p = kernels::prepare_weight(q4.view);
  kernels::set_repack(true);
  EXPECT_FALSE(p.storage);
  EXPECT_EQ(p.view.data, q4.view.data);
  EXPECT_FALSE(kernels::is_prepared(q4.view));
}

TEST(Repack, FreedStorageIsForgotten) {
  Weights w = make_weights(DType::Q8_0, 64, 16, 2);
  kernels::PreparedWeight p = kernels::prepare_weight(w.view);
  const TensorView v = p.view;
  ASSERT_TRUE(kernels::is_prepared(v));
  p.storage.reset();
  EXPECT_FALSE(kernels::is_prepared(v));
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
  auto before = run_matmul(fv, x, 1, true);
  kernels::PreparedWeight p = kernels::prepare_weight(fv, /*release_source=*/true);
  ASSERT_TRUE(p.storage);
  EXPECT_EQ(0, std::memcmp(map, w.bytes.data(), w.bytes.size()));
  auto after = run_matmul(fv, x, 1, true);
  EXPECT_EQ(0, std::memcmp(before.data(), after.data(), before.size() * 4));
  munmap(map, w.bytes.size());
  close(fd);
  unlink(path);
}

TEST(MatmulMany, EqualsSeparateMatmulsBitForBit) {
  const int64_t in = 512;
  Weights q = make_weights(DType::Q4_K, in, 40, 1), k = make_weights(DType::Q6_K, in, 24, 2),
          v = make_weights(DType::Q8_0, in, 16, 3), f = make_weights(DType::F32, in, 5, 4);
  kernels::PreparedWeight pq = kernels::prepare_weight(q.view);
  for (int threads : {1, 2, 3}) {
    set_default_threads(threads);
    for (int64_t n_rows : {1, 6}) {
      auto x = random_x(in * n_rows, 9);
      const TensorView* Ws[] = {&pq.view, &k.view, &v.view, &f.view};
      std::vector<std::vector<float>> ys(4);
      float* Ys[4];
      for (int i = 0; i < 4; ++i) {
        ys[i].assign(static_cast<size_t>(n_rows * Ws[i]->ne[1]), NAN);
        Ys[i] = ys[i].data();
      }
      kernels::matmul_many(Ws, x.data(), n_rows, Ys);
      for (int i = 0; i < 4; ++i) {
        auto one = run_matmul(*Ws[i], x, n_rows, true);
        EXPECT_EQ(0, std::memcmp(one.data(), ys[i].data(), one.size() * 4))
            << "weight " << i << " rows " << n_rows << " threads " << threads;
      }
    }
  }
  set_default_threads(2);
}

TEST(MatmulMany, RejectsWeightsOfDifferentRowLengths) {
  Weights a = make_weights(DType::Q8_0, 64, 4, 1), b = make_weights(DType::Q8_0, 96, 4, 2);
  std::vector<float> x(96), ya(4), yb(4);
  const TensorView* Ws[] = {&a.view, &b.view};
  float* Ys[] = {ya.data(), yb.data()};
  EXPECT_THROW(kernels::matmul_many(Ws, x.data(), 1, Ys), Error);
  float* one[] = {ya.data()};
  EXPECT_THROW(kernels::matmul_many(Ws, x.data(), 1, one), Error);
}

TEST(MatmulSwiglu, EqualsMatmulsThenSwigluBitForBit) {
  for (bool prepared : {false, true}) {
    const int64_t in = 256, out = 45;  // 45: a partial tile and a tail that is not a multiple of 8
    Weights g = make_weights(DType::Q4_K, in, out, 7), u = make_weights(DType::Q4_K, in, out, 8);
    kernels::PreparedWeight pg = kernels::prepare_weight(g.view), pu = kernels::prepare_weight(u.view);
    const TensorView& G = prepared ? pg.view : g.view;
    const TensorView& U = prepared ? pu.view : u.view;
    for (int64_t n_rows : {1, 5, 70}) {
      auto x = random_x(in * n_rows, 10);
      auto yg = run_matmul(G, x, n_rows, true), yu = run_matmul(U, x, n_rows, true);
      std::vector<float> want(yg.size()), got(yg.size(), NAN);
      for (int64_t r = 0; r < n_rows; ++r)
        kernels::swiglu(yg.data() + r * out, yu.data() + r * out, want.data() + r * out, out);
      kernels::matmul_swiglu(G, U, x.data(), n_rows, got.data());
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4)) << "rows " << n_rows << " prepared " << prepared;
    }
  }
}

}  // namespace
}  // namespace owl
