// GLM-4.5 / 4.6 (GGUF arch "glm4moe"). Per layer:
//   x += Attention(RMSNorm(x))   GQA with q/k/v biases, per-head q/k RMSNorm when the file has
//                                it (355B yes, Air no), NEOX rope on the first n_rot dims only
//   x += FFN(RMSNorm(x))         norm = post_attention_norm; SwiGLU in the leading dense layers,
//                                then MoE: sigmoid + exp_probs_b routing, norm, scale, shared expert
// A NextN/MTP layer (the last nextn_predict_layers blocks) is loaded and checked but not run.
#include "base/error.h"
#include "model/blocks.h"
#include "model/moe.h"
#include "model/moe_families.h"

namespace owl {
namespace {

class Glm4MoeModel : public Model {
 public:
  explicit Glm4MoeModel(const ModelSource& src) : Model(src.config()) {
    head_ = blocks::load_output_head(src, config_);
    config_.n_vocab = head_.output.ne[1];
    n_trunk_ = config_.n_layer - nextn_predict_layers(src);
    config_.attn_qk_norm = src.find("blk.0.attn_q_norm.weight").has_value();
    shape_ = blocks::attention_shape(config_);
    rope_ = blocks::make_rope(config_, src);
    if (config_.n_leading_dense < config_.n_layer) moe_ = MoeOptions::from_config(config_);
    if (config_.n_leading_dense > 0 && config_.n_ff <= 0)
      throw Error("model '" + src.path() + "' has dense layers but no feed_forward_length");
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      Layer L;
      L.attn = blocks::load_attention(src, config_, il);
      L.dense = il < config_.n_leading_dense;
      if (L.dense) {
        L.mlp = blocks::load_mlp(src, config_, il, config_.n_ff, "post_attention_norm");
      } else {
        L.ffn_norm = blocks::load_vector(src, "blk." + std::to_string(il) + ".post_attention_norm.weight",
                                         config_.n_embd);
        L.moe = load_moe_weights(src, il, /*require_bias=*/true);
      }
      layers_.push_back(std::move(L));
    }
  }

  std::vector<KVLayerShape> kv_shape() const override {
    return std::vector<KVLayerShape>(static_cast<size_t>(n_trunk_),
                                     {shape_.n_head_kv * shape_.head_dim, shape_.n_head_kv * shape_.head_dim_v});
  }

  std::span<const float> forward(const Batch& batch, KVStore& kv) override {
    prepare_batch(batch, config_.n_vocab, kv);
    const int64_t n = batch.size(), d = config_.n_embd;
    float* x = blocks::scratch(x_, n * d);
    float* h = blocks::scratch(h_, n * d);
    float* y = blocks::scratch(y_, n * d);
    blocks::embed(head_.token_embd, batch, x);
    for (int64_t il = 0; il < n_trunk_; ++il) {
      const Layer& L = layers_[static_cast<size_t>(il)];
      blocks::attention(L.attn, shape_, rope_, x, batch, kv, static_cast<int>(il), attn_ws_, y);
      kernels::add(x, y, x, n * d);
      if (L.dense) {
        blocks::mlp(L.mlp, config_.rms_eps, x, n, mlp_ws_, y);
      } else {
        blocks::rms_norm_rows(x, L.ffn_norm, h, n, d, config_.rms_eps);
        moe_forward(L.moe, moe_, h, n, moe_ws_, y);
      }
      kernels::add(x, y, x, n * d);
    }
    return blocks::output_logits(head_, config_.rms_eps, x, batch, head_ws_);
  }

 private:
  struct Layer {
    blocks::AttentionWeights attn;
    bool dense = false;
    blocks::MlpWeights mlp;       // dense layers
    std::vector<float> ffn_norm;  // MoE layers: post_attention_norm
    MoeWeights moe;
  };
  int64_t n_trunk_ = 0;  // layers run; the rest are NextN/MTP layers
  blocks::OutputHead head_;
  blocks::AttentionShape shape_;
  blocks::Rope rope_;
  MoeOptions moe_;
  std::vector<Layer> layers_;
  std::vector<float> x_, h_, y_;
  blocks::AttentionScratch attn_ws_;
  blocks::MlpScratch mlp_ws_;
  MoeScratch moe_ws_;
  blocks::HeadScratch head_ws_;
};

}  // namespace

std::unique_ptr<Model> make_glm4moe_family(const ModelSource& source) { return std::make_unique<Glm4MoeModel>(source); }

}  // namespace owl
