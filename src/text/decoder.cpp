#include "text/decoder.h"

#include "text/byte_level.h"
#include "text/utf8.h"

namespace owl::text {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> NN, else -1.
int byte_token_value(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

}  // namespace

std::string Decoder::piece(std::string_view token, bool is_added) const {
  std::string s(token);
  for (const Step& st : steps) {
    switch (st.kind) {
      case Kind::Replace: {
        if (st.from.empty() || s.find(st.from) == std::string::npos) break;
        std::string out;
        size_t last = 0, pos;
        while ((pos = s.find(st.from, last)) != std::string::npos) {
          out.append(s, last, pos - last);
          out += st.to;
          last = pos + st.from.size();
        }
        out.append(s, last, std::string::npos);
        s.swap(out);
        break;
      }
      case Kind::ByteFallback: {
        int b = byte_token_value(s);
        if (b >= 0) s.assign(1, static_cast<char>(b));
        break;
      }
      case Kind::ByteLevel: {
        if (is_added) break;
        std::string out;
        if (byte_level_decode(s, out)) s.swap(out);  // characters outside the alphabet: keep the text
        break;
      }
    }
  }
  return s;
}

std::string Decoder::finish(std::string bytes) const {
  size_t b = 0, e = bytes.size();
  for (size_t k = 0; k < strip_start && b < e && bytes[b] == strip_char; ++k) ++b;
  for (size_t k = 0; k < strip_stop && e > b && bytes[e - 1] == strip_char; ++k) --e;
  std::string_view v(bytes.data() + b, e - b);
  if (utf8_is_valid(v)) return std::string(v);
  return utf8_sanitize(v);
}

}  // namespace owl::text
