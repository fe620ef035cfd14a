// The paged KV cache: rows land where KVSpan says, sequences grow page by page
// without moving, removal recycles pages, limits are clear errors, and an MLA
// layout (v_width 0) reads its values from the key rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "kernels/kernels.h"
#include "runtime/kv_cache.h"
#include "tensor/quantize_kv.h"
#include "tensor/quants.h"

namespace owl {
namespace {

float read(const kernels::KVSpan& s, int64_t t, int64_t i) {
  const auto* page = static_cast<const uint8_t*>(s.pages[t / s.page_tokens]);
  const int64_t idx = (t % s.page_tokens) * s.row_stride + i;
  if (s.type == DType::F16) return kernels::fp16_to_fp32(reinterpret_cast<const uint16_t*>(page)[idx]);
  return reinterpret_cast<const float*>(page)[idx];
}

KVCacheOptions options(DType t, int64_t n_ctx, int64_t n_seq, int64_t page) {
  KVCacheOptions o;
  o.type = t;
  o.n_ctx = n_ctx;
  o.n_seq_max = n_seq;
  o.page_tokens = page;
  return o;
}

TEST(KVCache, RowsAreStoredPerLayerAndSequence) {
  for (DType t : {DType::F32, DType::F16}) {
    KVCache kv({{6, 4}, {2, 8}}, options(t, 40, 2, 4));
    kv.grow(0, 10);
    kv.grow(9, 3);
    auto value = [](int layer, int seq, int64_t pos, int i, bool v) {
      return float(layer * 1000 + seq * 100 + pos) + (v ? 0.5f : 0.25f) + float(i) / 8;
    };
    for (int layer = 0; layer < 2; ++layer)
      for (int seq : {0, 9})
        for (int64_t pos = 0; pos < kv.seq_length(seq); ++pos) {
          float k[8], v[8];
          for (int i = 0; i < 8; ++i) k[i] = value(layer, seq, pos, i, false), v[i] = value(layer, seq, pos, i, true);
          kv.store(layer, seq, pos, k, v);
        }
    for (int layer = 0; layer < 2; ++layer)
      for (int seq : {0, 9}) {
        auto ks = kv.keys(layer, seq), vs = kv.values(layer, seq);
        EXPECT_EQ(ks.row_stride, layer == 0 ? 6 : 2);
        EXPECT_EQ(vs.row_stride, layer == 0 ? 4 : 8);
        for (int64_t pos = 0; pos < kv.seq_length(seq); ++pos)
          for (int i = 0; i < 8; ++i) {
            // F16 spacing is 1.0 in [1024, 2048): rounding errs by at most 0.5 there (F32 is exact).
            const double tol = t == DType::F16 ? 0.5 : 0;
            if (i < ks.row_stride) {
              EXPECT_NEAR(read(ks, pos, i), value(layer, seq, pos, i, false), tol) << pos;
            }
            if (i < vs.row_stride) {
              EXPECT_NEAR(read(vs, pos, i), value(layer, seq, pos, i, true), tol) << pos;
            }
          }
      }
  }
}

TEST(KVCache, GrowingKeepsEarlierPagesInPlace) {
  KVCache kv({{4, 4}}, options(DType::F32, 64, 1, 8));
  kv.grow(1, 5);
  const void* first = kv.keys(0, 1).pages[0];
  float row[4] = {1, 2, 3, 4};
  kv.store(0, 1, 4, row, row);
  kv.grow(1, 50);
  EXPECT_EQ(kv.keys(0, 1).pages[0], first);
  EXPECT_EQ(read(kv.keys(0, 1), 4, 2), 3.0f);
  EXPECT_EQ(kv.pages_in_use(), 7);
  kv.truncate(1, 9);
  EXPECT_EQ(kv.seq_length(1), 9);
  EXPECT_EQ(kv.pages_in_use(), 2);
}

TEST(KVCache, RemovedSequencesReturnTheirPages) {
  KVCache kv({{4, 4}}, options(DType::F16, 32, 2, 16));  // a pool of 4 pages
  kv.grow(0, 32);
  kv.grow(1, 32);
  EXPECT_EQ(kv.pages_in_use(), 4);
  EXPECT_THROW(kv.grow(2, 1), Error);  // pool exhausted
  kv.remove(0);
  EXPECT_EQ(kv.seq_length(0), 0);
  EXPECT_EQ(kv.pages_in_use(), 2);
  kv.grow(2, 20);  // reuses the freed pages, allocates nothing new
  EXPECT_EQ(kv.pages_in_use(), 4);
  EXPECT_EQ(kv.bytes_allocated(), 4u * 2 * 16 * 4 * 2);
}

TEST(KVCache, ContextLimitIsAClearError) {
  KVCache kv({{4, 4}}, options(DType::F32, 100, 1, 32));
  try {
    kv.grow(0, 101);
    FAIL() << "grew past the context";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("101 tokens does not fit the context of 100 tokens"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(kv.keys(0, 5), Error);  // unknown sequence
  float row[4] = {};
  kv.grow(0, 2);
  EXPECT_THROW(kv.store(0, 0, 2, row, row), Error);  // position not reserved
}

TEST(KVCache, BadOptionsAreErrors) {
  EXPECT_THROW(KVCache({{4, 4}}, options(DType::Q8_0, 10, 1, 4)), UsageError);  // rows of 4: no 32-value blocks
  EXPECT_THROW(KVCache({{64, 48}}, options(DType::Q4_0, 10, 1, 4)), UsageError);
  EXPECT_THROW(KVCache({{64, 64}}, options(DType::BF16, 10, 1, 4)), Error);
  EXPECT_THROW(KVCache({{4, 4}}, options(DType::F32, 0, 1, 4)), Error);
  EXPECT_EQ(kv_type_from_name("f16"), DType::F16);
  EXPECT_EQ(kv_type_from_name("q8_0"), DType::Q8_0);
  EXPECT_EQ(kv_type_from_name("q4_0"), DType::Q4_0);
  EXPECT_THROW(kv_type_from_name("q8"), UsageError);
}

TEST(KVCache, QuantisedRowsHoldTheirBlocks) {
  // Q8_0 / Q4_0 pages hold each row as quantize_kv_row makes it, at the byte offset KVSpan names.
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(t));
    KVCache kv({{64, 32}, {96, 64}}, options(t, 16, 2, 4));
    kv.grow(1, 7);
    std::vector<float> k(96), v(64);
    for (int64_t pos = 0; pos < 7; ++pos) {
      for (size_t i = 0; i < k.size(); ++i) k[i] = std::sin(0.1f * static_cast<float>(i + 7 * pos));
      for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(0.3f * static_cast<float>(i + pos));
      kv.store(1, 1, pos, k.data(), v.data());
    }
    auto ks = kv.keys(1, 1), vs = kv.values(1, 1);
    EXPECT_EQ(ks.type, t);
    EXPECT_EQ(ks.row_stride, 96);
    std::vector<uint8_t> want(kernels::kv_bytes(t, 96));
    // The last stored position (6): page 1, row 2.
    quantize_kv_row(t, k.data(), want.data(), 96);
    EXPECT_EQ(0, std::memcmp(kernels::kv_row(ks, 6), want.data(), want.size()));
    quantize_kv_row(t, v.data(), want.data(), 64);
    EXPECT_EQ(0, std::memcmp(kernels::kv_row(vs, 6), want.data(), kernels::kv_bytes(t, 64)));
    // 34 (Q8_0) or 18 (Q4_0) bytes per 32 values.
    EXPECT_EQ(kernels::kv_bytes(t, 96), t == DType::Q8_0 ? 3u * 34 : 3u * 18);
  }
}

TEST(KVCache, MlaLayoutAliasesValuesToKeysForAttention) {
  // One latent row per token (v_width 0): attention reads values from the key pages.
  KVCache kv({{3, 0}}, options(DType::F32, 8, 1, 2));
  kv.grow(0, 3);
  const float rows[3][3] = {{1, 0, 10}, {0, 1, 20}, {1, 1, 30}};
  for (int t = 0; t < 3; ++t) kv.store(0, 0, t, rows[t], nullptr);
  auto ks = kv.keys(0, 0), vs = kv.values(0, 0);
  EXPECT_EQ(vs.pages, ks.pages);
  // q = (0, 0, 0): uniform weights -> the mean of the first 2 value columns.
  const float q[3] = {0, 0, 0};
  float out[2];
  kernels::attention(q, 1, 1, 3, 2, ks, vs, 0, 3, 1.0f, out);
  EXPECT_NEAR(out[0], 2.0f / 3, 1e-6);
  EXPECT_NEAR(out[1], 2.0f / 3, 1e-6);
}

// The choices of an n > 1 request start from a copy of the first one's prompt.
TEST(KVCache, CopyPrefixGivesAnotherSequenceTheSameRows) {
  KVCache kv({{4, 4}, {8, 0}}, options(DType::F32, 40, 3, 4));
  kv.grow(0, 10);
  for (int layer = 0; layer < 2; ++layer)
    for (int64_t pos = 0; pos < 10; ++pos) {
      float k[8], v[8];
      for (int i = 0; i < 8; ++i) k[i] = float(layer * 100 + pos) + float(i) / 8, v[i] = -k[i];
      kv.store(layer, 0, pos, k, v);
    }
  kv.grow(2, 30);  // whatever the target held goes
  kv.copy_prefix(0, 2, 7);
  EXPECT_EQ(kv.seq_length(2), 7);
  for (int layer = 0; layer < 2; ++layer) {
    auto a = kv.keys(layer, 0), b = kv.keys(layer, 2);
    auto va = kv.values(layer, 0), vb = kv.values(layer, 2);
    for (int64_t pos = 0; pos < 7; ++pos)
      for (int i = 0; i < a.row_stride; ++i) {
        EXPECT_EQ(read(a, pos, i), read(b, pos, i));
        EXPECT_EQ(read(va, pos, i % va.row_stride), read(vb, pos, i % vb.row_stride));
      }
  }
  // The copy is the target's own: writing it leaves the source as it was.
  float k[8] = {}, v[8] = {};
  kv.store(0, 2, 3, k, v);
  EXPECT_EQ(read(kv.keys(0, 0), 3, 1), 3.125f);
  EXPECT_THROW(kv.copy_prefix(0, 1, 11), Error);
  EXPECT_THROW(kv.copy_prefix(0, 0, 5), Error);
}

}  // namespace
}  // namespace owl
