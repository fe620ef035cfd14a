#include "tensor/tensor.h"

namespace owl {

std::string TensorView::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

}  // namespace owl
