#include "model/moe.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <tuple>

#include "base/error.h"
#include "formats/gguf.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "base/scratch.h"
#include "model/blocks.h"
#include "model/residency.h"
#include "model/trace.h"

namespace owl {

MoeOptions MoeOptions::from_config(const ModelConfig& c) {
  MoeOptions o;
  o.n_expert = c.n_expert;
  o.n_expert_used = c.n_expert_used;
  o.gating = c.expert_gating;
  o.n_group = std::max<int64_t>(1, c.expert_group_count);
  o.n_group_used = std::max<int64_t>(1, c.expert_group_used);
  o.norm_weights = c.expert_weights_norm;
  o.weights_scale = c.expert_weights_scale;
  if (o.n_expert <= 0 || o.n_expert_used <= 0 || o.n_expert_used > o.n_expert)
    throw Error("model config: expert_used_count must be between 1 and expert_count (" +
                std::to_string(o.n_expert_used) + " of " + std::to_string(o.n_expert) + ")");
  if (o.n_group > 1) {
    if (o.n_expert % o.n_group != 0)
      throw Error("model config: expert_count " + std::to_string(o.n_expert) +
                  " is not divisible by expert_group_count " + std::to_string(o.n_group));
    if (o.n_group_used > o.n_group) throw Error("model config: expert_group_used_count exceeds expert_group_count");
    if (o.n_group_used * (o.n_expert / o.n_group) < o.n_expert_used)
      throw Error("model config: the kept expert groups hold fewer experts than expert_used_count");
  }
  return o;
}

std::pair<int64_t, int64_t> expert_range(int64_t n_expert, int64_t part, int64_t parts) {
  return {n_expert * part / parts, n_expert * (part + 1) / parts};
}

Routing route_experts(const float* router_logits, int64_t n_tokens, const MoeOptions& opt, const float* probs_bias) {
  Routing r;
  route_experts(router_logits, n_tokens, opt, probs_bias, r);
  return r;
}

void route_experts(const float* router_logits, int64_t n_tokens, const MoeOptions& opt, const float* probs_bias,
                   Routing& r) {
  const int64_t n_exp = opt.n_expert, k = opt.n_expert_used;
  r.k = k;
  r.experts.resize(static_cast<size_t>(n_tokens * k));
  r.weights.resize(static_cast<size_t>(n_tokens * k));

  // Per-thread scratch: decode routes every layer of every token.
  thread_local std::vector<float> probs, sel, group_score;
  thread_local std::vector<int32_t> idx;
  thread_local std::vector<uint8_t> keep;
  probs.resize(static_cast<size_t>(n_exp));
  sel.resize(static_cast<size_t>(n_exp));
  const int64_t per_group = opt.n_group > 1 ? n_exp / opt.n_group : n_exp;
  group_score.resize(static_cast<size_t>(opt.n_group));
  idx.resize(static_cast<size_t>(std::max(n_exp, opt.n_group)));
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::copy(router_logits + t * n_exp, router_logits + (t + 1) * n_exp, probs.begin());
    if (opt.gating == ExpertGating::Softmax) {
      kernels::softmax(probs.data(), n_exp);
    } else {
      for (float& p : probs) p = 1.0f / (1.0f + std::exp(-p));
    }
    for (int64_t e = 0; e < n_exp; ++e) sel[e] = probs[e] + (probs_bias ? probs_bias[e] : 0.0f);

    if (opt.n_group > 1) {
      // Group score: sum of the two best selection values of the group.
      const int64_t top = std::min<int64_t>(2, per_group);
      for (int64_t g = 0; g < opt.n_group; ++g) {
        kernels::top_k(sel.data() + g * per_group, per_group, top, idx.data());
        float s = 0;
        for (int64_t j = 0; j < top; ++j) s += sel[g * per_group + idx[j]];
        group_score[g] = s;
      }
      kernels::top_k(group_score.data(), opt.n_group, opt.n_group_used, idx.data());
      keep.assign(static_cast<size_t>(opt.n_group), 0);
      for (int64_t j = 0; j < opt.n_group_used; ++j) keep[idx[j]] = true;
      for (int64_t e = 0; e < n_exp; ++e)
        if (!keep[e / per_group]) sel[e] = -INFINITY;
    }

    int32_t* chosen = r.experts.data() + t * k;
    float* w = r.weights.data() + t * k;
    kernels::top_k(sel.data(), n_exp, k, chosen);
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      w[j] = probs[chosen[j]];
      sum += w[j];
    }
    if (opt.norm_weights) {
      const float inv = 1.0f / std::max(sum, 6.103515625e-5f);
      for (int64_t j = 0; j < k; ++j) w[j] *= inv;
    }
    if (opt.weights_scale != 0.0f && opt.weights_scale != 1.0f)
      for (int64_t j = 0; j < k; ++j) w[j] *= opt.weights_scale;
  }
}

