// owl logits MODEL --tokens 1,2,3 --out FILE.f32 [--mtp-out M.f32] [--threads N] [--greedy N]
//                  [--greedy-out G.f32] [--spec mtp[:K]|draft[:K]|ngram[:K] [--draft MODEL]]
//                  [--kv-type f16|f32] [--ctx N]
// Evaluates the ids as one sequence in one forward call and writes the logits of
// every position as float32 [n_tokens][n_vocab]; with --mtp-out, also the NextN head's logits
// of every position (row k fed the trunk's hidden of row k-1 and token k); with --greedy N, then
// decodes N greedy ids one at a time through the KV cache and prints them as a JSON array (with
// --spec, speculatively: drafts verified in one forward call; the ids are the same); --greedy-out
// writes the logits of those decode steps.
// --tokens given several times: that many sequences in one batch, as a server's continuous
// batching runs them. Their prompts go through one forward call (--out: all rows, sequence after
// sequence), then each greedy step decodes one row of every sequence in one call (--greedy-out:
// [steps][sequences][n_vocab]); the ids print one JSON array per sequence and line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "dist/distributed.h"
#include "hub/resolve.h"
#include "model/model.h"
#include "model/trace.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

namespace {

struct Options {
  std::string model, out, mtp_out, greedy_out, kv_type = "f32", quant, split, mem;
  std::vector<std::string> tokens;  // one sequence each
  std::string dump, dump_names = "all";
  std::string spec = "none", draft;
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

void write_f32(const std::string& path, std::span<const float> rows) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw owl::Error("cannot write '" + path + "'; check that the folder exists and is writable");
  f.write(reinterpret_cast<const char*>(rows.data()), static_cast<std::streamsize>(rows.size_bytes()));
  if (!f.flush()) throw owl::Error("writing '" + path + "' failed (disk full?)");
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string json = "[";
  for (size_t i = 0; i < ids.size(); ++i) json += (i ? ", " : "") + std::to_string(ids[i]);
  std::printf("%s]\n", json.c_str());
}

// --greedy N with --spec: the prompt is in `kv`, `logits` its rows.
std::vector<int32_t> speculative(const Options& o, const owl::SpecOptions& spec, owl::Model& model, owl::KVCache& kv,
                                 const std::vector<int32_t>& ids, std::span<const float> logits,
                                 const owl::KVCacheOptions& kv_opts) {
  const auto n_vocab = static_cast<size_t>(model.n_vocab());
  const int32_t first = owl::argmax(logits.subspan(logits.size() - n_vocab));
  std::unique_ptr<owl::ModelSource> draft_source;
  std::unique_ptr<owl::Model> draft_model;
  std::unique_ptr<owl::KVCache> draft_kv;
  std::unique_ptr<owl::Drafter> drafter;
  std::vector<float> hidden;
  switch (spec.kind) {
    case owl::SpecKind::Mtp:
      hidden.assign(model.last_hidden().begin(), model.last_hidden().end());
      draft_kv = std::make_unique<owl::KVCache>(model.mtp_kv_shape(), kv_opts);
      drafter = owl::make_mtp_drafter(model, *draft_kv, 0);
      break;
    case owl::SpecKind::Draft:
      draft_source = owl::cli::open_source(owl::hub::resolve_model(o.draft, /*pull_if_missing=*/true), "");
      draft_model = owl::Model::load(*draft_source);
      owl::check_draft_model(model, *draft_model);
      draft_kv = std::make_unique<owl::KVCache>(draft_model->kv_shape(), kv_opts);
      drafter = owl::make_draft_model_drafter(*draft_model, *draft_kv, 0);
      break;
    case owl::SpecKind::Ngram:
    case owl::SpecKind::None:
      drafter = owl::make_ngram_drafter();
      break;
  }
  owl::SpecStats stats;
  auto out = owl::speculative_greedy(model, kv, ids, first, hidden, o.greedy, *drafter, spec.k, stats);
  std::fprintf(stderr, "spec %s:%d: %lld drafted, %.1f%% accepted, %.2f tokens per forward\n",
               owl::spec_kind_name(spec.kind), spec.k, static_cast<long long>(stats.drafted),
               100.0 * stats.acceptance(), stats.tokens_per_forward());
  return out;
}

// Several --tokens: the sequences' prompts in one forward call, then greedy steps of all of them
// together.
void several_sequences(const Options& o, owl::Model& model, const std::vector<std::vector<int32_t>>& seqs,
                       owl::KVCacheOptions kv_opts) {
  const auto n_seqs = static_cast<int32_t>(seqs.size());
  kv_opts.n_seq_max = n_seqs;
  owl::KVCache kv(model.kv_shape(), kv_opts);
  owl::Batch batch;
  for (int32_t q = 0; q < n_seqs; ++q)
    for (size_t i = 0; i < seqs[q].size(); ++i) batch.add(seqs[q][i], static_cast<int64_t>(i), q, true);
  std::span<const float> logits = model.forward(batch, kv);
  write_f32(o.out, logits);
  const auto n_vocab = static_cast<size_t>(model.n_vocab());
  // Each sequence's next id from its last prompt row.
  std::vector<int32_t> next(seqs.size());
  for (size_t q = 0, row = 0; q < seqs.size(); ++q) {
    row += seqs[q].size();
    next[q] = owl::argmax(logits.subspan((row - 1) * n_vocab, n_vocab));
  }
  std::vector<std::vector<int32_t>> out(seqs.size());
  std::vector<float> steps;
  for (int step = 0; step < o.greedy; ++step) {
    for (size_t q = 0; q < seqs.size(); ++q) out[q].push_back(next[q]);
    if (step + 1 == o.greedy) break;
    batch.clear();
    for (int32_t q = 0; q < n_seqs; ++q) batch.add(next[q], static_cast<int64_t>(seqs[q].size()) + step, q, true);
    logits = model.forward(batch, kv);
    if (!o.greedy_out.empty()) steps.insert(steps.end(), logits.begin(), logits.end());
    for (size_t q = 0; q < seqs.size(); ++q) next[q] = owl::argmax(logits.subspan(q * n_vocab, n_vocab));
  }
  if (!o.greedy_out.empty()) write_f32(o.greedy_out, steps);
  for (const auto& ids : out) print_ids(ids);
}

void run(const Options& o) {
  if (o.threads > 0) owl::set_default_threads(o.threads);
  if (o.greedy < 0) throw owl::UsageError("--greedy must be 0 or more");
  std::vector<std::vector<int32_t>> seqs;
  for (const std::string& t : o.tokens) seqs.push_back(parse_ids(t));
  const std::vector<int32_t>& ids = seqs.front();
  if (seqs.size() > 1 && (!o.mtp_out.empty() || o.spec != "none"))
    throw owl::UsageError("--mtp-out and --spec take one sequence: give --tokens once");
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load
  const owl::SpecOptions spec = owl::parse_spec(o.spec);
  if (spec.kind == owl::SpecKind::Draft && o.draft.empty())
    throw owl::UsageError("--spec draft needs --draft MODEL (a small model with the target's tokenizer)");
  if (spec.kind != owl::SpecKind::Draft && !o.draft.empty())
    throw owl::UsageError("--draft MODEL drafts only with --spec draft[:K]");
  auto source = owl::cli::open_source(owl::hub::resolve_model(o.model, /*pull_if_missing=*/true), o.quant, o.mem);
  auto model = owl::dist::load_model(*source, owl::dist::parse_split(o.split));
  if (!model) return;  // a rank of a distributed run other than 0: it served rank 0's steps
  const int64_t n_vocab = model->n_vocab();
  if (!o.mtp_out.empty() && !model->has_mtp())
    throw owl::UsageError("--mtp-out: model '" + o.model +
                          "' has no NextN (multi-token prediction) layer; `owl info` lists a file's NextN layers");
  owl::check_spec_target(*model, spec);
  if (!o.dump.empty()) owl::trace::start(o.dump, o.dump_names);

  owl::KVCacheOptions kv_opts;
  kv_opts.type = kv_type;
  kv_opts.n_ctx = o.ctx > 0 ? o.ctx : std::max<int64_t>(model->config().n_ctx_train, 1);
  const int64_t spec_rows = spec.kind == owl::SpecKind::None ? 0 : spec.k;  // drafts beyond the last id
  size_t longest = 0;
  for (const auto& q : seqs) longest = std::max(longest, q.size());
  const int64_t needed = static_cast<int64_t>(longest) + std::max(o.greedy - 1, 0) + spec_rows;
  if (needed > kv_opts.n_ctx)
    throw owl::Error(std::to_string(longest) + " tokens and " + std::to_string(o.greedy) + " greedy steps need " +
                     std::to_string(needed) + " positions, which does not fit the context of " +
                     std::to_string(kv_opts.n_ctx) + " tokens; raise --ctx");
  if (seqs.size() > 1) return several_sequences(o, *model, seqs, kv_opts);
  owl::KVCache kv(model->kv_shape(), kv_opts);

  owl::Batch batch;
  for (size_t i = 0; i < ids.size(); ++i) batch.add(ids[i], static_cast<int64_t>(i), 0, true);
  std::span<const float> logits = model->forward(batch, kv);

  write_f32(o.out, logits);
  if (!o.mtp_out.empty()) {
    // Row k of the head takes token k and the trunk's hidden of row k-1 (zeros for row 0).
    const int64_t d = model->config().n_embd, n = batch.size();
    std::vector<float> hidden(static_cast<size_t>(n * d), 0.0f);
    const std::span<const float> h = model->last_hidden();
    std::copy(h.begin(), h.end() - d, hidden.begin() + d);
    owl::KVCache mtp_kv(model->mtp_kv_shape(), kv_opts);
    write_f32(o.mtp_out, model->mtp_forward(batch, hidden.data(), mtp_kv));
  }

  const auto t_greedy = std::chrono::steady_clock::now();
  if (o.greedy > 0 && spec.kind != owl::SpecKind::None) {
    print_ids(speculative(o, spec, *model, kv, ids, logits, kv_opts));
  } else if (o.greedy > 0) {
    std::vector<int32_t> out;
    int32_t next = owl::argmax(logits.subspan(logits.size() - static_cast<size_t>(n_vocab)));
    std::vector<float> steps;
    int64_t pos = static_cast<int64_t>(ids.size());
    for (int step = 0; step < o.greedy; ++step) {
      out.push_back(next);
      if (step + 1 == o.greedy) break;
      batch.clear();
      batch.add(next, pos++, 0, true);
      const std::span<const float> step_logits = model->forward(batch, kv);
      if (!o.greedy_out.empty()) steps.insert(steps.end(), step_logits.begin(), step_logits.end());
      next = owl::argmax(step_logits);
    }
    if (!o.greedy_out.empty()) write_f32(o.greedy_out, steps);
    print_ids(out);
  }
  if (o.greedy > 0)  // the speed of the decode phase alone (load and prompt excluded), for A/B runs
    std::fprintf(stderr, "greedy: %d ids in %.3f s\n", o.greedy,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_greedy).count());
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("logits", "Write the logits of every position of a token sequence");
  sub->add_option("model", o->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--tokens", o->tokens,
                  "comma-separated token ids, evaluated as one sequence; give it again for more sequences in the same "
                  "batch")
      ->required()
      ->allow_extra_args(false);  // one sequence per --tokens
  sub->add_option("--out", o->out, "output file: float32 [n_tokens][n_vocab], row-major")->required();
  sub->add_option("--mtp-out", o->mtp_out,
                  "also write the NextN (multi-token prediction) head's logits of every position here");
  sub->add_option("--threads,-t", o->threads, "worker threads (default: all CPUs)");
  sub->add_option("--greedy", o->greedy, "also decode N greedy ids through the KV cache; print them as JSON");
  sub->add_option("--greedy-out", o->greedy_out,
                  "with --greedy: write the logits of the decode steps here, float32 [steps][sequences][n_vocab]");
  sub->add_option("--spec", o->spec,
                  "with --greedy: speculative decoding, mtp[:K] (the model's NextN head), draft[:K] (--draft MODEL) "
                  "or ngram[:K] (prompt lookup); the ids are those of plain decoding");
  sub->add_option("--draft", o->draft, "with --spec draft: the draft model (same tokenizer as MODEL)");
  sub->add_option("--kv-type", o->kv_type, "KV cache element type: f32 (default), f16, q8_0 or q4_0");
  sub->add_option("--dump", o->dump,
                  "write named intermediates of every layer into this folder (docs/TRACE.md; also OWL_TRACE)");
  sub->add_option("--dump-names", o->dump_names, "with --dump: comma-separated names, or all (default)");
  sub->add_option("--ctx", o->ctx, "context length (default: the model's training context)");
  owl::cli::add_quant_option(sub, o->quant);
  owl::cli::add_split_option(sub, o->split);
  owl::cli::add_mem_option(sub, o->mem);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
