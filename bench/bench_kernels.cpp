// Kernel throughput: matmul decode (1 activation row, packed as owl's decode runs it, or plain;
// memory bound, reported as GB/s of weights streamed from DRAM: the weights cycle through a set
// of matrices larger than the L3 cache, and BM_ReadBandwidth reads as many bytes for the
// roofline; bytes_per_cpu_s: per CPU second of the calling thread, one core's rate at 1 thread) and
// prefill (512 rows; GFLOP/s) per weight type, decode attention over a long F16/F32/Q8_0/Q4_0 cache, and
// prefill attention (a causal prompt, attention_rows against attention() per row), and the
// quantised KV cache's per-token writer (BM_KvWriter: rotation + Q8_0/Q4_0 scale search).
// BM_GemvAccess splits the packed decode kernels' DRAM rate into access pattern and overlap.
// Args: {type id, threads} (decode: {type id, threads, packed}). Counters are rates: bytes = weight (or KV) bytes per
// second, FLOP = floating-point operations per second. Run: build/bench_kernels --benchmark_filter=Decode
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "base/memory_bandwidth.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"
#include "kernels/vec_dot.h"
#include "model/kv_rotation.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace {

using owl::DType;

constexpr int64_t kIn = 4096, kOut = 4096;

// n_mats copies of a kIn x kOut matrix of type t (random N(0,1) rows, quantised; 256 distinct
// rows tiled, which is irrelevant to speed).
struct MatrixSet {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<owl::kernels::Weight> views;  // plain weights
};

MatrixSet make_set(DType t, int n_mats) {
  const size_t rb = owl::row_bytes(t, kIn);
  std::vector<uint8_t> tile(rb * 256);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd;
  std::vector<float> row(kIn);
  for (int r = 0; r < 256; ++r) {
    for (auto& v : row) v = nd(rng) * 0.02f;
    owl::quantize_row(t, row.data(), tile.data() + rb * r, kIn);
  }
  MatrixSet s;
  for (int m = 0; m < n_mats; ++m) {
    s.bytes.emplace_back(rb * kOut);
    for (int64_t o = 0; o < kOut; o += 256) std::memcpy(s.bytes.back().data() + rb * o, tile.data(), tile.size());
    owl::TensorView v;
    v.name = "bench";
    v.type = t;
    v.n_dims = 2;
    v.ne = {kIn, kOut, 1, 1};
    v.data = s.bytes.back().data();
    s.views.push_back(v);
  }
  return s;
}

std::vector<float> random_x(int64_t n) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

// Bytes that stream from DRAM when cycled: more than 3x a 48 MiB L3 and twice this machine's
// L3 (the Sapphire/Emerald Rapids dev box reports 260 MiB), so no pass finds the last one's
// lines in the cache.
size_t dram_set_bytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return std::max(size_t{160} << 20, 2 * static_cast<size_t>(std::max(l3, 0L)));
}

