#include "text/utf8.h"

namespace owl::text {

namespace {

// Accepted range of the second byte given the lead byte (Unicode Table 3-7);
// the remaining continuation bytes are always 0x80..0xBF.
bool second_byte_ok(uint8_t lead, uint8_t b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

size_t sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// How many bytes starting at s[i] form a prefix of a valid sequence (at least 1
// for a valid lead byte); used to size the maximal invalid subpart.
size_t valid_prefix(std::string_view s, size_t i, size_t& need) {
  uint8_t lead = static_cast<uint8_t>(s[i]);
  need = sequence_length(lead);
  if (need == 0) return 0;
  size_t k = 1;
  while (k < need && i + k < s.size()) {
    uint8_t b = static_cast<uint8_t>(s[i + k]);
    bool ok = (k == 1) ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++k;
  }
  return k;
}

}  // namespace

size_t utf8_valid_len(std::string_view s, size_t i) {
  size_t need = 0;
  size_t k = valid_prefix(s, i, need);
  return (need != 0 && k == need) ? need : 0;
}

char32_t utf8_next(std::string_view s, size_t& i) {
  uint8_t b0 = static_cast<uint8_t>(s[i]);
  size_t n = sequence_length(b0);
  char32_t cp;
  if (n <= 1) {
    cp = b0;
    n = 1;
  } else {
    cp = b0 & (0x7F >> n);
    for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  }
  i += n;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool utf8_is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_valid_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t need = 0;
    size_t k = valid_prefix(s, i, need);
    if (need != 0 && k == need) {
      out.append(s.data() + i, k);
      i += k;
    } else {
      out += "\xEF\xBF\xBD";
      i += (k == 0) ? 1 : k;
    }
  }
  return out;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence is cut short by the end.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    size_t i = s.size() - back;
    uint8_t b = static_cast<uint8_t>(s[i]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation byte: keep looking for the lead
    size_t need = 0;
    size_t k = valid_prefix(s, i, need);
    return (need > back && k == back) ? back : 0;
  }
  return 0;
}

}  // namespace owl::text
