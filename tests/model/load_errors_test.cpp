// A model file that does not match its family is a clear owl::Error naming
// what is wrong, never a crash: copies of the golden llama file with a tensor
// missing, a tensor of the wrong shape, or inconsistent head counts.
#include <gtest/gtest.h>

#include <functional>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "golden_util.h"

namespace owl::test {
namespace {

// Writes a copy of golden/llama/f32.gguf; `edit` may change the metadata and
// returns false for tensors to leave out (it may also change their shape).
std::string edited_llama(const std::string& name,
                         const std::function<bool(gguf::Metadata&, const std::string&, std::vector<int64_t>&)>& edit) {
  auto f = gguf::File::open(shared_path("golden/llama/f32.gguf"));
  gguf::Writer w;
  for (const auto& [k, v] : f->metadata().items) w.metadata().set(k, v);
  for (const auto& ti : f->tensor_infos()) {
    TensorView t = f->view(ti);
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    if (!edit(w.metadata(), ti.name, ne)) continue;
    w.add_tensor(ti.name, t.type, ne, t.data);  // same bytes; a changed shape keeps the element count
  }
  const std::string path = temp_dir() + "/" + name + ".gguf";
  w.write(path);
  return path;
}

std::string load_error(const std::string& path) {
  try {
    auto src = open_model_source(path);
    auto model = Model::load(*src);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without error)";
}

TEST(ModelLoad, MissingTensorIsNamed) {
  auto path = edited_llama("missing", [](gguf::Metadata&, const std::string& n, std::vector<int64_t>&) {
    return n != "blk.1.ffn_up.weight";
  });
  EXPECT_NE(load_error(path).find("lacks tensor 'blk.1.ffn_up.weight'"), std::string::npos) << load_error(path);
}

TEST(ModelLoad, WrongShapeIsNamed) {
  auto path = edited_llama("shape", [](gguf::Metadata&, const std::string& n, std::vector<int64_t>& ne) {
    if (n == "blk.0.attn_q.weight") ne = {512, 128};  // same element count, transposed-looking
    return true;
  });
  const std::string e = load_error(path);
  EXPECT_NE(e.find("'blk.0.attn_q.weight' has shape [512, 128], expected [256, 256]"), std::string::npos) << e;
}

TEST(ModelLoad, HeadCountsThatDoNotGroupAreAnError) {
  auto path = edited_llama("heads", [](gguf::Metadata& m, const std::string&, std::vector<int64_t>&) {
    m.set("llama.attention.head_count_kv", gguf::Value::u32(3));
    return true;
  });
  const std::string e = load_error(path);
  EXPECT_NE(e.find("must be a multiple of the KV heads"), std::string::npos) << e;
}

TEST(ModelLoad, OddRopeDimensionIsAnError) {
  auto path = edited_llama("rope", [](gguf::Metadata& m, const std::string&, std::vector<int64_t>&) {
    m.set("llama.rope.dimension_count", gguf::Value::u32(63));
    return true;
  });
  const std::string e = load_error(path);
  EXPECT_NE(e.find("rope dimension count 63 must be even"), std::string::npos) << e;
}

}  // namespace
}  // namespace owl::test
