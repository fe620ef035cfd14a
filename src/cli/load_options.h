// Load-time options shared by the commands that open a model (run, logits, serve,
// chat, info, bench): --quant TYPE converts a Hugging Face folder's weights while
// it loads (formats/quant_plan.h chooses each tensor's type, as `owl quantize` does).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/source.h"

namespace owl::cli {

// Adds --quant TYPE to `cmd`; an unknown TYPE is a usage error naming the valid ones.
void add_quant_option(CLI::App* cmd, std::string& quant);

// Adds --split layers|experts: how `mpirun -n N owl ...` splits the model over its ranks
// (dist/distributed.h).
void add_split_option(CLI::App* cmd, std::string& split);

// Opens a resolved model path (GGUF file or Hugging Face folder). A non-empty `quant`
// converts a folder's weights at load; with a GGUF file it is an owl::UsageError
// (a GGUF file is converted once, ahead of time, with `owl quantize`).
std::unique_ptr<ModelSource> open_source(const std::string& path, const std::string& quant);

}  // namespace owl::cli
