#include "base/huge_pages.h"

#include <sys/mman.h>

namespace owl {

uint8_t* map_huge_aligned(size_t bytes) {
  // Map one huge page more than asked, then unmap the unaligned head and the tail.
  void* p = ::mmap(nullptr, bytes + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const auto raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (raw + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (aligned > raw) ::munmap(p, aligned - raw);
  const uintptr_t end = raw + bytes + kHugePageBytes;
  if (end > aligned + bytes) ::munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
#ifdef MADV_HUGEPAGE
  ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // a hint: failure changes nothing
#endif
  return reinterpret_cast<uint8_t*>(aligned);
}

void unmap_huge_aligned(uint8_t* p, size_t bytes) {
  if (p != nullptr) ::munmap(p, bytes);
}

}  // namespace owl
