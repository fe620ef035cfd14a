#include "dist/distributed.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "base/memory_budget.h"
#include "base/scratch.h"
#include "dist/comm.h"
#include "dist/placement.h"
#include "model/blocks.h"
#include "runtime/kv_cache.h"

namespace owl::dist {

Split parse_split(const std::string& name) {
  if (name.empty()) return Split::None;
  if (name == "layers") return Split::Layers;
  if (name == "experts") return Split::Experts;
  throw UsageError("--split '" + name + "': use layers (pipeline) or experts (MoE models)");
}

namespace {

// ---- the step rank 0 broadcasts ----

// Forward: the trunk over a batch. Mtp: the NextN head over a batch (its own KV cache).
enum class Op : int64_t { Forward = 1, Stop = 2, Mtp = 3 };

// Fixed-size head of a step; the payload (batch columns, rank 0's sequence table, hidden rows)
// follows.
struct StepHeader {
  int64_t op = 0;
  int64_t n_rows = 0, n_seqs = 0;
  // Rank 0's KV cache options: the other ranks keep a cache of the same capacity and type.
  int64_t kv_type = 0, n_ctx = 0, n_seq_max = 0, page_tokens = 0;
  int64_t n_hidden = 0;       // floats of hidden rows in the payload (Mtp under the expert split)
  int64_t micro_batches = 1;  // rank 0's --micro-batches for a pipeline (pipeline_pieces)
};

struct Step {
  StepHeader h;
  Batch batch;
  std::vector<std::pair<int32_t, int64_t>> seqs;  // rank 0's sequences before the batch
  std::vector<float> hidden;                      // n_hidden floats
};

template <class T>
void put(std::vector<uint8_t>& out, const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  out.insert(out.end(), p, p + v.size() * sizeof(T));
}
template <class T>
void take(const uint8_t*& in, std::vector<T>& v, int64_t n) {
  v.resize(static_cast<size_t>(n));
  std::memcpy(static_cast<void*>(v.data()), in, v.size() * sizeof(T));
  in += v.size() * sizeof(T);
}

std::vector<uint8_t> pack_payload(const Step& s) {
  std::vector<uint8_t> out;
  put(out, s.batch.tokens);
  put(out, s.batch.positions);
  put(out, s.batch.seq_ids);
  put(out, s.batch.want_logits);
  put(out, s.seqs);
  put(out, s.hidden);
  return out;
}

size_t payload_bytes(const StepHeader& h) {
  return static_cast<size_t>(h.n_rows) * (sizeof(int32_t) * 2 + sizeof(int64_t) + sizeof(uint8_t)) +
         static_cast<size_t>(h.n_seqs) * sizeof(std::pair<int32_t, int64_t>) +
         static_cast<size_t>(h.n_hidden) * sizeof(float);
}

void unpack_payload(const std::vector<uint8_t>& bytes, Step& s) {
  const uint8_t* in = bytes.data();
  take(in, s.batch.tokens, s.h.n_rows);
  take(in, s.batch.positions, s.h.n_rows);
  take(in, s.batch.seq_ids, s.h.n_rows);
  take(in, s.batch.want_logits, s.h.n_rows);
  take(in, s.seqs, s.h.n_seqs);
  take(in, s.hidden, s.h.n_hidden);
}

// ---- the work of every rank ----

// Expert split: the MoE layers' gather of the other ranks' routed rows.
class CommExchange final : public ExpertExchange {
 public:
  explicit CommExchange(Comm& comm) : comm_(comm) {}
  void gather_rows(float* y, int64_t d, const std::vector<int64_t>& first_row) override {
    first_.resize(first_row.size());
    for (size_t i = 0; i < first_row.size(); ++i) first_[i] = first_row[i] * d;
    comm_.all_gather_runs(y, first_);
  }

 private:
  Comm& comm_;
  std::vector<int64_t> first_;
};

// This rank's share of the model and how a step runs on it (every rank, rank 0 included).
class Stage {
 public:
  Stage(Comm& comm, Split split, std::unique_ptr<Model> model, std::pair<int64_t, int64_t> layers)
      : comm_(comm), split_(split), model_(std::move(model)), layers_(layers), exchange_(comm) {
    dec_ = dynamic_cast<blocks::Decoder*>(model_.get());
    if (!dec_) throw Error("--split: the " + model_->config().arch + " family cannot be split across ranks");
    if (split_ == Split::Experts) dec_->set_expert_exchange(&exchange_);
  }

