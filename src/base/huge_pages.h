// Anonymous memory that starts at a 2 MiB boundary and asks for huge pages.
//
// Linux backs an anonymous range with 2 MiB pages only where a whole aligned 2 MiB range lies
// inside one mapping, and mmap aligns to 4 KiB. Streams over such memory (packed weights read
// once per token, the bandwidth probe) then take one TLB entry per 2 MiB instead of per 4 KiB.
#pragma once
#include <cstddef>
#include <cstdint>

namespace owl {

// A zeroed, writable mapping of `bytes` (a multiple of 4096) at a 2 MiB boundary, with
// MADV_HUGEPAGE (a hint: where transparent huge pages are off it is ordinary memory). Returns
// nullptr when the system has no memory for it; release with unmap_huge_aligned(p, bytes). The
// mapping is exactly `bytes` long: past its last 2 MiB boundary it is on 4 KiB pages, so a length
// rounded only to 4 KiB does not make the last few bytes cost a whole huge page.
uint8_t* map_huge_aligned(size_t bytes);
void unmap_huge_aligned(uint8_t* p, size_t bytes);

constexpr size_t kHugePageBytes = size_t{2} << 20;

}  // namespace owl
