#include "runtime/engine.h"

#include <algorithm>
#include <optional>
#include <random>

#include "model/model.h"
#include "runtime/kv_cache.h"
#include "text/tokenizer.h"

namespace owl {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::Error:
      return "error";
    case FinishReason::None:
      break;
  }
  return "none";
}

std::vector<GenerationEvent> GenerationStream::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  std::vector<GenerationEvent> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

bool GenerationStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

void GenerationStream::push(GenerationEvent e) {
  e.pushed_at = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    if (e.finish != FinishReason::None) finished_ = true;
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
  bell_->ring();
}

void StreamBell::ring() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++rings_;
  }
  cv_.notify_all();
}

uint64_t StreamBell::rings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rings_;
}

void StreamBell::wait(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return rings_ != seen; });
}

// A running request: its slot, where it is in its prompt, and its output state.
struct Engine::Active {
  Pending p;
  int slot = -1;
  int64_t fed = 0;             // prompt tokens in the KV cache
  int64_t cached = 0;          // of those, reused from the prefix cache
  int32_t next = -1;           // sampled token not yet fed (decode phase)
  std::deque<int32_t> forced;  // tokens the hook asked for
  std::vector<float> masked;   // the logits row after the grammar's mask
  int64_t generated = 0;
  Sampler sampler;
  IncrementalDecoder decoder;
  StopStrings stops;
  std::string text_out;  // visible text waiting to be sent this step
  int64_t tokens_out = 0;
  std::vector<TokenLogprob> logprobs_out;  // of the tokens waiting to be sent (when asked)
  bool done = false;                       // finished: its stream has its last event
  // n > 1: a choice waits (first set) until its group's first choice has prefilled the prompt;
  // the first choice lists the choices still waiting for it.
  Active* first = nullptr;
  std::vector<Active*> forks;
  // Speculative decoding (null drafter: this request does not speculate).
  std::unique_ptr<Drafter> drafter;
  std::optional<Sampler> draft_pick;  // draws draft tokens as the request samples
  SpecGovernor governor;
  std::vector<DraftToken> drafts;  // this step's, fed after `next`

  Active(Pending pend, int64_t n_vocab, const Tokenizer& tok)
      : p(std::move(pend)),
        sampler(p.req.sampling, n_vocab),
        decoder(tok, /*skip_special=*/!p.req.render_special),
        stops(p.req.stop) {
    for (int32_t id : p.req.keep_special) decoder.keep_special(id);
    // The output continues the prompt: a SentencePiece decoder must not strip the leading
    // space of the first generated token as if it began the text. Prime it with a prompt
    // token whose text is plain ASCII (so nothing of it can be left pending).
    for (auto it = p.req.prompt.rbegin(); it != p.req.prompt.rend(); ++it) {
      std::string b = tok.token_bytes(*it);
      bool ascii = !b.empty() && b.find_first_not_of(' ') != std::string::npos;
      for (unsigned char c : b) ascii = ascii && c < 0x80;
      if (ascii) {
        decoder.prime(*it);
        break;
      }
    }
  }
  bool prefilling() const { return fed < static_cast<int64_t>(p.req.prompt.size()); }
};

namespace {
int64_t resolve_ctx(const Model& m, const EngineOptions& o) {
  int64_t n = o.n_ctx > 0 ? o.n_ctx : m.config().n_ctx_train;
  if (n <= 0) n = 4096;
  return n;
}
GenerationEvent ended(FinishReason why, std::string error) {
  GenerationEvent e;
  e.finish = why;
  e.error = std::move(error);
  return e;
}
SchedulerOptions scheduler_options(int64_t n_ctx, const EngineOptions& o) {
  SchedulerOptions s;
  s.n_slots = o.n_parallel;
  s.n_ctx = n_ctx;
  s.kv_budget_tokens = o.kv_budget_tokens;
  s.page_tokens = o.page_tokens;
  s.prefill_chunk = o.prefill_chunk;
  s.prefix_cache = o.prefix_cache;
  return s;
}
}  // namespace