  Model& model() { return *model_; }
  const Model& model() const { return *model_; }
  Split split() const { return split_; }

  // The KV shape of this rank: pipeline stages cache only their own layers.
  std::vector<KVLayerShape> kv_shape() const {
    std::vector<KVLayerShape> s = model_->kv_shape();
    if (split_ == Split::Layers)
      for (size_t il = 0; il < s.size(); ++il)
        if (static_cast<int64_t>(il) < layers_.first || static_cast<int64_t>(il) >= layers_.second) s[il] = {};
    return s;
  }
  // The NextN head's cache: in a pipeline only the last rank, which runs its block, fills it.
  std::vector<KVLayerShape> mtp_kv_shape() const {
    std::vector<KVLayerShape> s = model_->mtp_kv_shape();
    if (split_ == Split::Layers && !last_rank())
      for (KVLayerShape& l : s) l = {};
    return s;
  }

  // Runs a checked batch (prepare_batch done on this rank's kv) in rank 0's micro-batches.
  // Rank 0 gets the logits.
  std::span<const float> run(const Batch& batch, KVStore& kv, int64_t micro_batches) {
    if (split_ == Split::Experts) return dec_->forward_prepared(batch, kv);
    return run_pipeline(batch, kv, micro_batches);
  }

  // The NextN head over a checked batch. Expert split: every rank runs it (hidden: the rows rank 0
  // broadcast). Pipeline: rank 0 computes the block's input and sends it to the last rank, which
  // holds the NextN layer; its output comes back to rank 0 for the head's logits.
  std::span<const float> run_mtp(const Batch& batch, const float* hidden, KVStore& kv) {
    if (split_ == Split::Experts) return dec_->mtp_forward_prepared(batch, hidden, kv);
    const int rank = comm_.rank(), last = comm_.size() - 1;
    const int64_t n = batch.size() * model_->config().n_embd;
    float* x = grow(mtp_x_, n);
    if (rank == 0) {
      comm_.post_receive(x, n, last);
      dec_->mtp_input(batch, hidden, x);
      comm_.post_send(x, n, last);
      comm_.wait_posted();
      return dec_->mtp_logits(batch, x);
    }
    if (rank == last) {
      comm_.post_receive(x, n, 0);
      comm_.wait_posted();
      dec_->mtp_block(batch, kv, x);
      comm_.post_send(x, n, 0);
      comm_.wait_posted();
    }
    return {};
  }

 private:
  bool last_rank() const { return comm_.rank() == comm_.size() - 1; }

  // The batch in pieces (pipeline_pieces: forward()'s chunks, cut between sequences into
  // micro-batches); each piece's hidden states go through this rank's layers and on to the next
  // rank while this rank starts the next piece. Rank 0 posts the receives of the returning
  // pieces first, so that the last rank never waits on it while it is still sending.
  std::span<const float> run_pipeline(const Batch& batch, KVStore& kv, int64_t micro_batches) {
    const int rank = comm_.rank(), n_ranks = comm_.size();
    const int64_t n = batch.size(), d = model_->config().n_embd;
    float* x = grow(x_, n * d);
    const auto pieces = pipeline_pieces(batch.seq_ids, dec_->chunk_rows(n), micro_batches);
    if (rank == 0)
      for (const auto& [b, e] : pieces) comm_.post_receive(x + b * d, (e - b) * d, n_ranks - 1);
    for (const auto& [b, e] : pieces) {
      const Batch* rows = &batch;
      if (e - b < n) {
        blocks::copy_rows(batch, b, e, piece_);
        rows = &piece_;
      }
      float* xc = x + b * d;
      if (rank == 0) {
        dec_->embed_rows(*rows, xc);
      } else {
        comm_.post_receive(xc, (e - b) * d, rank - 1);
        comm_.wait_posted();
      }
      dec_->run_layer_range(*rows, kv, xc, layers_.first, layers_.second);
      comm_.post_send(xc, (e - b) * d, (rank + 1) % n_ranks);
    }
    comm_.wait_posted();
    if (rank != 0) return {};
    return dec_->logits(batch, x);
  }

