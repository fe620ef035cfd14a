// owl synth --arch ARCH --shape NAME -o FILE.gguf [--type T] [--seed N]: writes a
// random-weight model of a real architecture and size, for benchmarks and demos
// without downloads. The file carries the metadata llama.cpp writes for the
// architecture (`<arch>.*` keys, general.file_type) with tokenizer.ggml.model
// "none" + `<arch>.vocab_size`, as the golden models do, so other GGUF readers
// accept it.
//
// Weights: matrices ~N(0, 0.02), norm weights ~1 + N(0, 0.02), biases ~N(0, 0.02),
// exp_probs_b 0, llama3 rope_freqs as the HF converter computes them. The normal
// draws are Irwin-Hall sums of four 16-bit uniforms (cheap and close enough for
// random weights); every row has its own seed, so the file does not depend on the
// thread count. Rows are generated and quantised in parallel, tensor by tensor.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "formats/gguf_writer.h"
#include "formats/quant_plan.h"
#include "tensor/quants.h"

namespace {

using owl::DType;
using owl::gguf::Value;

// ---- The shapes: one row per real model (hyperparameters from its config.json). ----
struct Moe {
  int64_t n_expert = 0, n_used = 0, ff_exp = 0, n_shared = 0, leading_dense = 0;
  bool sigmoid = false;  // sigmoid gating + exp_probs_b (DeepSeek-V3 style); else softmax
  bool norm = false;
  float scale = 1.0f;
  int64_t groups = 1, groups_used = 1;
};
struct Mla {
  int64_t q_lora = 0, kv_lora = 0, nope = 0, rope = 0, v = 0;
};
struct RopeScale {
  const char* type = "none";  // none, llama3, yarn
  float factor = 1, low = 1, high = 4;
  int64_t orig_ctx = 0;
  float mscale_all_dim = 0;
};
struct Shape {
  const char* name;
  const char* arch;  // GGUF architecture
  int64_t vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, ctx;
  float rope_theta, rms_eps;
  bool tied;
  RopeScale rope = {};
  Moe moe = {};
  Mla mla = {};
};

const Shape kShapes[] = {
    // name                            arch        vocab   embd  L   H   Hkv D    ff     ctx     theta   eps   tied
    {"qwen3-0.6b",                     "qwen3",    151936, 1024, 28, 16, 8,  128, 3072,  40960,  1e6f,   1e-6f, true},
    {"qwen3-1.7b",                     "qwen3",    151936, 2048, 28, 16, 8,  128, 6144,  40960,  1e6f,   1e-6f, true},
    {"qwen3-4b",                       "qwen3",    151936, 2560, 36, 32, 8,  128, 9728,  40960,  1e6f,   1e-6f, true},
    {"qwen3-8b",                       "qwen3",    151936, 4096, 36, 32, 8,  128, 12288, 40960,  1e6f,   1e-6f, false},
    {"llama-3.2-1b",                   "llama",    128256, 2048, 16, 32, 8,  64,  8192,  131072, 5e5f,   1e-5f, true,
     {"llama3", 32, 1, 4, 8192}},
    {"llama-3.2-3b",                   "llama",    128256, 3072, 28, 24, 8,  128, 8192,  131072, 5e5f,   1e-5f, true,
     {"llama3", 32, 1, 4, 8192}},
    {"llama-3.1-8b",                   "llama",    128256, 4096, 32, 32, 8,  128, 14336, 131072, 5e5f,   1e-5f, false,
     {"llama3", 8, 1, 4, 8192}},
    {"deepseek-r1-distill-qwen-1.5b",  "qwen2",    151936, 1536, 28, 12, 2,  128, 8960,  131072, 1e4f,   1e-6f, false},
    {"qwen2.5-7b",                     "qwen2",    152064, 3584, 28, 28, 4,  128, 18944, 131072, 1e6f,   1e-6f, false},
    // MoE, trimmed to their first 8 layers (the speed tests' shapes).
    {"qwen3-30b-a3b-8l",               "qwen3moe", 151936, 2048, 8,  32, 4,  128, 6144,  40960,  1e6f,   1e-6f, false,
     {}, {128, 8, 768, 0, 0, false, true}},
    {"deepseek-v2-lite-8l",            "deepseek2", 102400, 2048, 8, 16, 1,  0,   10944, 163840, 1e4f,   1e-6f, false,
     {"yarn", 40, 1, 4, 4096, 0.707f}, {64, 6, 1408, 2, 1, false, false}, {0, 512, 128, 64, 128}},
    // Tiny shapes for tests: the hyperparameters of golden/{llama-rope-scaled,qwen2,qwen3,qwen3moe,deepseek-v3}.
    {"tiny-llama",                     "llama",    512,    256,  2,  4,  1,  64,  512,   131072, 5e5f,   1e-5f, true,
     {"llama3", 32, 1, 4, 8192}},
    {"tiny-qwen2",                     "qwen2",    512,    256,  2,  4,  2,  64,  512,   131072, 1e4f,   1e-6f, false},
    {"tiny-qwen3",                     "qwen3",    512,    256,  2,  4,  2,  128, 512,   40960,  1e6f,   1e-6f, true},
    {"tiny-qwen3moe",                  "qwen3moe", 512,    256,  2,  4,  2,  128, 768,   40960,  1e6f,   1e-6f, false,
     {}, {8, 4, 256, 0, 0, false, true}},
    {"tiny-deepseek2",                 "deepseek2", 512,   256,  3,  4,  1,  0,   512,   163840, 1e4f,   1e-6f, false,
     {"yarn", 40, 1, 4, 4096, 1.0f}, {16, 4, 64, 1, 1, true, true, 2.5f, 4, 2}, {128, 256, 64, 32, 64}},
};

std::string shape_names() {
  std::string s;
  for (const auto& sh : kShapes) s += (s.empty() ? "" : ", ") + std::string(sh.name);
  return s;
}

// ---- Tensor list ----
enum class Init { Matrix, Norm, Bias, Zero, RopeFreqs };
struct Spec {
  std::string name;
  std::vector<int64_t> ne;
  Init init;
  int64_t layer = -1;
};

std::vector<Spec> tensor_specs(const Shape& s) {
  std::vector<Spec> v;
  const int64_t E = s.n_embd, H = s.n_head, Hkv = s.n_head_kv, D = s.head_dim;
  const bool mla = std::string(s.arch) == "deepseek2";
  v.push_back({"token_embd.weight", {E, s.vocab}, Init::Matrix});
  if (std::string(s.rope.type) == "llama3") v.push_back({"rope_freqs.weight", {D / 2}, Init::RopeFreqs});
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    auto add = [&](const std::string& n, std::vector<int64_t> ne, Init init = Init::Matrix) {
      v.push_back({b + n, std::move(ne), init, il});
    };
    add("attn_norm.weight", {E}, Init::Norm);
    if (mla) {
      const Mla& m = s.mla;
      if (m.q_lora > 0) {
        add("attn_q_a.weight", {E, m.q_lora});
        add("attn_q_a_norm.weight", {m.q_lora}, Init::Norm);
        add("attn_q_b.weight", {m.q_lora, H * (m.nope + m.rope)});
      } else {
        add("attn_q.weight", {E, H * (m.nope + m.rope)});
      }
      add("attn_kv_a_mqa.weight", {E, m.kv_lora + m.rope});
      add("attn_kv_a_norm.weight", {m.kv_lora}, Init::Norm);
      add("attn_k_b.weight", {m.nope, m.kv_lora, H});
      add("attn_v_b.weight", {m.kv_lora, m.v, H});
      add("attn_output.weight", {H * m.v, E});
    } else {
      add("attn_q.weight", {E, H * D});
      add("attn_k.weight", {E, Hkv * D});
      add("attn_v.weight", {E, Hkv * D});
      if (std::string(s.arch) == "qwen2") {
        add("attn_q.bias", {H * D}, Init::Bias);
        add("attn_k.bias", {Hkv * D}, Init::Bias);
        add("attn_v.bias", {Hkv * D}, Init::Bias);
      }
      if (std::string(s.arch) == "qwen3" || std::string(s.arch) == "qwen3moe") {
        add("attn_q_norm.weight", {D}, Init::Norm);
        add("attn_k_norm.weight", {D}, Init::Norm);
      }
      add("attn_output.weight", {H * D, E});
    }
    add("ffn_norm.weight", {E}, Init::Norm);
    const Moe& m = s.moe;
    if (m.n_expert > 0 && il >= m.leading_dense) {
      add("ffn_gate_inp.weight", {E, m.n_expert});
      if (m.sigmoid) add("exp_probs_b.bias", {m.n_expert}, Init::Zero);
      add("ffn_gate_exps.weight", {E, m.ff_exp, m.n_expert});
      add("ffn_up_exps.weight", {E, m.ff_exp, m.n_expert});
      add("ffn_down_exps.weight", {m.ff_exp, E, m.n_expert});
      if (m.n_shared > 0) {
        add("ffn_gate_shexp.weight", {E, m.ff_exp * m.n_shared});
        add("ffn_up_shexp.weight", {E, m.ff_exp * m.n_shared});
        add("ffn_down_shexp.weight", {m.ff_exp * m.n_shared, E});
      }
    } else {
      add("ffn_gate.weight", {E, s.n_ff});
      add("ffn_up.weight", {E, s.n_ff});
      add("ffn_down.weight", {s.n_ff, E});
    }
  }
  v.push_back({"output_norm.weight", {E}, Init::Norm});
  if (!s.tied) v.push_back({"output.weight", {E, s.vocab}, Init::Matrix});
  return v;
}

