// The dense GQA transformer family: Llama 2/3 (and Mistral, which ships as
// arch "llama"), Qwen2 / Qwen2.5 (and the DeepSeek-R1 distills), Qwen3.
// Per layer: x += Attention(RMSNorm(x)); x += SwiGLU(RMSNorm(x)).
// The members differ only in flags of ModelConfig and the tensors present:
// qwen2 adds q/k/v biases, qwen3 per-head q/k RMSNorm; llama uses NORM rope,
// the qwens NEOX; Llama 3 scales rope by rope_freqs.weight; tied models reuse
// token_embd as the output head. All of that lives in blocks.
#include "model/blocks.h"
#include "model/families.h"

namespace owl {
namespace {

class LlamaModel : public blocks::GqaDecoder {
 public:
  explicit LlamaModel(const ModelSource& src) : GqaDecoder(src, src.config()) {
    for (int64_t il = 0; il < config_.n_layer; ++il) load_ffn(src, il, /*experts=*/false, "ffn_norm");
    finish_loading(src);
  }
};

}  // namespace

std::unique_ptr<Model> make_llama_family(const ModelSource& source) { return std::make_unique<LlamaModel>(source); }

}  // namespace owl
