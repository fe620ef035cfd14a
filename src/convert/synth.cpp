#include "convert/synth.h"

#include "base/error.h"
#include "base/thread_pool.h"
#include "convert/gguf_export.h"
#include "formats/gguf_writer.h"
#include "formats/quant_plan.h"
#include "tensor/quants.h"

namespace owl {

namespace {

struct Spec {
  std::string name;
  std::vector<int64_t> ne;
  SynthInit init;
  const std::vector<float>* values = nullptr;  // fixed values (rope_freqs) instead of random ones
};

std::vector<Spec> tensor_list(const SynthShape& s, const std::vector<float>& rope_freqs) {
  namespace tn = tensor_names;
  const ModelConfig& c = s.config;
  const Family& family = family_of(c.arch);
  std::vector<Spec> v;
  v.push_back({tn::kTokenEmbd.gguf, {c.n_embd, c.n_vocab}, SynthInit::Matrix});
  if (!rope_freqs.empty())
    v.push_back({tn::kRopeFreqs.gguf, {static_cast<int64_t>(rope_freqs.size())}, SynthInit::Zero, &rope_freqs});
  for (int64_t il = 0; il < c.n_layer; ++il)
    for (const TensorSpec& t : family.layer_tensors(c, il))
      if (t.required) v.push_back({layer_tensor(il, t.name), t.ne, t.init});
  v.push_back({tn::kOutputNorm.gguf, {c.n_embd}, SynthInit::Norm});
  if (!s.tied) v.push_back({tn::kOutput.gguf, {c.n_embd, c.n_vocab}, SynthInit::Matrix});
  return v;
}

// Each tensor's type comes from the shared quantisation plan (formats/quant_plan.h), the same
// choices `owl quantize` and --quant make; tensors it keeps are written F32.
std::vector<DType> tensor_types(const std::vector<Spec>& specs, const QuantTarget& target, const ModelConfig& c) {
  std::vector<TensorView> views(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    views[i].name = specs[i].name;
    views[i].n_dims = static_cast<int>(specs[i].ne.size());
    for (size_t d = 0; d < specs[i].ne.size(); ++d) views[i].ne[d] = specs[i].ne[d];
  }
  const QuantModelInfo m{c.arch, c.n_layer, c.n_expert, c.n_head, c.n_head_kv};
  std::vector<DType> types;
  for (const auto& p : plan_tensor_types(target, m, views)) types.push_back(p.value_or(DType::F32));
  return types;
}

inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// ~N(0, 1): Irwin-Hall sum of four 16-bit uniforms, centred and scaled to unit variance
// (cheap, and close enough for random weights).
inline float normal(uint64_t& s) {
  const uint64_t r = splitmix(s);
  const int64_t sum = static_cast<int64_t>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
  return static_cast<float>(sum - 131070) * (1.0f / 37837.23f);
}

void fill_tensor(const Spec& sp, DType type, uint64_t seed, uint64_t index, uint8_t* dst) {
  const int64_t row = sp.ne[0];
  int64_t rows = 1;
  for (size_t i = 1; i < sp.ne.size(); ++i) rows *= sp.ne[i];
  const size_t row_size = row_bytes(type, row);
  default_pool().parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
    std::vector<float> buf(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      uint64_t s = seed * 0x100000001B3ull ^ (index << 40) ^ static_cast<uint64_t>(r);
      splitmix(s);
      for (int64_t i = 0; i < row; ++i) {
        if (sp.values) {
          buf[i] = (*sp.values)[static_cast<size_t>(i)];
          continue;
        }
        switch (sp.init) {
          case SynthInit::Matrix:
            buf[i] = 0.02f * normal(s);
            break;
          case SynthInit::Bias:
            buf[i] = 0.02f * normal(s);
            break;
          case SynthInit::Norm:
            buf[i] = 1.0f + 0.02f * normal(s);
            break;
          case SynthInit::Zero:
            buf[i] = 0.0f;
            break;
        }
      }
      quantize_row(type, buf.data(), dst + static_cast<size_t>(r) * row_size, row);
    }
  });
}

}  // namespace

SynthShape find_synth_shape(const std::string& name) {
  for (const Family* f : families())
    for (const SynthShape& s : f->synth_shapes())
      if (s.name == name) return s;
  throw UsageError("unknown --shape '" + name + "' (known: " + synth_shape_names() + ")");
}

std::string synth_shape_names() {
  std::string list;
  for (const Family* f : families())
    for (const SynthShape& s : f->synth_shapes()) list += (list.empty() ? "" : ", ") + s.name;
  return list;
}

SynthResult write_synth(const SynthShape& shape, const std::string& path, const std::string& type, uint64_t seed) {
  QuantTarget target;
  try {
    target = parse_quant_target(type);
  } catch (const UsageError&) {
    throw UsageError("unknown --type '" + type + "' (supported: " + quant_target_names() + ")");
  }
  ModelConfig c = shape.config;
  c.name = shape.name;
  const std::vector<float> rope_freqs =
      c.rope_scaling == RopeScaling::Llama3 ? llama3_rope_freqs(c) : std::vector<float>{};

  gguf::Writer w(3);
  w.metadata() = gguf_metadata_from_config(c, target.file_type);
  w.metadata().set("general.description",
                   gguf::Value::str("random-weight model of the " + shape.name + " shape (owl synth)"));
  if (info(target.base).quantized) w.metadata().set("general.quantization_version", gguf::Value::u32(2));
  w.metadata().set("tokenizer.ggml.model", gguf::Value::str("none"));

  const std::vector<Spec> specs = tensor_list(shape, rope_freqs);
  const std::vector<DType> types = tensor_types(specs, target, c);
  SynthResult r;
  r.n_tensors = specs.size();
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : specs[i].ne) n *= d;
    r.n_params += n;
    const DType t = types[i];
    w.add_tensor(specs[i].name, t, specs[i].ne,
                 [&specs, i, t, seed](uint8_t* dst, size_t) { fill_tensor(specs[i], t, seed, i, dst); });
  }
  w.write(path);
  r.file_bytes = w.file_size();
  return r;
}

}  // namespace owl
