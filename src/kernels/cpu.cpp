#include "kernels/vec_dot.h"

namespace owl::kernels {

bool cpu_has_avx2_fma_f16c() {
  static const bool ok = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
           __builtin_cpu_supports("bmi2");
#else
    return false;
#endif
  }();
  return ok;
}

}  // namespace owl::kernels
