// Writes a ModelSource (usually a Hugging Face folder opened by hf_source) as
// a GGUF file with the metadata llama.cpp's convert_hf_to_gguf.py writes for
// the architecture, so owl and other GGUF readers load it:
//   - general.architecture/name/file_type and the `<arch>.*` hyperparameters
//     that config_from_gguf reads back into the same ModelConfig;
//   - llama3 rope scaling becomes the rope_freqs.weight tensor (as the
//     converter writes it), not metadata;
//   - the tokenizer from tokenizer.json/tokenizer_config.json when the folder
//     has one, else tokenizer.ggml.model "none" + `<arch>.vocab_size`.
// Tensors stream one at a time through the GGUF writer's fill callback: peak
// memory is one tensor, not the model.
#pragma once
#include <string>

#include "formats/gguf.h"
#include "model/source.h"

namespace owl {

struct GgufExportOptions {
  // "" keeps every tensor's float type (F32 stays F32, BF16 stays BF16); a target of
  // formats/quant_plan ("f32", "f16", "bf16", "q8_0", "q4_k_m", ...) converts the matrices
  // with the same per-tensor choices as `owl quantize`. Either way vectors (norms, biases),
  // the MoE router and rope_freqs are F32, as the converter writes them.
  std::string type;
  std::string name;  // general.name; "" = the source's name
};

// The `<arch>.*` and general.* keys for a config (no tokenizer keys).
gguf::Metadata gguf_metadata_from_config(const ModelConfig& c, uint32_t file_type);

// llama.cpp's rope_freqs for llama3 scaling: n_rot/2 divisors of the base frequencies.
std::vector<float> llama3_rope_freqs(const ModelConfig& c);

// Writes `src` to `path` (atomically). Throws owl::Error on bad input or I/O failure.
void write_gguf(const ModelSource& src, const std::string& path, const GgufExportOptions& opt);

}  // namespace owl