Engine::Engine(Model& model, const Tokenizer& tokenizer, EngineOptions opts)
    : model_(model),
      tok_(tokenizer),
      opts_(opts),
      n_ctx_(resolve_ctx(model, opts)),
      sched_(scheduler_options(n_ctx_, opts)) {
  KVCacheOptions ko;
  ko.type = opts_.kv_type;
  ko.n_ctx = n_ctx_;
  ko.page_tokens = opts_.page_tokens;
  // The pool must hold the whole budget; it is sized in full-context sequences.
  ko.n_seq_max = std::max<int64_t>(opts_.n_parallel, (sched_.budget_tokens() + n_ctx_ - 1) / n_ctx_);
  kv_ = std::make_unique<KVCache>(model_.kv_shape(), ko);
  check_spec_target(model_, opts_.spec);
  if (opts_.spec.kind == SpecKind::Mtp) draft_kv_ = std::make_unique<KVCache>(model_.mtp_kv_shape(), ko);
  if (opts_.spec.kind == SpecKind::Draft) {
    if (!opts_.draft_model)
      throw UsageError("--spec draft needs --draft MODEL (a small model with the same tokenizer)");
    check_draft_model(model_, *opts_.draft_model);
    draft_kv_ = std::make_unique<KVCache>(opts_.draft_model->kv_shape(), ko);
  }
  stats_.n_parallel = opts_.n_parallel;
  stats_.kv_budget_tokens = sched_.budget_tokens();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<GenerationStream> Engine::submit(GenerationRequest req) {
  std::vector<GenerationRequest> one;
  one.push_back(std::move(req));
  return submit_group(std::move(one)).front();
}

std::vector<std::shared_ptr<GenerationStream>> Engine::submit_group(std::vector<GenerationRequest> reqs) {
  if (reqs.empty()) throw Error("submit_group: no choices");
  const auto n = static_cast<int64_t>(reqs.size());
  if (n > opts_.n_parallel)
    throw RequestTooLargeError(std::to_string(n) + " choices need as many sequences at once, but this server runs " +
                               std::to_string(opts_.n_parallel) + " (--parallel); ask for fewer");
  for (const auto& r : reqs)
    if (r.prompt != reqs.front().prompt || r.max_tokens != reqs.front().max_tokens)
      throw Error("submit_group: the choices of a group share one prompt and max_tokens");
  if (reqs.front().logprobs > kMaxTopLogprobs)
    throw Error("logprobs: at most " + std::to_string(kMaxTopLogprobs) + " alternatives per token");
  const GenerationRequest& req = reqs.front();
  const int64_t n_prompt = static_cast<int64_t>(req.prompt.size());
  if (n_prompt == 0) throw InvalidPromptError("the prompt is empty; send at least one token");
  for (int32_t t : req.prompt)
    if (t < 0 || t >= model_.n_vocab())
      throw InvalidPromptError("prompt token id " + std::to_string(t) + " is outside the vocabulary (0.." +
                               std::to_string(model_.n_vocab() - 1) + ")");
  if (req.max_tokens < 0) throw RequestTooLargeError("max_tokens must be 0 or more");
  if (n_prompt + req.max_tokens > n_ctx_)
    throw RequestTooLargeError("this model's context is " + std::to_string(n_ctx_) + " tokens, but " +
                               std::to_string(n_prompt + req.max_tokens) + " were requested (" +
                               std::to_string(n_prompt) + " in the prompt, " + std::to_string(req.max_tokens) +
                               " to generate); shorten the prompt or lower max_tokens");
  // Each choice reserves its own copy of the prompt and its own output (page-rounded each).
  const int64_t reserve = n_prompt + req.max_tokens;
  const int64_t page = opts_.page_tokens > 0 ? opts_.page_tokens : 1;
  if (!sched_.could_fit(n * ((reserve + page - 1) / page) * page))
    throw RequestTooLargeError("the request needs more KV cache than the server's whole budget of " +
                               std::to_string(sched_.budget_tokens()) + " tokens; lower max_tokens" +
                               (n > 1 ? " or n" : ""));
  auto bell = std::make_shared<StreamBell>();
  std::vector<std::shared_ptr<GenerationStream>> streams;
  for (int64_t i = 0; i < n; ++i) streams.push_back(std::make_shared<GenerationStream>(bell));
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Waiting room is needed only when every slot is taken.
    const int64_t waiting = static_cast<int64_t>(pending_.size());
    if (waiting >= opts_.max_queue && stats_.running + waiting >= opts_.n_parallel)
      throw QueueFullError("the server is busy: " + std::to_string(pending_.size()) +
                           " requests are already waiting (--max-queue); retry later");
    for (int64_t i = 0; i < n; ++i)
      pending_.push_back({std::move(reqs[static_cast<size_t>(i)]), streams[static_cast<size_t>(i)],
                          i == 0 ? static_cast<int>(n - 1) : 0});
    stats_.queue_depth = static_cast<int64_t>(pending_.size());
  }
  cv_.notify_all();
  return streams;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = stats_;
  // Rates decay to zero when nothing happened recently.
  auto now = std::chrono::steady_clock::now();
  int64_t gen = 0, pre = 0;
  for (const auto& [t, g, p] : rate_window_)
    if (now - t <= std::chrono::seconds(10)) gen += g, pre += p;
  if (!rate_window_.empty()) {
    double span = std::chrono::duration<double>(now - std::get<0>(rate_window_.front())).count();
    span = std::clamp(span, 1.0, 10.0);
    s.generated_tokens_per_second = static_cast<double>(gen) / span;
    s.prefill_tokens_per_second = static_cast<double>(pre) / span;
  }
  return s;
}

