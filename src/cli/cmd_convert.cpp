// owl convert HF_FOLDER OUT.gguf [--type f32|f16|bf16|q8_0|q4_k_m|...] [--name NAME]
// Writes a Hugging Face folder (config.json + safetensors [+ tokenizer]) as a
// GGUF file in the layout and with the metadata llama.cpp's converter writes.
// The default keeps every tensor's float type; --type converts the matrices
// with the per-tensor choices of `owl quantize` (formats/quant_plan).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "base/error.h"
#include "cli/command.h"
#include "convert/gguf_export.h"
#include "model/model.h"
#include "model/source.h"

namespace {

struct Options {
  std::string folder, out;
  owl::GgufExportOptions opt;
};

void run(const Options& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(o.folder, ec))
    throw owl::Error("'" + o.folder +
                     "' is not a folder; owl convert reads a Hugging Face folder (config.json + "
                     "*.safetensors)");
  const auto t0 = std::chrono::steady_clock::now();
  auto src = owl::open_hf_source(o.folder);
  owl::Model::load(*src);  // every tensor present with its shape: a clear error now, not a broken file later
  owl::write_gguf(*src, o.out, o.opt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double mb = static_cast<double>(fs::file_size(o.out, ec)) / 1e6;
  std::fprintf(stderr, "wrote %s: %zu tensors, %.1f MB in %.2f s (%.0f MB/s)\n", o.out.c_str(), src->tensors().size(),
               mb, s, s > 0 ? mb / s : 0.0);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("convert", "Convert a Hugging Face folder to a GGUF file");
  sub->add_option("folder", o->folder, "Hugging Face model folder (config.json + *.safetensors)")->required();
  sub->add_option("out", o->out, "output GGUF file")->required();
  sub->add_option("--type", o->opt.type,
                  "tensor type: f32, f16, bf16 or a quantisation such as q8_0 or q4_k_m "
                  "(default: keep the folder's float types)");
  sub->add_option("--name", o->opt.name, "general.name (default: the folder's model name)");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
