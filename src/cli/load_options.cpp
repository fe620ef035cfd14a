#include "cli/load_options.h"

#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/memory_budget.h"
#include "dist/distributed.h"
#include "formats/quant_plan.h"
#include "tensor/quants.h"

namespace owl::cli {

void add_quant_option(CLI::App* cmd, std::string& quant) {
  cmd->add_option("--quant", quant,
                  "quantise a Hugging Face folder's weights while loading: " + quant_target_names() +
                      " (norms stay as stored; a GGUF file is converted with owl quantize)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            try {
              if (needs_importance(parse_quant_target(s).base))
                return "--quant " + s + " needs an importance matrix; write the file with owl quantize --imatrix";
              return "";
            } catch (const UsageError& e) {
              return e.what();
            }
          },
          "TYPE"));
}

void add_split_option(CLI::App* cmd, std::string& split) {
  cmd->add_option("--split", split,
                  "under mpirun: split the model over the ranks by layers (pipeline) or experts (MoE models); "
                  "docs/DISTRIBUTED.md")
      ->check(CLI::IsMember({"layers", "experts"}));
  cmd->add_option_function<int64_t>(
         "--micro-batches", [](const int64_t& n) { dist::set_micro_batches(n); },
         "with --split layers: cut a step of several sequences into N micro-batches that follow each other "
         "through the ranks (1: none; default 0: as many as ranks for MoE models, none for dense ones)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            size_t used = 0;
            long long n = -1;
            try {
              n = std::stoll(s, &used);
            } catch (const std::exception&) {
              used = 0;
            }
            if (used == 0 || used != s.size() || n < 0 || n > 4096)
              return "'" + s + "' is not a count: give 0 (the default), 1 (none) or the number of micro-batches";
            return "";
          },
          "N"));
}

void add_mem_option(CLI::App* cmd, std::string& mem) {
  cmd->add_option("--mem", mem,
                  "memory budget of the weights, e.g. 48G (default: the cgroup limit or MemAvailable, less a margin "
                  "for the KV cache); routed experts that do not fit are read from the file into an expert cache")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            try {
              parse_memory_size(s);
              return "";
            } catch (const UsageError& e) {
              return e.what();
            }
          },
          "SIZE"));
}

namespace {

std::unique_ptr<ModelSource> open_converted(const std::string& path, const std::string& quant) {
  if (quant.empty()) return open_model_source(path);
  parse_quant_target(quant);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return open_hf_source(path, quant);
  if (!std::filesystem::exists(path, ec)) return open_model_source(path);  // its "does not exist" error
  throw UsageError("--quant converts Hugging Face folders at load; '" + path + "' is a GGUF file: use `owl quantize " +
                   path + " OUT.gguf " + quant + "` to write a converted copy");
}

}  // namespace

std::unique_ptr<ModelSource> open_source(const std::string& path, const std::string& quant, const std::string& mem) {
  auto source = open_converted(path, quant);
  if (mem.empty()) {
    const MemoryBudget b = default_memory_budget();
    source->mem_budget = b.bytes;
    source->mem_budget_source = b.source;
  } else {
    source->mem_budget = parse_memory_size(mem);
    source->mem_budget_source = "--mem";
  }
  return source;
}

}  // namespace owl::cli
