// owl synth --arch ARCH --shape NAME -o FILE.gguf [--type T] [--seed N]: writes a random-weight
// model of a real architecture and size (convert/synth.h; the shapes live in the family files),
// for benchmarks and demos without downloads. The file carries the metadata llama.cpp writes for
// the architecture with tokenizer.ggml.model "none" + `<arch>.vocab_size`, as the golden models
// do, so other GGUF readers accept it.
#include <chrono>
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "convert/synth.h"

namespace {

struct Options {
  std::string arch, shape, out, type = "f16";
  uint64_t seed = 0;
  int threads = 0;
};

void run(const Options& o) {
  const owl::SynthShape s = owl::find_synth_shape(o.shape);
  if (!o.arch.empty() && o.arch != s.config.arch)
    throw owl::UsageError("shape '" + o.shape + "' is a " + s.config.arch + " model, not " + o.arch);
  if (o.threads > 0) owl::set_default_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  const owl::SynthResult r = owl::write_synth(s, o.out, o.type, o.seed);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double gb = static_cast<double>(r.file_bytes) / 1e9;
  std::fprintf(stderr, "wrote %s: %s %s, %zu tensors, %.3f B params, %.2f GB, %s, %.1f s (%.2f GB/s)\n", o.out.c_str(),
               s.name.c_str(), s.config.arch.c_str(), r.n_tensors, static_cast<double>(r.n_params) / 1e9, gb,
               o.type.c_str(), secs, gb / secs);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("synth", "Write a random-weight GGUF model of a real architecture and size");
  sub->add_option("--arch", o->arch, "architecture; checked against the shape");
  sub->add_option("--shape", o->shape, "shape name: " + owl::synth_shape_names())->required();
  sub->add_option("-o,--output", o->out, "output GGUF file")->required();
  sub->add_option("--type", o->type, "weight type: f32, f16, bf16, q8_0, q4_k_m, ... (default f16)");
  sub->add_option("--seed", o->seed, "random seed (default 0)");
  sub->add_option("-t,--threads", o->threads, "threads (default: all CPUs)");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
