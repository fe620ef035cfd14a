// The registry of model families (family.h) and the helpers family files share.
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "model/family.h"
#include "model/families.h"

namespace owl {

namespace {

std::vector<std::unique_ptr<Family>>& registered() {
  static std::vector<std::unique_ptr<Family>> r;
  return r;
}

}  // namespace

std::vector<const Family*> families() {
  // One line per family file. (An explicit list rather than static self-registration: the
  // linker drops unreferenced objects of a static library.)
  std::vector<const Family*> all = {&llama_family(),    &qwen2_family(),     &qwen3_family(),
                                    &qwen3moe_family(), &deepseek2_family(), &glm4moe_family()};
  for (const auto& f : registered()) all.push_back(f.get());
  return all;
}

const Family* find_family(const std::string& arch) {
  for (const Family* f : families())
    if (arch == f->arch()) return f;
  return nullptr;
}

const Family& family_of(const std::string& arch) {
  if (const Family* f = find_family(arch)) return *f;
  std::string list;
  for (const Family* f : families()) list += (list.empty() ? "" : ", ") + std::string(f->arch());
  throw Error("unsupported architecture '" + arch + "' (supported: " + list + ")");
}

const Family* family_for_hf_model_type(const std::string& model_type) {
  for (const Family* f : families())
    for (const auto& t : f->hf_model_types())
      if (t == model_type) return f;
  return nullptr;
}

void register_family(std::unique_ptr<Family> family) {
  if (find_family(family->arch())) throw Error("a family for '" + std::string(family->arch()) + "' exists already");
  registered().push_back(std::move(family));
}

std::string layer_tensor(int64_t il, const TensorName& t) { return "blk." + std::to_string(il) + "." + t.gguf; }
std::string hf_layer_tensor(int64_t il, const std::string& hf_name) {
  return "model.layers." + std::to_string(il) + "." + hf_name;
}

ModelConfig synth_config(const std::string& arch, int64_t vocab, int64_t n_embd, int64_t n_layer, int64_t n_head,
                         int64_t n_head_kv, int64_t head_dim, int64_t n_ff, int64_t ctx, float rope_theta,
                         float rms_eps) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = vocab;
  c.n_embd = n_embd;
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_head_kv = n_head_kv;
  c.head_dim_k = c.head_dim_v = head_dim;
  c.n_rot = head_dim;
  c.n_ff = n_ff;
  c.n_ctx_train = ctx;
  c.rope_orig_ctx = ctx;
  c.rope_theta = rope_theta;
  c.rms_eps = rms_eps;
  c.tokenizer_model = "none";
  return c;
}

void gqa_attention_tensors(const ModelConfig& c, std::vector<TensorSpec>& out, bool rope_pairs) {
  namespace tn = tensor_names;
  const int64_t E = c.n_embd, q = c.n_head * c.head_dim_k, k = c.n_head_kv * c.head_dim_k,
                v = c.n_head_kv * c.head_dim_v;
  const HfLayout lq = rope_pairs ? HfLayout::RopePairsQ : HfLayout::Same;
  const HfLayout lk = rope_pairs ? HfLayout::RopePairsK : HfLayout::Same;
  const bool bias = c.attn_qkv_bias;
  out.push_back({tn::kAttnNorm, {E}, true, HfLayout::Same, SynthInit::Norm});
  out.push_back({tn::kAttnQ, {E, q}, true, lq});
  out.push_back({tn::kAttnQBias, {q}, bias, lq, SynthInit::Bias});
  out.push_back({tn::kAttnK, {E, k}, true, lk});
  out.push_back({tn::kAttnKBias, {k}, bias, lk, SynthInit::Bias});
  out.push_back({tn::kAttnV, {E, v}});
  out.push_back({tn::kAttnVBias, {v}, bias, HfLayout::Same, SynthInit::Bias});
  out.push_back({tn::kAttnOutput, {c.n_head * c.head_dim_v, E}});
  out.push_back({tn::kAttnOutputBias, {E}, false, HfLayout::Same, SynthInit::Bias});
  out.push_back({tn::kAttnQNorm, {c.head_dim_k}, c.attn_qk_norm, HfLayout::Same, SynthInit::Norm});
  out.push_back({tn::kAttnKNorm, {c.head_dim_k}, c.attn_qk_norm, HfLayout::Same, SynthInit::Norm});
}

