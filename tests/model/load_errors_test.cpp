// A model file that does not match its family is a clear owl::Error naming
// what is wrong, never a crash: copies of the golden llama file with a tensor
// missing, a tensor of the wrong shape, or inconsistent head counts.
#include <gtest/gtest.h>

#include "base/error.h"
#include "golden_util.h"

namespace owl::test {
namespace {

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
  auto path = edited_golden_copy("llama", "missing", [](gguf::Metadata&, const std::string& n, std::vector<int64_t>&) {
    return n != "blk.1.ffn_up.weight";
  });
  EXPECT_NE(load_error(path).find("lacks tensor 'blk.1.ffn_up.weight'"), std::string::npos) << load_error(path);
}

TEST(ModelLoad, WrongShapeIsNamed) {
  auto path = edited_golden_copy("llama", "shape", [](gguf::Metadata&, const std::string& n, std::vector<int64_t>& ne) {
    if (n == "blk.0.attn_q.weight") ne = {512, 128};  // same element count, transposed-looking
    return true;
  });
  const std::string e = load_error(path);
  EXPECT_NE(e.find("'blk.0.attn_q.weight' has shape [512, 128], expected [256, 256]"), std::string::npos) << e;
}

TEST(ModelLoad, HeadCountsThatDoNotGroupAreAnError) {
  auto path = edited_golden_copy("llama", "heads", [](gguf::Metadata& m, const std::string&, std::vector<int64_t>&) {
    m.set("llama.attention.head_count_kv", gguf::Value::u32(3));
    return true;
  });
  const std::string e = load_error(path);
  EXPECT_NE(e.find("must be a multiple of the KV heads"), std::string::npos) << e;
}

TEST(ModelLoad, OddRopeDimensionIsAnError) {
  auto path = edited_golden_copy("llama", "rope", [](gguf::Metadata& m, const std::string&, std::vector<int64_t>&) {
    m.set("llama.rope.dimension_count", gguf::Value::u32(63));
    return true;
  });
  const std::string e = load_error(path);
  EXPECT_NE(e.find("rope dimension count 63 must be even"), std::string::npos) << e;
}

}  // namespace
}  // namespace owl::test