void Engine::record_rate(int64_t generated, int64_t prefilled) {
  auto now = std::chrono::steady_clock::now();
  rate_window_.emplace_back(now, generated, prefilled);
  while (!rate_window_.empty() && now - std::get<0>(rate_window_.front()) > std::chrono::seconds(10))
    rate_window_.pop_front();
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !pending_.empty() || !active_.empty(); });
      if (stop_) break;
      admit();
    }
    if (active_.empty()) {
      // Queued requests that do not fit yet wait for running ones; nothing runs, so wait briefly.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(5));
      continue;
    }
    step();
  }
  // Shutting down: end every stream.
  for (auto& a : active_) a->p.stream->push(ended(FinishReason::Cancelled, "server shutting down"));
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& p : pending_) p.stream->push(ended(FinishReason::Cancelled, "server shutting down"));
}

void Engine::admit() {
  // Requests cancelled while waiting never start; a group goes as a whole when one of its
  // choices is cancelled.
  for (size_t i = 0; i < pending_.size();) {
    const size_t group = 1 + static_cast<size_t>(pending_[i].followers);
    bool cancelled = false;
    for (size_t k = i; k < i + group && k < pending_.size(); ++k) cancelled |= pending_[k].stream->cancelled();
    if (!cancelled) {
      i += group;
      continue;
    }
    for (size_t k = 0; k < group && i < pending_.size(); ++k) {
      pending_[i].stream->push(ended(FinishReason::Cancelled, ""));
      ++stats_.requests_cancelled_total;
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  // First come, first served: a request that does not fit blocks those behind it.
  while (!pending_.empty() && admit_front()) {
  }
  stats_.queue_depth = static_cast<int64_t>(pending_.size());
  stats_.running = static_cast<int64_t>(active_.size());
}

bool Engine::admit_front() {
  const size_t group = 1 + static_cast<size_t>(pending_.front().followers);
  std::vector<Scheduler::Placement> places;
  for (size_t k = 0; k < group; ++k) {
    const GenerationRequest& r = pending_[k].req;
    auto place = sched_.place(r.prompt, static_cast<int64_t>(r.prompt.size()) + r.max_tokens);
    if (!place) break;
    for (int e : place->evicted) kv_->remove(e);
    places.push_back(*place);
  }
  if (places.size() < group) {
    // Not every choice has a slot yet: give back those taken (their cached prefixes stay).
    for (const auto& pl : places) sched_.release(pl.slot, /*keep=*/true);
    return false;
  }
  Active* first = nullptr;
  for (size_t k = 0; k < group; ++k) {
    const Scheduler::Placement& place = places[k];
    auto a = std::make_unique<Active>(std::move(pending_.front()), model_.n_vocab(), tok_);
    pending_.pop_front();
    a->slot = place.slot;
    if (k == 0) {
      kv_->truncate(place.slot, place.reused);
      a->fed = place.reused;
      a->cached = place.reused;
      first = a.get();
    } else {
      // Waits for the first choice's prompt, which fork() copies in.
      kv_->truncate(place.slot, 0);
      sched_.truncate(place.slot, 0);
      a->first = first;
      first->forks.push_back(a.get());
    }
    if (a->p.req.sampling.seed == 0 && a->p.req.sampling.temperature > 0) {
      // No seed given: every request draws differently.
      SamplerParams sp = a->p.req.sampling;
      sp.seed = std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32);
      a->sampler = Sampler(sp, model_.n_vocab());
    }
    for (int32_t t : a->p.req.prompt) a->sampler.accept(t);
    // A constrained request does not draft: its mask follows the tokens one at a time. Nor do
    // the choices of a group, which share the first one's prefill.
    if (opts_.spec.kind != SpecKind::None && a->p.req.speculate && !a->p.req.constraint && group == 1) {
      if (opts_.spec.kind == SpecKind::Mtp) a->drafter = make_mtp_drafter(model_, *draft_kv_, a->slot);
      if (opts_.spec.kind == SpecKind::Draft)
        a->drafter = make_draft_model_drafter(*opts_.draft_model, *draft_kv_, a->slot);
      if (opts_.spec.kind == SpecKind::Ngram) a->drafter = make_ngram_drafter();
      SamplerParams dp = a->sampler.params();
      dp.seed = explicit_seed(dp.seed + 1);
      a->draft_pick.emplace(dp, model_.n_vocab());
    }
    if (a->p.req.hook)
      for (int32_t t : a->p.req.hook->at_start()) a->forced.push_back(t);
    if (k == 0) {
      // The prompt counts once for the group.
      stats_.prompt_tokens_total += static_cast<int64_t>(a->p.req.prompt.size());
      stats_.prompt_tokens_cached_total += a->cached;
    }
    active_.push_back(std::move(a));
  }
  return true;
}

void Engine::fork(Active& first, std::span<const float> logits) {
  const auto n_prompt = static_cast<int64_t>(first.p.req.prompt.size());
  for (Active* f : first.forks) {
    f->first = nullptr;
    kv_->copy_prefix(first.slot, f->slot, n_prompt);
    sched_.truncate(f->slot, 0);
    sched_.append(f->slot, first.p.req.prompt);
    f->fed = n_prompt;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.prompt_tokens_forked_total += n_prompt;
    }
    sample_and_emit(*f, logits);
  }
  first.forks.clear();
}

