// Load-time options shared by the commands that open a model (run, logits, serve,
// chat, info, bench): --quant TYPE converts a Hugging Face folder's weights while
// it loads (formats/quant_plan.h chooses each tensor's type, as `owl quantize` does);
// --mem SIZE is the weights' memory budget (model/residency.h: routed experts that do not
// fit stream from the file), by default what this process may use (base/memory_budget.h).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/source.h"

namespace owl::cli {

// Adds --quant TYPE to `cmd`; an unknown TYPE is a usage error naming the valid ones.
void add_quant_option(CLI::App* cmd, std::string& quant);

// Adds --split layers|experts: how `mpirun -n N owl ...` splits the model over its ranks
// (dist/distributed.h), and --micro-batches N (dist::set_micro_batches).
void add_split_option(CLI::App* cmd, std::string& split);
// Adds --mem SIZE to `cmd`; a malformed SIZE is a usage error.
void add_mem_option(CLI::App* cmd, std::string& mem);

// Opens a resolved model path (GGUF file or Hugging Face folder). A non-empty `quant`
// converts a folder's weights at load; with a GGUF file it is an owl::UsageError
// (a GGUF file is converted once, ahead of time, with `owl quantize`). `mem` is --mem's
// text; empty: the default budget.
std::unique_ptr<ModelSource> open_source(const std::string& path, const std::string& quant,
                                         const std::string& mem = "");

}  // namespace owl::cli
