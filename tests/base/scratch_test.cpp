#include "base/scratch.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace {

TEST(Grow, GrowsToTheLargestSizeAndKeepsIt) {
  std::vector<float> buf;
  float* p = owl::grow(buf, 8);
  EXPECT_EQ(buf.size(), 8u);
  EXPECT_EQ(p, buf.data());
  p[7] = 1.5f;
  owl::grow(buf, 4);  // smaller: nothing changes
  EXPECT_EQ(buf.size(), 8u);
  EXPECT_EQ(buf[7], 1.5f);
  std::vector<uint8_t> bytes;
  owl::grow(bytes, 3);
  EXPECT_EQ(bytes, std::vector<uint8_t>(3, 0));
}

}  // namespace