MoeWeights load_moe_weights(const ModelSource& src, int64_t layer, bool require_bias) {
  const ModelConfig& c = src.config();
  namespace tn = tensor_names;
  auto name = [layer](const TensorName& t) { return layer_tensor(layer, t); };
  const int64_t d = c.n_embd, ne = c.n_expert, ff = c.n_ff_exp;
  if (ff <= 0)
    throw Error("model '" + src.path() + "': MoE layer " + std::to_string(layer) +
                " needs expert_feed_forward_length in the metadata");
  MoeWeights w;
  w.layer = layer;
  w.gate_inp = src.require(name(tn::kFfnGateInp), {d, ne});
  if (w.gate_inp.type() != DType::F32)
    throw Error("model '" + src.path() + "': router " + w.gate_inp.name() + " is " + dtype_name(w.gate_inp.type()) +
                ", expected F32 (routing is kept in full precision)");
  w.probs_bias =
      require_bias ? std::optional(src.require(name(tn::kExpProbsB), {ne})) : src.optional(name(tn::kExpProbsB), {ne});
  if (w.probs_bias && w.probs_bias->type != DType::F32)
    throw Error("model '" + src.path() + "': " + w.probs_bias->name + " must be F32");
  // Only this process's share of the routed experts is prepared (and so made resident).
  std::tie(w.expert_begin, w.expert_end) = expert_range(ne, src.shard.expert_part, src.shard.expert_parts);
  auto held = [&](TensorView v) {
    v.data = v.row(w.expert_begin * v.ne[1]);
    v.ne[2] = w.expert_end - w.expert_begin;
    return v;
  };
  w.gate_exps = held(src.require(name(tn::kFfnGateExps), {d, ff, ne}));
  w.up_exps = held(src.require(name(tn::kFfnUpExps), {d, ff, ne}));
  w.down_exps = held(src.require(name(tn::kFfnDownExps), {ff, d, ne}));
  if (c.n_expert_shared > 0) {
    const int64_t fs = c.n_ff_shexp > 0 ? c.n_ff_shexp : ff * c.n_expert_shared;
    w.gate_shexp = src.require(name(tn::kFfnGateShexp), {d, fs});
    w.up_shexp = src.require(name(tn::kFfnUpShexp), {d, fs});
    w.down_shexp = src.require(name(tn::kFfnDownShexp), {fs, d});
  }
  auto prepare = [&](kernels::Weight& t) { blocks::prepare_in_place(src, t); };
  // An expert split holds its share resident (the cache streams whole stacks).
  if (auto cache = src.shard.expert_parts == 1 ? streaming_expert_cache(src) : nullptr) {
    ExpertCache::LayerStacks l;
    const gguf::File& file = *src.gguf_file();
    const TensorName* names[3] = {&tn::kFfnGateExps, &tn::kFfnUpExps, &tn::kFfnDownExps};
    const kernels::Weight* stacks[3] = {&w.gate_exps, &w.up_exps, &w.down_exps};
    for (int m = 0; m < 3; ++m) {
      l.stacks[m] = *stacks[m]->plain();
      l.file_offset[m] = file.data_offset() + file.find_info(name(*names[m]))->offset;
    }
    l.router = w.gate_inp;
    l.probs_bias = w.probs_bias ? static_cast<const float*>(w.probs_bias->data) : nullptr;
    l.n_expert_used = c.n_expert_used;
    cache->add_layer(layer, l);
    w.streamed = std::move(cache);
  } else {
    std::array<TensorView, 3> sources;
    std::array<kernels::Weight, 3> packed;
    kernels::PrepareOptions o = src.prepare;
    o.release_source = src.gguf_file() != nullptr;  // as blocks::prepare_matmul_weight
    const kernels::Weight* stacks[3] = {&w.gate_exps, &w.up_exps, &w.down_exps};
    for (int m = 0; m < 3; ++m) {
      sources[m] = *stacks[m]->plain();
      packed[m] = kernels::prepare_weight_deferred(sources[m], o);
    }
    w.lazy = std::make_shared<LazyExperts>(sources, packed, o);
    w.gate_exps = packed[0];
    w.up_exps = packed[1];
    w.down_exps = packed[2];
  }
  if (w.gate_shexp)
    for (auto* t : {&w.gate_shexp, &w.up_shexp, &w.down_shexp}) prepare(**t);
  return w;
}

