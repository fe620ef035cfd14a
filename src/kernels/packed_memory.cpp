// Packed weight memory (packed_memory.h): small weights bump-allocated in shared 2 MiB-aligned
// chunks with a count of live weights each, large ones in a 2 MiB-aligned mapping of their own.
#include "kernels/packed_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"

namespace owl::kernels {

namespace {

constexpr size_t kHuge = size_t{2} << 20;    // the x86-64 huge page
constexpr size_t kChunk = size_t{64} << 20;  // one shared chunk
// Weights up to this size share chunks. A weight that does not fit the current chunk's rest
// starts a new chunk; the rest stays untouched, so it costs address space, not memory (beyond
// the huge page the last weight ended in).
constexpr size_t kArenaMax = kChunk / 4;
constexpr size_t kAlign = 4096;  // each weight's start: whole pages, as its own mapping had

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// A mapping of `bytes` (a multiple of kHuge) at a 2 MiB boundary: mmap gives 4 KiB alignment,
// so map kHuge more and unmap the unaligned head and tail. Asks for huge pages where the kernel
// allows them (transparent_hugepage "madvise" or "always").
uint8_t* map_aligned(size_t bytes) {
  void* p = mmap(nullptr, bytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error("prepare_weight: cannot allocate " + std::to_string(bytes >> 20) +
                " MiB for a repacked weight; free memory or disable repacking");
  const auto raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = round_up(raw, kHuge);
  if (aligned > raw) munmap(p, aligned - raw);
  const uintptr_t end = raw + bytes + kHuge;
  if (end > aligned + bytes) munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<uint8_t*>(aligned);
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
    munmap(p, round_up(bytes, kHuge));
    return;
  }
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = std::find_if(a.chunks.begin(), a.chunks.end(),
                         [p](const Chunk& c) { return p >= c.base && p < c.base + kChunk; });
  if (it == a.chunks.end() || --it->live > 0) return;
  // The chunk's last weight: its memory goes back to the system (a model unloaded).
  munmap(it->base, kChunk);
  a.chunks.erase(it);
}

int packed_chunks() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mu);
  return static_cast<int>(a.chunks.size());
}

}  // namespace owl::kernels
