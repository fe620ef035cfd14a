// Conversion throughput of `owl quantize` / --quant: convert_tensor (formats/quant_plan.h)
// on a 4096 x 4096 matrix, from a stored source type to a target type, over the thread pool.
// Args: {source type id, target type id, threads}. Counter bytes = source bytes per second
// (what "MB/s of input" in owl quantize's summary measures).
// Run: build/bench_quantize --benchmark_filter=Convert
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "base/thread_pool.h"
#include "formats/quant_plan.h"
#include "tensor/quants.h"

namespace {

using owl::DType;

constexpr int64_t kIn = 4096, kOut = 4096;

void BM_Convert(benchmark::State& state) {
  const auto from = static_cast<DType>(state.range(0)), to = static_cast<DType>(state.range(1));
  owl::ThreadPool pool(static_cast<int>(state.range(2)));
  std::vector<float> row(kIn);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const size_t src_rb = owl::row_bytes(from, kIn);
  std::vector<uint8_t> src(src_rb * kOut), dst(owl::row_bytes(to, kIn) * kOut);
  for (int64_t r = 0; r < kOut; ++r) {
    for (auto& v : row) v = nd(rng) * 0.02f;
    owl::quantize_row(from, row.data(), src.data() + r * src_rb, kIn);
  }
  owl::TensorView t;
  t.name = "w";
  t.type = from;
  t.n_dims = 2;
  t.ne = {kIn, kOut, 1, 1};
  t.data = src.data();
  for (auto _ : state) {
    owl::convert_tensor(t, to, dst.data(), pool);
    benchmark::DoNotOptimize(dst.data());
  }
  state.counters["bytes"] = benchmark::Counter(
      static_cast<double>(src.size()) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(owl::dtype_name(from)) + " -> " + owl::dtype_name(to));
}

void ConvertArgs(benchmark::internal::Benchmark* b) {
  const int64_t F32 = 0, F16 = 1, BF16 = 30, Q8_0 = 8, Q4_0 = 2, Q4_K = 12, Q5_K = 13, Q6_K = 14;
  for (int64_t threads : {1, 4}) {
    for (int64_t to : {Q8_0, Q4_0, Q4_K, Q5_K, Q6_K}) b->Args({BF16, to, threads});
    b->Args({F16, Q8_0, threads});
    b->Args({F32, Q4_K, threads});
    b->Args({Q8_0, Q4_K, threads});  // requantising
  }
}

BENCHMARK(BM_Convert)->Apply(ConvertArgs)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
