// The synthetic MoE file the memory-budget tests stream (stream-test-qwen3moe, Q8_0, 160 MB,
// routed experts ~98% of it) with stories260K's vocabulary, so `owl run` and `owl serve` have text.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "convert/synth.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace owl::test {

// Writes it into dir and returns its path.
inline std::string streaming_model(const std::string& dir) {
  const std::string raw = dir + "/raw.gguf", path = dir + "/stream-test-qwen3moe.gguf";
  write_synth(find_synth_shape("stream-test-qwen3moe"), raw, "q8_0", 11);
  auto synth = gguf::File::open(raw);
  auto stories = gguf::File::open(shared_path("models/stories260K/stories260K-f32.gguf"));
  gguf::Writer w;
  for (const auto& [k, v] : synth->metadata().items)
    if (k.rfind("tokenizer.", 0) != 0) w.metadata().set(k, v);
  for (const auto& [k, v] : stories->metadata().items)
    if (k.rfind("tokenizer.", 0) == 0) w.metadata().set(k, v);
  for (const auto& ti : synth->tensor_infos()) {
    const TensorView t = synth->view(ti);
    w.add_tensor(ti.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims), t.data);
  }
  w.write(path);
  std::filesystem::remove(raw);
  return path;
}

}  // namespace owl::test
