// GPT-2's byte-level alphabet: every byte maps to one printable code point
// (printable Latin-1 bytes to themselves, the rest to U+0100 upwards), so
// byte-level BPE vocabularies are ordinary strings ("Ġ" is the space byte).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace owl::text {

// UTF-8 text of the code point that stands for byte b.
const std::string& byte_level_char(uint8_t b);
// The byte a code point stands for, or -1 if it is not in the alphabet.
int byte_level_byte(char32_t cp);
// Maps every byte of s to its byte-level character.
std::string byte_level_encode(std::string_view s);
// Maps a byte-level string back to bytes; false (out unchanged) if a character is outside the alphabet.
bool byte_level_decode(std::string_view s, std::string& out);

}  // namespace owl::text
