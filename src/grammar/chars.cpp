#include "grammar/chars.h"

#include <algorithm>

namespace owl::grammar {

CharSet CharSet::range(uint32_t lo, uint32_t hi) {
  CharSet s;
  s.add(lo, hi);
  return s;
}

CharSet CharSet::any() {
  CharSet s;
  s.add(0, 0xD7FF);
  s.add(0xE000, kMaxCodePoint);
  return s;
}

void CharSet::add(uint32_t lo, uint32_t hi) {
  if (lo > hi) return;
  ranges_.emplace_back(lo, std::min(hi, kMaxCodePoint));
  normalize();
}

void CharSet::add(const CharSet& o) {
  ranges_.insert(ranges_.end(), o.ranges_.begin(), o.ranges_.end());
  normalize();
}

void CharSet::normalize() {
  std::sort(ranges_.begin(), ranges_.end());
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (auto r : ranges_) {
    if (!out.empty() && r.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, r.second);
    } else {
      out.push_back(r);
    }
  }
  ranges_ = std::move(out);
}

CharSet CharSet::complement() const {
  CharSet out;
  uint32_t next = 0;
  for (auto [lo, hi] : ranges_) {
    if (lo > next) out.ranges_.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodePoint) out.ranges_.emplace_back(next, kMaxCodePoint);
  // Surrogates are not characters.
  CharSet no_sur;
  for (auto [lo, hi] : out.ranges_) {
    if (hi < 0xD800 || lo > 0xDFFF) {
      no_sur.ranges_.emplace_back(lo, hi);
      continue;
    }
    if (lo < 0xD800) no_sur.ranges_.emplace_back(lo, 0xD7FF);
    if (hi > 0xDFFF) no_sur.ranges_.emplace_back(0xE000, hi);
  }
  return no_sur;
}

void append_utf8(std::string& out, uint32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

namespace {

// UTF-8 byte sequences of the code points lo..hi (all of one encoded length), split so
// that each piece is a sequence of byte ranges.
void utf8_ranges(ExprPool& pool, uint32_t lo, uint32_t hi, std::vector<ExprId>& out) {
  static constexpr uint32_t kLimits[] = {0x7F, 0x7FF, 0xFFFF, kMaxCodePoint};
  for (int i = 0; i < 3; ++i) {
    if (lo <= kLimits[i] && hi > kLimits[i]) {
      utf8_ranges(pool, lo, kLimits[i], out);
      utf8_ranges(pool, kLimits[i] + 1, hi, out);
      return;
    }
  }
  if (hi < 0x80) {
    out.push_back(pool.bytes(ByteSet::range(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi))));
    return;
  }
  for (int i = 1; i < 4; ++i) {
    uint32_t m = (uint32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_ranges(pool, lo, lo | m, out);
        utf8_ranges(pool, (lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_ranges(pool, lo, (hi & ~m) - 1, out);
        utf8_ranges(pool, hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  append_utf8(a, lo);
  append_utf8(b, hi);
  std::vector<ExprId> seq;
  for (size_t i = 0; i < a.size(); ++i)
    seq.push_back(pool.bytes(ByteSet::range(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]))));
  out.push_back(pool.seq(std::move(seq)));
}

std::string json_escape_char(uint32_t c) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      break;
  }
  static const char* hex = "0123456789abcdef";
  std::string s = "\\u00";
  s.push_back(hex[c >> 4]);
  s.push_back(hex[c & 15]);
  return s;
}

}  // namespace

ExprId char_expr(ExprPool& pool, const CharSet& set, CharEncoding enc) {
  std::vector<ExprId> alts;
  ByteSet direct;
  for (auto [lo, hi] : set.ranges()) {
    for (uint32_t c = lo; c <= hi && c < 0x80; ++c) {
      bool escaped = enc == CharEncoding::kJsonString && (c < 0x20 || c == '"' || c == '\\');
      if (escaped) {
        alts.push_back(pool.literal(json_escape_char(c)));
      } else {
        direct.add(static_cast<uint8_t>(c));
      }
    }
    if (hi >= 0x80) utf8_ranges(pool, std::max<uint32_t>(lo, 0x80), hi, alts);
  }
  if (!direct.empty()) alts.push_back(pool.bytes(direct));
  return pool.alt(std::move(alts));
}

}  // namespace owl::grammar