// ---- Metadata, as the golden models / llama.cpp's converter write it ----
owl::gguf::Metadata metadata(const Shape& s, uint32_t file_type, bool quantized) {
  owl::gguf::Metadata m;
  const std::string a = s.arch, p = a + ".";
  auto u32 = [](int64_t x) { return Value::u32(static_cast<uint32_t>(x)); };
  m.set("general.architecture", Value::str(a));
  m.set("general.name", Value::str(s.name));
  m.set("general.description", Value::str(std::string("random-weight model of the ") + s.name + " shape (owl synth)"));
  m.set("general.file_type", Value::u32(file_type));
  if (quantized) m.set("general.quantization_version", Value::u32(2));  // ggml's current block layouts
  m.set("tokenizer.ggml.model", Value::str("none"));
  m.set(p + "vocab_size", u32(s.vocab));
  m.set(p + "context_length", u32(s.ctx));
  m.set(p + "embedding_length", u32(s.n_embd));
  m.set(p + "block_count", u32(s.n_layer));
  m.set(p + "feed_forward_length", u32(s.n_ff));
  m.set(p + "attention.head_count", u32(s.n_head));
  m.set(p + "attention.layer_norm_rms_epsilon", Value::f32(s.rms_eps));
  m.set(p + "rope.freq_base", Value::f32(s.rope_theta));
  m.set(p + "attention.head_count_kv", u32(s.n_head_kv));
  if (a == "llama") m.set(p + "rope.dimension_count", u32(s.head_dim));
  if (a == "qwen3" || a == "qwen3moe") {
    m.set(p + "attention.key_length", u32(s.head_dim));
    m.set(p + "attention.value_length", u32(s.head_dim));
  }
  if (a == "deepseek2") {
    const Mla& l = s.mla;
    m.set(p + "attention.key_length", u32(l.kv_lora + l.rope));
    m.set(p + "attention.value_length", u32(l.kv_lora));
    m.set(p + "attention.key_length_mla", u32(l.nope + l.rope));
    m.set(p + "attention.value_length_mla", u32(l.v));
    m.set(p + "rope.dimension_count", u32(l.rope));
    m.set(p + "attention.q_lora_rank", u32(l.q_lora));  // required even when 0
    m.set(p + "attention.kv_lora_rank", u32(l.kv_lora));
  }
  const Moe& e = s.moe;
  if (e.n_expert > 0) {
    if (a == "deepseek2") m.set(p + "leading_dense_block_count", u32(e.leading_dense));
    m.set(p + "expert_count", u32(e.n_expert));
    m.set(p + "expert_used_count", u32(e.n_used));
    m.set(p + "expert_feed_forward_length", u32(e.ff_exp));
    if (a == "deepseek2") {
      m.set(p + "expert_shared_count", u32(e.n_shared));
      m.set(p + "expert_weights_scale", Value::f32(e.scale));
      if (e.norm) m.set(p + "expert_weights_norm", Value::boolean(true));
      m.set(p + "expert_gating_func", u32(e.sigmoid ? 2 : 1));
      m.set(p + "expert_group_count", u32(e.groups));
      m.set(p + "expert_group_used_count", u32(e.groups_used));
    }
  }
  if (std::string(s.rope.type) == "yarn") {
    m.set(p + "rope.scaling.type", Value::str("yarn"));
    m.set(p + "rope.scaling.factor", Value::f32(s.rope.factor));
    m.set(p + "rope.scaling.original_context_length", u32(s.rope.orig_ctx));
    m.set(p + "rope.scaling.yarn_beta_fast", Value::f32(32.0f));
    m.set(p + "rope.scaling.yarn_beta_slow", Value::f32(1.0f));
    m.set(p + "rope.scaling.yarn_log_multiplier", Value::f32(0.1f * s.rope.mscale_all_dim));
  }
  return m;
}

