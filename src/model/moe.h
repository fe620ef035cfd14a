// The mixture-of-experts feed-forward block shared by every MoE family
// (deepseek2, qwen3moe, glm4moe): a router picks k experts per token, each
// expert is a SwiGLU FFN stored as one slice of a 3-D stack, and optional
// shared experts run on every token.
//
// Routing follows llama.cpp's build_moe_ffn (see ../shared/golden/README.md):
//   probs     = softmax or sigmoid(router logits)              (F32)
//   selection = probs + exp_probs_b                           (selection only)
//   groups    : score = sum of the top-2 selection values of each group of
//               n_expert/n_group consecutive experts; only the top
//               n_group_used groups stay eligible
//   experts   = top-k of the eligible selection values
//   weights   = probs of those experts (unbiased), optionally divided by
//               their sum (clamped >= 6.1e-5), times the routed scale
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/expert_cache.h"
#include "model/lazy_experts.h"
#include "model/source.h"
#include "tensor/tensor.h"

namespace owl {

// Expert parallelism (src/dist): each of `parts` processes holds a contiguous range of every MoE
// layer's routed experts, computes the rows routed to them, and the exchange hands every
// process the rows of all parts, so that all combine them in the single-process order.
class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // y: rows of width d grouped by expert, ascending; rows [first_row[p], first_row[p + 1]) are
  // part p's (first_row has parts + 1 entries). On entry this process's rows are computed; on
  // return all are.
  virtual void gather_rows(float* y, int64_t d, const std::vector<int64_t>& first_row) = 0;
};

// Part `part` of `parts` holds experts [first, second) of n_expert.
std::pair<int64_t, int64_t> expert_range(int64_t n_expert, int64_t part, int64_t parts);

struct MoeOptions {
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  ExpertGating gating = ExpertGating::Softmax;
  int64_t n_group = 1;       // expert groups; 1 = no group limit
  int64_t n_group_used = 1;  // groups kept per token
  bool norm_weights = false;
  float weights_scale = 1.0f;  // 0 or 1: no scaling
  // Expert split: this process's part and the exchange with the others (null: all experts here).
  int64_t part = 0, parts = 1;
  ExpertExchange* exchange = nullptr;

  static MoeOptions from_config(const ModelConfig& c);
};

// The experts chosen for each token: experts[t * k + j] with weight weights[t * k + j]
// (k = n_expert_used, best first).
struct Routing {
  int64_t k = 0;
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

// Routes n_tokens rows of router logits [n_tokens][n_expert]. probs_bias (n_expert floats
// or null) is exp_probs_b.
Routing route_experts(const float* router_logits, int64_t n_tokens, const MoeOptions& opt, const float* probs_bias);
// The same into r, reusing its storage (no allocation once it has grown).
void route_experts(const float* router_logits, int64_t n_tokens, const MoeOptions& opt, const float* probs_bias,
                   Routing& r);

struct MoeWeights {
  kernels::Weight gate_inp;                                         // router {n_embd, n_expert}, plain F32
  std::optional<TensorView> probs_bias;                             // exp_probs_b {n_expert}, F32
  kernels::Weight gate_exps, up_exps;                               // {n_embd, n_ff_exp, n_expert}
  kernels::Weight down_exps;                                        // {n_ff_exp, n_embd, n_expert}
  std::optional<kernels::Weight> gate_shexp, up_shexp, down_shexp;  // shared experts, SwiGLU
  int64_t layer = -1;                                               // for trace.h records
  // The routed experts held: [expert_begin, expert_end) of n_expert (default: all); the stacks
  // hold only those (matrix_slice(gate_exps, e - expert_begin)).
  int64_t expert_begin = 0, expert_end = INT64_MAX;
  // Set when the routed experts stream (residency.h): they come from this cache, and the
  // *_exps weights above are the file's plain views, kept for their shapes only.
  std::shared_ptr<ExpertCache> streamed;
  // Set when the routed experts are resident: the *_exps weights above are packed on first use
  // (lazy_experts.h), so moe_forward has them packed before it reads them.
  std::shared_ptr<LazyExperts> lazy;
};

// Loads blk.<layer>.ffn_*_exps, ffn_gate_inp, exp_probs_b (required when `require_bias`,
// else optional) and the ffn_*_shexp tensors when config.n_expert_shared > 0, checking shapes.
// The shared-expert matrices are prepared for matmul (kernels::prepare_weight), the routed ones
// on first use (lazy_experts.h). Of the routed experts only src.shard's share is loaded; under a memory budget (and no
// expert split) the routed experts may stream instead (residency.h).
MoeWeights load_moe_weights(const ModelSource& src, int64_t layer, bool require_bias);

// Scratch space of moe_forward, grown to the largest batch and then reused.
struct MoeScratch {
  std::vector<float> logits, xin, y, gate;
  Routing routing;
  std::vector<int64_t> count, offset;              // per expert: rows routed to it, first row in xin/y
  std::vector<int64_t> token;                      // per routed row (grouped by expert): its token
  std::vector<float> weight;                       //   and its routing weight
  std::vector<int32_t> active;                     // experts with rows, ascending
  std::vector<const ExpertCache::Expert*> pinned;  // streamed experts: active[i]'s weights
  // The decode path's matmul_swiglu_each / matmul_each arguments, per expert (and the shared
  // experts last): the weights (resident: slices [3 i, 3 i + 3) of the stacks), inputs, rows.
  std::vector<kernels::Weight> slices;
  std::vector<const kernels::Weight*> gate_w, up_w, down_w;
  std::vector<const float*> x_ptr;
  std::vector<float*> h_ptr, y_ptr;
  std::vector<int64_t> rows;
};

// y = (silu(x·gate) * (x·up))·down for n rows: a plain SwiGLU FFN; h: n_rows * ff floats of scratch.
void swiglu_ffn(const kernels::Weight& gate, const kernels::Weight& up, const kernels::Weight& down, const float* x,
                int64_t n_rows, float* h, float* y);

// out[t] = sum_j w[t][j] * expert_{e[t][j]}(x[t]) + shared(x[t]) for n_tokens rows of n_embd.
// x is the FFN input (already normalised). Tokens are grouped per expert so that each
// expert's weights are read once per call, whatever the batch size. With about one row per
// expert (decode), all the experts' (and the shared experts') gate/up products are one pool
// dispatch of row ranges and their down products another; with more, each expert's matmuls
// are split over the pool in turn.
void moe_forward(const MoeWeights& w, const MoeOptions& opt, const float* x, int64_t n_tokens, MoeScratch& ws,
                 float* out);

}  // namespace owl
