// Random-weight models of real architectures and sizes (`owl synth`), for benchmarks, demos and
// tests without downloads. The shapes come from the families (family.h: synth_shapes), the
// tensors from their tensor lists, the metadata from the same writer `owl convert` uses.
#pragma once
#include <cstdint>
#include <string>

#include "model/family.h"

namespace owl {

// The shape of that name over every registered family; throws a UsageError listing them.
SynthShape find_synth_shape(const std::string& name);
// "qwen3-0.6b, ..." for help texts and errors.
std::string synth_shape_names();

struct SynthResult {
  size_t n_tensors = 0;
  int64_t n_params = 0;
  uint64_t file_bytes = 0;
};
// Writes the shape as a GGUF at `path` with weights of `type` (a target of formats/quant_plan:
// f32, f16, q8_0, q4_k_m, ...). Matrices ~N(0, 0.02), norm weights ~1 + N(0, 0.02), biases
// ~N(0, 0.02), exp_probs_b 0, Llama-3 rope_freqs as the HF converter computes them. Every row
// has its own seed: the file does not depend on the thread count.
SynthResult write_synth(const SynthShape& shape, const std::string& path, const std::string& type, uint64_t seed);

}  // namespace owl
