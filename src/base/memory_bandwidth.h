// Measures the machine's sustained memory bandwidth, the limit of decode speed on a
// CPU (every weight byte a token touches is read once per token).
#pragma once
#include <cstddef>
#include <cstdint>

namespace owl {

// Bytes per second over the passes of one probe. On a machine shared with other
// processes single passes vary by tens of percent: the best pass is the machine's
// bandwidth, the others say how much a neighbour took while it ran.
struct BandwidthProbe {
  double best = 0, median = 0, worst = 0;
  int passes = 0;
};

// `threads` threads streaming reads over a buffer much larger than the caches, on 2 MiB pages
// where the system gives them (as the packed weights are).
BandwidthProbe probe_read_bandwidth(int threads, size_t buffer_bytes = size_t{512} << 20, int passes = 12);

// A STREAM-style triad (a[i] = b[i] + s * c[i] over three arrays), counted as STREAM counts
// it (two reads and one write per element: 24 bytes); a cross-check of the read probe by the
// method everyone quotes. A triad also pays the write-allocate read of `a`, so it reads below
// a pure read stream on most CPUs.
BandwidthProbe probe_triad_bandwidth(int threads, size_t array_bytes = size_t{256} << 20, int passes = 6);

// The probes' read loop: the sum of n 64-bit words at p (512-bit loads where the CPU has AVX-512,
// 256-bit where it has AVX2).
// For benchmarks that read a buffer as their own roofline.
uint64_t sum_words_fast(const uint64_t* p, size_t n);

// The best pass of probe_read_bandwidth.
double measure_read_bandwidth(int threads, size_t buffer_bytes = size_t{512} << 20, int reps = 12);

}  // namespace owl