  Comm& comm_;
  Split split_;
  std::unique_ptr<Model> model_;
  blocks::Decoder* dec_ = nullptr;
  std::pair<int64_t, int64_t> layers_;
  CommExchange exchange_;
  std::vector<float> x_, mtp_x_;
  Batch piece_;
};

// ---- rank 0: the model the command sees ----

int64_t g_micro_batches = 0;  // --micro-batches (0: by the model, see micro_batches())

class DistributedModel final : public Model {
 public:
  DistributedModel(Comm& comm, std::unique_ptr<Stage> stage)
      : Model(stage->model().config()), comm_(comm), stage_(std::move(stage)) {}

  ~DistributedModel() override {
    if (in_step_) comm_.abort(comm_.who(0) + " stopped in the middle of a step");
    StepHeader h;
    h.op = static_cast<int64_t>(Op::Stop);
    comm_.broadcast(&h, sizeof h, false);
  }

  std::vector<KVLayerShape> kv_shape() const override { return stage_->kv_shape(); }
  std::vector<KVLayerShape> mtp_kv_shape() const override { return stage_->mtp_kv_shape(); }
  std::span<const float> last_hidden() const override { return stage_->model().last_hidden(); }
  std::span<const float> mtp_hidden() const override { return stage_->model().mtp_hidden(); }

  std::span<const float> forward(const Batch& batch, KVStore& kv) override {
    Step s;
    KVCache& cache = begin_step(Op::Forward, batch, kv, s);
    s.h.micro_batches = micro_batches();
    return run_step(s, [&] { return stage_->run(batch, cache, s.h.micro_batches); });
  }

  std::span<const float> mtp_forward(const Batch& batch, const float* hidden, KVStore& kv) override {
    if (!has_mtp()) return Model::mtp_forward(batch, hidden, kv);  // throws
    Step s;
    KVCache& cache = begin_step(Op::Mtp, batch, kv, s);
    if (stage_->split() == Split::Experts) {  // every rank runs the head on these rows
      s.hidden.assign(hidden, hidden + batch.size() * config_.n_embd);
      s.h.n_hidden = static_cast<int64_t>(s.hidden.size());
    }
    return run_step(s, [&] { return stage_->run_mtp(batch, hidden, cache); });
  }

 private:
  // The pieces a pipeline step of several sequences is cut into. By default a mixture-of-experts
  // model takes as many as ranks: a piece of fewer rows touches fewer experts, so each rank's
  // share of a step shrinks with its rows and the ranks overlap. A dense model takes none: its
  // decode reads all of a rank's weights whatever the rows, so every extra piece would be one
  // more pass over them (docs/DISTRIBUTED.md, "Several sequences: micro-batches").
  int64_t micro_batches() const {
    if (g_micro_batches > 0) return g_micro_batches;
    return config_.n_expert > 0 ? comm_.size() : 1;
  }

  // Checks the batch against rank 0's cache and fills the step the other ranks will follow.
  KVCache& begin_step(Op op, const Batch& batch, KVStore& kv, Step& s) {
    auto* cache = dynamic_cast<KVCache*>(&kv);
    if (!cache) throw Error("a model split across ranks needs owl's KV cache (runtime/kv_cache.h)");
    s.seqs = cache->sequence_lengths();
    prepare_batch(batch, config_.n_vocab, kv);  // a bad batch fails here, before any rank sees it
    const KVCacheOptions& o = cache->options();
    s.h.op = static_cast<int64_t>(op);
    s.h.n_rows = batch.size();
    s.h.n_seqs = static_cast<int64_t>(s.seqs.size());
    s.h.kv_type = static_cast<int64_t>(o.type);
    s.h.n_ctx = o.n_ctx;
    s.h.n_seq_max = o.n_seq_max;
    s.h.page_tokens = o.page_tokens;
    s.batch = batch;
    return *cache;
  }

  // Sends the step to the other ranks and runs rank 0's part. The ranks run in lockstep: a step
  // rank 0 cannot finish leaves the others inside it, so a failure here ends the job rather than
  // the request.
  template <class Run>
  std::span<const float> run_step(Step& s, Run run) {
    in_step_ = true;
    comm_.broadcast(&s.h, sizeof s.h, false);
    std::vector<uint8_t> payload = pack_payload(s);
    comm_.broadcast(payload.data(), payload.size(), false);
    std::span<const float> logits;
    try {
      logits = run();
    } catch (const std::exception& e) {
      comm_.abort(comm_.who(0) + ": " + e.what());
    }
    in_step_ = false;
    return logits;
  }

