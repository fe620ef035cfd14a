// Tokenizer throughput: encode (and decode) of the whole reference corpus
// (../shared/tokenizers/corpus.jsonl, 388 texts) per family, in bytes/s;
// a 100 KB run of one character (the BPE merge loop's worst case); and the
// time to load each tokenizer.json. ../shared is found next to this source
// file or through OWL_SHARED.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "text/tokenizer.h"

namespace {

std::filesystem::path shared_dir() {
  const char* env = std::getenv("OWL_SHARED");
  return env ? std::filesystem::path(env) : std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared";
}

const std::vector<std::string>& corpus() {
  static std::vector<std::string> texts = [] {
    std::vector<std::string> v;
    std::ifstream f(shared_dir() / "tokenizers" / "corpus.jsonl");
    std::string line;
    while (std::getline(f, line)) v.push_back(nlohmann::json::parse(line)["text"]);
    return v;
  }();
  return texts;
}

const owl::Tokenizer& family(const std::string& name) {
  static std::map<std::string, std::unique_ptr<owl::Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = owl::Tokenizer::from_hf_dir((shared_dir() / "tokenizers" / name).string());
  return *t;
}

const char* const kFamilies[] = {"qwen3", "deepseek-v3", "llama-3.1", "mistral-nemo", "mistral-7b-v0.1"};

void BM_EncodeCorpus(benchmark::State& state) {
  const owl::Tokenizer& t = family(kFamilies[state.range(0)]);
  state.SetLabel(kFamilies[state.range(0)]);
  size_t bytes = 0, tokens = 0;
  for (auto _ : state) {
    for (const std::string& s : corpus()) {
      auto ids = t.encode(s);
      tokens += ids.size();
      bytes += s.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EncodeCorpus)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

void BM_DecodeCorpus(benchmark::State& state) {
  const owl::Tokenizer& t = family(kFamilies[state.range(0)]);
  state.SetLabel(kFamilies[state.range(0)]);
  std::vector<std::vector<int32_t>> all;
  for (const std::string& s : corpus()) all.push_back(t.encode(s));
  size_t bytes = 0;
  for (auto _ : state) {
    for (const auto& ids : all) {
      std::string s = t.decode(ids);
      bytes += s.size();
      benchmark::DoNotOptimize(s.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_DecodeCorpus)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

// One pre-token of 100 KB: quadratic merging would take seconds here.
void BM_EncodeRepeatedChar(benchmark::State& state) {
  const owl::Tokenizer& t = family(kFamilies[state.range(0)]);
  state.SetLabel(kFamilies[state.range(0)]);
  const std::string run(100000, 'a');
  for (auto _ : state) benchmark::DoNotOptimize(t.encode(run).size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * run.size()));
}
BENCHMARK(BM_EncodeRepeatedChar)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

void BM_LoadTokenizerJson(benchmark::State& state) {
  std::string dir = (shared_dir() / "tokenizers" / kFamilies[state.range(0)]).string();
  state.SetLabel(kFamilies[state.range(0)]);
  for (auto _ : state) benchmark::DoNotOptimize(owl::Tokenizer::from_hf_dir(dir).get());
}
BENCHMARK(BM_LoadTokenizerJson)->DenseRange(0, 4)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