// Thread CPU seconds of the calling thread. With one pool thread the caller runs every task, so
// bytes per CPU second is one core's rate even while other processes take turns on the core
// (a shared machine's wall-clock rate is mostly the scheduler's).
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// CPU seconds of the whole process (the caller and every pool thread).
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Counters of a decode-style run: weight bytes per wall second and per CPU second of the caller.
void set_byte_rates(benchmark::State& state, double bytes, double cpu_seconds) {
  state.counters["bytes"] = benchmark::Counter(bytes, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["bytes_per_cpu_s"] = cpu_seconds > 0 ? bytes / cpu_seconds : 0.0;
}

// One activation row against a kIn x kOut matrix, cycling through copies that stream from DRAM.
// Args: {type, threads, packed}: packed = prepare_weight's 8-row interleaved copy and kernels
// (what owl's decode runs; types without a packed layout stay plain), 0 = the file's rows with
// the one-row dot kernels (`owl bench --no-repack`).
void BM_MatmulDecode(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  owl::set_default_threads(static_cast<int>(state.range(1)));
  const bool packed = state.range(2) != 0;
  const size_t mat_bytes = owl::row_bytes(t, kIn) * kOut;
  const int n_mats = static_cast<int>(dram_set_bytes() / mat_bytes + 1);
  MatrixSet set = make_set(t, n_mats);
  std::vector<owl::kernels::Weight> mats;
  for (int m = 0; m < n_mats; ++m) {
    mats.push_back(packed ? owl::kernels::prepare_weight(*set.views[m].plain()) : set.views[m]);
    if (packed && !mats.back().plain()) std::vector<uint8_t>().swap(set.bytes[m]);  // only the packed copy stays
  }
  auto x = random_x(kIn);
  std::vector<float> y(kOut);
  size_t i = 0;
  const double cpu0 = thread_cpu_seconds();
  for (auto _ : state) {
    owl::kernels::matmul(mats[i++ % mats.size()], x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_byte_rates(state, static_cast<double>(mat_bytes) * static_cast<double>(state.iterations()),
                 thread_cpu_seconds() - cpu0);
  state.SetLabel(std::string(owl::dtype_name(t)) + (mats[0].plain() ? " plain" : " packed"));
}

// The roofline beside BM_MatmulDecode: the same threads summing 64-bit words over a buffer as
// large as its weight sets (one contiguous slice per thread; owl bench's read probe loop). At
// 2 threads bytes_per_cpu_s is all bytes over the caller's CPU seconds: the two threads' rate
// when both run alike. Args: {threads}.
struct ReadJob {
  const uint64_t* words;
  size_t per_task;
  uint64_t sums[64];
};
void read_task(void* ctx, int task, int) {
  auto& j = *static_cast<ReadJob*>(ctx);
  j.sums[task % 64] = owl::sum_words_fast(j.words + j.per_task * static_cast<size_t>(task), j.per_task);
}
void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  owl::set_default_threads(threads);
  const size_t words = dram_set_bytes() / 8 / 64 * 64;
  std::vector<uint64_t> buf(words, 1);
  ReadJob job{buf.data(), words / static_cast<size_t>(threads), {}};
  const double cpu0 = thread_cpu_seconds();
  for (auto _ : state) {
    owl::default_pool().run(threads, read_task, &job);
    benchmark::DoNotOptimize(job.sums);
  }
  set_byte_rates(
      state,
      8.0 * static_cast<double>(job.per_task * static_cast<size_t>(threads)) * static_cast<double>(state.iterations()),
      thread_cpu_seconds() - cpu0);
}

// Access pattern against overlap in the one-row packed GEMV (issue 23). Over the same packed
// weights streamed from DRAM (BM_MatmulDecode's set, prepare_weight's huge-page copies):
// variant 0 runs the type's packed kernel on every 8-row group in order (a one-row matmul's
// tiles without its planning); 1 is a load-only twin that reads each packed block in 32-byte
// pieces, blocks and groups in the kernel's order, with the kernel's prefetches (repack.h) and no
// arithmetic; 2 is
// the read probe's 512-bit loop over the same bytes. 1 close to 2: the access pattern streams
// at the probe's rate and what the kernel loses against 1 is overlap of memory with compute;
// 1 below 2: the pattern itself loses. Args: {type, variant, threads}, each thread a contiguous
// share of every matrix; bytes_per_cpu_s = bytes over the mean CPU seconds of the threads'
// tasks. Alternate the variants: --benchmark_repetitions=N --benchmark_enable_random_interleaving=true.
struct AccessSet {
  MatrixSet plain;
  std::vector<owl::kernels::Weight> packed;
};
AccessSet& access_set(DType t) {  // built once per type: packing ~0.5 GB per repetition would dominate
  static std::map<DType, AccessSet> sets;
  auto [it, fresh] = sets.try_emplace(t);
  if (fresh) {
    const size_t mat_bytes = owl::row_bytes(t, kIn) * kOut;
    const int n_mats = static_cast<int>(dram_set_bytes() / mat_bytes + 1);
    it->second.plain = make_set(t, n_mats);
    for (int m = 0; m < n_mats; ++m) {
      it->second.packed.push_back(owl::kernels::prepare_weight(*it->second.plain.views[m].plain()));
      std::vector<uint8_t>().swap(it->second.plain.bytes[m]);
    }
  }
  return it->second;
}

// The twin: kBytes per packed block, prefetch level as the kernel's.
template <size_t kBytes, int kLocality>
__attribute__((target("avx2"))) void load_walk(const uint8_t* grp, int64_t nb, uint64_t* sink) {
  __m256i o = _mm256_setzero_si256();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + static_cast<size_t>(i) * kBytes;
    for (size_t k = 0; k < kBytes; k += 64)
      __builtin_prefetch(b + owl::kernels::kPackedPrefetchBytes + k, 0, kLocality);
    size_t k = 0;
    for (; k + 32 <= kBytes; k += 32)
      o = _mm256_or_si256(o, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k)));
    if (k < kBytes)
      o = _mm256_or_si256(o, _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + k))));
  }
  *sink |= static_cast<uint64_t>(_mm256_extract_epi64(o, 0) | _mm256_extract_epi64(o, 3));
}
template <class Block, DType kType>
void load_walk_of(const uint8_t* grp, int64_t nb, uint64_t* sink) {
  load_walk<owl::kernels::kPackedBytes<Block>, owl::kernels::packed_prefetch_locality(kType)>(grp, nb, sink);
}

