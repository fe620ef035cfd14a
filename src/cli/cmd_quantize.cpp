// owl quantize IN.gguf OUT.gguf TYPE [--nextn-type T] [--threads N]: writes a copy of a GGUF model
// with its weights converted to TYPE (q4_k_m, q8_0, ...), choosing each tensor's
// type as llama.cpp's llama-quantize does (formats/quant_plan.h). Metadata is
// copied with general.file_type set for TYPE; tensors keep their order. NextN/MTP layers are
// kept and typed like the others, or with --nextn-type their matrices get that type (the head only
// drafts, so it may be smaller; its norms stay as stored).
//
// Tensors stream one at a time from the memory-mapped input through the writer's
// fill callback, rows converted in parallel, so a model many times larger than
// memory converts; the writer writes OUT.tmp and renames it only when complete.
// Tensors stored quantised are dequantised to float first (with a warning: a
// second rounding loses accuracy).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/quant_plan.h"

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string in, out, type, nextn_type;
  int threads = 0;
};

// blk.<il>.* of a NextN layer: il at or after the trunk's block count.
bool in_nextn_layer(const std::string& name, const owl::gguf::Metadata& meta, const std::string& arch) {
  const int64_t nextn = meta.get_int(arch + ".nextn_predict_layers").value_or(0);
  if (nextn <= 0 || name.rfind("blk.", 0) != 0) return false;
  const int64_t il = std::strtoll(name.c_str() + 4, nullptr, 10);
  return il >= meta.get_int(arch + ".block_count").value_or(0) - nextn;
}

void check_paths(const Options& o) {
  std::error_code ec;
  if (!fs::exists(o.in, ec)) throw owl::Error("input '" + o.in + "' does not exist; give a GGUF file");
  if (fs::is_directory(o.in, ec))
    throw owl::Error("input '" + o.in +
                     "' is a folder; owl quantize reads a GGUF file (a Hugging Face folder "
                     "loads quantised with --quant TYPE)");
  const bool same = fs::exists(o.out, ec) ? fs::equivalent(o.in, o.out, ec)
                                          : fs::weakly_canonical(o.in, ec) == fs::weakly_canonical(o.out, ec);
  if (same) throw owl::UsageError("input and output are the same file '" + o.out + "'; write to a new path");
  if (fs::is_directory(o.out, ec)) throw owl::UsageError("output '" + o.out + "' is a folder; give a file path");
}

double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

void run(const Options& o) {
  const owl::QuantTarget target = owl::parse_quant_target(o.type);
  check_paths(o);
  if (o.threads < 0) throw owl::UsageError("--threads must be positive");
  if (o.threads > 0) owl::set_default_threads(o.threads);

  const auto t0 = std::chrono::steady_clock::now();
  auto in = owl::gguf::File::open(o.in);
  std::vector<owl::TensorView> views;
  for (const auto& ti : in->tensor_infos()) views.push_back(in->view(ti));
  auto plan = owl::plan_tensor_types(target, owl::quant_model_info(in->metadata()), views);
  if (!o.nextn_type.empty()) {
    const owl::DType nextn = owl::parse_quant_target(o.nextn_type).base;
    const std::string arch = owl::quant_model_info(in->metadata()).arch;
    if (in->metadata().get_int(arch + ".nextn_predict_layers").value_or(0) <= 0)
      throw owl::UsageError("--nextn-type: '" + o.in + "' has no NextN (multi-token prediction) layer");
    for (size_t i = 0; i < views.size(); ++i)
      if (views[i].n_dims >= 2 && in_nextn_layer(views[i].name, in->metadata(), arch)) plan[i] = nextn;
  }

  owl::gguf::Writer w(in->version());
  w.metadata() = in->metadata();
  w.metadata().set("general.quantization_version", owl::gguf::Value::u32(2));
  w.metadata().set("general.file_type", owl::gguf::Value::u32(target.file_type));

  std::map<std::string, int> per_type, requantised;
  for (size_t i = 0; i < views.size(); ++i) {
    const owl::TensorView& t = views[i];
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    const owl::DType to = plan[i].value_or(t.type);
    ++per_type[owl::dtype_name(to)];
    if (to == t.type) {
      w.add_tensor(t.name, t.type, ne, t.data);  // copied from the map as stored
      continue;
    }
    if (owl::info(t.type).quantized) ++requantised[owl::dtype_name(t.type)];
    w.add_tensor(t.name, to, ne,
                 [t, to](uint8_t* dst, size_t) { owl::convert_tensor(t, to, dst, owl::default_pool()); });
  }
  if (!requantised.empty()) {
    std::string what;
    int n = 0;
    for (const auto& [type, count] : requantised) {
      what += (what.empty() ? "" : ", ") + std::to_string(count) + " " + type;
      n += count;
    }
    std::fprintf(stderr,
                 "owl quantize: warning: requantising %d tensors already stored quantised (%s); a second "
                 "rounding loses accuracy, so convert from the F16/BF16/F32 model when you have it\n",
                 n, what.c_str());
  }

  w.write(o.out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string types;
  for (const auto& [type, count] : per_type) types += (types.empty() ? "" : ", ") + std::to_string(count) + " " + type;
  std::printf("quantized %s -> %s (%s): %zu tensors (%s); %.1f MiB -> %.1f MiB in %.2f s (%.0f MB/s of input)\n",
              o.in.c_str(), o.out.c_str(), target.name.c_str(), views.size(), types.c_str(), mib(in->file_size()),
              mib(w.file_size()), secs, static_cast<double>(in->file_size()) / 1e6 / secs);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("quantize", "Write a copy of a GGUF model with its weights in another type");
  sub->add_option("input", o->in, "GGUF file to read")->required();
  sub->add_option("output", o->out, "GGUF file to write (written to OUTPUT.tmp, then renamed)")->required();
  sub->add_option("type", o->type, "target: " + owl::quant_target_names())->required();
  sub->add_option("--nextn-type", o->nextn_type,
                  "type of the NextN (multi-token prediction) layer's matrices (default: as TYPE's mix)");
  sub->add_option("-t,--threads", o->threads, "worker threads (default: all CPUs)");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
