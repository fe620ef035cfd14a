// GLM-4.5 / 4.6 (GGUF arch "glm4moe"). Per layer:
//   x += Attention(RMSNorm(x))   GQA with q/k/v biases, per-head q/k RMSNorm when the file has
//                                it (355B yes, Air no), NEOX rope on the first n_rot dims only
//   x += FFN(RMSNorm(x))         norm = post_attention_norm; SwiGLU in the leading dense layers,
//                                then MoE: sigmoid + exp_probs_b routing, norm, scale, shared expert
// A NextN/MTP layer (the last nextn_predict_layers blocks) is loaded and checked but not run.
#include "model/blocks.h"
#include "model/moe_families.h"

namespace owl {
namespace {

ModelConfig glm4moe_config(const ModelSource& src) {
  ModelConfig c = src.config();
  c.attn_qk_norm = src.find("blk.0.attn_q_norm.weight").has_value();
  return c;
}

class Glm4MoeModel : public blocks::GqaDecoder {
 public:
  explicit Glm4MoeModel(const ModelSource& src) : GqaDecoder(src, glm4moe_config(src)) {
    for (int64_t il = 0; il < config_.n_layer; ++il)
      load_ffn(src, il, /*experts=*/true, "post_attention_norm", /*require_probs_bias=*/true);
    finish_loading(src);
  }
};

}  // namespace

std::unique_ptr<Model> make_glm4moe_family(const ModelSource& source) { return std::make_unique<Glm4MoeModel>(source); }

}  // namespace owl
