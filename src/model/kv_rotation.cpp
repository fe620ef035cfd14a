#include "model/kv_rotation.h"

#include "kernels/kernels.h"

namespace owl {

int64_t kv_rotation_block(DType t, int64_t head_dim) {
  if (t != DType::Q8_0 && t != DType::Q4_0) return 0;
  if (head_dim <= 0 || head_dim % 32 != 0) return 0;
  int64_t b = 32;
  while (head_dim % (2 * b) == 0) b *= 2;
  return b;
}

void hadamard_blocks(float* x, int64_t n, int64_t block) { kernels::hadamard_blocks(x, n, block); }

}  // namespace owl
