#include <algorithm>
#include <atomic>

#include "kernels/kernels.h"
#include "kernels/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace owl::kernels {

// CPUID directly (not __builtin_cpu_supports): clang 14 does not know the "f16c"
// feature name, and the fuzz builds use clang. Also checks that the OS saves the
// YMM registers (OSXSAVE + XCR0), without which AVX instructions fault.
bool cpu_has_avx2_fma_f16c() {
  static const bool ok = [] {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return false;  // XMM and YMM state enabled
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
    return avx2 && bmi2;
#else
    return false;
#endif
  }();
  return ok;
}

// AVX-512 VNNI with 256-bit vectors (AVX512VL): vpdpbusd on ymm registers. The OS must save
// the opmask and upper ZMM state (XCR0 bits 5-7) as well, or EVEX instructions fault.
bool cpu_has_avx512_vnni() {
  static const bool ok = [] {
#if defined(__x86_64__) || defined(__i386__)
    if (!cpu_has_avx2_fma_f16c()) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31), vnni = c & (1u << 11);
    if (!(f && bw && vl && vnni)) return false;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0xE6) == 0xE6;
#else
    return false;
#endif
  }();
  return ok;
}

// AVX-512 VBMI (byte permutes, multishift) on top of the above: Ice Lake, Zen 4 and later have
// it, Skylake-X and Cascade Lake do not.
bool cpu_has_avx512_vbmi() {
  static const bool ok = [] {
#if defined(__x86_64__) || defined(__i386__)
    if (!cpu_has_avx512_vnni()) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (c & (1u << 1)) != 0;
#else
    return false;
#endif
  }();
  return ok;
}

bool cpu_is_intel() {
  static const bool intel = [] {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    return b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;  // "Genu" "ineI" "ntel"
#else
    return false;
#endif
  }();
  return intel;
}

Isa best_isa() { return cpu_has_avx512_vnni() ? Isa::Avx512Vnni : cpu_has_avx2_fma_f16c() ? Isa::Avx2 : Isa::Scalar; }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Vnni:
      return "avx2+avx512vnni";
    case Isa::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

std::vector<Isa> available_isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni})
    if (i <= best_isa()) v.push_back(i);
  return v;
}

bool fast_paths_available() { return best_isa() >= Isa::Avx2; }

namespace {
// The one process-wide kernel switch (kernels.h): best_isa() until set_default_isa.
std::atomic<Isa>& default_isa_ref() {
  static std::atomic<Isa> isa{best_isa()};
  return isa;
}
}  // namespace

void set_default_isa(Isa isa) { default_isa_ref().store(std::min(isa, best_isa())); }
Isa default_isa() { return default_isa_ref().load(std::memory_order_relaxed); }

}  // namespace owl::kernels
