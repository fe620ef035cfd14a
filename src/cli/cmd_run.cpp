// owl run MODEL "prompt" [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
//         [--threads N] [--ctx N] [--stop STR]... [--kv-type f16|f32] [penalties]
// Encodes the prompt (with the model's BOS when it adds one) and generates through the
// same engine as `owl serve` (runtime/engine.h), one request, the prompt prefilled in one
// forward call: the text streams to stdout until an end-of-generation token, a stop string,
// N tokens or the end of the context (prompt + generated tokens fill --ctx), by the engine's
// rules, so it equals what /v1/completions answers for the same prompt and sampling.
// A one-line speed summary goes to stderr.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "dist/distributed.h"
#include "cli/spec_options.h"
#include "model/expert_cache.h"
#include "hub/resolve.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/kv_cache.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model, prompt, kv_type = "f16", quant, split, mem;
  int n_predict = 256;
  int threads = 0;
  int64_t ctx = 0;
  std::vector<std::string> stops;
  owl::SamplerParams sampling;
  bool seed_given = false;
  owl::cli::SpecFlags spec;
};

std::unique_ptr<owl::Tokenizer> open_tokenizer(const owl::ModelSource& source) {
  if (const auto* f = source.gguf_file()) return owl::Tokenizer::from_gguf(*f);
  if (!source.hf_folder().empty()) return owl::Tokenizer::from_hf_dir(source.hf_folder());
  throw owl::Error("model '" + source.path() + "' has no tokenizer");
}

