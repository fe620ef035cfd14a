// The generation engine behind `owl serve`: one thread owns the model and the
// paged KV cache and runs continuous batching. Each step it admits queued
// requests (KV budget permitting, reusing cached prompt prefixes), then
// evaluates one Model::forward over every running sequence: one decode row
// each, plus chunks of the prompts still being prefilled. Sampled tokens are
// detokenized, checked against stop strings and handed to each request's
// GenerationStream, which HTTP threads read. Cancelling a stream frees its
// sequence at the next step.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/error.h"
#include "runtime/grammar_constraint.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "runtime/speculative.h"
#include "tensor/dtype.h"

namespace owl {

class Model;
class Tokenizer;
class KVCache;

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "error"

// Sees every generated token of one request and may force the next ones (a thinking
// budget closes the reasoning block this way). Runs on the engine thread.
class TokenHook {
 public:
  virtual ~TokenHook() = default;
  // `text` is what the token added to the output (maybe ""). Returns tokens to feed next
  // instead of sampling, or nothing.
  virtual std::vector<int32_t> on_token(int32_t id, std::string_view text) = 0;
  // Tokens to force before the first one is sampled.
  virtual std::vector<int32_t> at_start() { return {}; }
};

// SamplerParams::seed 0 asks the engine for a random seed (when sampling is random); a seed
// of 0 that a user gave (`owl run --seed 0`, "seed": 0) is sent as this one instead.
inline uint64_t explicit_seed(uint64_t seed) { return seed == 0 ? 0x5eed : seed; }

// One generation, the same for `owl run`, `owl chat` and `owl serve`. It ends at the first of:
// an end-of-generation token (unless ignore_eos; the token is counted but not shown), a stop
// string (neither it nor anything after it is shown), max_tokens generated tokens, or the end
// of the context: prompt + generated tokens never exceed the engine's n_ctx (submit() refuses
// a request whose prompt + max_tokens does not fit). The text is detokenized as it continues
// the prompt. Special (control) tokens are not text: they are left out of the output unless
// render_special asks for them all, or keep_special for some (the chat layer keeps the
// markers its reasoning and tool-call parsers read when the model spells them as special
// tokens). This one rule holds for run, chat, completions and chat completions alike.
struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplerParams sampling;
  int64_t max_tokens = 16;        // generated tokens at most; 0: only evaluate the prompt
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;
  bool render_special = false;                    // show special tokens (<s>, <|im_start|>, ...) as their text
  std::vector<int32_t> keep_special;              // these special tokens are shown even so
  std::shared_ptr<TokenHook> hook;                // optional
  bool speculate = true;                          // false: no drafts for this request, even when the engine drafts
  std::shared_ptr<GrammarConstraint> constraint;  // optional: masks the logits (JSON Schema, GBNF)
  // >= 0: each event carries its tokens' log-probabilities (runtime/logprobs.h) with this many
  // most likely alternatives (0..kMaxTopLogprobs); < 0: none.
  int logprobs = -1;
};

struct GenerationEvent {
  std::string text;                          // newly visible output text
  int64_t n_tokens = 0;                      // tokens generated since the previous event
  FinishReason finish = FinishReason::None;  // set on the last event of a stream
  std::string error;                         // with Error
  // With GenerationRequest::logprobs: one per generated token of this event, in order; the
  // end-of-generation token that ends a request is not output and has none.
  std::vector<TokenLogprob> logprobs;
  bool stop_string = false;  // with Stop: a stop string ended it (not an end-of-generation token)
  // On the last event: usage.
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  // When the engine pushed the event (set by GenerationStream::push): readers may wake late and
  // take several events at once, so timing taken at read time would merge steps.
  std::chrono::steady_clock::time_point pushed_at{};
};

// Rings whenever any of the streams it is attached to receives an event, so one reader can
// wait on all the choices of an n > 1 request at once.
class StreamBell {
 public:
  void ring();
  uint64_t rings() const;
  // Waits until rings() differs from `seen` or the timeout passes.
  void wait(uint64_t seen, std::chrono::milliseconds timeout);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t rings_ = 0;
};

// A request's output channel, shared by the engine thread (producer) and an HTTP thread.
class GenerationStream {
 public:
  GenerationStream() : bell_(std::make_shared<StreamBell>()) {}
  explicit GenerationStream(std::shared_ptr<StreamBell> bell) : bell_(std::move(bell)) {}
  // Waits up to `timeout` for events; returns what arrived (empty on timeout).
  std::vector<GenerationEvent> wait(std::chrono::milliseconds timeout);
  // Stops the request: the engine frees its sequence at its next step and ends the stream.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  bool finished() const;

  void push(GenerationEvent e);  // engine side
  // Shared by the streams of one submit_group().
  StreamBell& bell() const { return *bell_; }

 private:
  std::shared_ptr<StreamBell> bell_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
};

struct EngineOptions {
  int n_parallel = 4;            // sequences decoded together
  int64_t n_ctx = 0;             // per sequence; 0: the model's training context
  int64_t prefill_chunk = 256;   // prompt tokens per step over all sequences
  int64_t kv_budget_tokens = 0;  // KV memory budget in tokens; 0: n_parallel * n_ctx
  int max_queue = 64;            // requests waiting for a busy server beyond this are refused (QueueFullError)
  DType kv_type = DType::F16;
  int64_t page_tokens = 32;
  bool prefix_cache = true;
  // Speculative decoding (runtime/speculative.h): each decoding sequence's drafts join the one
  // verify batch of the step. Draft needs draft_model (same tokenizer; it must outlive the engine).
  SpecOptions spec;
  Model* draft_model = nullptr;
};

