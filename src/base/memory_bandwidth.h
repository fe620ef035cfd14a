// Measures the machine's sustained memory read bandwidth, the limit of decode
// speed on a CPU (every weight byte a token touches is read once per token).
#pragma once
#include <cstddef>

namespace owl {

// Bytes per second read by `threads` threads streaming over a buffer much larger
// than the caches (best of `reps` passes).
double measure_read_bandwidth(int threads, size_t buffer_bytes = size_t{512} << 20, int reps = 5);

}  // namespace owl