void swiglu_ffn(const kernels::Weight& gate, const kernels::Weight& up, const kernels::Weight& down, const float* x,
                int64_t n_rows, float* h, float* y) {
  kernels::matmul_swiglu(gate, up, x, n_rows, h);
  kernels::matmul(down, h, n_rows, y);
}

namespace {

// Expert e's matrix of a stack that holds experts [expert_begin, expert_end).
kernels::Weight held_slice(const kernels::Weight& stack, const MoeWeights& w, int32_t e) {
  return kernels::matrix_slice(stack, e - w.expert_begin);
}

// The routed experts' (and the shared experts') SwiGLU FFNs at about one row per expert
// (decode): all the gate/up products in one pool dispatch, then all the down products in one,
// each split into row ranges across all the experts' weights (matmul_each), so the threads
// finish together and every claim is short. Whole experts as tasks (before) left a thread
// idle at the join for up to one expert's matrices. The same products as swiglu_ffn, bit for bit.
// Up to kMaxMatmulEach experts per dispatch.
void experts_row_split(const MoeWeights& w, const float* x, int64_t n_tokens, MoeScratch& ws, float* gate,
                       float* shared_h, float* out) {
  const int64_t d = w.gate_inp.in(), ff = w.gate_exps.out();
  const bool shared = w.gate_shexp.has_value();
  const size_t n = ws.active.size() + (shared ? 1 : 0);
  ws.gate_w.resize(n);
  ws.up_w.resize(n);
  ws.down_w.resize(n);
  ws.x_ptr.resize(n);
  ws.h_ptr.resize(n);
  ws.y_ptr.resize(n);
  ws.rows.resize(n);
  if (!w.streamed) ws.slices.resize(3 * ws.active.size());  // the resident experts' views
  for (size_t i = 0; i < ws.active.size(); ++i) {
    const int32_t e = ws.active[i];
    const int64_t r0 = ws.offset[e], m = ws.count[e];
    if (w.streamed) {
      const ExpertCache::Expert& ex = *ws.pinned[i];
      ws.gate_w[i] = &ex.gate;
      ws.up_w[i] = &ex.up;
      ws.down_w[i] = &ex.down;
    } else {
      ws.slices[3 * i] = held_slice(w.gate_exps, w, e);
      ws.slices[3 * i + 1] = held_slice(w.up_exps, w, e);
      ws.slices[3 * i + 2] = held_slice(w.down_exps, w, e);
      ws.gate_w[i] = &ws.slices[3 * i];
      ws.up_w[i] = &ws.slices[3 * i + 1];
      ws.down_w[i] = &ws.slices[3 * i + 2];
    }
    // One row: the token's own row of x (so that experts of one token share one conversion).
    ws.x_ptr[i] = m == 1 ? x + ws.token[r0] * d : ws.xin.data() + r0 * d;
    ws.h_ptr[i] = gate + r0 * ff;
    ws.y_ptr[i] = ws.y.data() + r0 * d;
    ws.rows[i] = m;
  }
  if (shared) {
    const size_t i = n - 1;
    ws.gate_w[i] = &*w.gate_shexp;
    ws.up_w[i] = &*w.up_shexp;
    ws.down_w[i] = &*w.down_shexp;
    ws.x_ptr[i] = x;
    ws.h_ptr[i] = shared_h;
    ws.y_ptr[i] = out;
    ws.rows[i] = n_tokens;
  }
  const std::span<const float*const> xs(ws.x_ptr), hs(ws.h_ptr.data(), n);
  for (size_t b = 0; b < n; b += kernels::kMaxMatmulEach) {
    const size_t m = std::min<size_t>(kernels::kMaxMatmulEach, n - b);
    kernels::matmul_swiglu_each(std::span(ws.gate_w).subspan(b, m), std::span(ws.up_w).subspan(b, m), xs.subspan(b, m),
                                std::span(ws.rows).subspan(b, m), std::span(ws.h_ptr).subspan(b, m));
  }
  for (size_t b = 0; b < n; b += kernels::kMaxMatmulEach) {
    const size_t m = std::min<size_t>(kernels::kMaxMatmulEach, n - b);
    kernels::matmul_each(std::span(ws.down_w).subspan(b, m), hs.subspan(b, m), std::span(ws.rows).subspan(b, m),
                         std::span(ws.y_ptr).subspan(b, m));
  }
}

// Hands every part the routed rows of the others (rows grouped by expert, so each part's rows
// are one contiguous run).
void gather_expert_rows(MoeScratch& ws, const MoeOptions& opt, int64_t n_routed, int64_t d) {
  std::vector<int64_t> first_row(static_cast<size_t>(opt.parts + 1));
  for (int64_t p = 0; p < opt.parts; ++p) first_row[p] = ws.offset[expert_range(opt.n_expert, p, opt.parts).first];
  first_row[opt.parts] = n_routed;
  opt.exchange->gather_rows(ws.y.data(), d, first_row);
}

// Streamed experts pinned in the cache for the span of a block, unpinned however it ends.
class Pins {
 public:
  Pins(ExpertCache* cache, int64_t layer) : cache_(cache), layer_(layer) {}
  ~Pins() {
    for (const int32_t e : pinned_) cache_->unpin(layer_, e);
  }
  Pins(const Pins&) = delete;
  Pins& operator=(const Pins&) = delete;
  const ExpertCache::Expert& pin(int32_t e) {
    const ExpertCache::Expert& x = cache_->pin(layer_, e);
    pinned_.push_back(e);
    return x;
  }
  void unpin_all() {
    for (const int32_t e : pinned_) cache_->unpin(layer_, e);
    pinned_.clear();
  }