// Llama-3 frequency divisors, as the HF -> GGUF converter computes rope_freqs.weight.
std::vector<float> llama3_rope_freqs(const Shape& s) {
  std::vector<float> f(static_cast<size_t>(s.head_dim / 2));
  const double lo_wavelen = s.rope.orig_ctx / s.rope.low, hi_wavelen = s.rope.orig_ctx / s.rope.high;
  for (size_t i = 0; i < f.size(); ++i) {
    const double freq = std::pow(static_cast<double>(s.rope_theta), -2.0 * static_cast<double>(i) / s.head_dim);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < hi_wavelen) f[i] = 1.0f;
    else if (wavelen > lo_wavelen) f[i] = s.rope.factor;
    else {
      const double smooth = (s.rope.orig_ctx / wavelen - s.rope.low) / (s.rope.high - s.rope.low);
      f[i] = static_cast<float>(1.0 / ((1 - smooth) / s.rope.factor + smooth));
    }
  }
  return f;
}

// ---- Types ----
// Each tensor's type comes from the shared quantisation plan (formats/quant_plan.h),
// the same choices `owl quantize` and --quant make; tensors it keeps are written F32.
std::vector<DType> tensor_types(const std::vector<Spec>& specs, const owl::QuantTarget& target, const Shape& s) {
  std::vector<owl::TensorView> views(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    views[i].name = specs[i].name;
    views[i].n_dims = static_cast<int>(specs[i].ne.size());
    for (size_t d = 0; d < specs[i].ne.size(); ++d) views[i].ne[d] = specs[i].ne[d];
  }
  owl::QuantModelInfo m;
  m.arch = s.arch;
  m.n_layer = s.n_layer;
  m.n_expert = s.moe.n_expert;
  m.n_head = s.n_head;
  m.n_head_kv = s.n_head_kv;
  const auto plan = owl::plan_tensor_types(target, m, views);
  std::vector<DType> types;
  for (const auto& p : plan) types.push_back(p.value_or(DType::F32));
  return types;
}

