// Speculative decoding: a cheap drafter guesses the next few tokens of a sequence, the target
// model checks them all in one forward call (the row of the token it would have been fed
// anyway, plus one row per draft), and the sequence keeps the longest run the target agrees
// with, plus the target's own token after it. Every emitted token is the target's choice:
// greedy decoding gives exactly the ids of plain decoding, and with sampling the drafts are
// accepted or replaced by rejection sampling, which leaves the target's distribution intact.
// Rows of rejected drafts are dropped from every KV cache they reached (the caller's, and the
// drafter's own).
//
// Drafters: the model's own NextN/MTP head (`--spec mtp[:K]`, DeepSeek-V3/R1, GLM-4.5), a small
// draft model with the target's vocabulary (`--spec draft[:K] --draft MODEL`), and prompt
// lookup (`--spec ngram[:K]`: the tokens that followed the latest earlier occurrence of the
// sequence's last few tokens).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace owl {

class Model;
class KVCache;
class Tokenizer;

enum class SpecKind { None, Mtp, Draft, Ngram };

struct SpecOptions {
  SpecKind kind = SpecKind::None;
  int k = 1;  // tokens drafted per step
};
inline constexpr int kMaxDraftTokens = 16;
// "mtp", "mtp:2", "draft:4", "ngram:3", "none" -> options; throws owl::UsageError naming the
// accepted forms otherwise (K must be 1..kMaxDraftTokens). Without ":K", K is 1 for mtp and 4
// for draft and ngram.
SpecOptions parse_spec(const std::string& spec);
const char* spec_kind_name(SpecKind k);

// A drafted token and the distribution it was drawn from (empty: chosen deterministically,
// i.e. q is all on the token; so are greedy drafts).
struct DraftToken {
  int32_t id = 0;
  std::vector<Sampler::Candidate> q;
};

// Guesses continuations of one sequence (KV sequence id `seq` in the drafter's own caches).
class Drafter {
 public:
  virtual ~Drafter() = default;
  // Up to k tokens that may follow `tokens` (the whole sequence so far; its last token is the
  // one the target is fed next). `pick` draws each draft token from its row of draft logits
  // (the request's sampling settings); prompt lookup ignores it. May return fewer, or none.
  virtual std::vector<DraftToken> propose(std::span<const int32_t> tokens, int k, Sampler& pick) = 0;
  // The target now holds positions first.. first+n-1 for good; `hidden` holds their trunk hidden
  // rows after output_norm ([n][n_embd]), which the MTP head reads. The default ignores them.
  virtual void kept(int64_t first, int64_t n, const float* hidden) {}
  // Forgets the sequence (its drafter caches are freed).
  virtual void drop() {}
};

// One sequence's drafting for a step of several sequences (see propose_together).
struct DraftCall {
  Drafter* drafter = nullptr;
  std::span<const int32_t> tokens;  // as for Drafter::propose
  int k = 0;                        // 0 or less: nothing is drafted
  Sampler* pick = nullptr;
  std::vector<DraftToken> drafts;  // out
  bool failed = false;             // out: the drafter threw (its cache full); drafts is empty
};
// Drafts for several sequences at once, the same drafts as one propose() per call. MTP heads
// sharing a target and a cache run one batched forward over all their sequences (then one per
// chained draft, over the sequences still drafting) instead of one forward per sequence: the
// head's weights are read once per step. Other drafters propose one after another. A drafter
// that throws is marked failed (the others still draft).
void propose_together(std::span<DraftCall> calls);

// The drafters. The MTP head and the draft model keep their own caches in `kv` (created with
// mtp_kv_shape() / the draft model's kv_shape()), under sequence id `seq`.
std::unique_ptr<Drafter> make_mtp_drafter(Model& target, KVCache& kv, int32_t seq);
std::unique_ptr<Drafter> make_draft_model_drafter(Model& draft, KVCache& kv, int32_t seq);
std::unique_ptr<Drafter> make_ngram_drafter();

// Throws owl::UsageError with one line when the target cannot speculate this way (`--spec mtp`
// on a model without a NextN layer).
void check_spec_target(const Model& target, const SpecOptions& spec);
// Throws owl::UsageError with one line when `draft` cannot draft for `target`: another
// vocabulary size or tokenizer kind; with both tokenizers, any token spelled differently.
void check_draft_model(const Model& target, const Model& draft);
void check_draft_tokenizer(const Tokenizer& target, const Tokenizer& draft);

// The target's verdict on one draft token, given its row of logits at that place: the draft
// itself when accepted (probability min(1, p/q), p from the sampler's filtered distribution),
// otherwise a token drawn from the residual max(0, p - q) (greedy: the argmax). The caller then
// feeds the token to sampler.accept() like any sampled token.
struct Verdict {
  int32_t token = 0;
  bool accepted = false;
};
Verdict verify_draft(Sampler& sampler, std::span<const float> logits, const DraftToken& draft);

// Turns speculation off for a while when it does not pay: when the smoothed share of accepted
// drafts falls low, or when the steps' timing shows that tokens per second with drafts fall
// below those of plain steps (a forward over several rows costs as much as several forwards
// when the model is compute-bound, as a tiny one is, or when each row routes to other experts).
// Drafting then pauses for a number of steps that doubles each time (up to 128; the plain steps
// meanwhile refresh the plain timing), then is tried again; a good step resets the pause.
// Acceptance zero thus costs one probe step in 129. The first step and one in 64 decode plainly
// to time a plain step.
class SpecGovernor {
 public:
  // Tokens to draft this step (0: decode plainly).
  int draft_budget(int k);
  // The outcome of a step with `drafted` drafts (0: a plain step) that yielded accepted + 1
  // tokens; `seconds` is the step's forward time (0 or less: not measured).
  void record(int drafted, int accepted, double seconds = 0);

 private:
  void pause();

  double rate_ = 1.0;                                  // smoothed share of drafts accepted
  double plain_s_ = 0, spec_s_ = 0, spec_tokens_ = 0;  // smoothed step times and tokens (0: none yet)
  int pause_ = 0;                                      // steps left without drafting
  int backoff_ = 4;
  int64_t steps_ = 0;
};

// Counters for the speed line and /metrics.
struct SpecStats {
  int64_t drafted = 0, accepted = 0, verify_forwards = 0, tokens = 0;
  double acceptance() const { return drafted ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0; }
  double tokens_per_forward() const {
    return verify_forwards ? static_cast<double>(tokens) / static_cast<double>(verify_forwards) : 0;
  }
};

// Greedy decoding of one sequence with speculation (`owl logits --greedy N --spec ...`): the
// target's KV cache already holds `prompt` (sequence 0) and `first` is its greedy token after
// it, `prompt_hidden` the prompt rows' hidden (for the MTP head; may be empty otherwise).
// Returns n greedy ids, the same as decoding one token per forward.
std::vector<int32_t> speculative_greedy(Model& target, KVCache& kv, std::vector<int32_t> prompt, int32_t first,
                                        std::span<const float> prompt_hidden, int n, Drafter& drafter, int k,
                                        SpecStats& stats);

}  // namespace owl
