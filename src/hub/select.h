// Which files of a repository a pull fetches: one GGUF variant (all parts of a
// split GGUF) or, for repositories without GGUFs, the safetensors set with its
// config, generation config and tokenizer files.
#pragma once
#include <string>
#include <vector>

#include "hub/api.h"

namespace owl::hub {

struct Selection {
  std::vector<RepoFile> files;
  bool gguf = false;
  // The path to hand to the engine, relative to the snapshot: the (first part
  // of the) GGUF file; empty for a safetensors folder (the snapshot itself).
  std::string primary;
};

// `variant`: a quantisation tag matched case-insensitively as a word of the
// file name (Q4_K_M matches "model-q4_k_m.gguf", not "model-Q4_K_M_L.gguf"), a
// file name (`variant_is_file`), or empty for the default choice: Q4_K_M,
// else Q4_0, else Q8_0, else the smallest. Throws owl::Error listing what is
// available when nothing matches.
Selection select_files(const std::vector<RepoFile>& files, const std::string& variant, bool variant_is_file,
                       const std::string& repo_display);

// The quantisation tag in a GGUF file name ("Q4_K_M" for "x-Q4_K_M-00001-of-00002.gguf"), or "".
std::string quant_tag(const std::string& file_name);

}  // namespace owl::hub
