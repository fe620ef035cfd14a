// Scratch buffers that are reused between calls: grown to the largest size asked for, never shrunk.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace owl {

// At least n elements in `buf` (new ones value-initialised); returns its data.
template <typename T>
T* grow(std::vector<T>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

}  // namespace owl