 private:
  ExpertCache* cache_;
  int64_t layer_;
  std::vector<int32_t> pinned_;
};

}  // namespace

void moe_forward(const MoeWeights& w, const MoeOptions& opt, const float* x, int64_t n_tokens, MoeScratch& ws,
                 float* out) {
  const int64_t d = w.gate_inp.in(), n_exp = opt.n_expert, ff = w.gate_exps.out();
  float* logits = grow(ws.logits, n_tokens * n_exp);
  kernels::matmul(w.gate_inp, x, n_tokens, logits);
  trace::tensor("moe_logits", w.layer, logits, n_tokens, n_exp);
  route_experts(logits, n_tokens, opt, w.probs_bias ? static_cast<const float*>(w.probs_bias->data) : nullptr,
                ws.routing);
  const Routing& r = ws.routing;
  trace::ids("moe_experts", w.layer, r.experts.data(), n_tokens, r.k);
  trace::tensor("moe_weights", w.layer, r.weights.data(), n_tokens, r.k);

  // Group the routed (token, weight) rows by expert: counts, offsets, then the rows themselves.
  const int64_t n_routed = n_tokens * r.k;
  ws.count.assign(static_cast<size_t>(n_exp), 0);
  ws.offset.resize(static_cast<size_t>(n_exp));
  for (int64_t i = 0; i < n_routed; ++i) ++ws.count[r.experts[i]];
  // Only the experts held here run (all of them unless the experts are split, see ExpertExchange).
  const int64_t e_begin = w.expert_begin, e_end = std::min(w.expert_end, n_exp);
  const bool split = e_begin > 0 || e_end < n_exp;
  if (split && !opt.exchange)
    throw Error("MoE layer " + std::to_string(w.layer) + " holds a share of its experts but has no exchange");
  ws.active.clear();
  for (int64_t e = 0, at = 0; e < n_exp; ++e) {
    ws.offset[e] = at;
    at += ws.count[e];
    if (ws.count[e] > 0 && e >= e_begin && e < e_end) ws.active.push_back(static_cast<int32_t>(e));
  }
  ws.token.resize(static_cast<size_t>(n_routed));
  ws.weight.resize(static_cast<size_t>(n_routed));
  for (int64_t e = 0; e < n_exp; ++e) ws.count[e] = 0;  // reused as fill cursors
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < r.k; ++j) {
      const int32_t e = r.experts[t * r.k + j];
      const int64_t row = ws.offset[e] + ws.count[e]++;
      ws.token[row] = t;
      ws.weight[row] = r.weights[t * r.k + j];
    }
  }

  if (w.lazy) w.lazy->ensure(ws.active, e_begin);
  const int64_t fs = w.gate_shexp ? w.gate_shexp->out() : 0;
  ExpertCache* cache = w.streamed.get();
  // About one row per expert (decode): every expert's gate/up in one dispatch and every down in
  // one (experts_row_split), 2 joins for the block instead of 3 per expert. Every routed row gets
  // its own slot of xin/y. Streamed experts are all pinned for it, so they must take at most
  // half the cache.
  const bool fits_cache =
      !cache || 2 * ws.active.size() * cache->expert_bytes(w.layer) <= static_cast<size_t>(cache->capacity());
  if (n_routed <= 2 * static_cast<int64_t>(ws.active.size()) && fits_cache) {
    Pins pins(cache, w.layer);
    if (cache) {
      cache->request(w.layer, ws.active);  // the reads start now, in parallel
      cache->prefetch_after(w.layer, x, n_tokens);
      ws.pinned.clear();
      for (const int32_t e : ws.active) ws.pinned.push_back(&pins.pin(e));
    }
    float* xin = grow(ws.xin, n_routed * d);
    grow(ws.y, n_routed * d);
    for (const int32_t e : ws.active)  // experts with one row read it from x directly
      if (ws.count[e] > 1)
        for (int64_t row = ws.offset[e]; row < ws.offset[e] + ws.count[e]; ++row)
          std::copy_n(x + ws.token[row] * d, d, xin + row * d);
    float* gate = grow(ws.gate, n_routed * ff + n_tokens * fs);
    experts_row_split(w, x, n_tokens, ws, gate, gate + n_routed * ff, out);
    if (!w.gate_shexp) std::fill(out, out + n_tokens * d, 0.0f);
    if (split) gather_expert_rows(ws, opt, n_routed, d);
    for (int64_t row = 0; row < n_routed; ++row)
      kernels::scale_add(out + ws.token[row] * d, ws.y.data() + row * d, ws.weight[row], d);
    return;
  }
  // Bigger groups (prefill): one expert after another, each one's matmuls split over the pool;
  // the scratch holds one expert's rows at a time (all routed rows when the experts are split,
  // to gather them before they are combined).
  if (w.gate_shexp) {
    swiglu_ffn(*w.gate_shexp, *w.up_shexp, *w.down_shexp, x, n_tokens, grow(ws.gate, n_tokens * fs), out);
  } else {
    std::fill(out, out + n_tokens * d, 0.0f);
  }
  // Streamed experts (never split: a rank of an expert split holds its share resident) are read a
  // few ahead of the one computing (a window of a quarter of the cache).
  const size_t window =
      cache ? std::clamp<size_t>(cache->capacity() / std::max<uint64_t>(cache->expert_bytes(w.layer), 1) / 4, 1, 8) : 0;
  if (cache) cache->prefetch_after(w.layer, x, n_tokens);
  Pins pins(cache, w.layer);
  if (split) grow(ws.y, n_routed * d);
  for (size_t i = 0; i < ws.active.size(); ++i) {
    const int32_t e = ws.active[i];
    const int64_t r0 = ws.offset[e], m = ws.count[e];
    float* xin = grow(ws.xin, m * d);
    float* y = split ? ws.y.data() + r0 * d : grow(ws.y, m * d);
    for (int64_t q = 0; q < m; ++q) std::copy_n(x + ws.token[r0 + q] * d, d, xin + q * d);
    if (cache) {
      cache->request(w.layer, std::span(ws.active).subspan(i, std::min(window, ws.active.size() - i)));
      const ExpertCache::Expert& ex = pins.pin(e);
      swiglu_ffn(ex.gate, ex.up, ex.down, xin, m, grow(ws.gate, m * ff), y);
      pins.unpin_all();
    } else {
      swiglu_ffn(held_slice(w.gate_exps, w, e), held_slice(w.up_exps, w, e), held_slice(w.down_exps, w, e), xin, m,
                 grow(ws.gate, m * ff), y);
    }
    if (!split)
      for (int64_t q = 0; q < m; ++q) kernels::scale_add(out + ws.token[r0 + q] * d, y + q * d, ws.weight[r0 + q], d);
  }
  if (split) {
    // The same sums in the same order as one process: expert by expert, ascending.
    gather_expert_rows(ws, opt, n_routed, d);
    for (int64_t row = 0; row < n_routed; ++row)
      kernels::scale_add(out + ws.token[row] * d, ws.y.data() + row * d, ws.weight[row], d);
  }
}

}  // namespace owl
