// libFuzzer target: GGUF parsing from memory. A parse either succeeds or throws
// owl::Error; a parsed file's tensor bytes lie inside the buffer, and rewriting
// it with the writer and parsing again gives the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<owl::gguf::File> f;
  try {
    f = owl::gguf::File::parse(data, size, "fuzz");
  } catch (const owl::Error&) {
    return 0;
  }
  volatile uint8_t sink = 0;
  for (const auto& ti : f->tensor_infos()) {
    auto v = f->view(ti);
    const auto* p = static_cast<const uint8_t*>(v.data);
    if (p < data || p + ti.n_bytes > data + size) std::abort();  // a view outside the buffer
    if (ti.n_bytes) sink = sink + p[0] + p[ti.n_bytes - 1];      // ASan checks these reads
  }
  for (const auto& [k, v] : f->metadata().items) (void)v.to_string();
  // Round trip: what the reader accepts, the writer reproduces, and the reader accepts again.
  std::string once;
  try {
    once = owl::gguf::serialize(*f);
  } catch (const owl::Error&) {
    return 0;  // e.g. an unaligned layout the writer refuses
  }
  auto g = owl::gguf::File::parse(reinterpret_cast<const uint8_t*>(once.data()), once.size(), "fuzz-rewrite");
  if (owl::gguf::serialize(*g) != once) std::abort();
  return 0;
}
