// owl bench MODEL [-p 512] [-n 128] [-t THREADS] [-r REPS] [-d DEPTH] [--seqs S] [--verify-rows 1,2,3,5]
//           [--mla-form F] [--json]
// Prompt processing (one forward call over p tokens) and generation (n single-token
// decode steps; with --seqs S, of S sequences at once, one row each per forward call, as a
// server's continuous batching runs them) in tokens/s, both after DEPTH tokens already in the
// context (0: from an empty context; the fill's time is printed), min and median over the
// repetitions after a warm-up; plus the machine's measured read bandwidth (best of several
// passes, their spread, and a STREAM triad as a cross-check), the weight bytes one decode step
// touches, and the share of that roofline reached; the load time and the peak resident memory
// against the memory bound (peak RSS <= model file + KV cache + 5%). --verify-rows also
// times one forward call over R rows of one sequence after a 128-token context (what verifying
// R-1 speculative drafts costs), median over 8 x REPS calls, each rolled back out of the cache.
// --mla-form forces one form of DeepSeek's attention (A/B of model/mla.h's two forms).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/memory_bandwidth.h"
#include "base/thread_pool.h"
#include "base/memory_budget.h"
#include "cli/bench_parallel.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "model/lazy_experts.h"
#include "dist/distributed.h"
#include "formats/gguf.h"
#include "hub/resolve.h"
#include "kernels/kernels.h"
#include "model/expert_cache.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model;
  int64_t pp = 512, tg = 128;
  int64_t depth = 0;  // tokens in the context before each timed run (llama-bench's -d)
  int threads = 0, reps = 3;
  int64_t seqs = 1;  // sequences decoded together
  bool json = false;
  std::string kv_type = "f16";
  std::string quant;       // --quant: convert a Hugging Face folder while it loads
  std::string split;       // --split: under mpirun, how the model is split over the ranks
  std::string mem;         // --mem: the weights' memory budget (empty: the default)
  bool no_repack = false;  // A/B: weights in the file's layout instead of the interleaved copies
  bool no_vnni = false;    // A/B: the AVX2 kernels where the CPU also has AVX-512 VNNI
  std::vector<int64_t> verify_rows;
  std::vector<int> parallel;      // --parallel: sequence counts served together through the engine
  std::string tokenizer;          // --tokenizer: for --parallel on a file without a vocabulary (owl synth's)
  bool no_warmup = false;         // the first timed run pays the page faults (cold start)
  std::string mla_form = "auto";  // A/B: force MLA's absorbed or expanded attention (auto: by cost)
};

constexpr int64_t kVerifyContext = 128;

// Weight bytes read per decoded token: every tensor once, except the embedding
// table (one row, unless it doubles as the output head) and routed experts
// (only n_expert_used of n_expert are touched).
double bytes_per_token(const owl::ModelSource& src) {
  const auto& c = src.config();
  const bool tied = !src.find("output.weight").has_value();
  double total = 0;
  for (const auto& t : src.tensors()) {
    double b = static_cast<double>(t.n_bytes());
    if (t.name == "token_embd.weight" && !tied) b = static_cast<double>(t.row_size());
    if (t.name.find("_exps.") != std::string::npos && c.n_expert > 0)
      b *= static_cast<double>(c.n_expert_used) / static_cast<double>(c.n_expert);
    total += b;
  }
  return total;
}

// Weight bytes the matmuls of a forward call read (each weight once per call: a matmul reads
// its weight once for all its rows, up to the kernels' row tiles), split into routed-expert
// matrices and the rest (attention, shared experts, dense FFNs, routers, output head). What a
// forward over R rows must at least read from memory: the memory-bound floor of its time.
class WeightReads : public owl::kernels::ActivationObserver {
 public:
  void observe(const owl::kernels::Weight& W, const float*, int64_t) override {
    const auto b = static_cast<int64_t>(owl::row_bytes(W.type(), W.in())) * W.out();
    (W.name().find("_exps.") != std::string::npos ? routed_ : other_).fetch_add(b, std::memory_order_relaxed);
  }
  int64_t routed() const { return routed_.load(); }
  int64_t other() const { return other_.load(); }

 private:
  std::atomic<int64_t> routed_{0}, other_{0};
};

struct Stats {
  double min = 0, median = 0;
};
Stats stats(std::vector<double> tps) {
  std::sort(tps.begin(), tps.end());
  return {tps.front(), tps[tps.size() / 2]};
}

