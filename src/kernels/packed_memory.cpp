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
constexpr size_t kChunk = size_t{64} << 20;  // one shared chunk
// Weights up to this size share chunks. A weight that does not fit the current chunk's rest
// starts a new chunk; the rest stays untouched, so it costs address space, not memory (beyond
// the huge page the last weight ended in).
constexpr size_t kArenaMax = kChunk / 4;
constexpr size_t kAlign = 4096;  // each weight's start: whole pages, as its own mapping had

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// A 2 MiB-aligned mapping of `bytes` (a multiple of kHuge) for packed weights.
uint8_t* map_aligned(size_t bytes) {
  uint8_t* p = map_huge_aligned(bytes);
  if (p == nullptr)
    throw Error("prepare_weight: cannot allocate " + std::to_string(bytes >> 20) +
                " MiB for a repacked weight; free memory or disable repacking");
  return p;
}

struct Chunk {
  uint8_t* base;
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

}  // namespace

uint8_t* allocate_packed(size_t bytes) {
  if (bytes > kArenaMax) return map_aligned(round_up(bytes, kHuge));
  const size_t need = round_up(bytes, kAlign);
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  if (a.chunks.empty() || a.chunks.back().used + need > kChunk) a.chunks.push_back({map_aligned(kChunk), 0, 0});
  Chunk& c = a.chunks.back();
  uint8_t* p = c.base + c.used;
  c.used += need;
  ++c.live;
  return p;
}

void free_packed(uint8_t* p, size_t bytes) {
  if (p == nullptr) return;
  if (bytes > kArenaMax) {
    unmap_huge_aligned(p, round_up(bytes, kHuge));
    return;
  }
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = std::find_if(a.chunks.begin(), a.chunks.end(),
                         [p](const Chunk& c) { return p >= c.base && p < c.base + kChunk; });
  if (it == a.chunks.end() || --it->live > 0) return;
  // The chunk's last weight: its memory goes back to the system (a model unloaded).
  unmap_huge_aligned(it->base, kChunk);
  a.chunks.erase(it);
}

int packed_chunks() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  return static_cast<int>(a.chunks.size());
}

}  // namespace owl::kernels
