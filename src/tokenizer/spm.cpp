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
}

namespace {

struct Symbol {
    int prev;
    int next;
    size_t start;    // byte range in the text
    size_t len;      // 0: merged into its left neighbour
    int32_t id;      // token of the range, -1 for a character without one
};

struct Bigram {
    int left;
    int right;
    float score;
    size_t len;  // combined length when queued; a mismatch later means stale
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

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const size_t len = syms[static_cast<size_t>(left)].len + syms[static_cast<size_t>(right)].len;
        const int32_t id = find_token(pieces_, text.substr(syms[static_cast<size_t>(left)].start, len));
        if (id < 0) return;
        const float score = vocab_->scores.empty() ? 0.0f : vocab_->scores[static_cast<size_t>(id)];
        queue.push({left, right, score, len, id});
    };
    for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram bg = queue.top();
        queue.pop();
        Symbol& l = syms[static_cast<size_t>(bg.left)];
        Symbol& r = syms[static_cast<size_t>(bg.right)];
        if (l.len == 0 || r.len == 0 || l.len + r.len != bg.len) continue;  // stale
        l.len += r.len;
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
