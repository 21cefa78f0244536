// UTF-8, ICU character classes and NFC, and the GPT-2 byte mapping (see unicode.h).
#include "tokenizer/unicode.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <array>
#include <vector>

namespace tca {

uint32_t next_code_point(std::string_view text, size_t& pos) {
    const auto b0 = static_cast<uint8_t>(text[pos]);
    if (b0 < 0x80) {
        ++pos;
        return b0;
    }
    int len = 0;
    uint32_t cp = 0;
    uint32_t min_cp = 0;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2, cp = b0 & 0x1Fu, min_cp = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3, cp = b0 & 0x0Fu, min_cp = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4, cp = b0 & 0x07u, min_cp = 0x10000;
    } else {
        ++pos;
        return kReplacementChar;
    }
    if (pos + static_cast<size_t>(len) > text.size()) {
        ++pos;
        return kReplacementChar;
    }
    for (int k = 1; k < len; ++k) {
        const auto b = static_cast<uint8_t>(text[pos + static_cast<size_t>(k)]);
        if ((b & 0xC0) != 0x80) {
            ++pos;
            return kReplacementChar;
        }
        cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        ++pos;
        return kReplacementChar;
    }
    pos += static_cast<size_t>(len);
    return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
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

bool is_valid_utf8(std::string_view text) {
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t start = pos;
        if (next_code_point(text, pos) == kReplacementChar) {
            // A real U+FFFD is three bytes; a decoding error consumes one.
            if (pos - start != 3) return false;
        }
    }
    return true;
}

CharClass char_class(uint32_t cp) {
    if (cp < 0x80) {  // ASCII fast path, same answers as ICU
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CharClass::kLetter;
        if (cp >= '0' && cp <= '9') return CharClass::kNumber;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
        return CharClass::kOther;
    }
    const auto c = static_cast<UChar32>(cp);
    if (u_isUWhiteSpace(c)) return CharClass::kSpace;
    switch (u_charType(c)) {
        case U_UPPERCASE_LETTER:
        case U_LOWERCASE_LETTER:
        case U_TITLECASE_LETTER:
        case U_MODIFIER_LETTER:
        case U_OTHER_LETTER: return CharClass::kLetter;
        case U_DECIMAL_DIGIT_NUMBER:
        case U_LETTER_NUMBER:
        case U_OTHER_NUMBER: return CharClass::kNumber;
        default: return CharClass::kOther;
    }
}

std::string nfc_normalize(std::string_view text) {
    if (text.empty()) return {};
    // ASCII is always NFC.
    bool ascii = true;
    for (char ch : text) ascii = ascii && static_cast<uint8_t>(ch) < 0x80;
    if (ascii) return std::string(text);
    // Invalid UTF-8 is left byte for byte: normalizing would replace the bad bytes.
    if (!is_valid_utf8(text)) return std::string(text);

    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2* nfc = unorm2_getNFCInstance(&err);
    if (U_FAILURE(err)) return std::string(text);
    // UTF-8 -> UTF-16 (invalid bytes -> U+FFFD); a UTF-16 unit per byte is always enough.
    std::vector<UChar> in(text.size() + 1);
    int32_t in_len = 0;
    u_strFromUTF8WithSub(in.data(), static_cast<int32_t>(in.size()), &in_len, text.data(),
                         static_cast<int32_t>(text.size()), 0xFFFD, nullptr, &err);
    if (U_FAILURE(err)) return std::string(text);
    if (unorm2_isNormalized(nfc, in.data(), in_len, &err) && U_SUCCESS(err)) {
        return std::string(text);
    }
    err = U_ZERO_ERROR;
    int32_t cap = in_len * 3 + 16;  // NFC expands by at most 3x
    std::vector<UChar> norm(static_cast<size_t>(cap));
    const int32_t norm_len = unorm2_normalize(nfc, in.data(), in_len, norm.data(), cap, &err);
    if (U_FAILURE(err)) return std::string(text);
    std::string out;
    out.reserve(static_cast<size_t>(norm_len) * 3);
    for (int32_t i = 0; i < norm_len;) {
        UChar32 c = 0;
        U16_NEXT(norm.data(), i, norm_len, c);
        append_utf8(out, static_cast<uint32_t>(c));
    }
    return out;
}

namespace {
struct ByteMap {
    std::array<std::string, 256> to_unicode;
    std::array<int16_t, 324> to_byte;  // indexed by code point < 0x144
    ByteMap() {
        to_byte.fill(-1);
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            const uint32_t cp = printable ? b : next++;
            append_utf8(to_unicode[b], cp);
            to_byte[cp] = static_cast<int16_t>(b);
        }
    }
};
const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t byte) { return byte_map().to_unicode[byte]; }

int unicode_to_byte(uint32_t cp) {
    if (cp >= byte_map().to_byte.size()) return -1;
    return byte_map().to_byte[cp];
}

}  // namespace tca
