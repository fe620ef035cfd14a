// owl quantize IN.gguf OUT.gguf TYPE [--threads N] [--imatrix FILE] [--tensor-type REGEX=TYPE]...
//              [--recipe dynamic-moe LOWTYPE] [--nextn-type T]: writes a copy of a GGUF model with
// its weights converted to TYPE (q4_k_m, q8_0, iq2_xxs, ...), choosing each tensor's type as
// llama.cpp's llama-quantize does (formats/quant_plan.h), then as the rules say. Metadata is
// copied with general.file_type set for TYPE; tensors keep their order. The importance matrix
// (llama.cpp's GGUF or legacy .dat, formats/imatrix.h) weighs the low-bit quantisers' errors;
// IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS and IQ2_S refuse to run without one, as llama-quantize does.
// NextN/MTP layers are kept and typed like the others, or with --nextn-type their matrices get
// that type (the head only drafts, so it may be smaller; its norms stay as stored).
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
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/imatrix.h"
#include "formats/quant_plan.h"
#include "tensor/quants.h"

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string in, out, type, imatrix, nextn_type;
  std::vector<std::string> tensor_types, recipe;
  int threads = 0;
};

// The target and rules from TYPE, --recipe and --tensor-type.
owl::QuantTarget target_of(const Options& o, std::vector<owl::TensorTypeRule>& rules) {
  if (o.recipe.empty()) {
    if (o.type.empty()) throw owl::UsageError("give the target TYPE (" + owl::quant_target_names() + ") or --recipe");
    for (const auto& spec : o.tensor_types) rules.push_back(owl::parse_tensor_type_rule(spec));
    return owl::parse_quant_target(o.type);
  }
  if (o.recipe.size() != 2 || o.recipe[0] != "dynamic-moe")
    throw owl::UsageError("--recipe takes 'dynamic-moe LOWTYPE' (LOWTYPE: iq1_s, iq1_m, iq2_xxs, ...)");
  if (!o.type.empty()) throw owl::UsageError("give either TYPE or --recipe, not both");
  // LOWTYPE is a block type (iq2_s means IQ2_S blocks, not llama.cpp's IQ2_S file mix).
  const auto low = owl::dtype_from_name(o.recipe[1]);
  if (!low || !owl::info(*low).quantized || !owl::can_quantize(*low) || *low == owl::DType::Q8_K)
    throw owl::UsageError("--recipe dynamic-moe: '" + o.recipe[1] + "' is not a quantised type owl writes");
  rules = owl::dynamic_moe_rules(*low);
  for (const auto& spec : o.tensor_types) rules.push_back(owl::parse_tensor_type_rule(spec));
  owl::QuantTarget t = owl::parse_quant_target("q4_k_m");  // everything that is not a routed expert
  t.name = "dynamic-moe " + o.recipe[1];
  try {
    t.file_type = owl::parse_quant_target(o.recipe[1]).file_type;  // e.g. iq1_s: LLAMA_FTYPE_MOSTLY_IQ1_S
  } catch (const owl::UsageError&) {
    // a block type without a file type of its own (iq4_nl, ...): the file says q4_k_m
  }
  return t;
}

// A tensor going to a type that needs an importance matrix and has no entry in it (or no
// --imatrix at all) is an error, found before anything is written (one line, naming the tensor).
void check_importance(const owl::Imatrix* im, const owl::TensorView& t, owl::DType to, const std::string& im_path) {
  if (!owl::needs_importance(to) || (im && im->entries.count(t.name))) return;
  if (!im)
    throw owl::UsageError(std::string("quantising to ") + owl::dtype_name(to) +
                          " needs an importance matrix: give one with --imatrix FILE (make one with owl imatrix)");
  throw owl::Error("imatrix '" + im_path + "' has no entry for '" + t.name + "', which is quantised to " +
                   owl::dtype_name(to) + " and needs one; give it a type with --tensor-type or a matching imatrix");
}

// The importance of each column of t, per matrix; empty when the imatrix has no entry for it.
// Made when the tensor is written, so a large model's weights are not all held at once.
std::vector<std::vector<float>> importance_for(const owl::Imatrix* im, const owl::TensorView& t) {
  std::vector<std::vector<float>> w;
  if (!im || !im->entries.count(t.name)) return w;
  const int64_t n_mat = t.n_dims >= 3 ? t.ne[2] : 1;
  for (int64_t m = 0; m < n_mat; ++m) w.push_back(im->weights(t.name, m, t.ne[0]));
  return w;
}

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
  std::vector<owl::TensorTypeRule> rules;
  const owl::QuantTarget target = target_of(o, rules);
  check_paths(o);
  if (o.threads < 0) throw owl::UsageError("--threads must be positive");
  if (o.threads > 0) owl::set_default_threads(o.threads);

  const auto t0 = std::chrono::steady_clock::now();
  auto in = owl::gguf::File::open(o.in);
  std::vector<owl::TensorView> views;
  for (const auto& ti : in->tensor_infos()) views.push_back(in->view(ti));
  auto plan = owl::plan_tensor_types(target, owl::quant_model_info(in->metadata()), views, rules);
  if (!o.nextn_type.empty()) {
    const owl::DType nextn = owl::parse_quant_target(o.nextn_type).base;
    const std::string arch = owl::quant_model_info(in->metadata()).arch;
    if (in->metadata().get_int(arch + ".nextn_predict_layers").value_or(0) <= 0)
      throw owl::UsageError("--nextn-type: '" + o.in + "' has no NextN (multi-token prediction) layer");
    for (size_t i = 0; i < views.size(); ++i)
      if (views[i].n_dims >= 2 && in_nextn_layer(views[i].name, in->metadata(), arch)) plan[i] = nextn;
  }
  std::unique_ptr<owl::Imatrix> imatrix;
  if (!o.imatrix.empty()) {
    imatrix = std::make_unique<owl::Imatrix>(owl::read_imatrix(o.imatrix));
    owl::check_imatrix(*imatrix, views, o.imatrix);
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
    check_importance(imatrix.get(), t, to, o.imatrix);
    const owl::Imatrix* im = imatrix.get();
    w.add_tensor(t.name, to, ne, [t, to, im](uint8_t* dst, size_t) {
      owl::convert_tensor(t, to, dst, owl::default_pool(), importance_for(im, t));
    });
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
  sub->add_option("type", o->type, "target: " + owl::quant_target_names() + " (or --recipe)");
  sub->add_option("--nextn-type", o->nextn_type,
                  "type of the NextN (multi-token prediction) layer's matrices (default: as TYPE's mix)");
  sub->add_option("-t,--threads", o->threads, "worker threads (default: all CPUs)");
  sub->add_option("--imatrix", o->imatrix, "importance matrix (llama.cpp GGUF or legacy .dat; owl imatrix makes one)");
  sub->add_option("--tensor-type", o->tensor_types,
                  "REGEX=TYPE: tensors whose name matches get TYPE (repeatable; the first match wins)");
  sub->add_option("--recipe", o->recipe, "dynamic-moe LOWTYPE: routed experts at LOWTYPE, the rest at 4-6 bits")
      ->expected(2);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
