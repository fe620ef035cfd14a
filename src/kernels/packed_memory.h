// Internal to the kernels: the memory that prepare_weight's packed copies live in.
//
// Decode streams every packed weight from DRAM once per token, and on 4 KiB pages a weight of
// ~1 MB crosses ~300 pages, each a TLB miss and a page walk in the middle of the stream. The
// kernel backs an anonymous mapping with 2 MiB pages only where a whole aligned 2 MiB range lies
// inside it, which a mapping of its own per weight rarely has (Qwen3-0.6B Q4_K_M: of 390 MB of
// packed weights, only the 128 MB output head was on huge pages). So weights up to 16 MiB are
// placed one after another in shared 2 MiB-aligned chunks, and larger ones get a mapping that
// starts at a 2 MiB boundary. In a scratch two-thread run of one decode token's GEMVs on this
// layout, the layer weights streamed 9.5-9.9 GB per CPU second against 7.1-7.9 with a mapping
// per weight (docs/BENCHMARKS.md, "Cold starts of decode GEMV tasks").
//
// A huge page is memory as soon as one byte of it is written, so every 2 MiB range the weights
// only partly fill costs the rest of it: a large weight's mapping is as long as its pages (its
// part past the last 2 MiB boundary stays on 4 KiB pages), and a chunk is large enough to hold
// all the small weights of a model, so that only its last huge page is partly filled (with 64
// MiB chunks and 2 MiB-rounded mappings DeepSeek-V2-Lite-8l held 30 MB of such pages: over the
// bound of `owl bench` at 16k tokens, docs/BENCHMARKS.md "After the huge pages").
#pragma once
#include <cstddef>
#include <cstdint>

namespace owl::kernels {

// Zeroed, writable memory for `bytes` of packed weights, 64-byte aligned at least (throws
// owl::Error when the system has none). Release it with free_packed(p, bytes); thread-safe.
uint8_t* allocate_packed(size_t bytes);
void free_packed(uint8_t* p, size_t bytes);

// The address space a chunk of small weights reserves (where the system grants that much; only
// the pages written take memory).
constexpr size_t kPackedChunkBytes = size_t{1} << 30;

// Chunks currently mapped for the small weights (tests: a chunk goes when its last weight does).
int packed_chunks();

}  // namespace owl::kernels