  Comm& comm_;
  std::unique_ptr<Stage> stage_;
  bool in_step_ = false;
};

// ---- the other ranks: serve rank 0's steps ----

// Makes the local cache hold what rank 0's held before the step: sequences rank 0 removed
// are removed, sequences it truncated are truncated.
void follow_sequences(KVCache& kv, const std::vector<std::pair<int32_t, int64_t>>& seqs) {
  for (const auto& [id, len] : kv.sequence_lengths()) {
    auto it = std::find_if(seqs.begin(), seqs.end(), [id = id](const auto& s) { return s.first == id; });
    if (it == seqs.end()) {
      kv.remove(id);
    } else if (len > it->second) {
      kv.truncate(id, it->second);
    }
  }
}

// A rank's copy of one of rank 0's caches (the trunk's, the NextN head's): made with rank 0's
// options, remade when they change, and brought to rank 0's sequences before each step.
class MirrorCache {
 public:
  KVCache& follow(const Step& s, const std::vector<KVLayerShape>& shape) {
    const StepHeader& h = s.h;
    if (!kv_ || made_.kv_type != h.kv_type || made_.n_ctx != h.n_ctx || made_.n_seq_max != h.n_seq_max ||
        made_.page_tokens != h.page_tokens) {
      KVCacheOptions o;
      o.type = static_cast<DType>(h.kv_type);
      o.n_ctx = h.n_ctx;
      o.n_seq_max = h.n_seq_max;
      o.page_tokens = h.page_tokens;
      kv_.reset();
      kv_ = std::make_unique<KVCache>(shape, o);
      made_ = h;
    }
    follow_sequences(*kv_, s.seqs);
    return *kv_;
  }

 private:
  std::unique_ptr<KVCache> kv_;
  StepHeader made_;
};

void serve_steps(Comm& comm, Stage& stage) {
  MirrorCache trunk, head;
  Step s;
  std::vector<uint8_t> payload;
  for (;;) {
    comm.broadcast(&s.h, sizeof s.h, /*idle=*/true);
    if (s.h.op == static_cast<int64_t>(Op::Stop)) return;
    payload.resize(payload_bytes(s.h));
    comm.broadcast(payload.data(), payload.size(), false);
    unpack_payload(payload, s);
    const bool mtp = s.h.op == static_cast<int64_t>(Op::Mtp);
    KVCache& kv = mtp ? head.follow(s, stage.mtp_kv_shape()) : trunk.follow(s, stage.kv_shape());
    prepare_batch(s.batch, stage.model().n_vocab(), kv);
    if (mtp) {
      stage.run_mtp(s.batch, s.hidden.data(), kv);
    } else {
      stage.run(s.batch, kv, s.h.micro_batches);
    }
  }
}

// ---- start-up ----

constexpr size_t kMessageBytes = 512;

// Every rank's start-up error ("" for none) in rank order.
std::vector<std::string> gather_errors(Comm& comm, const std::string& mine) {
  std::vector<char> buf(kMessageBytes, 0), all(kMessageBytes * static_cast<size_t>(comm.size()));
  std::memcpy(buf.data(), mine.data(), std::min(mine.size(), kMessageBytes - 1));
  comm.all_gather(buf.data(), kMessageBytes, all.data());
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r) out.emplace_back(all.data() + static_cast<size_t>(r) * kMessageBytes);
  return out;
}

// Ends the start-up when any rank failed: rank 0 throws the first failure, the others exit 1
// quietly (mpirun then ends the job).
void agree_or_fail(Comm& comm, const std::string& mine) {
  const std::vector<std::string> errors = gather_errors(comm, mine);
  for (int r = 0; r < comm.size(); ++r) {
    if (errors[r].empty()) continue;
    if (comm.rank() != 0) std::exit(1);
    throw Error(comm.who(r) + ": " + errors[r]);
  }
}

std::string fingerprint_mismatch(Comm& comm, const std::string& path) {
  Fingerprint mine;
  std::string unreadable;
  try {
    mine = fingerprint(path);
  } catch (const Error& e) {
    unreadable = e.what();
  }
  std::vector<Fingerprint> all(static_cast<size_t>(comm.size()));
  comm.all_gather(&mine, sizeof mine, all.data());  // every rank takes part, readable or not
  if (!unreadable.empty()) return unreadable;
  if (all[0].size == mine.size && all[0].checksum == mine.checksum) return "";
  char text[kMessageBytes];
  std::snprintf(text, sizeof text,
                "its model file '%s' (%llu bytes, header checksum %016llx) differs from rank 0's (%llu bytes, "
                "%016llx); give every host the same file",
                path.c_str(), static_cast<unsigned long long>(mine.size),
                static_cast<unsigned long long>(mine.checksum), static_cast<unsigned long long>(all[0].size),
                static_cast<unsigned long long>(all[0].checksum));
  return text;
}

}  // namespace

