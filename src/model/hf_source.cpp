// Hugging Face folders (config.json + safetensors). Placeholder until the
// safetensors loader lands.
#include "base/error.h"
#include "model/source.h"

namespace owl {

std::unique_ptr<ModelSource> open_hf_source(const std::string& folder) {
  throw Error("'" + folder + "': Hugging Face folders are not supported yet; use a GGUF file");
}

}  // namespace owl
