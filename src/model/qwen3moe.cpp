// Qwen3-MoE (GGUF arch "qwen3moe"). Per layer:
//   x += Attention(RMSNorm(x))   Qwen3 GQA: per-head q/k RMSNorm before NEOX rope, no bias
//   x += MoE(RMSNorm(x))         softmax over all experts, top-k, weights renormalised to 1
//                                (llama.cpp hard-codes this; no key), no shared expert
#include "model/blocks.h"
#include "model/moe_families.h"

namespace owl {
namespace {

ModelConfig qwen3moe_config(ModelConfig c) {
  c.expert_gating = ExpertGating::Softmax;
  c.expert_weights_norm = true;
  return c;
}

class Qwen3MoeModel : public blocks::GqaDecoder {
 public:
  explicit Qwen3MoeModel(const ModelSource& src) : GqaDecoder(src, qwen3moe_config(src.config())) {
    for (int64_t il = 0; il < config_.n_layer; ++il) load_ffn(src, il, /*experts=*/true, "ffn_norm");
    finish_loading(src);
  }
};

}  // namespace

std::unique_ptr<Model> make_qwen3moe_family(const ModelSource& source) { return std::make_unique<Qwen3MoeModel>(source); }

}  // namespace owl
