// DeepSeek-V2/V3/R1, Kimi K2 and Cogito v2.1 (GGUF arch "deepseek2"; the members
// differ only in metadata). Per layer:
//   x += MLA(RMSNorm(x))                       multi-head latent attention, see mla.h
//   x += FFN(RMSNorm(x))                       SwiGLU for the leading_dense_block_count
//                                              first layers, DeepSeekMoE (moe.h) after
// The KV cache holds one [latent | k_pe] row per token and layer. A NextN/MTP layer (the last
// nextn_predict_layers blocks) is loaded and checked but not run.
#include "model/blocks.h"
#include "model/mla.h"
#include "model/moe_families.h"

namespace owl {
namespace {

class Deepseek2Model : public blocks::Decoder {
 public:
  explicit Deepseek2Model(const ModelSource& src) : Decoder(src, src.config()) {
    mla_ = MlaParams::from_config(config_);
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      attn_norm_.push_back(blocks::load_vector(src, "blk." + std::to_string(il) + ".attn_norm.weight", config_.n_embd));
      attn_.push_back(load_mla_weights(src, il, mla_));
      // exp_probs_b (V3's e_score_correction_bias) is optional: V2 routes without it.
      load_ffn(src, il, /*experts=*/true, "ffn_norm");
    }
    finish_loading(src);
  }

  std::vector<KVLayerShape> kv_shape() const override {
    return std::vector<KVLayerShape>(static_cast<size_t>(n_trunk_), {mla_.cache_width(), 0});
  }

 protected:
  void attend(int64_t il, const float* x, const Batch& batch, KVStore& kv, float* out) override {
    const auto l = static_cast<size_t>(il);
    mla_attention(attn_[l], attn_norm_[l], mla_, x, batch, kv, static_cast<int>(il), mla_ws_, out);
  }

 private:
  MlaParams mla_;
  std::vector<std::vector<float>> attn_norm_;  // per layer
  std::vector<MlaWeights> attn_;
  MlaScratch mla_ws_;
};

}  // namespace

std::unique_ptr<Model> make_deepseek2_family(const ModelSource& source) {
  return std::make_unique<Deepseek2Model>(source);
}

}  // namespace owl
