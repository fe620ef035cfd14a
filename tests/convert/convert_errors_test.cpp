// Bad input to owl convert and owl export: each class gets exit code 1 (2 for
// a bad option) and one line that says what is wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "convert/convert_test_util.h"
#include "formats/safetensors_writer.h"

namespace owl::test {
namespace {

namespace fs = std::filesystem;

void expect_error(const std::vector<std::string>& args, int code, const std::string& needle) {
  RunResult r = run_owl(args);
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
}

// A copy of the llama twin, with config.json edited and tensors filtered.
std::string twin_copy(const std::function<void(nlohmann::json&)>& edit_config,
                      const std::function<bool(const std::string&)>& keep) {
  const std::string twin = shared_path("golden/llama/hf");
  const std::string dir = temp_dir() + "/twin";
  fs::create_directories(dir);
  auto cfg = nlohmann::json::parse(read_file(twin + "/config.json"));
  edit_config(cfg);
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  auto st = safetensors::File::open(twin + "/model.safetensors");
  safetensors::Writer w;
  for (const auto& t : st->tensors()) {
    if (!keep(t.name)) continue;
    const uint8_t* data = st->data(t);
    w.add_tensor(t.name, t.dtype, t.shape, [data](uint8_t* dst, size_t n) { std::memcpy(dst, data, n); });
  }
  w.write(dir + "/model.safetensors");
  return dir;
}

TEST(ConvertErrors, FolderWithoutConfigJson) {
  const std::string dir = temp_dir() + "/empty";
  fs::create_directories(dir);
  expect_error({"convert", dir, temp_dir() + "/out.gguf"}, 1, "has no config.json");
  EXPECT_FALSE(fs::exists(temp_dir() + "/out.gguf"));
}

TEST(ConvertErrors, NotAFolder) {
  expect_error({"convert", golden_file("llama"), temp_dir() + "/out.gguf"}, 1, "is not a folder");
}

TEST(ConvertErrors, UnsupportedArchitecture) {
  const std::string dir =
      twin_copy([](nlohmann::json& c) { c["model_type"] = "phi3"; }, [](const std::string&) { return true; });
  expect_error({"convert", dir, temp_dir() + "/out.gguf"}, 1, "model_type 'phi3' is not supported");
}

TEST(ConvertErrors, MissingTensor) {
  const std::string dir = twin_copy([](nlohmann::json&) {},
                                    [](const std::string& n) { return n != "model.layers.1.mlp.down_proj.weight"; });
  expect_error({"convert", dir, temp_dir() + "/out.gguf"}, 1, "lacks tensor 'blk.1.ffn_down.weight'");
  EXPECT_FALSE(fs::exists(temp_dir() + "/out.gguf"));
}

TEST(ConvertErrors, OutputFolderMissing) {
  expect_error({"convert", shared_path("golden/llama/hf"), temp_dir() + "/no/such/dir/out.gguf"}, 1, "does not exist");
}

TEST(ConvertErrors, UnsupportedType) {
  expect_error({"convert", shared_path("golden/llama/hf"), temp_dir() + "/out.gguf", "--type", "q9_9"}, 2,
               "unknown quantisation type 'q9_9'");
}

TEST(ExportErrors, ArchitectureOwlCannotMap) {
  const std::string path =
      edited_golden_copy("llama", "phi3", [](gguf::Metadata& m, const std::string&, std::vector<int64_t>&) {
        m.set("general.architecture", gguf::Value::str("phi3"));
        return true;
      });
  expect_error({"export", path, temp_dir() + "/hf"}, 1, "unsupported architecture 'phi3'");
  EXPECT_FALSE(fs::exists(temp_dir() + "/hf/model.safetensors"));
}

TEST(ExportErrors, TensorWithoutHfName) {
  // A tensor the mapping does not know (here a renamed norm) must not be silently dropped.
  auto f = gguf::File::open(golden_file("qwen3"));
  gguf::Writer w;
  w.metadata() = f->metadata();
  for (const auto& ti : f->tensor_infos()) {
    TensorView t = f->view(ti);
    w.add_tensor(ti.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims), t.data);
  }
  const float extra[256] = {};
  w.add_tensor("blk.0.attn_sinks.weight", DType::F32, {256}, extra);
  const std::string odd = temp_dir() + "/odd2.gguf";
  w.write(odd);
  expect_error({"export", odd, temp_dir() + "/hf"}, 1, "'blk.0.attn_sinks.weight' has no Hugging Face name");
}

TEST(ExportErrors, MissingTensor) {
  const std::string path = edited_golden_copy(
      "deepseek-v3", "nokvb",
      [](gguf::Metadata&, const std::string& n, std::vector<int64_t>&) { return n != "blk.1.attn_v_b.weight"; });
  expect_error({"export", path, temp_dir() + "/hf"}, 1, "attn_v_b.weight");
}

TEST(ExportErrors, OutputNotWritable) {
  const std::string file = temp_dir() + "/plain-file";
  std::ofstream(file) << "x";
  expect_error({"export", golden_file("llama"), file + "/hf"}, 1, "cannot create folder");
}

TEST(ExportErrors, UnsupportedDtype) {
  expect_error({"export", golden_file("llama"), temp_dir() + "/hf", "--dtype", "q8_0"}, 2,
               "--dtype 'q8_0' is not supported");
}

}  // namespace
}  // namespace owl::test