void Engine::finish(Active& a, FinishReason why, const std::string& error) {
  if (a.done) return;
  a.done = true;
  // A group's first choice that ends before its prompt was prefilled takes the waiting choices
  // with it; a waiting choice that ends leaves its group's list.
  for (Active* f : a.forks) {
    f->first = nullptr;
    finish(*f, why, error);
  }
  a.forks.clear();
  if (a.first) std::erase(a.first->forks, &a);
  a.first = nullptr;
  if (why != FinishReason::Error && why != FinishReason::Cancelled) {
    std::string tail = a.decoder.flush();
    std::string visible = a.stops.stopped() ? "" : a.stops.push(tail);
    if (!a.stops.stopped()) visible += a.stops.flush();
    a.text_out += visible;
  }
  GenerationEvent e;
  e.text = std::move(a.text_out);
  e.n_tokens = a.tokens_out;
  e.finish = why;
  e.error = error;
  e.stop_string = why == FinishReason::Stop && a.stops.stopped();
  e.prompt_tokens = static_cast<int64_t>(a.p.req.prompt.size());
  e.cached_tokens = a.cached;
  e.completion_tokens = a.generated;
  e.logprobs = std::move(a.logprobs_out);
  a.logprobs_out.clear();
  a.text_out.clear();
  a.tokens_out = 0;
  if (a.drafter) a.drafter->drop();
  // Keep what the slot cached for prefix reuse, unless the cache may be inconsistent.
  bool keep = why != FinishReason::Error;
  sched_.release(a.slot, keep);
  if (!keep) kv_->remove(a.slot);
  {
    // Counted before the client hears of the end, so /metrics never lags a finished answer.
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests_finished_total;
    if (why == FinishReason::Cancelled) ++stats_.requests_cancelled_total;
    stats_.running = std::max<int64_t>(0, stats_.running - 1);
    stats_.kv_committed_tokens = sched_.committed_tokens();
  }
  a.p.stream->push(std::move(e));
}

