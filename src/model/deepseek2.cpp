// DeepSeek-V2/V3/R1, Kimi K2 and Cogito v2.1 (GGUF arch "deepseek2"; config.json deepseek_v2,
// deepseek_v3, kimi_k2; the members differ only in hyperparameters). Per layer:
//   x += MLA(RMSNorm(x))                       multi-head latent attention, see mla.h
//   x += FFN(RMSNorm(x))                       SwiGLU for the leading_dense_block_count
//                                              first layers, DeepSeekMoE (moe.h) after
// The KV cache holds one [latent | k_pe] row per token and layer. The first NextN/MTP layer (the
// last nextn_predict_layers blocks; V3/R1's layer 61) runs as the multi-token-prediction head
// (blocks::Decoder::mtp_forward) over its own cache.
// Config: GGUF (and owl) use the absorbed view of MLA: one shared latent "KV head" with
// head_dim_k = kv_lora_rank + qk_rope_dim and head_dim_v = kv_lora_rank; config.json describes
// the decompressed heads (num_key_value_heads = num_attention_heads), and kv_b_proj is split
// into attn_k_b / attn_v_b.
#include <nlohmann/json.hpp>

#include "model/blocks.h"
#include "model/families.h"
#include "model/mla.h"

namespace owl {
namespace {

namespace tn = tensor_names;

class Deepseek2Model : public blocks::Decoder {
 public:
  explicit Deepseek2Model(const ModelSource& src) : Decoder(src, src.config()) {
    mla_ = MlaParams::from_config(config_);
    mla_.form = src.mla_form;
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      const bool held = src.shard.holds_layer(il);
      attn_norm_.push_back(held ? blocks::load_vector(src, layer_tensor(il, tn::kAttnNorm), config_.n_embd)
                                : std::vector<float>{});
      attn_.push_back(held ? load_mla_weights(src, il, mla_) : MlaWeights{});
      // exp_probs_b (V3's e_score_correction_bias) is optional: V2 routes without it.
      load_ffn(src, il, /*experts=*/true, tn::kFfnNorm);
    }
    finish_loading(src);
  }

  std::vector<KVLayerShape> kv_shape() const override {
    return std::vector<KVLayerShape>(static_cast<size_t>(n_trunk_), {mla_.cache_width(), 0});
  }

 protected:
  void attend(int64_t il, const float* x, const Batch& batch, KVStore& kv, float* out) override {
    const auto l = static_cast<size_t>(il);
    mla_attention(attn_[l], attn_norm_[l], mla_, x, batch, kv, kv_layer(il), mla_ws_, out);
  }

 private:
  MlaParams mla_;
  std::vector<std::vector<float>> attn_norm_;  // per layer
  std::vector<MlaWeights> attn_;
  MlaScratch mla_ws_;
};

// The absorbed-attention view of the MLA sizes (see the top of this file).
void set_absorbed_view(ModelConfig& c) {
  c.n_head_kv = 1;
  c.head_dim_k = c.kv_lora_rank + c.qk_rope_dim;
  c.head_dim_v = c.kv_lora_rank;
  c.n_rot = c.qk_rope_dim;
}

class Deepseek2 : public Family {
 public:
  const char* arch() const override { return "deepseek2"; }
  std::vector<std::string> hf_model_types() const override { return {"deepseek_v2", "deepseek_v3", "kimi_k2"}; }
  HfClass hf_class(const ModelConfig& c) const override {
    // V3 (and R1, Kimi K2) route with sigmoid scores; V2 with softmax.
    if (c.expert_gating == ExpertGating::Sigmoid) return {"deepseek_v3", "DeepseekV3ForCausalLM"};
    return {"deepseek_v2", "DeepseekV2ForCausalLM"};
  }

  void read_gguf(ModelConfig& c, const GgufKeys& k) const override {
    c.rope_type = RopeType::Norm;
    c.q_lora_rank = k.integer("attention.q_lora_rank", 0);
    c.kv_lora_rank = k.required("attention.kv_lora_rank");
    c.qk_rope_dim = c.n_rot;
    c.qk_nope_dim = k.integer("attention.key_length_mla", c.head_dim_k) - c.qk_rope_dim;
    c.v_head_dim = k.integer("attention.value_length_mla", c.head_dim_v);
  }
  void read_hf(ModelConfig& c, const HfKeys& k) const override {
    c.rope_type = RopeType::Norm;
    read_hf_deepseek_moe(c, k, "softmax");
    c.q_lora_rank = k.integer("q_lora_rank", 0);
    c.kv_lora_rank = k.required("kv_lora_rank");
    c.qk_nope_dim = k.required("qk_nope_head_dim");
    c.qk_rope_dim = k.required("qk_rope_head_dim");
    c.v_head_dim = k.required("v_head_dim");
    set_absorbed_view(c);
  }
  void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const override {
    w.u32("attention.key_length", c.head_dim_k);
    w.u32("attention.value_length", c.head_dim_v);
    w.u32("attention.key_length_mla", c.qk_nope_dim + c.qk_rope_dim);
    w.u32("attention.value_length_mla", c.v_head_dim);
    w.u32("rope.dimension_count", c.n_rot);
    w.u32("attention.q_lora_rank", c.q_lora_rank);  // required by llama.cpp even when 0
    w.u32("attention.kv_lora_rank", c.kv_lora_rank);
    write_gguf_deepseek_moe(c, w);
    if (c.expert_weights_norm) w.boolean("expert_weights_norm", true);
  }
  void write_hf(const ModelConfig& c, const ModelSource&, nlohmann::json& j) const override {
    write_hf_deepseek_moe(c, j);
    j["topk_method"] = c.expert_gating == ExpertGating::Sigmoid ? "noaux_tc"
                       : c.expert_group_count > 1               ? "group_limited_greedy"
                                                                : "greedy";
    j["q_lora_rank"] = c.q_lora_rank > 0 ? nlohmann::json(c.q_lora_rank) : nlohmann::json(nullptr);
    j["kv_lora_rank"] = c.kv_lora_rank;
    j["qk_nope_head_dim"] = c.qk_nope_dim;
    j["qk_rope_head_dim"] = c.qk_rope_dim;
    j["v_head_dim"] = c.v_head_dim;
    j["num_nextn_predict_layers"] = c.n_nextn_layers;
  }
  const char* tokenizer_pre() const override { return "deepseek-v3"; }

