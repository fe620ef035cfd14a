// map_huge_aligned: the 2 MiB-aligned memory the packed weights and the bandwidth probe live in.
#include "base/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>

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
