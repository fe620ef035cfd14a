// map_huge_aligned: the 2 MiB-aligned memory the packed weights and the bandwidth probe live in.
#include "base/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "mapping_util.h"

namespace owl {
namespace {

TEST(HugePages, MappingStartsAtA2MiBBoundaryZeroedAndWritable) {
  for (size_t bytes : {size_t{4096}, kHugePageBytes, 3 * kHugePageBytes + 4096}) {
    uint8_t* p = map_huge_aligned(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHugePageBytes, 0u) << bytes;
    EXPECT_EQ(p[0], 0);
    EXPECT_EQ(p[bytes - 1], 0);
    p[0] = 1;
    p[bytes - 1] = 2;  // the whole asked length is mapped and writable
    EXPECT_EQ(p[0] + p[bytes - 1], 3);
    unmap_huge_aligned(p, bytes);
  }
}

// The mapping is as long as asked, not rounded up to 2 MiB: written whole, a length past the last
// 2 MiB boundary is resident on 4 KiB pages, not a whole huge page (packed_memory.h).
TEST(HugePages, MappingEndsWhereAsked) {
  const size_t bytes = 3 * kHugePageBytes + 5 * 4096;
  uint8_t* p = map_huge_aligned(bytes);
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, bytes);
  const test::Mapping m = test::mapping_of(p);
  EXPECT_EQ(m.start, reinterpret_cast<uintptr_t>(p));
  EXPECT_EQ(m.end, reinterpret_cast<uintptr_t>(p) + bytes);
  EXPECT_EQ(m.rss, bytes);
  EXPECT_LE(m.anon_huge, 3 * kHugePageBytes);
  unmap_huge_aligned(p, bytes);
}

TEST(HugePages, TwoMappingsDoNotOverlap) {
  uint8_t* a = map_huge_aligned(kHugePageBytes);
  uint8_t* b = map_huge_aligned(kHugePageBytes);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(a + kHugePageBytes <= b || b + kHugePageBytes <= a);
  unmap_huge_aligned(a, kHugePageBytes);
  unmap_huge_aligned(b, kHugePageBytes);
}

}  // namespace
}  // namespace owl
