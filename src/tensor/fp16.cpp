#include "tensor/fp16.h"

#include <cmath>

namespace owl {

uint16_t f32_to_f16(float f) {
  uint32_t x = f32_to_bits(f);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return static_cast<uint16_t>(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
  if (absx >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds past 65504 -> inf
  if (absx < 0x38800000) {  // f16 subnormal or zero: value in units of 2^-24, nearest even
    float scaled = std::ldexp(std::fabs(f), 24);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  uint32_t e = (absx >> 23) - 127 + 15, m = absx & 0x7fffff;
  uint32_t h = e << 10 | m >> 13;
  uint32_t rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // carry may step into the exponent: correct
  return static_cast<uint16_t>(sign | h);
}

}  // namespace owl
