#include "model/kv_rotation.h"

#include <cmath>

namespace owl {

int64_t kv_rotation_block(DType t, int64_t head_dim) {
  if (t != DType::Q8_0 && t != DType::Q4_0) return 0;
  if (head_dim <= 0 || head_dim % 32 != 0) return 0;
  int64_t b = 32;
  while (head_dim % (2 * b) == 0) b *= 2;
  return b;
}

void hadamard_blocks(float* x, int64_t n, int64_t block) {
  const float norm = 1.0f / std::sqrt(static_cast<float>(block));
  for (int64_t base = 0; base < n; base += block) {
    float* v = x + base;
    // Butterflies over strides 1, 2, 4, ...: the Sylvester-ordered transform, then 1/sqrt(block).
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          const float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
    for (int64_t i = 0; i < block; ++i) v[i] *= norm;
  }
}

}  // namespace owl
