#include "text/byte_level.h"

#include <array>

#include "text/utf8.h"

namespace owl::text {

namespace {

struct Tables {
  std::array<std::string, 256> chars;
  std::array<int16_t, 324> bytes;  // indexed by code point; the alphabet ends below U+0144
  Tables() {
    bytes.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      utf8_append(chars[b], cp);
      bytes[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_level_char(uint8_t b) { return tables().chars[b]; }

int byte_level_byte(char32_t cp) { return cp < tables().bytes.size() ? tables().bytes[cp] : -1; }

std::string byte_level_encode(std::string_view s) {
  const Tables& t = tables();
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) out += t.chars[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_decode(std::string_view s, std::string& out) {
  size_t start = out.size();
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_valid_len(s, i);
    int b = n ? byte_level_byte(utf8_next(s, i)) : -1;
    if (b < 0) {
      out.resize(start);
      return false;
    }
    out += static_cast<char>(b);
  }
  return true;
}

}  // namespace owl::text