struct AccessJob {
  const owl::kernels::PackedLayout* layout;
  int variant, threads;
  const uint8_t* xa;  // the activation row in the kernel's vec-dot type
  int64_t nb;         // packed blocks per group
  void (*walk)(const uint8_t*, int64_t, uint64_t*);
  double cpu[64];
  uint64_t sink[64];
  float y[64][8];
};
void access_task(void* ctx, int task, int) {
  auto& j = *static_cast<AccessJob*>(ctx);
  const owl::kernels::PackedLayout& l = *j.layout;
  const int64_t groups = static_cast<int64_t>(l.matrix_bytes / l.group_bytes);
  const int64_t g0 = groups * task / j.threads, g1 = groups * (task + 1) / j.threads;
  const double c0 = thread_cpu_seconds();
  if (j.variant == 0) {
    for (int64_t g = g0; g < g1; ++g)
      l.fn(l.in, l.bytes + static_cast<size_t>(g) * l.group_bytes, j.xa, 0, 1, j.y[task], 8, 8);
  } else if (j.variant == 1) {
    for (int64_t g = g0; g < g1; ++g) j.walk(l.bytes + static_cast<size_t>(g) * l.group_bytes, j.nb, &j.sink[task]);
  } else {
    j.sink[task] +=
        owl::sum_words_fast(reinterpret_cast<const uint64_t*>(l.bytes + static_cast<size_t>(g0) * l.group_bytes),
                            static_cast<size_t>(g1 - g0) * l.group_bytes / 8);
  }
  j.cpu[task] += thread_cpu_seconds() - c0;
}

void BM_GemvAccess(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const int variant = static_cast<int>(state.range(1)), threads = static_cast<int>(state.range(2));
  owl::set_default_threads(threads);
  if (!__builtin_cpu_supports("avx2")) return state.SkipWithError("the load-only twin needs AVX2");
  AccessSet& set = access_set(t);
  if (!owl::kernels::WeightAccess::layout(set.packed[0]))
    return state.SkipWithError("no packed copy (repacking off or no packed kernels on this CPU)");
  // The activation row in the kernel's vec-dot type (vec_dot.h's Q8_0 layout: blocks, then float
  // scales and int32 quant sums; Q8_K blocks otherwise).
  const auto x = random_x(kIn);
  const bool q8_0 = owl::kernels::type_traits(t)->act == DType::Q8_0;
  std::vector<uint8_t> xa(q8_0 ? owl::kernels::q8_0_act_row_bytes(kIn) : owl::row_bytes(DType::Q8_K, kIn));
  owl::quantize_row(q8_0 ? DType::Q8_0 : DType::Q8_K, x.data(), xa.data(), kIn);
  if (q8_0) {
    const auto* b = reinterpret_cast<const owl::BlockQ8_0*>(xa.data());
    auto* d = reinterpret_cast<float*>(xa.data() + owl::kernels::q8_0_act_scales_offset(kIn));
    auto* sums = reinterpret_cast<int32_t*>(xa.data() + owl::kernels::q8_0_act_sums_offset(kIn));
    for (int64_t i = 0; i < kIn / owl::kQK; ++i) {
      d[i] = owl::f16_to_f32(b[i].d);
      sums[i] = 0;
      for (int k = 0; k < owl::kQK; ++k) sums[i] += b[i].qs[k];
    }
  }
  AccessJob job{};
  job.variant = variant;
  job.threads = threads;
  job.xa = xa.data();
  switch (t) {
    case DType::Q4_K:
      job.walk = load_walk_of<owl::BlockQ4_K, DType::Q4_K>;
      job.nb = kIn / owl::kQKK;
      break;
    case DType::Q6_K:
      job.walk = load_walk_of<owl::BlockQ6_K, DType::Q6_K>;
      job.nb = kIn / owl::kQKK;
      break;
    default:
      job.walk = load_walk_of<owl::BlockQ8_0, DType::Q8_0>;
      job.nb = kIn / owl::kQK;
  }
  size_t i = 0;
  double bytes = 0;
  for (auto _ : state) {
    job.layout = owl::kernels::WeightAccess::layout(set.packed[i++ % set.packed.size()]);
    owl::default_pool().run(threads, access_task, &job);
    bytes += static_cast<double>(job.layout->matrix_bytes);
    benchmark::DoNotOptimize(job.y);
    benchmark::DoNotOptimize(job.sink);
  }
  double cpu = 0;
  for (int k = 0; k < threads; ++k) cpu += job.cpu[k];
  set_byte_rates(state, bytes, cpu / threads);
  static const char* const kVariants[] = {"kernel", "loads", "read512"};
  state.SetLabel(std::string(owl::dtype_name(t)) + " " + kVariants[variant]);
}