  std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t il) const override {
    const int64_t E = c.n_embd, H = c.n_head, q = H * (c.qk_nope_dim + c.qk_rope_dim), kvl = c.kv_lora_rank;
    std::vector<TensorSpec> t;
    t.push_back({tn::kAttnNorm, {E}, true, HfLayout::Same, SynthInit::Norm});
    if (c.q_lora_rank > 0) {
      t.push_back({tn::kAttnQA, {E, c.q_lora_rank}});
      t.push_back({tn::kAttnQANorm, {c.q_lora_rank}, true, HfLayout::Same, SynthInit::Norm});
      t.push_back({tn::kAttnQB, {c.q_lora_rank, q}});
    } else {
      t.push_back({tn::kAttnQ, {E, q}});
    }
    t.push_back({tn::kAttnKvAMqa, {E, kvl + c.qk_rope_dim}});
    t.push_back({tn::kAttnKvANorm, {kvl}, true, HfLayout::Same, SynthInit::Norm});
    t.push_back({tn::kAttnKB, {c.qk_nope_dim, kvl, H}, true, HfLayout::KvBSplitK});
    t.push_back({tn::kAttnVB, {kvl, c.v_head_dim, H}, true, HfLayout::KvBSplitV});
    // Older converters stored kv_b_proj whole; export still maps it, the loader refuses it.
    t.push_back({tn::kAttnKvB, {kvl, H * (c.qk_nope_dim + c.v_head_dim)}, false});
    t.push_back({tn::kAttnOutput, {H * c.v_head_dim, E}});
    ffn_tensors(c, il, tn::kFfnNorm, t, /*require_probs_bias=*/c.expert_gating == ExpertGating::Sigmoid);
    nextn_tensors(c, il, t);
    return t;
  }

  std::vector<SynthShape> synth_shapes() const override {
    auto s = [](int64_t vocab, int64_t embd, int64_t layers, int64_t heads, int64_t n_ff, float mscale_all_dim) {
      ModelConfig c = synth_config("deepseek2", vocab, embd, layers, heads, heads, 0, n_ff, 163840, 1e4f, 1e-6f);
      c.rope_type = RopeType::Norm;
      c.rope_scaling = RopeScaling::Yarn;
      c.rope_factor = 40;
      c.rope_orig_ctx = 4096;
      c.yarn_log_multiplier = 0.1f * mscale_all_dim;
      return c;
    };
    auto mla = [](ModelConfig c, int64_t q_lora, int64_t kv_lora, int64_t nope, int64_t rope, int64_t v) {
      c.q_lora_rank = q_lora;
      c.kv_lora_rank = kv_lora;
      c.qk_nope_dim = nope;
      c.qk_rope_dim = rope;
      c.v_head_dim = v;
      set_absorbed_view(c);
      return c;
    };
    // DeepSeek-V2-Lite trimmed to its first 8 layers (the speed tests' shape).
    ModelConfig lite = mla(s(102400, 2048, 8, 16, 10944, 0.707f), 0, 512, 128, 64, 128);
    lite.n_expert = 64;
    lite.n_expert_used = 6;
    lite.n_ff_exp = 1408;
    lite.n_expert_shared = 2;
    lite.n_leading_dense = 1;
    // golden/deepseek-v3's hyperparameters, for tests: V3 routing (sigmoid, groups, scale).
    ModelConfig tiny = mla(s(512, 256, 3, 4, 512, 1.0f), 128, 256, 64, 32, 64);
    tiny.n_expert = 16;
    tiny.n_expert_used = 4;
    tiny.n_ff_exp = 64;
    tiny.n_expert_shared = 1;
    tiny.n_leading_dense = 1;
    tiny.expert_gating = ExpertGating::Sigmoid;
    tiny.expert_weights_norm = true;
    tiny.expert_weights_scale = 2.5f;
    tiny.expert_group_count = 4;
    tiny.expert_group_used = 2;
    return {{"deepseek-v2-lite-8l", lite, false}, {"tiny-deepseek2", tiny, false}};
  }

  std::unique_ptr<Model> load(const ModelSource& src) const override { return std::make_unique<Deepseek2Model>(src); }
};

}  // namespace

const Family& deepseek2_family() {
  static const Deepseek2 f;
  return f;
}

}  // namespace owl
