// UTF-8 decoding/encoding, Unicode classes for the pre-tokenizers (ICU character properties),
// NFC normalization (ICU), and GPT-2's byte <-> printable-character mapping for byte-level BPE.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tca {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Decodes the code point at text[pos] and advances pos. Invalid or truncated sequences,
// overlongs and surrogates decode as U+FFFD consuming one byte, so every byte is covered.
uint32_t next_code_point(std::string_view text, size_t& pos);
void append_utf8(std::string& out, uint32_t cp);
// True when text is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// The classes the split regexes use: \p{L}, \p{N}, \s (Unicode White_Space).
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };
CharClass char_class(uint32_t cp);

// Unicode NFC of `text`; text that is not valid UTF-8 is returned unchanged.
std::string nfc_normalize(std::string_view text);

// GPT-2 byte-level mapping: every byte to one printable code point (0x21..0x7E, 0xA1..0xAC and
// 0xAE..0xFF map to themselves, the others to 0x100 + n in byte order), as UTF-8.
const std::string& byte_to_unicode(uint8_t byte);
// The byte a mapped code point stands for, or -1 when cp is not an image of the mapping.
int unicode_to_byte(uint32_t cp);

}  // namespace tca
