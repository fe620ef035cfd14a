// Factories of the model families (one per family file), listed by model.cpp's registry.
#pragma once
#include <memory>

#include "model/model.h"

namespace owl {

// Dense GQA transformers: llama (and Mistral), qwen2 (incl. DeepSeek-R1 distills), qwen3.
std::unique_ptr<Model> make_llama_family(const ModelSource& source);

}  // namespace owl