// ---- Random numbers ----
inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// ~N(0, 1): Irwin-Hall sum of four 16-bit uniforms, centred and scaled to unit variance.
inline float normal(uint64_t& s) {
  const uint64_t r = splitmix(s);
  const int64_t sum = static_cast<int64_t>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
  return static_cast<float>(sum - 131070) * (1.0f / 37837.23f);
}

void fill_tensor(const Spec& sp, DType type, uint64_t seed, uint64_t index, const std::vector<float>& rope_freqs,
                 uint8_t* dst) {
  const int64_t row = sp.ne[0];
  int64_t rows = 1;
  for (size_t i = 1; i < sp.ne.size(); ++i) rows *= sp.ne[i];
  const size_t row_bytes = owl::row_bytes(type, row);
  owl::default_pool().parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
    std::vector<float> buf(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      uint64_t s = seed * 0x100000001B3ull ^ (index << 40) ^ static_cast<uint64_t>(r);
      splitmix(s);
      for (int64_t i = 0; i < row; ++i) {
        switch (sp.init) {
          case Init::Matrix: buf[i] = 0.02f * normal(s); break;
          case Init::Bias: buf[i] = 0.02f * normal(s); break;
          case Init::Norm: buf[i] = 1.0f + 0.02f * normal(s); break;
          case Init::Zero: buf[i] = 0.0f; break;
          case Init::RopeFreqs: buf[i] = rope_freqs[static_cast<size_t>(i)]; break;
        }
      }
      owl::quantize_row(type, buf.data(), dst + static_cast<size_t>(r) * row_bytes, row);
    }
  });
}

