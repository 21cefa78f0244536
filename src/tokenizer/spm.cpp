// SpmEncoder (encoders.h): score-ordered bigram merging over UTF-8 characters, byte fallback.
#include <cstdio>
#include <queue>

#include "tokenizer/encoders.h"
#include "tokenizer/unicode.h"

namespace tca {

SpmEncoder::SpmEncoder(const VocabData& vocab, TokenIndex pieces, const TokenIndex& all)
    : vocab_(&vocab), pieces_(std::move(pieces)) {
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        byte_ids_[static_cast<size_t>(b)] = find_token(all, name);
    }
    // Whole-text merging keeps one queue entry per character: on long texts (750 KB) the heap's
    // cache misses cost ~10x. Segmenting at words is exact when no piece has U+2581 after
    // another character (true of Llama's SentencePiece vocabulary).
    constexpr std::string_view kSpace = "\xE2\x96\x81";
    split_at_words_ = true;
    for (const auto& [piece, id] : pieces_) {
        for (size_t p = piece.find(kSpace, 1); p != std::string::npos; p = piece.find(kSpace, p + 1)) {
            if (p < kSpace.size() || piece.compare(p - kSpace.size(), kSpace.size(), kSpace) != 0) {
                split_at_words_ = false;
            }
        }
    }
}

namespace {

struct Symbol {
    int prev;
    int next;
    size_t start;    // byte range in the text
    size_t len;      // 0: merged into its left neighbour
    int32_t id;      // token of the range, -1 for a character without one
};

// 16 bytes: the queue holds about one entry per input character and is the hot spot on long
// texts (cache misses in the heap), so it stays small. The token's length tells whether the
// two symbols still span exactly that token when the entry is popped.
struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    int32_t id;
};

struct BigramOrder {  // top = highest score, then leftmost
    bool operator()(const Bigram& a, const Bigram& b) const {
        if (a.score != b.score) return a.score < b.score;
        return a.left > b.left;
    }
};

}  // namespace

void SpmEncoder::encode(std::string_view text, std::vector<int32_t>& out) const {
    if (!split_at_words_) {
        encode_segment(text, out);
        return;
    }
    // Cut before every U+2581 that follows another character than U+2581: no piece spans such
    // a cut, so the segments merge independently and the result equals whole-text merging.
    constexpr std::string_view kSpace = "\xE2\x96\x81";
    size_t start = 0;
    for (size_t p = kSpace.size(); p < text.size(); ++p) {
        if (text.compare(p, kSpace.size(), kSpace) == 0 && text.compare(p - kSpace.size(), kSpace.size(), kSpace) != 0) {
            encode_segment(text.substr(start, p - start), out);
            start = p;
        }
    }
    encode_segment(text.substr(start), out);
}

void SpmEncoder::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<Symbol> syms;
    syms.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
        const size_t start = pos;
        next_code_point(text, pos);
        const int idx = static_cast<int>(syms.size());
        syms.push_back({idx - 1, idx + 1, start, pos - start, find_token(pieces_, text.substr(start, pos - start))});
    }
    if (syms.empty()) return;
    syms.back().next = -1;

    std::vector<Bigram> initial;
    auto make = [&](int left, int right, Bigram& bg) {
        if (left < 0 || right < 0) return false;
        const size_t len = syms[static_cast<size_t>(left)].len + syms[static_cast<size_t>(right)].len;
        const int32_t id = find_token(pieces_, text.substr(syms[static_cast<size_t>(left)].start, len));
        if (id < 0) return false;
        const float score = vocab_->scores.empty() ? 0.0f : vocab_->scores[static_cast<size_t>(id)];
        bg = {score, left, right, id};
        return true;
    };
    for (int i = 1; i < static_cast<int>(syms.size()); ++i) {
        Bigram bg{};
        if (make(i - 1, i, bg)) initial.push_back(bg);
    }
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue(BigramOrder{}, std::move(initial));
    auto try_add = [&](int left, int right) {
        Bigram bg{};
        if (make(left, right, bg)) queue.push(bg);
    };

    while (!queue.empty()) {
        const Bigram bg = queue.top();
        queue.pop();
        Symbol& l = syms[static_cast<size_t>(bg.left)];
        Symbol& r = syms[static_cast<size_t>(bg.right)];
        const size_t len = vocab_->tokens[static_cast<size_t>(bg.id)].size();
        if (l.len == 0 || r.len == 0 || l.len + r.len != len) continue;  // stale
        l.len = len;
        l.id = bg.id;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = bg.left;
        try_add(l.prev, bg.left);
        try_add(bg.left, l.next);
    }

    for (int i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
        const Symbol& s = syms[static_cast<size_t>(i)];
        if (s.id >= 0) {
            out.push_back(s.id);
            continue;
        }
        for (size_t k = 0; k < s.len; ++k) {  // byte fallback
            const int32_t b = byte_ids_[static_cast<uint8_t>(text[s.start + k])];
            if (b >= 0) {
                out.push_back(b);
            } else if (vocab_->unk_id >= 0) {
                out.push_back(vocab_->unk_id);
                break;  // one unk per character
            }
        }
    }
}

}  // namespace tca
