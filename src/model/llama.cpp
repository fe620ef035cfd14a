// The dense GQA transformer family: Llama 2/3 (and Mistral, which ships as
// arch "llama"), Qwen2 / Qwen2.5 (and the DeepSeek-R1 distills), Qwen3.
// Per layer: x += Attention(RMSNorm(x)); x += SwiGLU(RMSNorm(x)).
// The members differ only in flags of ModelConfig and the tensors present:
// qwen2 adds q/k/v biases, qwen3 per-head q/k RMSNorm; llama uses NORM rope,
// the qwens NEOX; Llama 3 scales rope by rope_freqs.weight; tied models reuse
// token_embd as the output head.
#include "base/error.h"
#include "model/blocks.h"
#include "model/families.h"

namespace owl {
namespace {

class LlamaModel : public Model {
 public:
  explicit LlamaModel(const ModelSource& src) : Model(src.config()) {
    head_ = blocks::load_output_head(src, config_);
    config_.n_vocab = head_.output.ne[1];
    shape_ = blocks::attention_shape(config_);
    rope_ = blocks::make_rope(config_, src);
    if (config_.n_ff <= 0) throw Error("model '" + src.path() + "' has no feed_forward_length");
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      layers_.push_back({blocks::load_attention(src, config_, il), blocks::load_mlp(src, config_, il, config_.n_ff)});
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
    float* y = blocks::scratch(y_, n * d);
    blocks::embed(head_.token_embd, batch, x);
    for (size_t il = 0; il < layers_.size(); ++il) {
      const Layer& L = layers_[il];
      blocks::attention(L.attn, shape_, rope_, x, batch, kv, static_cast<int>(il), attn_ws_, y);
      kernels::add(x, y, x, n * d);
      blocks::mlp(L.mlp, config_.rms_eps, x, n, mlp_ws_, y);
      kernels::add(x, y, x, n * d);
    }
    return blocks::output_logits(head_, config_.rms_eps, x, batch, head_ws_);
  }

 private:
  struct Layer {
    blocks::AttentionWeights attn;
    blocks::MlpWeights mlp;
  };
  blocks::OutputHead head_;
  blocks::AttentionShape shape_;
  blocks::Rope rope_;
  std::vector<Layer> layers_;
  // Activations, grown to the largest batch seen and then reused.
  std::vector<float> x_, y_;
  blocks::AttentionScratch attn_ws_;
  blocks::MlpScratch mlp_ws_;
  blocks::HeadScratch head_ws_;
};

}  // namespace

std::unique_ptr<Model> make_llama_family(const ModelSource& source) { return std::make_unique<LlamaModel>(source); }

}  // namespace owl
