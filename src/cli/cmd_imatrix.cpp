// owl imatrix MODEL --file TEXT.txt -o imatrix.gguf [--chunks N] [--ctx N] [-t N]: runs the text
// (or, with --token-ids F, token ids already made, for a model file without a vocabulary)
// through the model in chunks of --ctx tokens (each chunk a fresh sequence) and writes the
// importance matrix llama.cpp's llama-imatrix writes (GGUF: per weight the per-column sums of
// squared inputs and the rows counted; per expert for MoE stacks, counting only the tokens routed
// to that expert; formats/imatrix.h). `owl quantize --imatrix` reads it back.
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "formats/imatrix.h"
#include "hub/resolve.h"
#include "model/imatrix_collector.h"
#include "model/mla.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model, file, token_ids, out;
  int64_t chunks = 0, ctx = 512;
  int threads = 0;
};

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw owl::Error("--file '" + path + "' is not a readable file; give the calibration text");
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  if (!f && !f.eof()) throw owl::Error("reading '" + path + "' failed");
  return s.str();
}

// Token ids separated by commas and/or white space.
std::vector<int32_t> read_ids(const std::string& path) {
  std::string text = read_text(path);
  for (char& c : text)
    if (c == ',') c = ' ';
  std::istringstream in(text);
  std::vector<int32_t> ids;
  std::string item;
  while (in >> item) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX)
      throw owl::Error("--token-ids '" + path + "': '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

void run(const Options& o) {
  if (o.threads < 0) throw owl::UsageError("--threads must be positive");
  if (o.threads > 0) owl::set_default_threads(o.threads);
  if (o.ctx < 2) throw owl::UsageError("--ctx must be at least 2");
  if (o.chunks < 0) throw owl::UsageError("--chunks must be 0 (all) or more");
  if (o.file.empty() == o.token_ids.empty()) throw owl::UsageError("give the calibration input: --file or --token-ids");
  const std::string path = owl::hub::resolve_model(o.model, /*pull_if_missing=*/true);
  const std::string input = o.file.empty() ? o.token_ids : o.file;
  std::vector<int32_t> ids;
  if (o.file.empty()) {
    ids = read_ids(o.token_ids);
  } else {
    const std::string text = read_text(o.file);
    ids = owl::Tokenizer::open(path)->encode(text, /*add_special=*/true);
  }
  int64_t n_chunks = static_cast<int64_t>(ids.size()) / o.ctx;
  if (n_chunks == 0)
    throw owl::Error("'" + input + "' is " + std::to_string(ids.size()) + " tokens, less than one chunk of " +
                     std::to_string(o.ctx) + "; give more text or a smaller --ctx");
  if (o.chunks > 0) n_chunks = std::min(n_chunks, o.chunks);

  auto source = owl::cli::open_source(path, "");
  source->mla_form = owl::MlaForm::Absorbed;  // MLA through attn_k_b / attn_v_b, as llama.cpp computes it
  auto model = owl::Model::load(*source);
  for (int32_t id : ids)
    if (id >= model->n_vocab())
      throw owl::Error("token id " + std::to_string(id) + " in '" + input + "' is outside the model's vocabulary of " +
                       std::to_string(model->n_vocab()));
  owl::ImatrixCollector collector(source->tensors());
  owl::KVCacheOptions kv_opts;
  kv_opts.type = owl::DType::F32;
  kv_opts.n_ctx = o.ctx;

  const auto t0 = std::chrono::steady_clock::now();
  {
    owl::ScopedObserver observing(&collector);
    for (int64_t c = 0; c < n_chunks; ++c) {
      owl::KVCache kv(model->kv_shape(), kv_opts);
      owl::Batch batch;
      for (int64_t i = 0; i < o.ctx; ++i)
        batch.add(ids[static_cast<size_t>(c * o.ctx + i)], i, 0, /*logits=*/i + 1 == o.ctx);
      model->forward(batch, kv);
      std::fprintf(stderr, "\rowl imatrix: chunk %lld/%lld", static_cast<long long>(c + 1),
                   static_cast<long long>(n_chunks));
    }
  }
  std::fprintf(stderr, "\n");
  owl::Imatrix m = collector.result();
  m.datasets = {std::filesystem::path(input).filename().string()};
  m.chunk_count = n_chunks;
  m.chunk_size = o.ctx;
  owl::write_imatrix(m, o.out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("imatrix of %zu tensors from %lld chunks of %lld tokens -> %s (%.1f s)\n", m.entries.size(),
              static_cast<long long>(n_chunks), static_cast<long long>(o.ctx), o.out.c_str(), secs);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("imatrix", "Collect an importance matrix (for owl quantize --imatrix) from a text");
  sub->add_option("model", o->model, "GGUF file, Hugging Face folder or hub id")->required();
  sub->add_option("-f,--file", o->file, "calibration text");
  sub->add_option("--token-ids", o->token_ids, "instead of --file: token ids (comma or space separated)");
  sub->add_option("-o,--output", o->out, "imatrix file to write (llama.cpp's GGUF imatrix format)")->required();
  sub->add_option("--chunks", o->chunks, "at most N chunks (default: all of the text)");
  sub->add_option("-c,--ctx", o->ctx, "tokens per chunk (default 512)");
  sub->add_option("-t,--threads", o->threads, "worker threads (default: all CPUs)");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