// The queue is full: the server answers 429.
class QueueFullError : public Error {
 public:
  using Error::Error;
};
// The request can never run (prompt or reservation too large): the server answers 400.
class RequestTooLargeError : public Error {
 public:
  using Error::Error;
};
// The prompt itself is invalid (empty, or a token id outside the vocabulary): the server answers
// 400 naming the prompt.
class InvalidPromptError : public Error {
 public:
  using Error::Error;
};

struct EngineStats {
  int64_t queue_depth = 0;
  int64_t running = 0;
  int64_t n_parallel = 0;
  int64_t kv_pages_in_use = 0;
  int64_t kv_bytes_allocated = 0;
  int64_t kv_budget_tokens = 0;
  int64_t kv_committed_tokens = 0;         // reserved by running requests + cached prefixes
  int64_t prompt_tokens_total = 0;         // prompt tokens of admitted requests (cached included)
  int64_t prompt_tokens_cached_total = 0;  // of those, served from the prefix cache
  int64_t prefill_tokens_total = 0;        // prompt tokens actually evaluated
  int64_t prompt_tokens_forked_total = 0;  // prompt tokens copied into the extra choices of n > 1 requests
  int64_t generated_tokens_total = 0;
  int64_t requests_finished_total = 0;
  int64_t requests_cancelled_total = 0;
  int64_t steps_total = 0;
  // Speculative decoding: drafts proposed and accepted, verify rows (one per decoding sequence
  // and step) and the tokens they produced.
  int64_t spec_drafted_total = 0;
  int64_t spec_accepted_total = 0;
  int64_t spec_verify_total = 0;
  int64_t spec_tokens_total = 0;
  double generated_tokens_per_second = 0;  // over the last few seconds
  double prefill_tokens_per_second = 0;
};

class Engine {
 public:
  // The model and tokenizer must outlive the engine.
  Engine(Model& model, const Tokenizer& tokenizer, EngineOptions opts);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws InvalidPromptError (empty prompt, token id outside the vocabulary),
  // RequestTooLargeError (prompt + max_tokens exceeds the context or the KV budget) or
  // QueueFullError.
  std::shared_ptr<GenerationStream> submit(GenerationRequest req);
  // Queues the choices of one n > 1 request: the same prompt, each with its own sampling,
  // hook and constraint. The prompt is evaluated once, by the first; when it is done, its KV
  // rows are copied into the others' slots and every choice samples its first token from the
  // same logits row. The group starts when all its choices have slots, so n may not exceed
  // n_parallel (RequestTooLargeError). Choices do not draft (speculation is per sequence).
  // One stream per choice, in order, sharing one StreamBell.
  std::vector<std::shared_ptr<GenerationStream>> submit_group(std::vector<GenerationRequest> reqs);
  int n_parallel() const { return opts_.n_parallel; }
  EngineStats stats() const;
  int64_t n_ctx() const { return n_ctx_; }
  const Tokenizer& tokenizer() const { return tok_; }

 private:
  struct Active;
  struct Pending {
    GenerationRequest req;
    std::shared_ptr<GenerationStream> stream;
    int followers = 0;  // the first choice of a group: how many of its choices follow it in the queue
  };
  void loop();
  void admit();  // engine thread, under mu_
  void step();   // engine thread
  void finish(Active& a, FinishReason why, const std::string& error = "");
  // Admits the group at the front of the queue when all its choices get a slot.
  bool admit_front();
  // The first choice's prompt is in the cache and `logits` is its last row: the other choices
  // copy its KV and sample their first tokens.
  void fork(Active& first, std::span<const float> logits);
  void sample_and_emit(Active& a, std::span<const float> logits);
  void propose_drafts(const std::vector<Active*>& decoders);  // their drafts for this step (maybe none)
  // sample_and_emit with the token already chosen (an accepted draft or a verdict) from `row`.
  void emit(Active& a, int32_t tok, std::span<const float> row);
  // The logits rows of a sequence that fed drafts: accept or replace them one by one, then roll
  // the rejected rows back out of every cache. Returns the drafts accepted. `seconds`: the
  // step's forward time, for the sequence's SpecGovernor.
  int64_t verify_and_emit(Active& a, int64_t pos, std::span<const float> logits, const float* hidden, double seconds);
  void record_rate(int64_t generated, int64_t prefilled);

  Model& model_;
  const Tokenizer& tok_;
  EngineOptions opts_;
  int64_t n_ctx_ = 0;
  std::unique_ptr<KVCache> kv_;
  std::unique_ptr<KVCache> draft_kv_;  // the MTP head's or the draft model's cache (speculation)
  Scheduler sched_;

  mutable std::mutex mu_;  // guards pending_, stats_, and the scheduler's counters read by stats()
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  std::vector<std::unique_ptr<Active>> active_;  // engine thread only (size read under mu_)
  EngineStats stats_;
  std::deque<std::tuple<std::chrono::steady_clock::time_point, int64_t, int64_t>> rate_window_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace owl
