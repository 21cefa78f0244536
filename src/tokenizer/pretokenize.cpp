// The split regexes as scanners. At each position the alternatives are tried in regex order and
// the first that matches wins, with the backtracking of the regex resolved by hand:
//   Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+      (Qwen2: \p{N} alone)
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
#include "tokenizer/pretokenize.h"

#include <cstdint>

#include "tokenizer/unicode.h"

namespace tca {

namespace {

struct Chars {
    std::vector<uint32_t> cps;
    std::vector<CharClass> cls;
    std::vector<size_t> offsets;  // [n + 1] byte offset of each code point, then text.size()

    size_t n() const { return cps.size(); }
    bool is(size_t i, CharClass c) const { return i < n() && cls[i] == c; }
    bool is_crlf(size_t i) const { return i < n() && (cps[i] == '\r' || cps[i] == '\n'); }
    // [^\s\p{L}\p{N}]
    bool is_other(size_t i) const { return is(i, CharClass::kOther); }
    size_t run(size_t i, CharClass c) const {
        while (is(i, c)) ++i;
        return i;
    }
};

Chars decode(std::string_view text) {
    Chars c;
    c.cps.reserve(text.size());
    c.offsets.reserve(text.size() + 1);
    size_t pos = 0;
    while (pos < text.size()) {
        c.offsets.push_back(pos);
        const uint32_t cp = next_code_point(text, pos);
        c.cps.push_back(cp);
        c.cls.push_back(char_class(cp));
    }
    c.offsets.push_back(text.size());
    return c;
}

uint32_t ascii_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

// 's|'t|'re|'ve|'m|'ll|'d at i; returns the end or 0 when none matches.
size_t match_contraction(const Chars& c, size_t i, bool ignore_case) {
    if (c.cps[i] != '\'' || i + 1 >= c.n()) return 0;
    auto at = [&](size_t k) { return ignore_case ? ascii_lower(c.cps[k]) : c.cps[k]; };
    const uint32_t a = at(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= c.n()) return 0;
    const uint32_t b = at(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

// \s+(?!\S)|\s+ at a whitespace char i: the whole run when it ends the text; otherwise the run
// but its last char (which the next piece takes as its leading space), or one char.
size_t match_space_run(const Chars& c, size_t i) {
    const size_t j = c.run(i, CharClass::kSpace);
    if (j == c.n()) return j;
    if (j - i >= 2) return j - 1;
    return j;
}

size_t next_llama3(const Chars& c, size_t i, size_t max_digits) {
    if (size_t e = match_contraction(c, i, /*ignore_case=*/true)) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.is(i, CharClass::kLetter)) return c.run(i, CharClass::kLetter);
    if (!c.is_crlf(i) && !c.is(i, CharClass::kNumber) && c.is(i + 1, CharClass::kLetter)) {
        return c.run(i + 1, CharClass::kLetter);
    }
    // \p{N}{1,max_digits}
    if (c.is(i, CharClass::kNumber)) {
        size_t j = i;
        while (j - i < max_digits && c.is(j, CharClass::kNumber)) ++j;
        return j;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    {
        size_t k = (c.cps[i] == ' ' && c.is_other(i + 1)) ? i + 1 : i;
        if (c.is_other(k)) {
            size_t j = c.run(k, CharClass::kOther);
            while (c.is_crlf(j)) ++j;
            return j;
        }
    }
    // Only whitespace is left here (every other char matched above).
    // \s*[\r\n]+ : up to and including the last \r or \n of the whitespace run.
    const size_t j = c.run(i, CharClass::kSpace);
    for (size_t p = j; p > i; --p) {
        if (c.is_crlf(p - 1)) return p;
    }
    return match_space_run(c, i);
}

size_t next_gpt2(const Chars& c, size_t i) {
    if (size_t e = match_contraction(c, i, /*ignore_case=*/false)) return e;
    //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
    const size_t k = (c.cps[i] == ' ' && i + 1 < c.n() && c.cls[i + 1] != CharClass::kSpace) ? i + 1 : i;
    if (c.cls[k] != CharClass::kSpace) return c.run(k, c.cls[k]);
    return match_space_run(c, i);
}

}  // namespace

std::vector<std::string_view> pre_tokenize(PreTokenizer pre, std::string_view text) {
    std::vector<std::string_view> pieces;
    if (text.empty()) return pieces;
    if (pre == PreTokenizer::kNone) {
        pieces.push_back(text);
        return pieces;
    }
    const Chars c = decode(text);
    size_t i = 0;
    while (i < c.n()) {
        size_t j = 0;
        switch (pre) {
            case PreTokenizer::kLlama3: j = next_llama3(c, i, 3); break;
            case PreTokenizer::kQwen2: j = next_llama3(c, i, 1); break;
            case PreTokenizer::kGpt2: j = next_gpt2(c, i); break;
            case PreTokenizer::kNone: j = c.n(); break;
        }
        TCA_ASSERT(j > i && j <= c.n(), "pre-tokenizer made no progress at %zu", i);
        pieces.push_back(text.substr(c.offsets[i], c.offsets[j] - c.offsets[i]));
        i = j;
    }
    return pieces;
}

}  // namespace tca