void Engine::sample_and_emit(Active& a, std::span<const float> logits) {
  if (a.p.req.max_tokens == 0) return finish(a, FinishReason::Length);  // the prompt alone was asked for
  int32_t tok;
  if (!a.forced.empty()) {
    tok = a.forced.front();
    a.forced.pop_front();
  } else if (a.p.req.constraint && a.p.req.constraint->active()) {
    a.masked.assign(logits.begin(), logits.end());
    a.p.req.constraint->apply(a.masked);
    tok = a.sampler.sample(a.masked);
  } else {
    tok = a.sampler.sample(logits);
  }
  emit(a, tok, logits);
}

int64_t Engine::verify_and_emit(Active& a, int64_t pos, std::span<const float> logits, const float* hidden,
                                double seconds) {
  const auto n_vocab = static_cast<size_t>(model_.n_vocab());
  int64_t accepted = 0;
  for (size_t j = 0;; ++j) {
    const auto row = logits.subspan(j * n_vocab, n_vocab);
    if (j == a.drafts.size()) {  // every draft accepted: the row after the last one samples as usual
      sample_and_emit(a, row);
      break;
    }
    const Verdict v = verify_draft(a.sampler, row, a.drafts[j]);
    emit(a, v.token, row);
    if (!v.accepted || a.p.stream->finished()) break;
    // The draft's row is in the cache: it counts as fed.
    sched_.append(a.slot, std::span<const int32_t>(&v.token, 1));
    ++accepted;
    if (!a.forced.empty()) break;  // the hook chose the next tokens; later drafts are moot
  }
  // Roll the rejected rows back: the target's cache keeps `next` and the accepted drafts.
  kv_->truncate(a.slot, pos + 1 + accepted);
  if (hidden && a.drafter) a.drafter->kept(pos, 1 + accepted, hidden);
  a.governor.record(static_cast<int>(a.drafts.size()), static_cast<int>(accepted), seconds);
  return accepted;
}

void Engine::emit(Active& a, int32_t tok, std::span<const float> row) {
  a.sampler.accept(tok);
  ++a.generated;
  {
    // Counted before the client can hear of it, as finish() counts the request.
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.generated_tokens_total;
  }
  ++a.tokens_out;
  if (!a.p.req.ignore_eos && tok_.is_eog(tok) && a.forced.empty()) return finish(a, FinishReason::Stop);
  if (a.p.req.logprobs >= 0) a.logprobs_out.push_back(token_logprob(row, tok, a.p.req.logprobs));
  std::string piece = a.decoder.push(tok);
  std::string visible = a.stops.push(piece);
  a.text_out += visible;
  if (a.p.req.constraint) a.p.req.constraint->accept(tok, piece);
  if (a.p.req.hook) {
    auto more = a.p.req.hook->on_token(tok, piece);
    a.forced.insert(a.forced.end(), more.begin(), more.end());
  }
  if (a.stops.stopped()) return finish(a, FinishReason::Stop);
  if (a.generated >= a.p.req.max_tokens) return finish(a, FinishReason::Length);
  if (static_cast<int64_t>(sched_.tokens(a.slot).size()) + 1 >= n_ctx_) return finish(a, FinishReason::Length);
  a.next = tok;
  if (!a.text_out.empty() || a.tokens_out > 0) {
    GenerationEvent e;
    e.text = std::move(a.text_out);
    e.n_tokens = a.tokens_out;
    e.logprobs = std::move(a.logprobs_out);
    a.p.stream->push(std::move(e));
    a.text_out.clear();
    a.tokens_out = 0;
    a.logprobs_out.clear();
  }
}