struct Options {
  std::string arch, shape, out, type = "f16";
  uint64_t seed = 0;
  int threads = 0;
};

void run(const Options& o) {
  const Shape* s = nullptr;
  for (const auto& sh : kShapes)
    if (o.shape == sh.name) s = &sh;
  if (!s) throw owl::UsageError("unknown --shape '" + o.shape + "' (known: " + shape_names() + ")");
  if (!o.arch.empty() && o.arch != s->arch)
    throw owl::UsageError("shape '" + o.shape + "' is a " + s->arch + " model, not " + o.arch);
  owl::QuantTarget target;
  try {
    target = owl::parse_quant_target(o.type);
  } catch (const owl::UsageError&) {
    throw owl::UsageError("unknown --type '" + o.type + "' (supported: " + owl::quant_target_names() + ")");
  }
  if (o.threads > 0) owl::set_default_threads(o.threads);

  const auto t0 = std::chrono::steady_clock::now();
  owl::gguf::Writer w(3);
  w.metadata() = metadata(*s, target.file_type, owl::info(target.base).quantized);
  const auto specs = tensor_specs(*s);
  const auto types = tensor_types(specs, target, *s);
  const std::vector<float> freqs = std::string(s->rope.type) == "llama3" ? llama3_rope_freqs(*s) : std::vector<float>{};
  int64_t params = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Spec& sp = specs[i];
    const DType type = types[i];
    int64_t n = 1;
    for (int64_t d : sp.ne) n *= d;
    params += n;
    w.add_tensor(sp.name, type, sp.ne, [&, i, type](uint8_t* dst, size_t) { fill_tensor(specs[i], type, o.seed, i, freqs, dst); });
  }
  w.write(o.out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "wrote %s: %s %s, %zu tensors, %.3f B params, %.2f GB, %s, %.1f s (%.2f GB/s)\n", o.out.c_str(),
               s->name, s->arch, specs.size(), static_cast<double>(params) / 1e9,
               static_cast<double>(w.file_size()) / 1e9, target.name.c_str(), secs, static_cast<double>(w.file_size()) / 1e9 / secs);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("synth", "Write a random-weight GGUF model of a real architecture and size");
  sub->add_option("--arch", o->arch, "architecture (llama, qwen2, qwen3, qwen3moe, deepseek2); checked against the shape");
  sub->add_option("--shape", o->shape, "shape name: " + shape_names())->required();
  sub->add_option("-o,--output", o->out, "output GGUF file")->required();
  sub->add_option("--type", o->type, "weight type: " + owl::quant_target_names() + " (default f16)");
  sub->add_option("--seed", o->seed, "random seed (default 0)");
  sub->add_option("-t,--threads", o->threads, "threads (default: all CPUs)");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
