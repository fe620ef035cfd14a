// libFuzzer target: the Qwen3 tokenizer on arbitrary bytes. Encoding never
// fails (invalid UTF-8 is encoded as U+FFFD, see text/tokenizer.h), every id
// is in range, decoding always yields valid UTF-8, and the streaming decoder
// adds up to the same text. The input bytes are also decoded as a list of ids.
// The tokenizer is read from ../shared/tokenizers/qwen3 (found next to this
// source file, or through OWL_SHARED).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/utf8.h"

namespace {

const owl::Tokenizer& tokenizer() {
  static std::unique_ptr<owl::Tokenizer> t = [] {
    const char* env = std::getenv("OWL_SHARED");
    std::filesystem::path shared =
        env ? std::filesystem::path(env) : std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared";
    return owl::Tokenizer::from_hf_dir((shared / "tokenizers" / "qwen3").string());
  }();
  return *t;
}

void check_decode(const owl::Tokenizer& t, const std::vector<int32_t>& ids) {
  for (bool skip : {false, true}) {
    std::string text = t.decode(ids, skip);
    if (!owl::text::utf8_is_valid(text)) std::abort();
    owl::IncrementalDecoder dec(t, skip);
    std::string streamed;
    for (int32_t id : ids) {
      std::string part = dec.push(id);
      if (!owl::text::utf8_is_valid(part)) std::abort();
      streamed += part;
    }
    streamed += dec.flush();
    if (streamed != text) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const owl::Tokenizer& t = tokenizer();
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (bool special : {false, true}) {
    std::vector<int32_t> ids = t.encode(input, special);
    for (int32_t id : ids)
      if (id < 0 || id >= t.n_vocab()) std::abort();
    check_decode(t, ids);
  }
  // The same bytes as ids (any value, in range or not).
  std::vector<int32_t> raw(size / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
  for (int32_t& id : raw) id = (id % (t.n_vocab() + 16));  // mostly in range, some out of range and negative
  check_decode(t, raw);
  return 0;
}
