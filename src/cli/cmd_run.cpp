// owl run MODEL "prompt" [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
//         [--threads N] [--ctx N] [--stop STR]... [--kv-type f16|f32] [penalties]
// Encodes the prompt (with the model's BOS when it adds one), prefills it in one
// forward call, then samples and streams the generated text to stdout until an
// end-of-generation token, a stop string, N tokens or the end of the context.
// A one-line speed summary goes to stderr.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "hub/resolve.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model, prompt, kv_type = "f16", quant;
  int n_predict = 256;
  int threads = 0;
  int64_t ctx = 0;
  std::vector<std::string> stops;
  owl::SamplerParams sampling;
  bool seed_given = false;
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run(Options o) {
  if (o.threads > 0) owl::set_default_threads(o.threads);
  if (o.n_predict < 0) throw owl::UsageError("-n must be 0 or more");
  if (!o.seed_given) o.sampling.seed = std::random_device{}();
  auto source = owl::cli::open_source(owl::hub::resolve_model(o.model, /*pull_if_missing=*/true), o.quant);
  auto model = owl::Model::load(*source);
  auto tok = open_tokenizer(*source);

  std::vector<int32_t> prompt = tok->encode(o.prompt, /*add_special=*/true);
  if (prompt.empty()) throw owl::UsageError("the prompt is empty and the model adds no BOS token; give some text");

  owl::KVCacheOptions kv_opts;
  kv_opts.type = owl::kv_type_from_name(o.kv_type);
  kv_opts.n_ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(std::max<int64_t>(model->config().n_ctx_train, 1), 4096);
  if (static_cast<int64_t>(prompt.size()) > kv_opts.n_ctx)
    throw owl::Error("the prompt has " + std::to_string(prompt.size()) + " tokens, more than the context of " +
                     std::to_string(kv_opts.n_ctx) + "; shorten it or raise --ctx");
  owl::KVCache kv(model->kv_shape(), kv_opts);
  owl::Sampler sampler(o.sampling, model->n_vocab());
  owl::StopStrings stops(o.stops);
  owl::IncrementalDecoder detok(*tok, /*skip_special=*/true);
  for (int32_t id : prompt) {  // so that spacing continues the prompt's text
    sampler.accept(id);
    detok.push(id);
  }

  const auto t0 = std::chrono::steady_clock::now();
  owl::Batch batch;
  for (size_t i = 0; i < prompt.size(); ++i) batch.add(prompt[i], static_cast<int64_t>(i), 0, i + 1 == prompt.size());
  std::span<const float> logits = model->forward(batch, kv);
  const double t_prompt = seconds_since(t0);

  const auto t1 = std::chrono::steady_clock::now();
  int n_generated = 0;
  int64_t pos = static_cast<int64_t>(prompt.size());
  const char* why = "length";
  for (;;) {
    if (n_generated == o.n_predict) break;
    const int32_t id = sampler.sample(logits);
    sampler.accept(id);
    ++n_generated;
    if (tok->is_eog(id)) {
      why = "end of generation";
      break;
    }
    write_out(stops.push(detok.push(id)));
    if (stops.stopped()) {
      why = "stop string";
      break;
    }
    if (n_generated == o.n_predict) break;
    if (pos >= kv_opts.n_ctx) {
      why = "context full";
      break;
    }
    batch.clear();
    batch.add(id, pos++, 0, true);
    logits = model->forward(batch, kv);
  }
  if (!stops.stopped()) write_out(stops.push(detok.flush()) + stops.flush());
  if (isatty(STDOUT_FILENO)) write_out("\n");
  const double t_gen = seconds_since(t1);

  std::fprintf(stderr,
               "owl: prompt %zu tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s (%.1f tok/s); "
               "stopped: %s; seed %llu\n",
               prompt.size(), t_prompt, static_cast<double>(prompt.size()) / std::max(t_prompt, 1e-9), n_generated,
               t_gen, n_generated / std::max(t_gen, 1e-9), why, static_cast<unsigned long long>(o.sampling.seed));
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
  sub->add_option("--ctx,-c", o->ctx, "context length (default: the model's, at most 4096)");
  sub->add_option("--stop", o->stops, "stop generating at this text (repeatable)");
  sub->add_option("--kv-type", o->kv_type, "KV cache element type: f16 (default) or f32");
  owl::cli::add_quant_option(sub, o->quant);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
