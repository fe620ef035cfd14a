// libFuzzer target: safetensors parsing from memory. A parse either succeeds
// or throws owl::Error; every accepted tensor's bytes lie inside the buffer.
#include <cstdint>
#include <cstdlib>

#include "base/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<owl::safetensors::File> f;
  try {
    f = owl::safetensors::File::parse(data, size, "fuzz");
  } catch (const owl::Error&) {
    return 0;
  }
  volatile uint8_t sink = 0;
  for (const auto& t : f->tensors()) {
    const uint8_t* p = f->data(t);
    if (p < data || p + t.n_bytes() > data + size) std::abort();
    if (t.n_bytes()) sink = sink + p[0] + p[t.n_bytes() - 1];
    try {
      auto v = f->view(t);
      if (v.n_elements() != t.n_elements()) std::abort();
    } catch (const owl::Error&) {
      // more than 4 dimensions
    }
  }
  return 0;
}
