#include "base/memory_bandwidth.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "base/huge_pages.h"

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

// And with 512-bit loads where the CPU has AVX-512: one core keeps more bytes in flight with
// them (a scratch read loop on the Xeon dev box: 15.3 GB/s on one core, above the AVX2 loop).
__attribute__((target("avx512f"))) uint64_t sum_words_avx512(const uint64_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 24));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t s = 0;
  for (uint64_t x : lanes) s += x;
  for (; i < n; ++i) s += p[i];
  return s;
}

uint64_t sum_any(const uint64_t* p, size_t n) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx512 ? sum_words_avx512(p, n) : avx2 ? sum_words_avx2(p, n) : sum_words(p, n);
}

// The probe's buffers live on 2 MiB pages where the kernel allows them, as the packed weights
// do (kernels/packed_memory.cpp): on 4 KiB pages every 4 KiB of a stream is a TLB miss, and one
// core read 11.4 GB per CPU second there against 15.7 on huge pages (scratch, Xeon dev box), so
// a probe on small pages would measure the page walks and overstate every roofline share.
class HugePageBuffer {
 public:
  explicit HugePageBuffer(size_t bytes)
      : bytes_((bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes), data_(map_huge_aligned(bytes_)) {
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~HugePageBuffer() { unmap_huge_aligned(data_, bytes_); }
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(data_);
  }

 private:
  size_t bytes_;
  uint8_t* data_;
};

// Runs fn(t) on `threads` threads, the caller being thread 0.
template <typename Fn>
void for_threads(int threads, Fn&& fn) {
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back(fn, t);
  fn(0);
  for (auto& th : ts) th.join();
}

// Times `passes` calls of pass() that each move `bytes` bytes.
template <typename Pass>
BandwidthProbe time_passes(int passes, double bytes, Pass&& pass) {
  std::vector<double> bw;
  for (int r = 0; r < std::max(passes, 1); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pass();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bw.push_back(bytes / s);
  }
  std::sort(bw.begin(), bw.end());
  return {bw.back(), bw[bw.size() / 2], bw.front(), static_cast<int>(bw.size())};
}
}  // namespace

BandwidthProbe probe_read_bandwidth(int threads, size_t buffer_bytes, int passes) {
  threads = std::max(threads, 1);
  const size_t n_words = buffer_bytes / 8;
  const HugePageBuffer mem(n_words * 8);
  uint64_t* const buf = mem.as<uint64_t>();
  // Touch every page from the thread that will read it (first-touch placement).
  const size_t per = n_words / static_cast<size_t>(threads);
  for_threads(threads, [&](int t) { std::memset(buf + per * t, t + 1, per * 8); });

  std::vector<uint64_t> sinks(static_cast<size_t>(threads));
  const BandwidthProbe p = time_passes(passes, static_cast<double>(per * 8 * static_cast<size_t>(threads)), [&] {
    for_threads(threads, [&](int t) { sinks[static_cast<size_t>(t)] += sum_any(buf + per * t, per); });
  });
  volatile uint64_t keep = 0;
  for (uint64_t v : sinks) keep = keep + v;
  (void)keep;
  return p;
}

BandwidthProbe probe_triad_bandwidth(int threads, size_t array_bytes, int passes) {
  threads = std::max(threads, 1);
  const size_t n = array_bytes / sizeof(double);
  const HugePageBuffer ma(n * sizeof(double)), mb(n * sizeof(double)), mc(n * sizeof(double));
  double* const a = ma.as<double>();
  double* const b = mb.as<double>();
  double* const c = mc.as<double>();
  const size_t per = n / static_cast<size_t>(threads);
  for_threads(threads, [&](int t) {
    for (size_t i = per * t; i < per * (t + 1); ++i) a[i] = 0.0, b[i] = 1.0, c[i] = 2.0;
  });
  const double scalar = 3.0;
  const BandwidthProbe p = time_passes(passes, 3.0 * sizeof(double) * static_cast<double>(per * threads), [&] {
    for_threads(threads, [&](int t) {
      double* __restrict pa = a + per * t;
      const double* __restrict pb = b + per * t;
      const double* __restrict pc = c + per * t;
      for (size_t i = 0; i < per; ++i) pa[i] = pb[i] + scalar * pc[i];
    });
  });
  volatile double keep = a[n / 2];
  (void)keep;
  return p;
}

double measure_read_bandwidth(int threads, size_t buffer_bytes, int reps) {
  return probe_read_bandwidth(threads, buffer_bytes, reps).best;
}

uint64_t sum_words_fast(const uint64_t* p, size_t n) { return sum_any(p, n); }

}  // namespace owl
