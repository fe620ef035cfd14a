#include "base/memory_bandwidth.h"

#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace owl {

namespace {
// Sums 64-bit words with eight independent accumulators so the loop is bound by
// loads, not by the add chain. The result is returned so the compiler cannot drop it.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += p[i + k];
  for (; i < n; ++i) a[0] += p[i];
  uint64_t s = 0;
  for (uint64_t x : a) s += x;
  return s;
}
// The same with 256-bit loads where the CPU has AVX2: SSE2 loads alone do not
// keep enough bytes in flight to reach the DRAM limit on some machines.
__attribute__((target("avx2"))) uint64_t sum_words_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) s += p[i];
  return s;
}

uint64_t sum_any(const uint64_t* p, size_t n) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? sum_words_avx2(p, n) : sum_words(p, n);
}
}  // namespace

double measure_read_bandwidth(int threads, size_t buffer_bytes, int reps) {
  if (threads < 1) threads = 1;
  const size_t n_words = buffer_bytes / 8;
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n_words]);
  // Touch every page from the thread that will read it (first-touch placement).
  const size_t per = n_words / static_cast<size_t>(threads);
  auto for_threads = [&](auto&& fn) {
    std::vector<std::thread> ts;
    for (int t = 1; t < threads; ++t) ts.emplace_back(fn, t);
    fn(0);
    for (auto& th : ts) th.join();
  };
  for_threads([&](int t) { std::memset(buf.get() + per * t, t + 1, per * 8); });

  double best = 0;
  std::vector<uint64_t> sinks(static_cast<size_t>(threads));
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for_threads([&](int t) { sinks[static_cast<size_t>(t)] += sum_any(buf.get() + per * t, per); });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double bw = static_cast<double>(per * 8 * static_cast<size_t>(threads)) / s;
    if (bw > best) best = bw;
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sinks) keep = keep + v;
  (void)keep;
  return best;
}

}  // namespace owl