void BM_MatmulPrefill(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  owl::set_default_threads(static_cast<int>(state.range(1)));
  const int64_t n_rows = 512;
  MatrixSet set = make_set(t, 1);
  auto x = random_x(kIn * n_rows);
  std::vector<float> y(static_cast<size_t>(kOut * n_rows));
  for (auto _ : state) {
    owl::kernels::matmul(set.views[0], x.data(), n_rows, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP"] = benchmark::Counter(2.0 * kIn * kOut * n_rows * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(owl::dtype_name(t));
}

// The low-bit types (IQ1_S .. IQ3_S, Q2_K, Q3_K) as random bits, which reach every grid index,
// sign and scale, with a small fp16 d per block (IQ1_M: d in the top nibbles of its four scale
// words; Q2_K: d and dmin, Q3_K: d at the block's end). Args: {type, activation
// rows, ISA: 0 scalar reference, 1 the fast default, threads}; 1 row (decode) streams > 160
// MiB of weights from DRAM as BM_MatmulDecode does. Counters: weight bytes/s and FLOP/s.
void BM_MatmulCodebook(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const int64_t n_rows = state.range(1);
  const owl::kernels::Isa isa = owl::kernels::default_isa();
  if (state.range(2) == 0) owl::kernels::set_default_isa(owl::kernels::Isa::Scalar);
  owl::set_default_threads(static_cast<int>(state.range(3)));
  const size_t rb = owl::row_bytes(t, kIn), mat_bytes = rb * kOut, bs = owl::info(t).type_size;
  const int n_mats = n_rows == 1 ? static_cast<int>((size_t{160} << 20) / mat_bytes + 1) : 1;
  std::mt19937 rng(42);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<owl::kernels::Weight> mats;
  for (int m = 0; m < n_mats; ++m) {
    bytes.emplace_back(mat_bytes);
    auto& b = bytes.back();
    for (auto& v : b) v = static_cast<uint8_t>(rng());
    for (size_t off = 0; off < b.size(); off += bs) {
      const uint16_t d = owl::f32_to_f16(0.001f * static_cast<float>(1 + rng() % 16));
      if (t == DType::Q2_K) {
        std::memcpy(&b[off + bs - 4], &d, 2);
        std::memcpy(&b[off + bs - 2], &d, 2);
      } else if (t == DType::Q3_K) {
        std::memcpy(&b[off + bs - 2], &d, 2);
      } else if (t == DType::IQ1_M) {
        for (int k = 0; k < 4; ++k)
          b[off + bs - 7 + 2 * k] =
              static_cast<uint8_t>((b[off + bs - 7 + 2 * k] & 0x0F) | (((d >> (4 * k)) & 0xF) << 4));
      } else {
        std::memcpy(&b[off], &d, 2);
      }
    }
    owl::TensorView v;
    v.name = "bench";
    v.type = t;
    v.n_dims = 2;
    v.ne = {kIn, kOut, 1, 1};
    v.data = b.data();
    mats.emplace_back(v);
  }
  auto x = random_x(kIn * n_rows);
  std::vector<float> y(static_cast<size_t>(kOut * n_rows));
  size_t i = 0;
  for (auto _ : state) {
    owl::kernels::matmul(mats[i++ % mats.size()], x.data(), n_rows, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  owl::kernels::set_default_isa(isa);
  const double it = static_cast<double>(state.iterations());
  state.counters["bytes"] =
      benchmark::Counter(static_cast<double>(mat_bytes) * it, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["FLOP"] = benchmark::Counter(2.0 * static_cast<double>(kIn * kOut * n_rows) * it,
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(owl::dtype_name(t)) + (state.range(2) ? " fast" : " reference"));
}

// The reference at 1 thread (decode and 64 rows: it is ~20x slower), the fast kernels for
// decode and prefill (512 rows) at 1 and 2 threads, and 64 rows at 1 thread beside the reference.
void CodebookArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::IQ2_XXS, DType::IQ1_S, DType::IQ3_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_S, DType::IQ1_M,
                  DType::Q2_K, DType::Q3_K}) {
    const auto ti = static_cast<int64_t>(t);
    for (int64_t rows : {1, 64}) b->Args({ti, rows, 0, 1});
    for (int64_t rows : {1, 64, 512})
      for (int64_t threads : {1, 2})
        if (rows != 64 || threads == 1) b->Args({ti, rows, 1, threads});
  }
}

// Qwen3-0.6B shapes {in, out}: q_proj 1024x2048, gate/up 1024x3072, down 3072x1024, output head
// 1024x151936. Args: {type, shape index, activation rows, repacked (prepare_weight), threads}.
// Decode (1 row) cycles through copies totalling > 160 MiB so weights stream from DRAM.
constexpr int64_t kShapes[][2] = {{1024, 2048}, {1024, 3072}, {3072, 1024}, {1024, 151936}};

void BM_MatmulShape(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const int64_t in = kShapes[state.range(1)][0], out = kShapes[state.range(1)][1], n_rows = state.range(2);
  const bool repack = state.range(3) != 0;
  owl::set_default_threads(static_cast<int>(state.range(4)));
  const size_t rb = owl::row_bytes(t, in), mat_bytes = rb * static_cast<size_t>(out);
  const int n_mats = n_rows == 1 ? static_cast<int>((size_t{160} << 20) / mat_bytes + 1) : 1;
  std::vector<float> row(static_cast<size_t>(in));
  std::vector<uint8_t> tile(rb * 256);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd;
  for (int r = 0; r < 256; ++r) {
    for (auto& v : row) v = nd(rng) * 0.02f;
    owl::quantize_row(t, row.data(), tile.data() + rb * r, in);
  }
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<owl::kernels::Weight> mats;
  for (int m = 0; m < n_mats; ++m) {
    bytes.emplace_back(mat_bytes);
    for (int64_t o = 0; o < out; o += 256)
      std::memcpy(bytes.back().data() + rb * o, tile.data(), rb * static_cast<size_t>(std::min<int64_t>(256, out - o)));
    owl::TensorView v;
    v.name = "bench";
    v.type = t;
    v.n_dims = 2;
    v.ne = {in, out, 1, 1};
    v.data = bytes.back().data();
    mats.push_back(repack ? owl::kernels::prepare_weight(v) : owl::kernels::Weight(v));
    if (repack) std::vector<uint8_t>().swap(bytes.back());  // only the packed copy stays
  }
  auto x = random_x(in * n_rows);
  std::vector<float> y(static_cast<size_t>(out * n_rows));
  size_t i = 0;
  for (auto _ : state) {
    owl::kernels::matmul(mats[i++ % mats.size()], x.data(), n_rows, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double it = static_cast<double>(state.iterations());
  state.counters["bytes"] =
      benchmark::Counter(static_cast<double>(mat_bytes) * it, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["FLOP"] = benchmark::Counter(2.0 * static_cast<double>(in * out * n_rows) * it,
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(owl::dtype_name(t)) + (repack ? " packed" : " plain"));
}

void ShapeArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0})
    for (int64_t shape = 0; shape < 4; ++shape)
      for (int64_t rows : {1, 512}) {
        if (shape == 3 && rows == 512) continue;  // 40 GFLOP per call: too slow to repeat
        for (int64_t repack : {0, 1})
          for (int64_t threads : {1, 2}) b->Args({static_cast<int64_t>(t), shape, rows, repack, threads});
      }
}

// A paged KV cache of ctx tokens (n_kv heads of dim d, pages of 256 tokens) of type t, with
// values uniform in [-1, 1].
struct BenchCache {
  std::vector<std::vector<uint8_t>> kp, vp;
  std::vector<const void*> kptr, vptr;
  owl::kernels::KVSpan k, v;
};

std::unique_ptr<BenchCache> make_cache(DType t, int64_t ctx, int64_t n_kv, int64_t d) {
  auto c = std::make_unique<BenchCache>();
  const int64_t page = 256, row = n_kv * d;
  std::mt19937 rng(1);
  std::vector<float> x(static_cast<size_t>(row));
  for (int64_t p = 0; p * page < ctx; ++p) {
    c->kp.emplace_back(owl::kernels::kv_bytes(t, page * row));
    c->vp.emplace_back(owl::kernels::kv_bytes(t, page * row));
    for (auto* buf : {&c->kp.back(), &c->vp.back()}) {
      for (int64_t j = 0; j < page; ++j) {
        for (float& v : x) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
        uint8_t* dst = buf->data() + owl::kernels::kv_bytes(t, j * row);
        if (t == DType::F32)
          std::memcpy(dst, x.data(), x.size() * 4);
        else
          owl::quantize_row(t, x.data(), dst, row);  // F16, Q8_0 or Q4_0
      }
    }
    c->kptr.push_back(c->kp.back().data());
    c->vptr.push_back(c->vp.back().data());
  }
  c->k = {t, page, c->kptr.data(), row};
  c->v = {t, page, c->vptr.data(), row};
  return c;
}

// One decode step of attention: 32 query heads over 8 KV heads of dim 128, 4096 cached tokens.
void BM_AttentionDecode(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  owl::set_default_threads(static_cast<int>(state.range(1)));
  const int64_t n_head = 32, n_kv = 8, d = 128, ctx = 4096;
  const auto cache = make_cache(t, ctx, n_kv, d);
  auto q = random_x(n_head * d);
  std::vector<float> out(static_cast<size_t>(n_head * d));
  for (auto _ : state) {
    owl::kernels::attention(q.data(), n_head, n_kv, d, d, cache->k, cache->v, 0, ctx, 1.0f / std::sqrt(128.0f),
                            out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["bytes"] = benchmark::Counter(
      2.0 * static_cast<double>(owl::kernels::kv_bytes(t, ctx * n_kv * d)) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(owl::dtype_name(t));
}

// One decode step of one layer's attention at depth: Qwen3-0.6B (16 query heads over 8 KV heads
// of dim 128) or DeepSeek-V2-Lite's MLA (16 heads over the one cached latent row of 576 values;
// the values are its first 512, read through the same span). Args: {type, depth, shape (0:
// Qwen3-0.6B, 1: MLA), threads}. At 16k the caches (67 MB, 38 MB for F16) exceed the L3.
// bytes_per_cpu_s divides the cache bytes by the process's CPU time (every pool thread's), which
// the other processes of a shared machine do not inflate as they do the wall-clock rate.
void BM_AttentionDepth(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const int64_t ctx = state.range(1);
  const bool mla = state.range(2) == 1;
  owl::set_default_threads(static_cast<int>(state.range(3)));
  const int64_t n_head = 16, n_kv = mla ? 1 : 8, dk = mla ? 576 : 128, dv = mla ? 512 : 128;
  const auto cache = make_cache(t, ctx, n_kv, dk);
  const owl::kernels::KVSpan& v = mla ? cache->k : cache->v;
  auto q = random_x(n_head * dk);
  std::vector<float> out(static_cast<size_t>(n_head * dv));
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    owl::kernels::attention(q.data(), n_head, n_kv, dk, dv, cache->k, v, 0, ctx, 1.0f / std::sqrt(192.0f), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const double cpu = process_cpu_seconds() - cpu0;
  const double bytes = static_cast<double>(owl::kernels::kv_bytes(t, ctx * n_kv * dk)) * (mla ? 1 : 2);
  set_byte_rates(state, bytes * static_cast<double>(state.iterations()), cpu);
  state.counters["cpu_us_per_call"] = 1e6 * cpu / static_cast<double>(state.iterations());
  state.SetLabel(std::string(owl::dtype_name(t)) + (mla ? " MLA" : " Qwen3-0.6B"));
}

// A decode token's attention over every layer of Qwen3-0.6B's cache at depth, laid out as the
// engine's KVCache lays it out (src/runtime/kv_cache.cpp): pages of 32 tokens, each holding those
// tokens' K then V rows for all 28 layers, in one 2 MiB-page (THP) arena. One layer's cache (BM_
// AttentionDepth) fits this machine's 260 MB L3; 28 layers (1.9 GB of F16 at 16k, 1.0 GB Q8_0,
// 0.53 GB Q4_0) stream from DRAM as a model's decode does. Args: {type, depth, threads}; the
// counters are per token (28 calls): cpu_us_per_token and the cache bytes per process CPU second.
struct ModelCache {
  uint8_t* arena = nullptr;
  size_t bytes = 0;
  std::vector<std::vector<const void*>> kptr, vptr;  // [layer][page]
  ModelCache() = default;
  ModelCache(const ModelCache&) = delete;
  ModelCache& operator=(const ModelCache&) = delete;
  ~ModelCache() {
    if (arena) ::munmap(arena, bytes);
  }
};

std::unique_ptr<ModelCache> make_model_cache(DType t, int64_t ctx, int64_t layers, int64_t row) {
  constexpr int64_t kPage = 32;
  auto c = std::make_unique<ModelCache>();
  const size_t block = (owl::kernels::kv_bytes(t, kPage * row) + 63) / 64 * 64;
  const size_t page = 2 * block * static_cast<size_t>(layers);
  const int64_t pages = (ctx + kPage - 1) / kPage;
  c->bytes = page * static_cast<size_t>(pages);
  void* p = ::mmap(nullptr, c->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  ::madvise(p, c->bytes, MADV_HUGEPAGE);
  c->arena = static_cast<uint8_t*>(p);
  // 64 random rows, copied round: the values do not change what is read, only how long the
  // setup takes.
  const size_t rb = owl::kernels::kv_bytes(t, row);
  std::vector<uint8_t> src(rb * 64);
  std::mt19937 rng(1);
  std::vector<float> x(static_cast<size_t>(row));
  for (size_t r = 0; r < 64; ++r) {
    for (float& v : x) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
    if (t == DType::F32)
      std::memcpy(src.data() + r * rb, x.data(), rb);
    else
      owl::quantize_row(t, x.data(), src.data() + r * rb, row);
  }
  c->kptr.resize(static_cast<size_t>(layers));
  c->vptr.resize(static_cast<size_t>(layers));
  size_t n = 0;
  for (int64_t pg = 0; pg < pages; ++pg)
    for (int64_t l = 0; l < layers; ++l)
      for (int kv = 0; kv < 2; ++kv) {
        uint8_t* b = c->arena + static_cast<size_t>(pg) * page + (2 * static_cast<size_t>(l) + kv) * block;
        (kv == 0 ? c->kptr : c->vptr)[static_cast<size_t>(l)].push_back(b);
        for (int64_t j = 0; j < kPage; ++j, n += 7)
          std::memcpy(b + static_cast<size_t>(j) * rb, src.data() + n % 64 * rb, rb);
      }
  return c;
}

void BM_AttentionDepthModel(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const int64_t ctx = state.range(1);
  owl::set_default_threads(static_cast<int>(state.range(2)));
  const int64_t layers = 28, n_head = 16, n_kv = 8, d = 128;
  const auto cache = make_model_cache(t, ctx, layers, n_kv * d);
  if (!cache) {
    state.SkipWithError("cannot map the cache");
    return;
  }
  std::vector<owl::kernels::KVSpan> ks, vs;
  for (int64_t l = 0; l < layers; ++l) {
    ks.push_back({t, 32, cache->kptr[static_cast<size_t>(l)].data(), n_kv * d});
    vs.push_back({t, 32, cache->vptr[static_cast<size_t>(l)].data(), n_kv * d});
  }
  auto q = random_x(n_head * d);
  std::vector<float> out(static_cast<size_t>(n_head * d));
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    for (int64_t l = 0; l < layers; ++l)
      owl::kernels::attention(q.data(), n_head, n_kv, d, d, ks[static_cast<size_t>(l)], vs[static_cast<size_t>(l)], 0,
                              ctx, 1.0f / std::sqrt(128.0f), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const double cpu = process_cpu_seconds() - cpu0;
  const double bytes = 2.0 * static_cast<double>(owl::kernels::kv_bytes(t, ctx * n_kv * d)) * layers;
  set_byte_rates(state, bytes * static_cast<double>(state.iterations()), cpu);
  state.counters["cpu_us_per_token"] = 1e6 * cpu / static_cast<double>(state.iterations());
  state.SetLabel(std::string(owl::dtype_name(t)) + " Qwen3-0.6B x28 layers");
}

// BM_AttentionDepth on the AVX2 kernels, which AVX-512 CPUs do not take (their speed on AVX2-only
// CPUs).
void BM_AttentionDepthAvx2(benchmark::State& state) {
  owl::kernels::set_default_isa(owl::kernels::Isa::Avx2);
  BM_AttentionDepth(state);
  owl::kernels::set_default_isa(owl::kernels::best_isa());
}

// One layer's attention over a whole causal prompt, as a dense model's prefill runs it: Qwen3-0.6B
// heads (16 query, 8 KV, dim 128), F16 cache, the prompt's `prompt` rows in calls of `rows` rows
// (positions 0.., each call seeing the cache up to its own rows). Args: {prompt, rows per call,
// kernel (0: attention_rows, 1: attention() per row, rows spread over the pool, 2: attention_rows
// on the AVX2 kernels, which AVX-512 CPUs do not take), threads}.
void BM_AttentionPrefill(benchmark::State& state) {
  const int64_t prompt = state.range(0), rows = state.range(1);
  const bool per_row = state.range(2) == 1;
  const owl::kernels::Isa saved = owl::kernels::default_isa();
  if (state.range(2) == 2) owl::kernels::set_default_isa(owl::kernels::Isa::Avx2);
  owl::set_default_threads(static_cast<int>(state.range(3)));
  const int64_t n_head = 16, n_kv = 8, d = 128;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto cache = make_cache(DType::F16, prompt, n_kv, d);
  auto q = random_x(prompt * n_head * d);
  std::vector<float> out(static_cast<size_t>(prompt * n_head * d));
  std::vector<int64_t> pos(static_cast<size_t>(prompt));
  for (int64_t i = 0; i < prompt; ++i) pos[static_cast<size_t>(i)] = i;
  for (auto _ : state) {
    for (int64_t r0 = 0; r0 < prompt; r0 += rows) {
      const int64_t n = std::min(rows, prompt - r0);
      if (per_row) {
        owl::default_pool().run(static_cast<int>(n), [&](int r, int) {
          const int64_t row = r0 + r;
          owl::kernels::attention(q.data() + row * n_head * d, n_head, n_kv, d, d, cache->k, cache->v, 0, row + 1,
                                  scale, out.data() + row * n_head * d);
        });
      } else {
        owl::kernels::attention_rows(q.data() + r0 * n_head * d, n,
                                     std::span<const int64_t>(pos.data() + r0, static_cast<size_t>(n)), n_head, n_kv, d,
                                     d, cache->k, cache->v, 0, scale, out.data() + r0 * n_head * d);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  owl::kernels::set_default_isa(saved);
  // Multiply-adds of the scores and the weighted values: (position + 1) keys per row and head.
  const double fma = static_cast<double>(prompt * (prompt + 1) / 2 * n_head * 2 * d);
  state.counters["FLOP"] = benchmark::Counter(2.0 * fma * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(per_row               ? "attention per row"
                 : state.range(2) == 2 ? "attention_rows, AVX2 kernels"
                                       : "attention_rows");
}

// A few rows appended to a long context (a short follow-up prompt, or speculative decoding):
// `rows` rows at positions ctx .. ctx + rows - 1, Qwen3-0.6B heads, F16 cache. Args: {rows, ctx,
// kernel (0: attention_rows, 1: attention() per row as blocks.cpp runs short runs), threads}.
void BM_AttentionFewRows(benchmark::State& state) {
  const int64_t rows = state.range(0), ctx = state.range(1);
  const bool per_row = state.range(2) != 0;
  owl::set_default_threads(static_cast<int>(state.range(3)));
  const int64_t n_head = 16, n_kv = 8, d = 128;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto cache = make_cache(DType::F16, ctx + rows, n_kv, d);
  auto q = random_x(rows * n_head * d);
  std::vector<float> out(static_cast<size_t>(rows * n_head * d));
  std::vector<int64_t> pos(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) pos[static_cast<size_t>(i)] = ctx + i;
  auto one_row = [&](int64_t r) {
    owl::kernels::attention(q.data() + r * n_head * d, n_head, n_kv, d, d, cache->k, cache->v, 0, ctx + r + 1, scale,
                            out.data() + r * n_head * d);
  };
  for (auto _ : state) {
    if (!per_row) {
      owl::kernels::attention_rows(q.data(), rows, pos, n_head, n_kv, d, d, cache->k, cache->v, 0, scale, out.data());
    } else if (rows < owl::default_pool().size()) {
      for (int64_t r = 0; r < rows; ++r) one_row(r);  // each call splits its heads over the pool
    } else {
      owl::default_pool().run(static_cast<int>(rows), [&](int r, int) { one_row(r); });
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(per_row ? "attention per row" : "attention_rows");
}

// What one decode token costs the quantised KV cache per layer of Qwen3-0.6B (16 query heads,
// 8 KV heads, head dim 128): the Hadamard rotation of q, k, v and the attention output, and
// k and v quantised. Args: {KV type id, fast (0: scalar reference, 1: best ISA)}. CPU time.
void BM_KvWriter(benchmark::State& state) {
  const auto t = static_cast<DType>(state.range(0));
  const owl::kernels::Isa saved = owl::kernels::default_isa();
  owl::kernels::set_default_isa(state.range(1) ? owl::kernels::best_isa() : owl::kernels::Isa::Scalar);
  constexpr int64_t kQ = 16 * 128, kKv = 8 * 128;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> q(kQ), k(kKv), v(kKv), att(kQ);
  for (auto* x : {&q, &k, &v, &att})
    for (auto& e : *x) e = nd(rng);
  std::vector<uint8_t> kr(owl::row_bytes(t, kKv)), vr(owl::row_bytes(t, kKv));
  for (auto _ : state) {
    owl::hadamard_blocks(q.data(), kQ, 128);
    owl::hadamard_blocks(k.data(), kKv, 128);
    owl::hadamard_blocks(v.data(), kKv, 128);
    owl::kernels::quantize_kv_row(t, k.data(), kr.data(), kKv);
    owl::kernels::quantize_kv_row(t, v.data(), vr.data(), kKv);
    owl::hadamard_blocks(att.data(), kQ, 128);
    benchmark::DoNotOptimize(kr.data());
    benchmark::DoNotOptimize(vr.data());
  }
  owl::kernels::set_default_isa(saved);
  state.SetLabel(std::string(owl::dtype_name(t)) + (state.range(1) ? " fast" : " scalar"));
}

void TypeArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0, DType::Q4_0, DType::Q5_K, DType::IQ4_NL,
                  DType::F16, DType::BF16, DType::F32})
    for (int threads : {1, 2}) b->Args({static_cast<int64_t>(t), threads});
}

// Every type packed (where it has a layout) at 1 and 2 threads, and the packed types plain at 1.
void DecodeArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0, DType::Q4_0, DType::Q5_K, DType::IQ4_NL,
                  DType::F16, DType::BF16, DType::F32}) {
    const auto ti = static_cast<int64_t>(t);
    for (int64_t threads : {1, 2}) b->Args({ti, threads, 1});
    if (t == DType::Q4_K || t == DType::Q6_K || t == DType::Q8_0 || t == DType::Q5_0) b->Args({ti, 1, 0});
  }
}

BENCHMARK(BM_AttentionPrefill)
    ->ArgsProduct({{512}, {64, 512}, {0, 1, 2}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionFewRows)
    ->ArgsProduct({{1, 2, 4, 8, 16}, {4096}, {0, 1}, {2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatmulDecode)->Apply(DecodeArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemvAccess)
    ->ArgsProduct({{static_cast<int64_t>(DType::Q4_K), static_cast<int64_t>(DType::Q6_K),
                    static_cast<int64_t>(DType::Q8_0)},
                   {0, 1, 2},
                   {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatmulPrefill)->Apply(TypeArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MatmulCodebook)->Apply(CodebookArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatmulShape)->Apply(ShapeArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AttentionDepth)
    ->ArgsProduct({{static_cast<int64_t>(DType::F16), static_cast<int64_t>(DType::Q8_0),
                    static_cast<int64_t>(DType::Q4_0)},
                   {4096, 16384},
                   {0, 1},
                   {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AttentionDepthModel)
    ->ArgsProduct({{static_cast<int64_t>(DType::F16), static_cast<int64_t>(DType::Q8_0),
                    static_cast<int64_t>(DType::Q4_0)},
                   {4096, 16384},
                   {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionDepthAvx2)
    ->ArgsProduct({{static_cast<int64_t>(DType::F16), static_cast<int64_t>(DType::Q8_0),
                    static_cast<int64_t>(DType::Q4_0)},
                   {16384},
                   {0},
                   {1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_KvWriter)
    ->ArgsProduct({{static_cast<int64_t>(DType::Q8_0), static_cast<int64_t>(DType::Q4_0)}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AttentionDecode)
    ->Args({static_cast<int64_t>(DType::F16), 1})
    ->Args({static_cast<int64_t>(DType::F16), 2})
    ->Args({static_cast<int64_t>(DType::F32), 1})
    ->Args({static_cast<int64_t>(DType::F32), 2})
    ->Args({static_cast<int64_t>(DType::Q8_0), 1})
    ->Args({static_cast<int64_t>(DType::Q8_0), 2})
    ->Args({static_cast<int64_t>(DType::Q4_0), 1})
    ->Args({static_cast<int64_t>(DType::Q4_0), 2})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
