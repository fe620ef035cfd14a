#include "runtime/speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "base/error.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "text/tokenizer.h"

namespace owl {

SpecOptions parse_spec(const std::string& spec) {
  const std::string usage =
      "--spec: '" + spec + "' is not a speculation mode; give mtp[:K], draft[:K], ngram[:K] or none";
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  SpecOptions o;
  if (kind == "none" && colon == std::string::npos) return o;
  if (kind == "mtp") {
    o.kind = SpecKind::Mtp;
  } else if (kind == "draft") {
    o.kind = SpecKind::Draft;
    o.k = 4;
  } else if (kind == "ngram") {
    o.kind = SpecKind::Ngram;
    o.k = 4;
  } else {
    throw UsageError(usage);
  }
  if (colon == std::string::npos) return o;
  const std::string ks = spec.substr(colon + 1);
  size_t used = 0;
  int k = 0;
  try {
    k = std::stoi(ks, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (ks.empty() || used != ks.size() || k < 1 || k > kMaxDraftTokens)
    throw UsageError("--spec " + spec + ": K (tokens drafted per step) must be a number from 1 to " +
                     std::to_string(kMaxDraftTokens));
  o.k = k;
  return o;
}

const char* spec_kind_name(SpecKind k) {
  switch (k) {
    case SpecKind::Mtp:
      return "mtp";
    case SpecKind::Draft:
      return "draft";
    case SpecKind::Ngram:
      return "ngram";
    case SpecKind::None:
      break;
  }
  return "none";
}

namespace {

// A draft token from one row of draft logits, drawn as the request samples (greedy: argmax).
DraftToken pick_draft(Sampler& pick, std::span<const float> logits) {
  DraftToken d;
  d.q = pick.candidates(logits);
  if (d.q.size() == 1) {
    d.id = d.q.front().id;
    d.q.clear();  // deterministic
    return d;
  }
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double r = u(pick.rng());
  d.id = d.q.back().id;
  for (const auto& c : d.q) {
    r -= c.p;
    if (r < 0) {
      d.id = c.id;
      break;
    }
  }
  return d;
}

// The NextN head of the target. Its cache row k is computed from token k and the target's
// hidden of row k-1; rows beyond the target's kept positions (chained drafts, fed the head's
// own hidden) are dropped again after each proposal, and rebuilt from the target's hidden once
// the target has verified those positions. A proposal is three phases (add_rows, the forward
// calls, finish) so that propose_together can run the forwards of several sequences as one.
class MtpDrafter : public Drafter {
 public:
  MtpDrafter(Model& target, KVCache& kv, int32_t seq) : m_(target), kv_(kv), seq_(seq), d_(target.config().n_embd) {
    kv_.remove(seq_);
  }

  void kept(int64_t first, int64_t n, const float* hidden) override {
    if (hidden_.empty() || first < base_) {
      hidden_.clear();
      base_ = first;
    }
    // Drops rows from `first` on (rejected positions), or zero-fills a gap (a reused prefix).
    hidden_.resize(static_cast<size_t>((first - base_) * d_), 0.0f);
    hidden_.insert(hidden_.end(), hidden, hidden + n * d_);
  }

  std::vector<DraftToken> propose(std::span<const int32_t> tokens, int k, Sampler& pick) override;

  void drop() override { kv_.remove(seq_); }

  // Appends the rows the head has not taken in yet (positions done .. n-1 of `tokens`; the last
  // one wants logits) to `batch`, and their input hidden rows to `rows`.
  void add_rows(std::span<const int32_t> tokens, Batch& batch, std::vector<float>& rows) {
    n_ = static_cast<int64_t>(tokens.size());
    start_ = kv_.seq_length(seq_);
    int64_t done = start_;
    if (done > n_ - 1) {  // the target rejected rows the head had already taken in: redo them
      kv_.truncate(seq_, n_ - 1);
      done = n_ - 1;
    }
    // Row p: token p with the target's hidden of p-1 (zeros before the sequence and where the
    // target's hidden is unknown, i.e. reused prompt prefixes).
    const size_t at = rows.size();
    rows.resize(at + static_cast<size_t>((n_ - done) * d_), 0.0f);
    for (int64_t p = done; p < n_; ++p) {
      batch.add(tokens[static_cast<size_t>(p)], p, seq_, p == n_ - 1);
      const int64_t h = p - 1 - base_;
      if (p >= 1 && h >= 0 && h < count())
        std::copy_n(hidden_.begin() + h * d_, d_, rows.begin() + static_cast<int64_t>(at) + (p - done) * d_);
    }
  }
  // The row of chained draft j (1..): the previous draft at position n-1+j.
  void add_chained(int j, int32_t token, Batch& batch) const { batch.add(token, n_ - 1 + j, seq_, true); }
  // Keeps only the cache rows built from the target's own hidden (positions < n).
  void finish() {
    kv_.truncate(seq_, n_);
    // The target's hidden of positions before n-1 is no longer needed: the head's next rows
    // (positions n ..) read positions n-1 ..
    const int64_t drop = std::max<int64_t>(0, n_ - 1 - base_);
    if (drop > 0 && drop <= count()) {
      hidden_.erase(hidden_.begin(), hidden_.begin() + drop * d_);
      base_ += drop;
    }
  }
  // A failed forward: back to the rows the head held before add_rows.
  void abort() { kv_.truncate(seq_, std::min(start_, kv_.seq_length(seq_))); }

  Model& model() const { return m_; }
  KVCache& cache() const { return kv_; }

 private:
  int64_t count() const { return static_cast<int64_t>(hidden_.size()) / d_; }

  Model& m_;
  KVCache& kv_;
  int32_t seq_;
  int64_t d_;
  std::vector<float> hidden_;  // the target's hidden rows of positions base_ ..
  int64_t base_ = 0;
  int64_t n_ = 0, start_ = 0;  // this proposal's sequence length, and the head's rows before it
};

// The drafts of several sequences' MTP heads (one target, one cache): one forward over all
// their new rows, then per chained draft one forward over one row of each sequence still
// drafting. Each row's result does not depend on the other rows of its batch, so the drafts
// equal those of one proposal per sequence.
void mtp_propose_together(std::span<DraftCall* const> calls) {
  auto head = [](const DraftCall* c) { return static_cast<MtpDrafter*>(c->drafter); };
  Model& m = head(calls.front())->model();
  KVCache& kv = head(calls.front())->cache();
  const auto n_vocab = static_cast<size_t>(m.n_vocab());
  const auto d = static_cast<size_t>(m.config().n_embd);
  Batch batch;
  std::vector<float> rows;
  for (const DraftCall* c : calls) head(c)->add_rows(c->tokens, batch, rows);
  std::vector<DraftCall*> live(calls.begin(), calls.end()), next;
  try {
    auto logits = m.mtp_forward(batch, rows.data(), kv);
    for (int j = 1;; ++j) {
      // The rows of `live` in the last forward wanted logits in this order; chained drafts read
      // those rows' hidden (after shared_head_norm).
      for (size_t i = 0; i < live.size(); ++i)
        live[i]->drafts.push_back(pick_draft(*live[i]->pick, logits.subspan(i * n_vocab, n_vocab)));
      batch.clear();
      rows.clear();
      next.clear();
      const std::span<const float> hidden = m.mtp_hidden();
      for (size_t i = 0; i < live.size(); ++i) {
        if (live[i]->k <= j) continue;
        head(live[i])->add_chained(j, live[i]->drafts.back().id, batch);
        rows.insert(rows.end(), hidden.begin() + static_cast<int64_t>(i * d),
                    hidden.begin() + static_cast<int64_t>((i + 1) * d));
        next.push_back(live[i]);
      }
      if (next.empty()) break;
      live.swap(next);
      logits = m.mtp_forward(batch, rows.data(), kv);
    }
  } catch (...) {
    for (DraftCall* c : calls) {
      head(c)->abort();
      c->drafts.clear();
    }
    throw;
  }
  for (const DraftCall* c : calls) head(c)->finish();
}

std::vector<DraftToken> MtpDrafter::propose(std::span<const int32_t> tokens, int k, Sampler& pick) {
  DraftCall call;
  call.drafter = this;
  call.tokens = tokens;
  call.k = k;
  call.pick = &pick;
  DraftCall* one[1] = {&call};
  mtp_propose_together(one);
  return std::move(call.drafts);
}

// A small model with the target's vocabulary, run on its own cache; what it was fed beyond the
// sequence's current tokens (rejected drafts) is cut off before the next proposal.
class DraftModelDrafter : public Drafter {
 public:
  DraftModelDrafter(Model& draft, KVCache& kv, int32_t seq) : m_(draft), kv_(kv), seq_(seq) { kv_.remove(seq_); }

  std::vector<DraftToken> propose(std::span<const int32_t> tokens, int k, Sampler& pick) override {
    size_t same = 0;
    while (same < fed_.size() && same < tokens.size() && fed_[same] == tokens[same]) ++same;
    fed_.resize(same);
    kv_.truncate(seq_, static_cast<int64_t>(same));
    batch_.clear();
    for (size_t p = same; p < tokens.size(); ++p)
      batch_.add(tokens[p], static_cast<int64_t>(p), seq_, p + 1 == tokens.size());
    fed_.assign(tokens.begin(), tokens.end());
    std::vector<DraftToken> out;
    out.push_back(pick_draft(pick, m_.forward(batch_, kv_)));
    for (int j = 1; j < k; ++j) {
      batch_.clear();
      batch_.add(out.back().id, static_cast<int64_t>(fed_.size()), seq_, true);
      fed_.push_back(out.back().id);
      out.push_back(pick_draft(pick, m_.forward(batch_, kv_)));
    }
    return out;
  }

  void drop() override { kv_.remove(seq_); }

 private:
  Model& m_;
  KVCache& kv_;
  int32_t seq_;
  std::vector<int32_t> fed_;  // exactly the tokens in kv_ for seq_
  Batch batch_;
};

// Prompt lookup: the longest suffix of the sequence (kMaxNgram tokens down to 1) that occurred
// earlier, and the k tokens that followed its latest earlier occurrence.
class NgramDrafter : public Drafter {
 public:
  std::vector<DraftToken> propose(std::span<const int32_t> tokens, int k, Sampler&) override {
    const int64_t n = static_cast<int64_t>(tokens.size());
    for (int64_t len = std::min<int64_t>(kMaxNgram, n - 1); len >= kMinNgram; --len) {
      const auto suffix = tokens.subspan(static_cast<size_t>(n - len));
      for (int64_t start = n - len - 1; start >= 0; --start) {
        if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
        std::vector<DraftToken> out;
        for (int64_t p = start + len; p < n && static_cast<int>(out.size()) < k; ++p)
          out.push_back({tokens[static_cast<size_t>(p)], {}});
        return out;
      }
    }
    return {};
  }

 private:
  static constexpr int64_t kMaxNgram = 4, kMinNgram = 1;
};

}  // namespace

void check_spec_target(const Model& target, const SpecOptions& spec) {
  if (spec.kind == SpecKind::Mtp && !target.has_mtp())
    throw UsageError("--spec mtp: this " + target.config().arch +
                     " model has no NextN (multi-token prediction) layer; use --spec ngram or --spec draft "
                     "--draft MODEL (`owl info` shows a file's NextN layers)");
}

std::unique_ptr<Drafter> make_mtp_drafter(Model& target, KVCache& kv, int32_t seq) {
  check_spec_target(target, {SpecKind::Mtp, 1});
  return std::make_unique<MtpDrafter>(target, kv, seq);
}

std::unique_ptr<Drafter> make_draft_model_drafter(Model& draft, KVCache& kv, int32_t seq) {
  return std::make_unique<DraftModelDrafter>(draft, kv, seq);
}

std::unique_ptr<Drafter> make_ngram_drafter() { return std::make_unique<NgramDrafter>(); }

void propose_together(std::span<DraftCall> calls) {
  auto alone = [](DraftCall& c) {
    try {
      c.drafts = c.drafter->propose(c.tokens, c.k, *c.pick);
    } catch (const std::exception&) {
      c.drafts.clear();
      c.failed = true;
    }
  };
  // MTP heads grouped by their cache (one per engine); every other drafter alone.
  std::vector<std::vector<DraftCall*>> heads;
  for (DraftCall& c : calls) {
    c.drafts.clear();
    c.failed = false;
    if (c.k <= 0) continue;
    auto* mtp = dynamic_cast<MtpDrafter*>(c.drafter);
    if (!mtp) {
      alone(c);
      continue;
    }
    auto same = std::find_if(heads.begin(), heads.end(), [&](const auto& g) {
      return &static_cast<MtpDrafter*>(g.front()->drafter)->cache() == &mtp->cache();
    });
    if (same == heads.end()) {
      heads.emplace_back();
      same = heads.end() - 1;
    }
    same->push_back(&c);
  }
  for (const auto& group : heads) {
    try {
      mtp_propose_together(group);
    } catch (const std::exception&) {
      // One sequence's rows did not fit (its cache full): the others draft alone, that one fails.
      for (DraftCall* c : group) alone(*c);
    }
  }
}

void check_draft_model(const Model& target, const Model& draft) {
  if (target.n_vocab() != draft.n_vocab())
    throw UsageError("--draft: the draft model has a vocabulary of " + std::to_string(draft.n_vocab()) +
                     " tokens, the target " + std::to_string(target.n_vocab()) +
                     "; a draft model must share the target's tokenizer");
  const ModelConfig &t = target.config(), &d = draft.config();
  if (t.tokenizer_model != d.tokenizer_model)
    throw UsageError("--draft: the draft model's tokenizer is '" + d.tokenizer_model + "', the target's '" +
                     t.tokenizer_model + "'; a draft model must share the target's tokenizer");
}

void check_draft_tokenizer(const Tokenizer& target, const Tokenizer& draft) {
  if (target.n_vocab() != draft.n_vocab())
    throw UsageError("--draft: the draft model's tokenizer has " + std::to_string(draft.n_vocab()) +
                     " tokens, the target's " + std::to_string(target.n_vocab()) +
                     "; a draft model must share the target's tokenizer");
  for (int32_t id = 0; id < target.n_vocab(); ++id)
    if (target.token_text(id) != draft.token_text(id))
      throw UsageError("--draft: token " + std::to_string(id) + " is '" + draft.token_text(id) +
                       "' in the draft model's tokenizer but '" + target.token_text(id) +
                       "' in the target's; a draft model must share the target's tokenizer");
}

Verdict verify_draft(Sampler& sampler, std::span<const float> logits, const DraftToken& draft) {
  const std::vector<Sampler::Candidate> p = sampler.candidates(logits);
  if (p.size() == 1) return {p.front().id, p.front().id == draft.id};  // greedy: nothing random to decide
  // q by token id (deterministic drafts: all on the draft token).
  thread_local std::vector<double> q;
  q.assign(logits.size(), 0.0);
  if (draft.q.empty()) {
    q[static_cast<size_t>(draft.id)] = 1.0;
  } else {
    for (const auto& c : draft.q) q[static_cast<size_t>(c.id)] = c.p;
  }
  double p_d = 0;
  for (const auto& c : p)
    if (c.id == draft.id) p_d = c.p;
  const double q_d = q[static_cast<size_t>(draft.id)];
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (p_d >= q_d || u(sampler.rng()) * q_d < p_d) return {draft.id, true};
  // Rejected: draw from max(0, p - q), normalised (p == q up to rounding: from p itself).
  double total = 0;
  for (const auto& c : p) total += std::max(0.0, c.p - q[static_cast<size_t>(c.id)]);
  const bool from_p = !(total > 0);
  if (from_p) total = 1;
  double r = u(sampler.rng()) * total;
  int32_t last = p.front().id;
  for (const auto& c : p) {
    const double w = from_p ? c.p : std::max(0.0, c.p - q[static_cast<size_t>(c.id)]);
    if (w <= 0) continue;
    last = c.id;
    if ((r -= w) < 0) return {c.id, false};
  }
  return {last, false};  // rounding left r just above 0
}

int SpecGovernor::draft_budget(int k) {
  // The first step, and one in kPlainEvery after, decodes plainly to time a plain step.
  constexpr int64_t kPlainEvery = 64;
  if (steps_++ % kPlainEvery == 0) return 0;
  if (pause_ > 0) {
    --pause_;
    return 0;
  }
  return k;
}

void SpecGovernor::pause() {
  constexpr int kMaxPause = 128;
  pause_ = backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxPause);
}

void SpecGovernor::record(int drafted, int accepted, double seconds) {
  constexpr double kKeep = 0.7, kLow = 0.2;
  auto smooth = [](double& avg, double v) { avg = avg > 0 ? kKeep * avg + (1 - kKeep) * v : v; };
  if (drafted <= 0) {
    if (seconds > 0) smooth(plain_s_, seconds);
    return;
  }
  rate_ = kKeep * rate_ + (1 - kKeep) * static_cast<double>(accepted) / static_cast<double>(drafted);
  if (seconds > 0) {
    smooth(spec_s_, seconds);
    smooth(spec_tokens_, 1.0 + accepted);
  }
  // Clearly slower only (timings of neighbouring steps move by some percent).
  constexpr double kMargin = 0.9;
  const bool slower = plain_s_ > 0 && spec_s_ > 0 && spec_tokens_ / spec_s_ < kMargin / plain_s_;
  if (rate_ < kLow || slower) {
    pause();
    rate_ = kLow + 0.05;  // one failed probe after the pause pauses again
    spec_s_ = 0;          // the probe measures afresh
    spec_tokens_ = 0;
  } else if (accepted > 0) {
    backoff_ = 4;
  }
}

std::vector<int32_t> speculative_greedy(Model& target, KVCache& kv, std::vector<int32_t> tokens, int32_t first,
                                        std::span<const float> prompt_hidden, int n, Drafter& drafter, int k,
                                        SpecStats& stats) {
  const auto n_vocab = static_cast<size_t>(target.n_vocab());
  SamplerParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy, target.n_vocab());
  SpecGovernor governor;
  if (!prompt_hidden.empty()) drafter.kept(0, static_cast<int64_t>(tokens.size()), prompt_hidden.data());
  std::vector<int32_t> out{first};
  tokens.push_back(first);
  Batch batch;
  while (static_cast<int>(out.size()) < n) {
    const int64_t pos = static_cast<int64_t>(tokens.size()) - 1;  // where `first`/the next token goes
    const int budget = std::min(governor.draft_budget(k), n - static_cast<int>(out.size()) - 1);
    std::vector<DraftToken> drafts;
    const auto t0 = std::chrono::steady_clock::now();  // drafting counts into the step's time
    if (budget > 0) drafts = drafter.propose(tokens, budget, sampler);
    batch.clear();
    batch.add(tokens.back(), pos, 0, true);
    for (size_t j = 0; j < drafts.size(); ++j) batch.add(drafts[j].id, pos + 1 + static_cast<int64_t>(j), 0, true);
    auto logits = target.forward(batch, kv);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t accepted = 0;
    int32_t next = 0;
    for (size_t j = 0;; ++j) {
      const auto row = logits.subspan(j * n_vocab, n_vocab);
      if (j == drafts.size()) {
        next = sampler.sample(row);
        break;
      }
      const Verdict v = verify_draft(sampler, row, drafts[j]);
      if (!v.accepted) {
        next = v.token;
        break;
      }
      ++accepted;
    }
    kv.truncate(0, pos + 1 + static_cast<int64_t>(accepted));
    drafter.kept(pos, 1 + static_cast<int64_t>(accepted), target.last_hidden().data());
    governor.record(static_cast<int>(drafts.size()), static_cast<int>(accepted), seconds);
    stats.drafted += static_cast<int64_t>(drafts.size());
    stats.accepted += static_cast<int64_t>(accepted);
    ++stats.verify_forwards;
    stats.tokens += static_cast<int64_t>(accepted) + 1;
    for (size_t j = 0; j < accepted; ++j) {
      tokens.push_back(drafts[j].id);
      out.push_back(drafts[j].id);
    }
    tokens.push_back(next);
    out.push_back(next);
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace owl
