// Internal to src/tokenizer: the two model encoders behind Tokenizer (SPM score-based bigram
// merging with byte fallback; byte-level BPE with ranked merges) and the text -> id index.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "tokenizer/vocab.h"

namespace tca {

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Token text -> id, looked up with string_view.
using TokenIndex = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

inline int32_t find_token(const TokenIndex& index, std::string_view text) {
    auto it = index.find(text);
    return it == index.end() ? -1 : it->second;
}

// SentencePiece BPE as llama.cpp's "llama" vocab runs it: start from UTF-8 characters, merge the
// adjacent pair whose concatenation is the highest-scoring token (ties: leftmost) until none is
// left; characters without a token become their <0xNN> byte tokens (or unk).
class SpmEncoder {
public:
    // `pieces`: the tokens merging may produce (normal and user-defined).
    SpmEncoder(const VocabData& vocab, TokenIndex pieces, const TokenIndex& all);
    // `text` already has spaces replaced by U+2581.
    void encode(std::string_view text, std::vector<int32_t>& out) const;

private:
    void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

    const VocabData* vocab_;
    TokenIndex pieces_;
    std::array<int32_t, 256> byte_ids_{};  // <0xNN> tokens, -1 when absent
    bool split_at_words_ = false;           // see encode()
};

// Byte-level BPE on one pre-token: bytes become GPT-2 characters, then the lowest-ranked merge
// among adjacent symbols is applied (ties: leftmost) until no pair has a merge.
class BpeEncoder {
public:
    static Result<BpeEncoder> create(const VocabData& vocab, const TokenIndex& index);
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;

private:
    struct Merge {
        int32_t rank;
        int32_t result;  // token id of left+right
    };
    static uint64_t pair_key(int32_t l, int32_t r) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
    }

    const VocabData* vocab_ = nullptr;
    const TokenIndex* index_ = nullptr;
    std::unordered_map<uint64_t, Merge> merges_;
    std::array<int32_t, 256> byte_ids_{};  // token of each byte's GPT-2 character
};

}  // namespace tca