void Engine::propose_drafts(const std::vector<Active*>& decoders) {
  // Every speculating sequence drafts at once: the MTP heads' forwards run over all of them.
  std::vector<std::vector<int32_t>> tokens;
  std::vector<DraftCall> calls;
  std::vector<Active*> who;
  tokens.reserve(decoders.size());
  for (Active* a : decoders) {
    a->drafts.clear();
    if (!a->drafter || !a->forced.empty()) continue;
    const int64_t left = a->p.req.max_tokens - a->generated - 1;  // drafts beyond it could not be kept
    const int k = a->governor.draft_budget(static_cast<int>(std::min<int64_t>(opts_.spec.k, left)));
    if (k <= 0) continue;
    tokens.push_back(sched_.tokens(a->slot));
    tokens.back().push_back(a->next);
    DraftCall& c = calls.emplace_back();
    c.drafter = a->drafter.get();
    c.tokens = tokens.back();
    c.k = k;
    c.pick = &*a->draft_pick;
    who.push_back(a);
  }
  propose_together(calls);
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].failed) {
      // A drafter that fails (its cache full) only costs speed: this request decodes plainly.
      who[i]->drafter->drop();
      who[i]->drafter.reset();
      continue;
    }
    who[i]->drafts = std::move(calls[i].drafts);
  }
}