void ffn_tensors(const ModelConfig& c, int64_t il, const TensorName& norm, std::vector<TensorSpec>& out,
                 bool require_probs_bias) {
  namespace tn = tensor_names;
  const int64_t E = c.n_embd;
  out.push_back({norm, {E}, true, HfLayout::Same, SynthInit::Norm});
  if (!c.layer_is_moe(il)) {
    out.push_back({tn::kFfnGate, {E, c.n_ff}});
    out.push_back({tn::kFfnUp, {E, c.n_ff}});
    out.push_back({tn::kFfnDown, {c.n_ff, E}});
    return;
  }
  const int64_t n = c.n_expert, ff = c.n_ff_exp;
  out.push_back({tn::kFfnGateInp, {E, n}});
  out.push_back({tn::kExpProbsB, {n}, require_probs_bias, HfLayout::Same, SynthInit::Zero});
  out.push_back({tn::kFfnGateExps, {E, ff, n}, true, HfLayout::ExpertStack});
  out.push_back({tn::kFfnUpExps, {E, ff, n}, true, HfLayout::ExpertStack});
  out.push_back({tn::kFfnDownExps, {ff, E, n}, true, HfLayout::ExpertStack});
  if (c.n_expert_shared > 0) {
    const int64_t fs = c.n_ff_shexp > 0 ? c.n_ff_shexp : ff * c.n_expert_shared;
    out.push_back({tn::kFfnGateShexp, {E, fs}});
    out.push_back({tn::kFfnUpShexp, {E, fs}});
    out.push_back({tn::kFfnDownShexp, {fs, E}});
  }
}

void nextn_tensors(const ModelConfig& c, int64_t il, std::vector<TensorSpec>& out) {
  if (il < c.n_layer - c.n_nextn_layers) return;
  namespace tn = tensor_names;
  const int64_t E = c.n_embd;
  out.push_back({tn::kNextnEhProj, {2 * E, E}});
  out.push_back({tn::kNextnEnorm, {E}, true, HfLayout::Same, SynthInit::Norm});
  out.push_back({tn::kNextnHnorm, {E}, true, HfLayout::Same, SynthInit::Norm});
  out.push_back({tn::kNextnSharedHeadNorm, {E}, true, HfLayout::Same, SynthInit::Norm});
  out.push_back({tn::kNextnEmbedTokens, {E, c.n_vocab}, false});
  out.push_back({tn::kNextnSharedHeadHead, {E, c.n_vocab}, false});
}

void read_hf_deepseek_moe(ModelConfig& c, const HfKeys& k, const char* default_scoring) {
  // The NextN/MTP layers follow the num_hidden_layers trunk layers (model.layers.61 of V3/R1);
  // the source drops them again when the checkpoint does not carry them.
  c.n_nextn_layers = k.integer("num_nextn_predict_layers", 0);
  c.n_layer += c.n_nextn_layers;
  c.n_expert = k.required("n_routed_experts");
  c.n_expert_used = k.required("num_experts_per_tok");
  c.n_ff_exp = k.required("moe_intermediate_size");
  c.n_expert_shared = k.integer("n_shared_experts", 0);
  c.n_leading_dense = k.integer("first_k_dense_replace", 0);
  c.expert_weights_scale = static_cast<float>(k.number("routed_scaling_factor", 1.0));
  c.expert_weights_norm = k.boolean("norm_topk_prob", false);
  const std::string scoring = k.string("scoring_func", default_scoring);
  if (scoring == "sigmoid")
    c.expert_gating = ExpertGating::Sigmoid;
  else if (scoring == "softmax")
    c.expert_gating = ExpertGating::Softmax;
  else
    throw Error("config.json scoring_func '" + scoring + "' is not supported (softmax, sigmoid)");
  c.expert_group_count = std::max<int64_t>(1, k.integer("n_group", 1));
  c.expert_group_used = std::max<int64_t>(1, k.integer("topk_group", 1));
}

void write_hf_deepseek_moe(const ModelConfig& c, nlohmann::json& j) {
  j["n_routed_experts"] = c.n_expert;
  j["num_experts_per_tok"] = c.n_expert_used;
  j["moe_intermediate_size"] = c.n_ff_exp;
  j["n_shared_experts"] = c.n_expert_shared;
  j["first_k_dense_replace"] = c.n_leading_dense;
  j["moe_layer_freq"] = 1;
  j["routed_scaling_factor"] = shortest_decimal(c.expert_weights_scale);
  j["norm_topk_prob"] = c.expert_weights_norm;
  j["scoring_func"] = c.expert_gating == ExpertGating::Sigmoid ? "sigmoid" : "softmax";
  j["n_group"] = c.expert_group_count;
  j["topk_group"] = c.expert_group_used;
}

void write_gguf_deepseek_moe(const ModelConfig& c, GgufKeyWriter& w) {
  if (!c.is_moe()) return;
  w.u32("leading_dense_block_count", c.n_leading_dense);
  w.u32("expert_shared_count", c.n_expert_shared);
  w.f32("expert_weights_scale", c.expert_weights_scale);
  w.u32("expert_gating_func", static_cast<int64_t>(c.expert_gating));
  w.u32("expert_group_count", c.expert_group_count);
  w.u32("expert_group_used_count", c.expert_group_used);
}

}  // namespace owl
