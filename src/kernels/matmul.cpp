#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "tensor/quants.h"

namespace owl::kernels {


void dequantize_row(DType t, const void* src, float* dst, int64_t n) { dequantize_row_ref(t, src, dst, n); }

void matmul(const TensorView& W, const float* X, int64_t n_rows, float* Y) {
  const int64_t in = W.ne[0], out = W.ne[1];
  default_pool().parallel_for(out, [&](int64_t o0, int64_t o1, int) {
    std::vector<float> w(static_cast<size_t>(in));
    for (int64_t o = o0; o < o1; ++o) {
      dequantize_row(W.type, W.row(o), w.data(), in);
      for (int64_t r = 0; r < n_rows; ++r) {
        const float* x = X + r * in;
        float acc = 0;
        for (int64_t i = 0; i < in; ++i) acc += w[i] * x[i];
        Y[r * out + o] = acc;
      }
    }
  });
}

TensorView matrix_slice(const TensorView& W, int64_t i2) {
  TensorView v = W;
  v.n_dims = 2;
  v.ne = {W.ne[0], W.ne[1], 1, 1};
  v.data = static_cast<const uint8_t*>(W.data) + static_cast<size_t>(i2) * v.n_bytes();
  return v;
}

}  // namespace owl::kernels