// Peak resident set size of this process in bytes: VmHWM of /proc/self/status, else getrusage.
double peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;  // "VmHWM:  123 kB"
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) * 1024.0;
}

// Bytes of the model's files: the GGUF file, or every file of a Hugging Face folder.
double model_file_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return static_cast<double>(fs::file_size(path));
  double total = 0;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_regular_file()) total += static_cast<double>(e.file_size());
  return total;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --parallel: each sequence count once per repetition, the counts taking turns; best and worst
// of each count's aggregate decode speed.
void run_parallel(const Options& o, owl::Model& model, const owl::ModelSource& source, owl::DType kv_type,
                  nlohmann::json& j) {
  // The engine detokenizes what it generates: the model's vocabulary, or --tokenizer's.
  const auto* gguf = source.gguf_file();
  std::unique_ptr<owl::Tokenizer> tokenizer;
  if (!o.tokenizer.empty())
    tokenizer = owl::Tokenizer::open(o.tokenizer);
  else if (gguf && (!gguf->metadata().has("tokenizer.ggml.tokens") ||
                    gguf->metadata().get_string("tokenizer.ggml.model") == "none"))
    throw owl::UsageError("--parallel: " + o.model +
                          " has no vocabulary (an owl synth file?); give one with --tokenizer PATH");
  else
    tokenizer = gguf ? owl::Tokenizer::from_gguf(*gguf) : owl::Tokenizer::from_hf_dir(source.hf_folder());
  std::vector<std::vector<owl::cli::ParallelRun>> runs(o.parallel.size());
  // Warm-up: pages the weights in outside the timed runs.
  owl::cli::bench_parallel(model, *tokenizer, 1, std::min<int64_t>(o.pp, 32), std::min<int64_t>(o.tg, 4), kv_type, 1);
  for (int r = 0; r < o.reps; ++r)
    for (size_t k = 0; k < o.parallel.size(); ++k)
      runs[k].push_back(owl::cli::bench_parallel(model, *tokenizer, o.parallel[k], o.pp, o.tg, kv_type,
                                                 static_cast<uint32_t>(1000 * r + k)));
  for (auto& rs : runs) {
    std::sort(rs.begin(), rs.end(), [](const auto& a, const auto& b) { return a.decode_tps < b.decode_tps; });
    const owl::cli::ParallelRun& best = rs.back();
    j["parallel"].push_back({{"sequences", best.sequences},
                             {"prompt_tokens", best.prompt_tokens},
                             {"generated_tokens", best.generated_tokens},
                             {"decode_steps", best.decode_steps},
                             {"decode_tps_best", best.decode_tps},
                             {"decode_tps_worst", rs.front().decode_tps},
                             {"total_tps", best.total_tps},
                             {"seconds", best.seconds}});
  }
}

