// BpeEncoder (encoders.h): byte-level BPE with merges ranked by their order in the file.
#include <queue>

#include "tokenizer/encoders.h"
#include "tokenizer/unicode.h"

namespace tca {

Result<BpeEncoder> BpeEncoder::create(const VocabData& vocab, const TokenIndex& index) {
    BpeEncoder enc;
    enc.vocab_ = &vocab;
    enc.index_ = &index;
    const char* src = vocab.source.empty() ? "vocab" : vocab.source.c_str();
    for (int b = 0; b < 256; ++b) {
        const std::string& ch = byte_to_unicode(static_cast<uint8_t>(b));
        const int32_t id = find_token(index, ch);
        if (id < 0) return data_loss("%s: byte-level BPE vocabulary lacks the token for byte 0x%02X", src, b);
        enc.byte_ids_[static_cast<size_t>(b)] = id;
    }
    const size_t n_merges = vocab.merges.empty() ? vocab.merge_pairs.size() : vocab.merges.size();
    if (n_merges > static_cast<size_t>(INT32_MAX)) return data_loss("%s: too many merges", src);
    enc.merges_.reserve(n_merges);
    std::string joined;
    for (size_t i = 0; i < n_merges; ++i) {
        std::string_view left;
        std::string_view right;
        if (vocab.merges.empty()) {
            left = vocab.merge_pairs[i].first;
            right = vocab.merge_pairs[i].second;
        } else {
            const std::string& m = vocab.merges[i];
            // "left right": the separator is the first space after the first character.
            const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
            if (sp == std::string::npos || sp + 1 >= m.size()) {
                return data_loss("%s: merges[%zu]: expected \"a b\", got \"%.40s\"", src, i, m.c_str());
            }
            left = std::string_view(m).substr(0, sp);
            right = std::string_view(m).substr(sp + 1);
        }
        if (left.empty() || right.empty()) return data_loss("%s: merges[%zu]: empty part", src, i);
        const int32_t l = find_token(index, left);
        const int32_t r = find_token(index, right);
        joined.assign(left);
        joined.append(right);
        const int32_t res = find_token(index, joined);
        // A merge whose parts or result are not tokens can never produce a token: skip it.
        if (l < 0 || r < 0 || res < 0) continue;
        enc.merges_.try_emplace(pair_key(l, r), Merge{static_cast<int32_t>(i), res});
    }
    return enc;
}

namespace {

struct Sym {
    int prev;
    int next;
    int32_t id;  // -1: merged away
};

struct Candidate {
    int32_t rank;
    int left;
    int right;
    int32_t left_id;
    int32_t right_id;
    int32_t result;
};

struct CandidateOrder {  // top = lowest rank, then leftmost
    bool operator()(const Candidate& a, const Candidate& b) const {
        if (a.rank != b.rank) return a.rank > b.rank;
        return a.left > b.left;
    }
};

}  // namespace

void BpeEncoder::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (vocab_->ignore_merges) {
        std::string mapped;
        for (char ch : word) mapped += byte_to_unicode(static_cast<uint8_t>(ch));
        const int32_t whole = find_token(*index_, mapped);
        if (whole >= 0) {
            out.push_back(whole);
            return;
        }
    }
    const int n = static_cast<int>(word.size());
    if (n == 1) {
        out.push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
        return;
    }
    std::vector<Sym> syms(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        syms[static_cast<size_t>(i)] = {i - 1, i + 1 < n ? i + 1 : -1,
                                        byte_ids_[static_cast<uint8_t>(word[static_cast<size_t>(i)])]};
    }
    std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const int32_t l = syms[static_cast<size_t>(left)].id;
        const int32_t r = syms[static_cast<size_t>(right)].id;
        auto it = merges_.find(pair_key(l, r));
        if (it == merges_.end()) return;
        queue.push({it->second.rank, left, right, l, r, it->second.result});
    };
    for (int i = 1; i < n; ++i) try_add(i - 1, i);
    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        Sym& l = syms[static_cast<size_t>(c.left)];
        Sym& r = syms[static_cast<size_t>(c.right)];
        // Stale when either side was merged since the candidate was queued.
        if (l.id != c.left_id || r.id != c.right_id || l.next != c.right) continue;
        l.id = c.result;
        l.next = r.next;
        r.id = -1;
        r.prev = r.next = -1;
        if (l.next >= 0) syms[static_cast<size_t>(l.next)].prev = c.left;
        try_add(l.prev, c.left);
        try_add(c.left, l.next);
    }
    for (int i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) out.push_back(syms[static_cast<size_t>(i)].id);
}

}  // namespace tca
