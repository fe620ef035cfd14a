// GLM-4.5 / 4.6 (GGUF arch "glm4moe", config.json "glm4_moe"). Per layer:
//   x += Attention(RMSNorm(x))   GQA with q/k/v biases, per-head q/k RMSNorm when the file has
//                                it (355B yes, Air no), NEOX rope on the first n_rot dims only
//                                (partial_rotary_factor)
//   x += FFN(RMSNorm(x))         norm = post_attention_norm; SwiGLU in the leading dense layers,
//                                then MoE: sigmoid + exp_probs_b routing, norm, scale, shared expert
// The first NextN/MTP layer (the last nextn_predict_layers blocks) runs as the multi-token-
// prediction head (blocks::Decoder::mtp_forward) over its own cache.
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/blocks.h"
#include "model/families.h"

namespace owl {
namespace {

namespace tn = tensor_names;

ModelConfig glm4moe_config(const ModelSource& src) {
  ModelConfig c = src.config();
  c.attn_qk_norm = src.find(layer_tensor(0, tn::kAttnQNorm)).has_value();
  return c;
}

class Glm4MoeModel : public blocks::GqaDecoder {
 public:
  explicit Glm4MoeModel(const ModelSource& src) : GqaDecoder(src, glm4moe_config(src)) {
    for (int64_t il = 0; il < config_.n_layer; ++il)
      load_ffn(src, il, /*experts=*/true, tn::kPostAttnNorm, /*require_probs_bias=*/true);
    finish_loading(src);
  }
};

class Glm4Moe : public Family {
 public:
  const char* arch() const override { return "glm4moe"; }
  std::vector<std::string> hf_model_types() const override { return {"glm4_moe"}; }
  HfClass hf_class(const ModelConfig&) const override { return {"glm4_moe", "Glm4MoeForCausalLM"}; }

  void read_gguf(ModelConfig& c, const GgufKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qkv_bias = true;
    c.attn_qk_norm = true;  // GGUF has no key: the loader looks for the tensors (glm4moe_config)
    if (!k.has("expert_gating_func")) c.expert_gating = ExpertGating::Sigmoid;
  }
  void read_hf(ModelConfig& c, const HfKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.n_rot =
        static_cast<int64_t>(std::lround(static_cast<double>(c.head_dim_k) * k.number("partial_rotary_factor", 0.5)));
    c.attn_qkv_bias = k.boolean("attention_bias", true);
    c.attn_qk_norm = k.boolean("use_qk_norm", false);
    read_hf_deepseek_moe(c, k, "sigmoid");
  }
  void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const override {
    w.u32("attention.key_length", c.head_dim_k);
    w.u32("attention.value_length", c.head_dim_v);
    w.u32("rope.dimension_count", c.n_rot);
    write_gguf_deepseek_moe(c, w);
    if (c.expert_weights_norm) w.boolean("expert_weights_norm", true);
  }
  void write_hf(const ModelConfig& c, const ModelSource& src, nlohmann::json& j) const override {
    j["partial_rotary_factor"] = static_cast<double>(c.n_rot) / static_cast<double>(c.head_dim_k);
    j["attention_bias"] = c.attn_qkv_bias;
    j["use_qk_norm"] = src.find(layer_tensor(0, tn::kAttnQNorm)).has_value();
    j["num_nextn_predict_layers"] = c.n_nextn_layers;
    write_hf_deepseek_moe(c, j);
  }
  const char* tokenizer_pre() const override { return "glm4"; }

  std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t il) const override {
    std::vector<TensorSpec> t;
    gqa_attention_tensors(c, t);
    ffn_tensors(c, il, tn::kPostAttnNorm, t, /*require_probs_bias=*/true);
    nextn_tensors(c, il, t);
    return t;
  }

  std::unique_ptr<Model> load(const ModelSource& src) const override { return std::make_unique<Glm4MoeModel>(src); }
};

}  // namespace

const Family& glm4moe_family() {
  static const Glm4Moe f;
  return f;
}

}  // namespace owl
