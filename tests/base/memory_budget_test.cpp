// --mem SIZE parsing, and the default budget read from this machine (cgroup limit or
// MemAvailable, less the margin).
#include "base/memory_budget.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace owl {
namespace {

TEST(MemoryBudget, SizesWithAndWithoutUnits) {
  EXPECT_EQ(parse_memory_size("300000000"), 300000000u);
  EXPECT_EQ(parse_memory_size("512K"), 512u << 10);
  EXPECT_EQ(parse_memory_size("64M"), 64u << 20);
  EXPECT_EQ(parse_memory_size("64MiB"), 64u << 20);
  EXPECT_EQ(parse_memory_size("64mb"), 64u << 20);
  EXPECT_EQ(parse_memory_size("48G"), 48ULL << 30);
  EXPECT_EQ(parse_memory_size("1.5g"), 3ULL << 29);
  EXPECT_EQ(parse_memory_size("2T"), 2ULL << 40);
  EXPECT_EQ(parse_memory_size("100B"), 100u);
  EXPECT_EQ(format_memory_size(3ULL << 29), "1.50 GiB");
  EXPECT_EQ(format_memory_size(100), "100 B");
}

TEST(MemoryBudget, BadSizesAreUsageErrorsNamingTheOption) {
  for (const char* bad : {"", "G", "-1G", "0", "12X", "1.5.5G", "nan", "inf", "48 GB", "1e30"}) {
    try {
      parse_memory_size(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--mem: '" + std::string(bad) + "' is not a memory size"), std::string::npos)
          << e.what();
    }
  }
}

TEST(MemoryBudget, DefaultIsTheTighterOfCgroupAndMemAvailableLessAMargin) {
  const uint64_t avail = memory_available();
  ASSERT_GT(avail, 0u) << "/proc/meminfo has no MemAvailable";
  const auto limit = cgroup_memory_limit();
  const uint64_t cap = limit ? std::min(*limit, avail) : avail;
  const MemoryBudget b = default_memory_budget();
  EXPECT_GT(b.bytes, 0u);
  EXPECT_LT(b.bytes, cap);
  // MemAvailable moves between the two reads; the margin is at least 32 MiB and at most 4 GiB + 1/16.
  EXPECT_GT(b.bytes + (4ULL << 30) + cap / 8, cap);
  EXPECT_TRUE(b.source == "cgroup limit" || b.source == "MemAvailable") << b.source;
}

}  // namespace
}  // namespace owl