void Engine::step() {
  // Cancelled requests leave before the batch is built: their slots are free this step.
  for (auto& a : active_)
    if (a->p.stream->cancelled()) finish(*a, FinishReason::Cancelled);
  std::erase_if(active_, [](const auto& a) { return a->p.stream->finished(); });
  if (active_.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.running = 0;
    return;
  }

  std::vector<int64_t> need(active_.size());
  std::vector<uint8_t> decoding(active_.size());
  for (size_t i = 0; i < active_.size(); ++i) {
    const Active& a = *active_[i];
    decoding[i] = !a.prefilling();
    need[i] = a.first ? 0 : a.prefilling() ? static_cast<int64_t>(a.p.req.prompt.size()) - a.fed : 1;
  }
  std::vector<int64_t> rows = sched_.plan(need, decoding);

  Batch batch;
  // Per sequence in the batch: where its rows start, its first position, its rows with logits
  // (in batch order: a prompt's last row; a decoder's `next` row and one per draft).
  struct Rows {
    Active* a;
    bool decoding;
    int64_t batch_row, pos, n_rows, logit_row, n_logits;
  };
  std::vector<Rows> in_batch;
  int64_t n_prefill = 0, n_logit_rows = 0;
  std::vector<Active*> decoders;
  for (size_t i = 0; i < active_.size(); ++i)
    if (rows[i] > 0 && decoding[i]) decoders.push_back(active_[i].get());
  propose_drafts(decoders);
  for (size_t i = 0; i < active_.size(); ++i) {
    Active& a = *active_[i];
    if (rows[i] == 0) continue;
    int64_t pos = static_cast<int64_t>(sched_.tokens(a.slot).size());
    if (decoding[i]) {
      in_batch.push_back({&a, true, batch.size(), pos, 1 + static_cast<int64_t>(a.drafts.size()), n_logit_rows,
                          1 + static_cast<int64_t>(a.drafts.size())});
      batch.add(a.next, pos, a.slot, true);
      for (size_t j = 0; j < a.drafts.size(); ++j)
        batch.add(a.drafts[j].id, pos + 1 + static_cast<int64_t>(j), a.slot, true);
      n_logit_rows += in_batch.back().n_logits;
      sched_.append(a.slot, std::span<const int32_t>(&a.next, 1));  // drafts count once accepted
    } else {
      const auto& prompt = a.p.req.prompt;
      const bool ends = a.fed + rows[i] == static_cast<int64_t>(prompt.size());
      in_batch.push_back({&a, false, batch.size(), pos, rows[i], n_logit_rows, ends ? 1 : 0});
      n_logit_rows += ends ? 1 : 0;
      for (int64_t k = 0; k < rows[i]; ++k) {
        bool last = a.fed + k + 1 == static_cast<int64_t>(prompt.size());
        batch.add(prompt[static_cast<size_t>(a.fed + k)], pos + k, a.slot, last);
      }
      sched_.append(a.slot, std::span<const int32_t>(prompt.data() + a.fed, static_cast<size_t>(rows[i])));
      a.fed += rows[i];
      n_prefill += rows[i];
    }
  }

  std::span<const float> logits;
  const auto t_forward = std::chrono::steady_clock::now();
  try {
    logits = model_.forward(batch, *kv_);
  } catch (const std::exception& e) {
    // The batch failed as a whole: end its requests with the error, keep serving.
    for (auto& a : active_) finish(*a, FinishReason::Error, std::string("generation failed: ") + e.what());
    active_.clear();
    std::lock_guard<std::mutex> lock(mu_);
    stats_.running = 0;
    return;
  }
  {
    // Counted before any answer of this step reaches its client, so /metrics never lags one.
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.steps_total;
    stats_.prefill_tokens_total += n_prefill;
  }
  // The step's forward time: each speculating sequence's governor weighs its drafts by it.
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_forward).count();
  const size_t n_vocab = static_cast<size_t>(model_.n_vocab());
  // The MTP head reads the trunk's hidden of every row the target keeps.
  const float* hidden = opts_.spec.kind == SpecKind::Mtp ? model_.last_hidden().data() : nullptr;
  const int64_t d = model_.config().n_embd;
  int64_t generated = 0, drafted = 0, accepted = 0, verified = 0;
  for (const Rows& r : in_batch) {
    Active& a = *r.a;
    const int64_t before = a.generated;
    const auto rows_logits =
        logits.subspan(static_cast<size_t>(r.logit_row) * n_vocab, static_cast<size_t>(r.n_logits) * n_vocab);
    const bool decoder = r.decoding;
    if (hidden && a.drafter && !decoder) a.drafter->kept(r.pos, r.n_rows, hidden + r.batch_row * d);
    if (decoder && !a.drafts.empty()) {
      drafted += static_cast<int64_t>(a.drafts.size());
      accepted += verify_and_emit(a, r.pos, rows_logits, hidden ? hidden + r.batch_row * d : nullptr, seconds);
    } else if (r.n_logits > 0) {
      if (decoder && a.drafter) a.governor.record(0, 0, seconds);  // a plain step's time, for comparison
      if (hidden && a.drafter && decoder) a.drafter->kept(r.pos, 1, hidden + r.batch_row * d);
      if (!decoder && !a.forks.empty()) {
        // The group's prompt is in: its other choices start from these logits too.
        const std::vector<Active*> forks = a.forks;
        fork(a, rows_logits);
        for (const Active* f : forks) generated += f->generated;
      }
      sample_and_emit(a, rows_logits);
    }
    if (decoder && a.drafter) ++verified;
    generated += a.generated - before;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.kv_pages_in_use = kv_->pages_in_use();
    stats_.kv_bytes_allocated = static_cast<int64_t>(kv_->bytes_allocated());
    stats_.spec_drafted_total += drafted;
    stats_.spec_accepted_total += accepted;
    stats_.spec_verify_total += verified;
    stats_.spec_tokens_total += verified > 0 ? generated : 0;
    record_rate(generated, n_prefill);
  }
  std::erase_if(active_, [](const auto& a) { return a->p.stream->finished(); });
  std::lock_guard<std::mutex> lock(mu_);
  stats_.running = static_cast<int64_t>(active_.size());
  stats_.kv_committed_tokens = sched_.committed_tokens();
}

}  // namespace owl