void set_micro_batches(int64_t n) {
  if (n < 0) throw UsageError("--micro-batches must be 0 (as many as ranks) or more");
  g_micro_batches = n;
}

std::unique_ptr<Model> load_model(ModelSource& src, Split split) {
  Comm& comm = Comm::world();
  if (comm.size() == 1) {
    if (split != Split::None && !Comm::built_with_mpi())
      throw UsageError("--split needs an owl built with MPI (libopenmpi-dev) and launched by mpirun");
    return Model::load(src);  // one rank is the single-process engine
  }
  // Mistakes every rank sees alike: rank 0 says so, the others leave quietly.
  std::string misuse;
  if (split == Split::None)
    misuse = "launched by mpirun with " + std::to_string(comm.size()) +
             " ranks but without --split: give --split layers or --split experts";
  else if (split == Split::Experts && src.config().n_expert <= 0)
    misuse = "--split experts needs a mixture-of-experts model (deepseek2, qwen3moe, glm4moe); this " +
             src.config().arch + " model is dense: use --split layers";
  else if (split == Split::Experts && src.config().n_expert < comm.size())
    misuse = "--split experts: " + std::to_string(comm.size()) + " ranks but only " +
             std::to_string(src.config().n_expert) + " experts per layer";
  if (!misuse.empty()) {
    if (comm.rank() != 0) std::exit(2);
    throw UsageError(misuse);
  }
  std::string error = fingerprint_mismatch(comm, src.path());
  agree_or_fail(comm, error);

  std::pair<int64_t, int64_t> layers{0, INT64_MAX};
  if (split == Split::Layers) {
    // Each rank's share follows its own memory budget: its --mem (ranks may be given different
    // values) or else its default budget (cgroup limit or MemAvailable). A rank without a budget
    // counts as 1 byte, so ranks that all lack one get equal shares.
    const double mine = static_cast<double>(std::max<uint64_t>(src.mem_budget, 1));
    std::vector<double> budgets(static_cast<size_t>(comm.size()));
    comm.all_gather(&mine, sizeof mine, budgets.data());
    const auto ranges = layer_ranges(src, budgets);
    layers = ranges[static_cast<size_t>(comm.rank())];
    log::info(comm.who(comm.rank()) + ": trunk layers [" + std::to_string(layers.first) + ", " +
              std::to_string(layers.second) + ") for a memory budget of " + format_memory_size(src.mem_budget) + " (" +
              (src.mem_budget_source.empty() ? "none" : src.mem_budget_source) + ")");
    src.shard.layer_begin = layers.first;
    // The last stage also loads (and checks) the trailing NextN layers, as one process does.
    src.shard.layer_end = comm.rank() == comm.size() - 1 ? INT64_MAX : layers.second;
    src.shard.output_head = comm.rank() == 0;
  } else {
    src.shard.expert_part = comm.rank();
    src.shard.expert_parts = comm.size();
  }
  std::unique_ptr<Stage> stage;
  try {
    stage = std::make_unique<Stage>(comm, split, Model::load(src), layers);
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_or_fail(comm, error);

  if (comm.rank() == 0) return std::make_unique<DistributedModel>(comm, std::move(stage));
  try {
    serve_steps(comm, *stage);
  } catch (const std::exception& e) {
    comm.abort(comm.who(comm.rank()) + ": " + e.what());
  }
  return nullptr;
}

}  // namespace owl::dist
