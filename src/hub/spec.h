// Hub ids as users write them: [hf:|modelscope:]ORG/NAME[:QUANT|:FILE].
#pragma once
#include <optional>
#include <string>

namespace owl::hub {

enum class Source { HuggingFace, ModelScope };

struct HubSpec {
  Source source = Source::HuggingFace;
  std::string repo;              // "ORG/NAME"
  std::string variant;           // "Q4_K_M", "model-q8_0.gguf" or empty (the default choice)
  bool variant_is_file = false;  // a file name (has a '.') rather than a quantisation tag
  // How the user would write it, e.g. "modelscope:Qwen/Qwen3-0.6B-GGUF:Q8_0".
  std::string display() const;
  std::string repo_display() const;  // without the variant
};

// Parses a hub id; std::nullopt when `s` does not have its shape (so callers
// can try it as a local path first). Throws owl::UsageError for an unknown
// "xyz:" source prefix.
std::optional<HubSpec> parse_hub_spec(const std::string& s);
// Same, but a string without the shape is a UsageError naming the expected form.
HubSpec parse_hub_spec_or_throw(const std::string& s);

const char* source_name(Source s);

}  // namespace owl::hub
