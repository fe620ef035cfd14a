#include "model/source.h"

#include <filesystem>

#include "base/error.h"
#include "formats/gguf.h"

namespace owl {

namespace {

std::string shape_string(std::initializer_list<int64_t> shape) {
  std::string s = "[";
  bool first = true;
  for (int64_t d : shape) {
    if (!first) s += ", ";
    s += std::to_string(d);
    first = false;
  }
  return s + "]";
}

void check_shape(const TensorView& t, std::initializer_list<int64_t> shape, const std::string& path) {
  int i = 0;
  bool ok = true;
  for (int64_t d : shape) ok &= (i < 4 && t.ne[i++] == d);
  for (; i < 4; ++i) ok &= t.ne[i] == 1;
  if (!ok)
    throw Error("model '" + path + "': tensor '" + t.name + "' has shape " + t.shape_str() + ", expected " +
                shape_string(shape) + "; the file does not match its own metadata");
}

class GgufSource : public ModelSource {
 public:
  explicit GgufSource(const std::string& path) : file_(gguf::File::open(path)) {
    path_ = path;
    config_ = config_from_gguf(file_->metadata());
    if (config_.n_vocab == 0)
      if (auto emb = find("token_embd.weight")) config_.n_vocab = emb->ne[1];
  }
  std::optional<TensorView> find(const std::string& name) const override { return file_->tensor(name); }
  std::vector<TensorView> tensors() const override {
    std::vector<TensorView> v;
    for (const auto& ti : file_->tensor_infos()) v.push_back(file_->view(ti));
    return v;
  }
  const gguf::File* gguf_file() const override { return file_.get(); }

 private:
  std::unique_ptr<gguf::File> file_;
};

}  // namespace

TensorView ModelSource::require(const std::string& name, std::initializer_list<int64_t> shape) const {
  auto t = find(name);
  if (!t)
    throw Error("model '" + path_ + "' lacks tensor '" + name + "'; the file is incomplete or not a " + config_.arch +
                " model");
  check_shape(*t, shape, path_);
  return *t;
}

std::optional<TensorView> ModelSource::optional(const std::string& name, std::initializer_list<int64_t> shape) const {
  auto t = find(name);
  if (t) check_shape(*t, shape, path_);
  return t;
}

std::unique_ptr<ModelSource> open_gguf_source(const std::string& path) { return std::make_unique<GgufSource>(path); }

std::unique_ptr<ModelSource> open_model_source(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw Error("model '" + path + "' does not exist; give a GGUF file or a Hugging Face folder");
  if (fs::is_directory(path, ec)) return open_hf_source(path);
  return open_gguf_source(path);
}

}  // namespace owl
