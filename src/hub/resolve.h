// Turns what a user passes as MODEL into a local path: local files and folders
// pass through unchanged; a hub id ([modelscope:]ORG/NAME[:QUANT|:FILE]) becomes
// its GGUF file or snapshot folder in the cache, pulled first when missing and
// `pull_if_missing` (and HF_HUB_OFFLINE is not set).
#pragma once
#include <string>

namespace owl::hub {

// Throws owl::Error when `spec` is neither a local path nor a usable hub id.
std::string resolve_model(const std::string& spec, bool pull_if_missing);

}  // namespace owl::hub
