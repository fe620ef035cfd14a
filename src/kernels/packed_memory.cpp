// Packed weight memory (packed_memory.h): small weights bump-allocated in shared 2 MiB-aligned
// chunks with a count of live weights each, large ones in a 2 MiB-aligned mapping of their own.
#include "kernels/packed_memory.h"

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/huge_pages.h"

namespace owl::kernels {

namespace {

constexpr size_t kHuge = kHugePageBytes;
// Weights up to this size share chunks; larger ones get a mapping of their own (so that freeing
// one gives its memory back at once).
constexpr size_t kArenaMax = size_t{16} << 20;
constexpr size_t kAlign = 4096;  // each weight's start and a large weight's length: whole pages

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

[[noreturn]] void out_of_memory(size_t bytes) {
  throw Error("prepare_weight: cannot allocate " + std::to_string(bytes >> 20) +
              " MiB for a repacked weight; free memory or disable repacking");
}

struct Chunk {
  uint8_t* base;
  size_t size;
  size_t used;
  int live;  // weights in it not yet freed
};

struct Arena {
  std::mutex mu;
  std::vector<Chunk> chunks;  // the last one takes new weights
};

Arena& arena() {
  static Arena* a = new Arena;  // never destroyed: weights may be freed during static destruction
  return *a;
}

// A new chunk for a weight of `need` bytes: kPackedChunkBytes where the system grants that much
// (only what is written gets memory), else the old 64 MiB, else just the weight's pages.
Chunk new_chunk(size_t need) {
  for (size_t size : {kPackedChunkBytes, size_t{64} << 20, round_up(need, kHuge)}) {
    if (size < need) continue;
    if (uint8_t* p = map_huge_aligned(size)) return {p, size, 0, 0};
  }
  out_of_memory(need);
}

}  // namespace

uint8_t* allocate_packed(size_t bytes) {
  if (bytes > kArenaMax) {
    // Whole pages, not whole 2 MiB: the kernel puts huge pages on every aligned 2 MiB range
    // inside the mapping and 4 KiB pages on the rest past the last boundary, where a length
    // rounded up to 2 MiB would have faulted in a whole huge page for the weight's last bytes
    // (DeepSeek-V2-Lite-8l's 23 merged expert tensors: 25.4 MB, docs/BENCHMARKS.md).
    uint8_t* p = map_huge_aligned(round_up(bytes, kAlign));
    if (p == nullptr) out_of_memory(bytes);
    return p;
  }
  const size_t need = round_up(bytes, kAlign);
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  if (a.chunks.empty() || a.chunks.back().used + need > a.chunks.back().size) a.chunks.push_back(new_chunk(need));
  Chunk& c = a.chunks.back();
  uint8_t* p = c.base + c.used;
  c.used += need;
  ++c.live;
  return p;
}

void free_packed(uint8_t* p, size_t bytes) {
  if (p == nullptr) return;
  if (bytes > kArenaMax) {
    unmap_huge_aligned(p, round_up(bytes, kAlign));
    return;
  }
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = std::find_if(a.chunks.begin(), a.chunks.end(),
                         [p](const Chunk& c) { return p >= c.base && p < c.base + c.size; });
  if (it == a.chunks.end() || --it->live > 0) return;
  // The chunk's last weight: its memory goes back to the system (a model unloaded).
  unmap_huge_aligned(it->base, it->size);
  a.chunks.erase(it);
}

int packed_chunks() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  return static_cast<int>(a.chunks.size());
}

}  // namespace owl::kernels
