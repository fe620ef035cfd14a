// Where a model's weights and config come from: a GGUF file or a Hugging Face
// folder (config.json + safetensors). Families look tensors up by their GGUF
// names ("blk.0.attn_q.weight"); an HF source maps its names (and the few
// layout differences, e.g. Llama's Q/K row order) onto those.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "tensor/tensor.h"

namespace owl {

namespace gguf {
class File;
}
class ExpertCache;

// The part of a model one process holds in a distributed run (src/dist): a range of trunk layers
// (pipeline split) and one share of every MoE layer's routed experts (expert split). The default
// is the whole model.
struct ModelShard {
  int64_t layer_begin = 0, layer_end = INT64_MAX;  // trunk layers loaded and run: [begin, end)
  bool output_head = true;                         // false: neither embedding lookups nor the output head are prepared
  int64_t expert_part = 0, expert_parts = 1;       // holds experts [n*part/parts, n*(part+1)/parts)
  bool holds_layer(int64_t il) const { return il >= layer_begin && il < layer_end; }
};

// Multi-head latent attention evaluated with K/V expanded per head, or absorbed into the latent
// (mla.h); Auto picks per call by cost.
enum class MlaForm { Auto, Absorbed, Expanded };

class ModelSource {
 public:
  virtual ~ModelSource() = default;
  const ModelConfig& config() const { return config_; }
  // The tensor of that GGUF name, or nullopt.
  virtual std::optional<TensorView> find(const std::string& name) const = 0;
  // All tensors, in file order.
  virtual std::vector<TensorView> tensors() const = 0;
  // The GGUF file behind this source (tokenizer and chat template metadata), or null.
  virtual const gguf::File* gguf_file() const { return nullptr; }
  // Folder holding tokenizer.json etc. for Hugging Face sources, or "".
  virtual std::string hf_folder() const { return ""; }
  const std::string& path() const { return path_; }
  // How loading prepares the matmul weights (blocks::prepare_matmul_weight): whether they are
  // repacked and for which ISA's kernels (owl bench --no-repack, --no-vnni). Set before loading.
  kernels::PrepareOptions prepare;
  // MLA models: which form of attention to evaluate (Auto: the cheaper one per call; the others
  // force one, for tests and A/B runs). Set before loading.
  MlaForm mla_form = MlaForm::Auto;
  // What this process loads of the model (distributed runs). Set before loading.
  ModelShard shard;
  // The memory budget of the weights (owl --mem; residency.h): 0, no budget, everything
  // resident. `mem_budget_source` says where it came from ("--mem", "cgroup limit",
  // "MemAvailable"): only a budget given with --mem is an error when too small. Set before loading.
  uint64_t mem_budget = 0;
  std::string mem_budget_source;
  // The cache of the routed experts that stream under that budget, created by the first layer
  // that streams (residency.h: streaming_expert_cache); shared by the model's layers.
  mutable std::shared_ptr<ExpertCache> expert_cache;

  // Required tensor with the given shape (ggml order, trailing 1s optional); throws a clear error.
  TensorView require(const std::string& name, std::initializer_list<int64_t> shape) const;
  // Optional tensor; when present its shape is checked.
  std::optional<TensorView> optional(const std::string& name, std::initializer_list<int64_t> shape) const;

 protected:
  ModelConfig config_;
  std::string path_;
};

// A GGUF file, memory-mapped.
std::unique_ptr<ModelSource> open_gguf_source(const std::string& path);

// Opens a GGUF file or a Hugging Face folder (a folder is resolved by the
// function registered by the safetensors loader; see open_hf_source).
std::unique_ptr<ModelSource> open_model_source(const std::string& path);

// Implemented in model/hf_source.cpp: config.json + *.safetensors. A non-empty `quant`
// (a target of formats/quant_plan.h, e.g. "q8_0") converts the F32/F16/BF16 (and FP8)
// weights the plan converts to that target while the folder opens.
std::unique_ptr<ModelSource> open_hf_source(const std::string& folder, const std::string& quant = "");

}  // namespace owl
