// The memory of packed weight copies (kernels/packed_memory.h): small weights lie one after
// another in shared 2 MiB-aligned chunks (so that huge pages can back them), large ones in
// mappings that start at a 2 MiB boundary and end at their last page; memory is zeroed and
// writable, weights do not overlap, and a chunk is unmapped when its last weight is freed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/packed_memory.h"
#include "mapping_util.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

constexpr uintptr_t kHuge = uintptr_t{2} << 20;

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

TEST(PackedMemory, SmallWeightsFollowEachOtherInAlignedChunks) {
  const int chunks_before = kernels::packed_chunks();
  const size_t bytes = 1100000, step = (bytes + 4095) / 4096 * 4096;
  std::vector<uint8_t*> ps;
  for (int i = 0; i < 4; ++i) {
    uint8_t* p = kernels::allocate_packed(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
    EXPECT_TRUE(all_zero(p, bytes));
    std::memset(p, 0x40 + i, bytes);
    // The next page after the previous weight, or the start of a new chunk (on a huge page boundary).
    if (!ps.empty()) {
      EXPECT_TRUE(p == ps.back() + step || reinterpret_cast<uintptr_t>(p) % kHuge == 0) << i;
    }
    ps.push_back(p);
  }
  for (int i = 0; i < 4; ++i) {  // no weight overwrote another
    EXPECT_EQ(ps[i][0], 0x40 + i);
    EXPECT_EQ(ps[i][bytes - 1], 0x40 + i);
  }
  EXPECT_GE(kernels::packed_chunks(), 1);
  for (uint8_t* p : ps) kernels::free_packed(p, bytes);
  // Chunks opened for these weights went with them; one with other weights' stays.
  EXPECT_EQ(kernels::packed_chunks(), chunks_before);
}

TEST(PackedMemory, ChunkGoesWithItsLastWeight) {
  const int chunks_before = kernels::packed_chunks();
  // Weights of 16 MiB (never written: address space only) until one opens a new chunk.
  const size_t bytes = size_t{16} << 20;
  std::vector<uint8_t*> ps;
  const size_t most = kernels::kPackedChunkBytes / bytes + 1;
  while (ps.size() < most && kernels::packed_chunks() <= chunks_before) ps.push_back(kernels::allocate_packed(bytes));
  ps.push_back(kernels::allocate_packed(bytes));
  const int with_all = kernels::packed_chunks();
  ASSERT_GE(with_all, chunks_before + 1);
  while (kernels::packed_chunks() == with_all) ps.push_back(kernels::allocate_packed(bytes));
  // ps.back() opened a chunk of its own: it starts on a huge page boundary and goes with it.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ps.back()) % kHuge, 0u);
  kernels::free_packed(ps.back(), bytes);
  ps.pop_back();
  EXPECT_EQ(kernels::packed_chunks(), with_all);
  for (uint8_t* p : ps) kernels::free_packed(p, bytes);
  EXPECT_EQ(kernels::packed_chunks(), chunks_before);
}

// More small weights than the old 64 MiB chunks held share one chunk: each chunk's last huge
// page is only partly filled, so fewer chunks waste fewer of them.
TEST(PackedMemory, SmallWeightsOfAModelShareOneChunk) {
  const int chunks_before = kernels::packed_chunks();
  // 60 of 3 MiB + 32 KiB: 182 MiB, beyond what a 64 MiB chunk's rest and one more chunk held.
  const size_t bytes = (size_t{3} << 20) + 4096 * 7 + 100;
  std::vector<uint8_t*> ps;
  for (int i = 0; i < 60; ++i) ps.push_back(kernels::allocate_packed(bytes));
  EXPECT_LE(kernels::packed_chunks(), chunks_before + 1);
  for (uint8_t* p : ps) kernels::free_packed(p, bytes);
  EXPECT_EQ(kernels::packed_chunks(), chunks_before);
}

TEST(PackedMemory, LargeWeightsGetAlignedMappingsOfTheirOwn) {
  const int chunks_before = kernels::packed_chunks();
  const size_t bytes = (size_t{40} << 20) + 12345;
  const size_t pages = (bytes + 4095) / 4096 * 4096;
  uint8_t* p = kernels::allocate_packed(bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHuge, 0u);
  EXPECT_EQ(kernels::packed_chunks(), chunks_before);
  EXPECT_TRUE(all_zero(p, 4096));
  EXPECT_TRUE(all_zero(p + bytes - 4096, 4096));
  std::memset(p, 1, bytes);
  // The mapping ends at the weight's last page, not at the next 2 MiB boundary: written whole,
  // it holds the weight's pages and no more (a 2 MiB-rounded mapping held a huge page for the
  // last 12,345 bytes: 2 MiB - 12,288 bytes more). Huge pages back only its whole 2 MiB ranges.
  const test::Mapping m = test::mapping_of(p);
  EXPECT_EQ(m.start, reinterpret_cast<uintptr_t>(p));
  EXPECT_EQ(m.end, reinterpret_cast<uintptr_t>(p) + pages);
  EXPECT_EQ(m.rss, pages);
  EXPECT_LE(m.anon_huge, bytes / kHuge * kHuge);
  kernels::free_packed(p, bytes);
  EXPECT_EQ(test::mapping_of(p).end, 0u);  // unmapped whole
}

// Prepared weights take their memory from here and give it back when the last Weight (or
// slice) sharing it goes.
TEST(PackedMemory, PreparedWeightsReturnTheirChunks) {
  const int chunks_before = kernels::packed_chunks();
  {
    test::Weights w = test::make_weights(DType::Q4_K, 1024, 256, 5);
    const kernels::Weight p = kernels::prepare_weight(w.view);
    ASSERT_TRUE(p.packed());
    EXPECT_GE(kernels::packed_chunks(), std::max(chunks_before, 1));
  }
  EXPECT_EQ(kernels::packed_chunks(), chunks_before);
}

}  // namespace
}  // namespace owl
