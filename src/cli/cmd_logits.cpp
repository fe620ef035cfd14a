// owl logits MODEL --tokens 1,2,3 --out FILE.f32 [--threads N] [--greedy N] [--kv-type f16|f32] [--ctx N]
// Evaluates the ids as one sequence in one forward call and writes the logits of
// every position as float32 [n_tokens][n_vocab]; with --greedy N, then decodes N
// greedy ids one at a time through the KV cache and prints them as a JSON array.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "hub/resolve.h"
#include "model/model.h"
#include "model/trace.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"

namespace {

struct Options {
  std::string model, tokens, out, kv_type = "f32", quant, mem;
  std::string dump, dump_names = "all";
  int threads = 0;
  int greedy = 0;
  int64_t ctx = 0;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > INT32_MAX)
      throw owl::UsageError("--tokens: '" + item + "' is not a token id; give comma-separated ids such as 1,2,3");
    ids.push_back(static_cast<int32_t>(v));
    i = j + 1;
  }
  if (ids.empty()) throw owl::UsageError("--tokens: give at least one token id");
  return ids;
}

void run(const Options& o) {
  if (o.threads > 0) owl::set_default_threads(o.threads);
  if (o.greedy < 0) throw owl::UsageError("--greedy must be 0 or more");
  const std::vector<int32_t> ids = parse_ids(o.tokens);
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load
  auto source = owl::cli::open_source(owl::hub::resolve_model(o.model, /*pull_if_missing=*/true), o.quant, o.mem);
  auto model = owl::Model::load(*source);
  const int64_t n_vocab = model->n_vocab();
  if (!o.dump.empty()) owl::trace::start(o.dump, o.dump_names);

  owl::KVCacheOptions kv_opts;
  kv_opts.type = kv_type;
  kv_opts.n_ctx = o.ctx > 0 ? o.ctx : std::max<int64_t>(model->config().n_ctx_train, 1);
  const int64_t needed = static_cast<int64_t>(ids.size()) + std::max(o.greedy - 1, 0);
  if (needed > kv_opts.n_ctx)
    throw owl::Error(std::to_string(ids.size()) + " tokens and " + std::to_string(o.greedy) + " greedy steps need " +
                     std::to_string(needed) + " positions, which does not fit the context of " +
                     std::to_string(kv_opts.n_ctx) + " tokens; raise --ctx");
  owl::KVCache kv(model->kv_shape(), kv_opts);

  owl::Batch batch;
  for (size_t i = 0; i < ids.size(); ++i) batch.add(ids[i], static_cast<int64_t>(i), 0, true);
  std::span<const float> logits = model->forward(batch, kv);

  std::ofstream f(o.out, std::ios::binary);
  if (!f) throw owl::Error("cannot write '" + o.out + "'; check that the folder exists and is writable");
  f.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size_bytes()));
  if (!f.flush()) throw owl::Error("writing '" + o.out + "' failed (disk full?)");

  if (o.greedy > 0) {
    std::vector<int32_t> out;
    int32_t next = owl::argmax(logits.subspan(logits.size() - static_cast<size_t>(n_vocab)));
    int64_t pos = static_cast<int64_t>(ids.size());
    for (int step = 0; step < o.greedy; ++step) {
      out.push_back(next);
      if (step + 1 == o.greedy) break;
      batch.clear();
      batch.add(next, pos++, 0, true);
      next = owl::argmax(model->forward(batch, kv));
    }
    std::string json = "[";
    for (size_t i = 0; i < out.size(); ++i) json += (i ? ", " : "") + std::to_string(out[i]);
    std::printf("%s]\n", json.c_str());
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("logits", "Write the logits of every position of a token sequence");
  sub->add_option("model", o->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--tokens", o->tokens, "comma-separated token ids, evaluated as one sequence")->required();
  sub->add_option("--out", o->out, "output file: float32 [n_tokens][n_vocab], row-major")->required();
  sub->add_option("--threads,-t", o->threads, "worker threads (default: all CPUs)");
  sub->add_option("--greedy", o->greedy, "also decode N greedy ids through the KV cache; print them as JSON");
  sub->add_option("--kv-type", o->kv_type, "KV cache element type: f32 (default), f16, q8_0 or q4_0");
  sub->add_option("--dump", o->dump,
                  "write named intermediates of every layer into this folder (docs/TRACE.md; also OWL_TRACE)");
  sub->add_option("--dump-names", o->dump_names, "with --dump: comma-separated names, or all (default)");
  sub->add_option("--ctx", o->ctx, "context length (default: the model's training context)");
  owl::cli::add_quant_option(sub, o->quant);
  owl::cli::add_mem_option(sub, o->mem);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