void run(const Options& o) {
  if (o.pp < 0 || o.tg < 0 || o.reps < 1 || (o.pp == 0 && o.tg == 0))
    throw owl::UsageError("-p and -n must be >= 0 (not both 0) and -r >= 1");
  if (o.seqs < 1 || o.seqs > 256) throw owl::UsageError("--seqs must be 1..256");
  if (o.depth < 0) throw owl::UsageError("-d/--depth must be >= 0");
  if (o.seqs > 1 && o.depth > 0) throw owl::UsageError("--seqs goes without -d");
  for (int n : o.parallel)
    if (n < 1 || n > 256) throw owl::UsageError("--parallel: each sequence count must be 1..256");
  if (!o.parallel.empty() && (o.pp < 1 || o.tg < 1 || o.depth > 0 || !o.verify_rows.empty() || o.seqs > 1))
    throw owl::UsageError("--parallel needs -p and -n >= 1 and goes without -d, --seqs and --verify-rows");
  const int threads = o.threads > 0 ? o.threads : owl::default_pool().size();
  owl::set_default_threads(threads);
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load
  const std::string path = owl::hub::resolve_model(o.model, /*pull_if_missing=*/true);
  const auto t_load = std::chrono::steady_clock::now();
  auto source = owl::cli::open_source(path, o.quant, o.mem);
  source->prepare.repack = !o.no_repack;
  if (o.mla_form == "absorbed") source->mla_form = owl::MlaForm::Absorbed;
  if (o.mla_form == "expanded") source->mla_form = owl::MlaForm::Expanded;
  // The kernels that run: the packed weights' (chosen at load), the default ISA's elsewhere.
  const owl::kernels::Isa isa =
      o.no_vnni ? std::min(owl::kernels::default_isa(), owl::kernels::Isa::Avx2) : owl::kernels::default_isa();
  source->prepare.isa = isa;
  auto model = owl::dist::load_model(*source, owl::dist::parse_split(o.split));
  if (!model) return;  // a rank of a distributed run other than 0: it served rank 0's steps
  const double load_s = seconds_since(t_load);
  const int64_t n_vocab = model->n_vocab();
  if (!o.parallel.empty()) {
    nlohmann::json j = {{"model", o.model}, {"arch", model->config().arch},           {"threads", threads},
                        {"reps", o.reps},   {"kernels", owl::kernels::isa_name(isa)}, {"load_s", load_s}};
    run_parallel(o, *model, *source, kv_type, j);
    if (o.json) {
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("model %s (%s), %d threads, %d reps, %s kernels; each sequence %lld prompt + %lld generated tokens\n",
                o.model.c_str(), model->config().arch.c_str(), threads, o.reps, j["kernels"].get<std::string>().c_str(),
                static_cast<long long>(o.pp), static_cast<long long>(o.tg));
    for (const auto& p : j["parallel"])
      std::printf("%2d sequences: decode %8.2f t/s aggregate (worst %.2f), all tokens %8.2f t/s, %.2f s\n",
                  p["sequences"].get<int>(), p["decode_tps_best"].get<double>(), p["decode_tps_worst"].get<double>(),
                  p["total_tps"].get<double>(), p["seconds"].get<double>());
    return;
  }

  owl::KVCacheOptions kv_opts;
  kv_opts.type = kv_type;
  int64_t most_rows = 0;
  for (int64_t r : o.verify_rows) {
    if (r < 1 || r > 64) throw owl::UsageError("--verify-rows: each count must be 1..64");
    if (o.depth > 0) throw owl::UsageError("--verify-rows times its rows after 128 tokens: give it without -d");
    most_rows = std::max(most_rows, r);
  }
  kv_opts.n_ctx = o.depth + std::max<int64_t>({o.pp, o.tg, kVerifyContext + most_rows}) + 16;
  kv_opts.n_seq_max = o.seqs;
  owl::KVCache kv(model->kv_shape(), kv_opts);

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(n_vocab - 1));
  owl::Batch batch;
  // The timed runs start at position `depth`: the context before it is filled once (untimed,
  // in 512-token calls) and every run is cut back to it.
  auto fill_depth = [&] {
    kv.remove(0);
    for (int64_t at = 0; at < o.depth; at += 512) {
      const int64_t end = std::min(o.depth, at + 512);
      batch.clear();
      for (int64_t i = at; i < end; ++i) batch.add(tok(rng), i, 0, i + 1 == end);
      model->forward(batch, kv);
    }
  };
  auto prefill = [&](int64_t n) {
    kv.truncate(0, o.depth);
    batch.clear();
    for (int64_t i = 0; i < n; ++i) batch.add(tok(rng), o.depth + i, 0, i + 1 == n);
    model->forward(batch, kv);
  };
  auto decode = [&](int64_t n) {
    kv.truncate(0, o.depth);
    for (int32_t q = 1; q < o.seqs; ++q) kv.remove(q);  // --seqs goes without -d
    for (int64_t i = 0; i < n; ++i) {
      batch.clear();
      for (int32_t q = 0; q < o.seqs; ++q) batch.add(tok(rng), o.depth + i, q, true);
      model->forward(batch, kv);
    }
  };
  const auto t_fill = std::chrono::steady_clock::now();
  fill_depth();
  const double fill_s = seconds_since(t_fill);
  // Warm-up: page the weights in and let the thread pool spin up. The first call's time is
  // mostly page faults on the mapped weights.
  double first_s = 0;
  if (!o.no_warmup) {
    const auto t_first = std::chrono::steady_clock::now();
    prefill(std::min<int64_t>(std::max<int64_t>(o.pp, 1), 32));
    first_s = seconds_since(t_first);
    decode(std::min<int64_t>(std::max<int64_t>(o.tg, 1), 4));
    // A MoE model's resident experts are packed the first time they are picked (lazy_experts.h):
    // the rest are packed now, so that the timed runs do not pack. A cold start (--no-warmup)
    // leaves them lazy: packing is part of what its first request costs.
    owl::pack_all_lazy_experts();
  }

  // Forward calls over R rows of one sequence at positions kVerifyContext.., rolled back each time;
  // the sizes take turns, so a noisy neighbour slows them alike.
  std::vector<std::pair<int64_t, double>> verify_ms;
  struct Reads {
    double other = 0, routed = 0;  // weight bytes per call
  };
  std::vector<Reads> verify_bytes;
  if (!o.verify_rows.empty()) {
    prefill(kVerifyContext);
    std::vector<std::vector<double>> ms(o.verify_rows.size());
    for (int i = 0; i < 8 * std::max(o.reps, 1) + 2; ++i)
      for (size_t k = 0; k < o.verify_rows.size(); ++k) {
        batch.clear();
        for (int64_t r = 0; r < o.verify_rows[k]; ++r) batch.add(tok(rng), kVerifyContext + r, 0, true);
        const auto t0 = std::chrono::steady_clock::now();
        model->forward(batch, kv);
        if (i >= 2) ms[k].push_back(1e3 * seconds_since(t0));  // two warm-up rounds
        kv.truncate(0, kVerifyContext);
      }
    for (size_t k = 0; k < ms.size(); ++k) {
      std::sort(ms[k].begin(), ms[k].end());
      verify_ms.emplace_back(o.verify_rows[k], ms[k][ms[k].size() / 2]);
    }
    // The weight bytes of each size, counted over as many untimed calls (other random tokens:
    // the routed share varies with the experts the rows pick).
    for (size_t k = 0; k < o.verify_rows.size(); ++k) {
      WeightReads reads;
      owl::kernels::set_activation_observer(&reads);
      const int calls = 8 * std::max(o.reps, 1);
      for (int i = 0; i < calls; ++i) {
        batch.clear();
        for (int64_t r = 0; r < o.verify_rows[k]; ++r) batch.add(tok(rng), kVerifyContext + r, 0, true);
        model->forward(batch, kv);
        kv.truncate(0, kVerifyContext);
      }
      owl::kernels::set_activation_observer(nullptr);
      verify_bytes.push_back({static_cast<double>(reads.other()) / calls, static_cast<double>(reads.routed()) / calls});
    }
  }

  std::vector<double> pp_tps, tg_tps;
  // Streamed experts: the expert cache's counts over the timed decode runs only.
  owl::ExpertCache* cache = source->expert_cache.get();
  owl::ExpertCache::Stats tg_cache;
  for (int r = 0; r < o.reps; ++r) {
    if (o.pp > 0) {
      auto t0 = std::chrono::steady_clock::now();
      prefill(o.pp);
      pp_tps.push_back(static_cast<double>(o.pp) / seconds_since(t0));
    }
    if (o.tg > 0) {
      const owl::ExpertCache::Stats before = cache ? cache->stats() : owl::ExpertCache::Stats{};
      auto t0 = std::chrono::steady_clock::now();
      decode(o.tg);
      tg_tps.push_back(static_cast<double>(o.tg * o.seqs) / seconds_since(t0));
      if (cache) {
        const owl::ExpertCache::Stats after = cache->stats();
        tg_cache.hits += after.hits - before.hits;
        tg_cache.misses += after.misses - before.misses;
        tg_cache.bytes_read += after.bytes_read - before.bytes_read;
        tg_cache.read_seconds += after.read_seconds - before.read_seconds;
      }
    }
  }

  // Before the bandwidth probe, whose 512 MiB buffer is no part of the model's footprint.
  const double rss = peak_rss_bytes();
  const double file_bytes = model_file_bytes(path);
  const double kv_bytes = static_cast<double>(kv.bytes_allocated());
  const double rss_bound = 1.05 * (file_bytes + kv_bytes);

  // The probe's buffer would not fit beside a cache sized to the budget: skipped when streaming,
  // and when nothing was decoded (no roofline to compare with; a cold-start run ends sooner).
  const bool probe = !cache && o.tg > 0;
  const owl::BandwidthProbe read_bw = probe ? owl::probe_read_bandwidth(threads) : owl::BandwidthProbe{};
  const owl::BandwidthProbe triad_bw = probe ? owl::probe_triad_bandwidth(threads) : owl::BandwidthProbe{};
  const double bw = read_bw.best;
  const double bpt = bytes_per_token(*source);
  const double roofline = bw / bpt;  // 0 without a probe

  nlohmann::json j;
  j["model"] = o.model;
  j["arch"] = model->config().arch;
  j["threads"] = threads;
  j["reps"] = o.reps;
  j["kernels"] = owl::kernels::isa_name(isa);
  if (o.pp > 0) {
    Stats s = stats(pp_tps);
    j["pp"] = {{"tokens", o.pp}, {"tps_min", s.min}, {"tps_median", s.median}};
  }
  if (o.tg > 0) {
    Stats s = stats(tg_tps);
    j["tg"] = {{"tokens", o.tg}, {"seqs", o.seqs}, {"tps_min", s.min}, {"tps_median", s.median}};
    if (o.seqs == 1) j["roofline_share"] = s.median / roofline;  // the roofline is one sequence's
  }
  j["bandwidth_gbs"] = bw / 1e9;
  j["bandwidth_passes"] = {{"passes", read_bw.passes},
                           {"best_gbs", read_bw.best / 1e9},
                           {"median_gbs", read_bw.median / 1e9},
                           {"worst_gbs", read_bw.worst / 1e9}};
  j["triad_gbs"] = {{"passes", triad_bw.passes},
                    {"best_gbs", triad_bw.best / 1e9},
                    {"median_gbs", triad_bw.median / 1e9},
                    {"worst_gbs", triad_bw.worst / 1e9}};
  j["depth"] = o.depth;
  j["fill_s"] = fill_s;
  j["bytes_per_token"] = bpt;
  j["roofline_tps"] = roofline;
  j["load_s"] = load_s;
  j["first_forward_s"] = first_s;
  j["memory"] = {{"peak_rss_bytes", rss},
                 {"file_bytes", file_bytes},
                 {"kv_cache_bytes", kv_bytes},
                 {"bound_bytes", rss_bound},
                 {"within_bound", rss <= rss_bound}};
  // Per size: the weight bytes read, their floor time at the probe's bandwidth, and the measured
  // time over that floor.
  const auto bytes_of = [&](size_t k) { return verify_bytes[k].other + verify_bytes[k].routed; };
  for (size_t k = 0; k < verify_ms.size(); ++k) {
    const auto& [rows, ms] = verify_ms[k];
    j["verify_rows"].push_back({{"rows", rows},
                                {"ms_median", ms},
                                {"vs_one_row", ms / verify_ms.front().second},
                                {"weight_bytes", bytes_of(k)},
                                {"routed_bytes", verify_bytes[k].routed},
                                {"bytes_vs_one_row", bytes_of(k) / bytes_of(0)},
                                {"floor_ms", bw > 0 ? 1e3 * bytes_of(k) / bw : 0.0}});
  }
  if (cache) {
    const owl::ExpertCache::Stats all = cache->stats();
    j["expert_cache"] = {{"mem_budget_bytes", source->mem_budget},
                         {"cache_bytes", cache->capacity()},
                         {"tg_hit_rate", tg_cache.hit_rate()},
                         {"tg_misses", tg_cache.misses},
                         {"tg_read_bytes", tg_cache.bytes_read},
                         {"tg_read_gbs", tg_cache.read_gb_per_s()},
                         {"read_bytes", all.bytes_read},
                         {"read_gbs", all.read_gb_per_s()},
                         {"evictions", all.evictions},
                         {"prefetches", all.prefetches},
                         {"prefetch_used", all.prefetch_used}};
  }
  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  for (size_t k = 0; k < verify_ms.size(); ++k) {
    const auto& [rows, ms] = verify_ms[k];
    std::printf(
        "verify %2lld rows after %lld: %8.2f ms median, %.2fx the first size; weights read %.1f MB (routed "
        "experts %.1f MB), %.2fx the first size",
        static_cast<long long>(rows), static_cast<long long>(kVerifyContext), ms, ms / verify_ms.front().second,
        bytes_of(k) / 1e6, verify_bytes[k].routed / 1e6, bytes_of(k) / bytes_of(0));
    if (bw > 0)
      std::printf("; floor at %.1f GB/s %.2f ms, measured %.2fx it", bw / 1e9, 1e3 * bytes_of(k) / bw,
                  ms / (1e3 * bytes_of(k) / bw));
    std::printf("\n");
  }
  std::printf("model %s (%s), %d threads, %d reps, %s kernels, depth %lld\n", o.model.c_str(),
              model->config().arch.c_str(), threads, o.reps, j["kernels"].get<std::string>().c_str(),
              static_cast<long long>(o.depth));
  if (o.pp > 0)
    std::printf("pp%-5lld %8.2f t/s median  %8.2f t/s min\n", static_cast<long long>(o.pp),
                j["pp"]["tps_median"].get<double>(), j["pp"]["tps_min"].get<double>());
  if (o.tg > 0)
    std::printf("tg%-5lld %8.2f t/s median  %8.2f t/s min%s\n", static_cast<long long>(o.tg),
                j["tg"]["tps_median"].get<double>(), j["tg"]["tps_min"].get<double>(),
                o.seqs > 1 ? (", " + std::to_string(o.seqs) + " sequences at once").c_str() : "");
  if (cache) {
    std::printf(
        "experts stream: budget %s, expert cache %s; decode hit rate %.1f%%, read %.1f MB/token at %.2f GB/s "
        "while reading; %.2f GB read in all\n",
        owl::format_memory_size(source->mem_budget).c_str(), owl::format_memory_size(cache->capacity()).c_str(),
        100.0 * tg_cache.hit_rate(), o.tg > 0 ? static_cast<double>(tg_cache.bytes_read) / 1e6 / (o.tg * o.reps) : 0.0,
        tg_cache.read_gb_per_s(), static_cast<double>(cache->stats().bytes_read) / 1e9);
  } else if (probe) {
    std::printf("read bandwidth %.1f GB/s (best of %d passes; median %.1f, worst %.1f; STREAM triad %.1f GB/s), ",
                bw / 1e9, read_bw.passes, read_bw.median / 1e9, read_bw.worst / 1e9, triad_bw.best / 1e9);
    std::printf("%.1f MB of weights per token, decode roofline %.1f t/s", bpt / 1e6, roofline);
    if (o.tg > 0 && o.seqs == 1) std::printf(", reached %.0f%%", 100.0 * j["roofline_share"].get<double>());
    std::printf("\n");
  }
  std::printf("load %.2f s, first forward %.2f s", load_s, first_s);
  if (o.depth > 0) std::printf(", context filled to %lld in %.2f s", static_cast<long long>(o.depth), fill_s);
  std::printf("\n");
  std::printf("peak RSS %.1f MB; file %.1f MB + KV cache %.1f MB + 5%% = %.1f MB: %s\n", rss / 1e6, file_bytes / 1e6,
              kv_bytes / 1e6, rss_bound / 1e6, rss <= rss_bound ? "within bound" : "OVER BOUND");
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("bench", "Measure prompt and generation speed against the memory-bandwidth roofline");
  sub->add_option("model", o->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("-p,--prompt", o->pp, "prompt tokens per prefill (0: skip)");
  sub->add_option("-n,--gen", o->tg, "generated tokens per decode run (0: skip)");
  sub->add_option("-t,--threads", o->threads, "worker threads (default: all CPUs)");
  sub->add_option("-r,--reps", o->reps, "repetitions after the warm-up");
  sub->add_option("--seqs", o->seqs,
                  "decode this many sequences at once (one row each per forward call); t/s counts all of them");
  sub->add_option("-d,--depth", o->depth, "tokens already in the context when each timed run starts (default 0)");
  sub->add_option("--kv-type", o->kv_type, "KV cache element type: f16 (default), q8_0, q4_0 or f32");
  owl::cli::add_quant_option(sub, o->quant);
  owl::cli::add_split_option(sub, o->split);
  owl::cli::add_mem_option(sub, o->mem);
  sub->add_flag("--no-repack", o->no_repack, "keep weights in the file's layout (no interleaved copies; for A/B)");
  sub->add_flag(
      "--no-vnni", o->no_vnni,
      "use the AVX2 kernels even where the CPU has AVX-512 VNNI (same results; for A/B with AVX2-only machines)");
  sub->add_option("--verify-rows", o->verify_rows,
                  "also time one forward call over each of these row counts of one sequence (speculative verify "
                  "cost), e.g. 1,2,3,5")
      ->delimiter(',');
  sub->add_option("--parallel", o->parallel,
                  "instead of -p/-n runs of one sequence: N sequences of -p prompt and -n generated tokens each, "
                  "served together through the engine's continuous batching, for each N given (e.g. 1,4,8,16)")
      ->delimiter(',');
  sub->add_option("--tokenizer", o->tokenizer,
                  "with --parallel, for a model file without a vocabulary: a GGUF file, tokenizer.json or folder");
  sub->add_flag("--no-warmup", o->no_warmup,
                "no warm-up run: the first timed run pays the first touch of the weights (cold start, with -r 1)");
  sub->add_option("--mla-form", o->mla_form,
                  "MLA (DeepSeek) attention: auto (default: by cost), absorbed or expanded (for A/B; same results "
                  "within float rounding)")
      ->check(CLI::IsMember({"auto", "absorbed", "expanded"}));
  sub->add_flag("--json", o->json, "print the results as JSON");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
