// UTF-8 helpers for the text layer: decoding one code point, encoding, and
// making arbitrary bytes valid UTF-8 (invalid sequences become U+FFFD).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace owl::text {

// Length of the valid UTF-8 sequence starting at s[i] (1-4), or 0 if the bytes
// there are not a complete, well-formed sequence (overlong, surrogate, > U+10FFFF, truncated).
size_t utf8_valid_len(std::string_view s, size_t i);

// Decodes the code point at s[i] (which must start a valid sequence), advancing i.
char32_t utf8_next(std::string_view s, size_t& i);

void utf8_append(std::string& out, char32_t cp);

bool utf8_is_valid(std::string_view s);

// Replaces each maximal invalid subpart (the WHATWG / Unicode "best practice"
// rule that Rust's from_utf8_lossy and JS TextDecoder also follow) with U+FFFD.
std::string utf8_sanitize(std::string_view s);

// For streaming: the number of bytes at the end of s that form an incomplete
// but still possibly valid UTF-8 sequence (0-3). Such bytes should wait for more input.
size_t utf8_incomplete_tail(std::string_view s);

}  // namespace owl::text
