// Qwen3-MoE (GGUF arch "qwen3moe", config.json "qwen3_moe"). Per layer:
//   x += Attention(RMSNorm(x))   Qwen3 GQA: per-head q/k RMSNorm before NEOX rope, no bias
//   x += MoE(RMSNorm(x))         softmax over all experts, top-k, weights renormalised to 1
//                                (norm_topk_prob; GGUF expert_weights_norm, default on), no
//                                shared expert
#include <nlohmann/json.hpp>

#include "model/blocks.h"
#include "model/families.h"

namespace owl {
namespace {

namespace tn = tensor_names;

class Qwen3MoeModel : public blocks::GqaDecoder {
 public:
  explicit Qwen3MoeModel(const ModelSource& src) : GqaDecoder(src, src.config()) {
    for (int64_t il = 0; il < config_.n_layer; ++il) load_ffn(src, il, /*experts=*/true, tn::kFfnNorm);
    finish_loading(src);
  }
};

class Qwen3Moe : public Family {
 public:
  const char* arch() const override { return "qwen3moe"; }
  std::vector<std::string> hf_model_types() const override { return {"qwen3_moe"}; }
  HfClass hf_class(const ModelConfig&) const override { return {"qwen3_moe", "Qwen3MoeForCausalLM"}; }

  void read_gguf(ModelConfig& c, const GgufKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qk_norm = true;
    c.expert_weights_norm = k.boolean("expert_weights_norm", true);  // llama.cpp's default for this arch
  }
  void read_hf(ModelConfig& c, const HfKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qk_norm = true;
    if (k.boolean("use_sliding_window", false)) c.sliding_window = k.integer("sliding_window", 0);
    c.n_expert = k.required("num_experts");
    c.n_expert_used = k.required("num_experts_per_tok");
    c.n_ff_exp = k.required("moe_intermediate_size");
    c.expert_weights_norm = k.boolean("norm_topk_prob", true);
    c.expert_gating = ExpertGating::Softmax;
  }
  void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const override {
    w.u32("attention.key_length", c.head_dim_k);
    w.u32("attention.value_length", c.head_dim_v);
    if (!c.expert_weights_norm) w.boolean("expert_weights_norm", false);
    if (c.expert_gating != ExpertGating::Softmax) w.u32("expert_gating_func", static_cast<int64_t>(c.expert_gating));
  }
  void write_hf(const ModelConfig& c, const ModelSource&, nlohmann::json& j) const override {
    if (c.sliding_window == 0) j["use_sliding_window"] = false;
    j["num_experts"] = c.n_expert;
    j["num_experts_per_tok"] = c.n_expert_used;
    j["moe_intermediate_size"] = c.n_ff_exp;
    j["norm_topk_prob"] = c.expert_weights_norm;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = nlohmann::json::array();
  }
  const char* tokenizer_pre() const override { return "qwen2"; }

  std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t il) const override {
    std::vector<TensorSpec> t;
    gqa_attention_tensors(c, t);
    ffn_tensors(c, il, tn::kFfnNorm, t);
    return t;
  }

  std::vector<SynthShape> synth_shapes() const override {
    auto s = [](int64_t vocab, int64_t embd, int64_t layers, int64_t heads, int64_t kv_heads, int64_t n_ff,
                int64_t n_expert, int64_t n_used, int64_t ff_exp) {
      ModelConfig c = synth_config("qwen3moe", vocab, embd, layers, heads, kv_heads, 128, n_ff, 40960, 1e6f, 1e-6f);
      c.attn_qk_norm = true;
      c.n_expert = n_expert;
      c.n_expert_used = n_used;
      c.n_ff_exp = ff_exp;
      c.expert_weights_norm = true;
      return c;
    };
    return {
        // Qwen3-30B-A3B trimmed to its first 8 layers (the speed tests' shape).
        {"qwen3-30b-a3b-8l", s(151936, 2048, 8, 32, 4, 6144, 128, 8, 768), false},
        {"tiny-qwen3moe", s(512, 256, 2, 4, 2, 768, 8, 4, 256), false},  // golden/qwen3moe
        // Routed experts are 98% of its 160 MB in Q8_0 (a vocabulary of 512, as stories260K's):
        // the memory-budget tests stream them under a cgroup limit.
        {"stream-test-qwen3moe", s(512, 512, 3, 4, 2, 1024, 64, 8, 512), false},
    };
  }

  std::unique_ptr<Model> load(const ModelSource& src) const override { return std::make_unique<Qwen3MoeModel>(src); }
};

}  // namespace

const Family& qwen3moe_family() {
  static const Qwen3Moe f;
  return f;
}

}  // namespace owl
