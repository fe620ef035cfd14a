// The built-in families, one per family file, for the registry in families.cpp.
#pragma once
#include "model/family.h"

namespace owl {

const Family& llama_family();      // llama.cpp: Llama 2/3, Mistral
const Family& qwen2_family();      // llama.cpp: Qwen2/2.5, DeepSeek-R1 distills
const Family& qwen3_family();      // llama.cpp: Qwen3 dense
const Family& qwen3moe_family();   // qwen3moe.cpp
const Family& deepseek2_family();  // deepseek2.cpp: DeepSeek-V2/V3/R1, Kimi K2
const Family& glm4moe_family();    // glm4moe.cpp: GLM-4.5/4.6

}  // namespace owl
