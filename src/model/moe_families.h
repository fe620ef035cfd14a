// Factories of the mixture-of-experts families (deepseek2.cpp, qwen3moe.cpp,
// glm4moe.cpp), for the registry in model.cpp.
#pragma once
#include <memory>

#include "model/model.h"

namespace owl {

// DeepSeek-V2/V3/R1, Kimi K2, Cogito v2.1: MLA attention, DeepSeekMoE FFN.
std::unique_ptr<Model> make_deepseek2_family(const ModelSource& source);
// Qwen3-MoE: Qwen3 attention (q/k norm, NEOX), softmax top-k routing, no shared expert.
std::unique_ptr<Model> make_qwen3moe_family(const ModelSource& source);
// GLM-4.5/4.6: GQA with biases, partial rotary, sigmoid routing with bias, shared expert.
std::unique_ptr<Model> make_glm4moe_family(const ModelSource& source);

}  // namespace owl
