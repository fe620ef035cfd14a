// Qwen3-MoE (GGUF arch "qwen3moe"). Per layer:
//   x += Attention(RMSNorm(x))   Qwen3 GQA: per-head q/k RMSNorm before NEOX rope, no bias
//   x += MoE(RMSNorm(x))         softmax over all experts, top-k, weights renormalised to 1
//                                (llama.cpp hard-codes this; no key), no shared expert
#include "base/error.h"
#include "model/blocks.h"
#include "model/moe.h"
#include "model/moe_families.h"

namespace owl {
namespace {

class Qwen3MoeModel : public Model {
 public:
  explicit Qwen3MoeModel(const ModelSource& src) : Model(src.config()) {
    head_ = blocks::load_output_head(src, config_);
    config_.n_vocab = head_.output.ne[1];
    shape_ = blocks::attention_shape(config_);
    rope_ = blocks::make_rope(config_, src);
    config_.expert_gating = ExpertGating::Softmax;
    config_.expert_weights_norm = true;
    moe_ = MoeOptions::from_config(config_);
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      Layer L;
      L.attn = blocks::load_attention(src, config_, il);
      L.ffn_norm = blocks::load_vector(src, "blk." + std::to_string(il) + ".ffn_norm.weight", config_.n_embd);
      L.moe = load_moe_weights(src, il, /*require_bias=*/false);
      layers_.push_back(std::move(L));
    }
  }

  std::vector<KVLayerShape> kv_shape() const override {
    return std::vector<KVLayerShape>(static_cast<size_t>(config_.n_layer),
                                     {shape_.n_head_kv * shape_.head_dim, shape_.n_head_kv * shape_.head_dim_v});
  }

  std::span<const float> forward(const Batch& batch, KVStore& kv) override {
    prepare_batch(batch, config_.n_vocab, kv);
    const int64_t n = batch.size(), d = config_.n_embd;
    float* x = blocks::scratch(x_, n * d);
    float* h = blocks::scratch(h_, n * d);
    float* y = blocks::scratch(y_, n * d);
    blocks::embed(head_.token_embd, batch, x);
    for (size_t il = 0; il < layers_.size(); ++il) {
      const Layer& L = layers_[il];
      blocks::attention(L.attn, shape_, rope_, x, batch, kv, static_cast<int>(il), attn_ws_, y);
      kernels::add(x, y, x, n * d);
      blocks::rms_norm_rows(x, L.ffn_norm, h, n, d, config_.rms_eps);
      moe_forward(L.moe, moe_, h, n, moe_ws_, y);
      kernels::add(x, y, x, n * d);
    }
    return blocks::output_logits(head_, config_.rms_eps, x, batch, head_ws_);
  }

 private:
  struct Layer {
    blocks::AttentionWeights attn;
    std::vector<float> ffn_norm;
    MoeWeights moe;
  };
  blocks::OutputHead head_;
  blocks::AttentionShape shape_;
  blocks::Rope rope_;
  MoeOptions moe_;
  std::vector<Layer> layers_;
  std::vector<float> x_, h_, y_;
  blocks::AttentionScratch attn_ws_;
  MoeScratch moe_ws_;
  blocks::HeadScratch head_ws_;
};

}  // namespace

std::unique_ptr<Model> make_qwen3moe_family(const ModelSource& source) { return std::make_unique<Qwen3MoeModel>(source); }

}  // namespace owl
