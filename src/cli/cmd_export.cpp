// owl export MODEL.gguf HF_FOLDER [--dtype f32|f16|bf16]
// Writes a GGUF model as a Hugging Face folder (config.json + model.safetensors)
// that transformers-style loaders (and owl) read; quantised tensors are
// dequantised (to F32 unless --dtype says otherwise); a byte-level BPE vocabulary
// becomes tokenizer.json + tokenizer_config.json.
#include <chrono>
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "cli/command.h"
#include "convert/hf_export.h"
#include "model/model.h"
#include "model/source.h"

namespace {

struct Options {
  std::string model, folder;
  owl::HfExportOptions opt;
};

void run(const Options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto src = owl::open_model_source(o.model);
  owl::Model::load(*src);  // a complete model of a family owl runs, before anything is written
  const std::string note = owl::export_hf(*src, o.folder, o.opt);
  if (!note.empty()) std::fprintf(stderr, "note: no tokenizer.json written: %s\n", note.c_str());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "wrote %s (config.json, model.safetensors) in %.2f s\n", o.folder.c_str(), s);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("export", "Export a GGUF model as a Hugging Face folder");
  sub->add_option("model", o->model, "GGUF file (or Hugging Face folder)")->required();
  sub->add_option("folder", o->folder, "output folder (created when missing)")->required();
  sub->add_option("--dtype", o->opt.dtype,
                  "tensor type: f32, f16 or bf16 (default: float tensors as stored, "
                  "quantised ones as f32)");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