void write_out(const std::string& s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The speed line's word for why generation ended. A length end before -n tokens is the context's.
const char* stop_cause(const owl::GenerationEvent& last, int n_predict) {
  if (last.finish == owl::FinishReason::Stop) return last.stop_string ? "stop string" : "end of generation";
  return last.completion_tokens < n_predict ? "context full" : "length";
}

void run(Options o) {
  if (o.threads > 0) owl::set_default_threads(o.threads);
  if (o.n_predict < 0) throw owl::UsageError("-n must be 0 or more");
  if (!o.seed_given) o.sampling.seed = std::random_device{}();
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load
  auto source = owl::cli::open_source(owl::hub::resolve_model(o.model, /*pull_if_missing=*/true), o.quant, o.mem);
  auto model = owl::dist::load_model(*source, owl::dist::parse_split(o.split));
  if (!model) return;  // a rank of a distributed run other than 0: it served rank 0's steps
  auto tok = open_tokenizer(*source);

  owl::GenerationRequest req;
  req.prompt = tok->encode(o.prompt, /*add_special=*/true);
  const int64_t n_prompt = static_cast<int64_t>(req.prompt.size());
  if (n_prompt == 0) throw owl::UsageError("the prompt is empty and the model adds no BOS token; give some text");

  owl::EngineOptions eo;
  eo.n_parallel = 1;
  eo.n_ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(std::max<int64_t>(model->config().n_ctx_train, 1), 4096);
  eo.prefill_chunk = eo.n_ctx;  // the whole prompt in one forward call
  eo.kv_type = kv_type;
  eo.prefix_cache = false;
  if (n_prompt >= eo.n_ctx)
    throw owl::Error("the prompt has " + std::to_string(n_prompt) + " tokens, more than the context of " +
                     std::to_string(eo.n_ctx) + " leaves room for; shorten it or raise --ctx");
  owl::cli::DraftModel draft;
  owl::cli::configure_spec(o.spec, *model, *tok, eo, draft);
  owl::Engine engine(*model, *tok, eo);

  req.sampling = o.sampling;
  req.sampling.seed = owl::explicit_seed(o.sampling.seed);
  req.max_tokens = std::min<int64_t>(o.n_predict, eo.n_ctx - n_prompt);  // the context may end it sooner
  req.stop = o.stops;
  const auto t0 = std::chrono::steady_clock::now();
  auto stream = engine.submit(std::move(req));
  std::optional<std::chrono::steady_clock::time_point> t_first;  // the prompt is evaluated, the first token out
  std::optional<owl::GenerationEvent> last;
  while (!last) {
    for (auto& e : stream->wait(std::chrono::milliseconds(100))) {
      if (!t_first) t_first = std::chrono::steady_clock::now();
      if (e.finish == owl::FinishReason::Error) throw owl::Error(e.error);
      write_out(e.text);
      if (e.finish != owl::FinishReason::None) last = std::move(e);
    }
  }
  const auto t_end = std::chrono::steady_clock::now();
  if (isatty(STDOUT_FILENO)) write_out("\n");
  const double t_prompt = seconds_between(t0, *t_first), t_gen = seconds_between(*t_first, t_end);
  const int64_t n_generated = last->completion_tokens;

  std::fprintf(stderr,
               "owl: prompt %lld tokens in %.3f s (%.1f tok/s); generated %lld tokens in %.3f s (%.1f tok/s); "
               "stopped: %s; seed %llu\n",
               static_cast<long long>(n_prompt), t_prompt, static_cast<double>(n_prompt) / std::max(t_prompt, 1e-9),
               static_cast<long long>(n_generated), t_gen, static_cast<double>(n_generated) / std::max(t_gen, 1e-9),
               stop_cause(*last, o.n_predict), static_cast<unsigned long long>(o.sampling.seed));
  if (eo.spec.kind != owl::SpecKind::None) {
    const owl::EngineStats s = engine.stats();
    std::fprintf(stderr, "owl: spec %s:%d: %lld drafted, %.1f%% accepted, %.2f tokens per forward\n",
                 owl::spec_kind_name(eo.spec.kind), eo.spec.k, static_cast<long long>(s.spec_drafted_total),
                 s.spec_drafted_total
                     ? 100.0 * static_cast<double>(s.spec_accepted_total) / static_cast<double>(s.spec_drafted_total)
                     : 0.0,
                 s.spec_verify_total
                     ? static_cast<double>(s.spec_tokens_total) / static_cast<double>(s.spec_verify_total)
                     : 0.0);
  }
  if (const owl::ExpertCache* cache = source->expert_cache.get()) {
    const owl::ExpertCache::Stats s = cache->stats();
    std::fprintf(stderr, "owl: experts streamed: cache %.1f MB, hit rate %.1f%%, read %.2f GB at %.2f GB/s\n",
                 static_cast<double>(cache->capacity()) / 1e6, 100.0 * s.hit_rate(),
                 static_cast<double>(s.bytes_read) / 1e9, s.read_gb_per_s());
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("run", "Generate text from a prompt, streaming it to stdout");
  sub->add_option("model", o->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("prompt", o->prompt, "prompt text (BOS is added as the model's tokenizer says)")->required();
  sub->add_option("-n,--n-predict", o->n_predict, "most tokens to generate (default 256)");
  sub->add_option("--temp", o->sampling.temperature, "temperature; 0 = greedy (default 0.8)");
  sub->add_option("--top-k", o->sampling.top_k, "keep the K most likely tokens; 0 = off (default 40)");
  sub->add_option("--top-p", o->sampling.top_p, "nucleus sampling; 1 = off (default 0.95)");
  sub->add_option("--min-p", o->sampling.min_p, "drop tokens below P x the best one's probability (default 0.05)");
  sub->add_option("--repeat-penalty", o->sampling.repeat_penalty, "repetition penalty; 1 = off (default)");
  sub->add_option("--presence-penalty", o->sampling.presence_penalty, "presence penalty (default 0)");
  sub->add_option("--frequency-penalty", o->sampling.frequency_penalty, "frequency penalty (default 0)");
  sub->add_option("--repeat-last-n", o->sampling.penalty_last_n, "tokens the penalties look back on (default 64)");
  sub->add_option_function<uint64_t>(
      "--seed", [o](uint64_t s) { o->sampling.seed = s, o->seed_given = true; },
      "random seed; the same seed repeats a run (default: random)");
  sub->add_option("--threads,-t", o->threads, "worker threads (default: all CPUs)");
  sub->add_option("--ctx,-c", o->ctx, "context length: prompt + generated tokens (default: the model's, at most 4096)");
  sub->add_option("--stop", o->stops, "stop generating at this text (repeatable)");
  owl::cli::add_spec_options(sub, o->spec);
  sub->add_option("--kv-type", o->kv_type, "KV cache element type: f16 (default), q8_0, q4_0 or f32");
  owl::cli::add_quant_option(sub, o->quant);
  owl::cli::add_split_option(sub, o->split);
  owl::cli::add_mem_option(sub, o->mem);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
