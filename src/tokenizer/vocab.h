// VocabData: a tokenizer vocabulary independent of its file format (tokenizer.json, GGUF), and
// the small enums that describe it. Loaders fill it; Tokenizer::create validates and indexes it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tca {

// spm: SentencePiece-style (llama.cpp "llama": scores, U+2581 spaces, <0xNN> byte fallback).
// bpe: byte-level BPE (llama.cpp "gpt2", Hugging Face BPE + ByteLevel): ranked merges.
enum class TokenizerKind { kSpm, kBpe };

// Token types with GGUF's tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,       // special tokens (<s>, <|eot_id|>): matched in text only when asked
    kUserDefined = 4,   // added tokens always matched in text, emitted as written
    kUnused = 5,        // holes and reserved slots: never produced by encode
    kByte = 6,          // SPM byte fallback <0xNN>
};

// The regex-defined split applied before byte-level BPE.
enum class PreTokenizer {
    kNone,    // SPM: no pre-tokenization
    kGpt2,    // 's|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kLlama3,  // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
    kQwen2,   // as kLlama3 with \p{N} (single digits)
};

const char* tokenizer_kind_name(TokenizerKind kind);
const char* pre_tokenizer_name(PreTokenizer pre);

struct VocabData {
    TokenizerKind kind = TokenizerKind::kBpe;
    PreTokenizer pre = PreTokenizer::kNone;
    std::vector<std::string> tokens;     // [n_vocab] token text (BPE: byte-level encoded)
    std::vector<float> scores;           // [n_vocab] SPM merge scores; empty for BPE
    std::vector<TokenType> token_types;  // [n_vocab]; empty means all kNormal
    std::vector<std::string> merges;     // BPE: "left right" by rank (0 = first applied)
    // Merges given as pairs (tokenizer.json [a, b] form, parts may hold spaces); used when
    // `merges` is empty. Exactly one of the two forms is filled by a loader.
    std::vector<std::pair<std::string, std::string>> merge_pairs;
    int32_t bos_id = -1;  // -1: none
    int32_t eos_id = -1;
    int32_t unk_id = -1;
    int32_t pad_id = -1;
    std::vector<int32_t> eog_ids;  // end-of-generation ids besides eos (e.g. <|eot_id|>)
    bool add_bos = false;          // default for Tokenizer::encode_default
    bool add_space_prefix = true;  // SPM: prepend a space to the text (llama.cpp default)
    bool ignore_merges = false;    // BPE: a pre-token that is a whole token is emitted as is
    bool normalize_nfc = false;    // apply Unicode NFC before pre-tokenizing (Qwen2/3 json)
    std::string source;            // file name used in messages

    int32_t n_vocab() const { return static_cast<int32_t>(tokens.size()); }
    TokenType type(int32_t id) const {
        return token_types.empty() ? TokenType::kNormal : token_types[static_cast<size_t>(id)];
    }
};

// Checks sizes and ids (a loader's output is untrusted until this passes). Messages start
// with `vocab.source`.
Status validate_vocab(const VocabData& vocab);

// Parses a GGUF-style pre-tokenizer name ("llama-bpe", "llama3", "qwen2", "default", "gpt2").
Result<PreTokenizer> pre_tokenizer_from_name(std::string_view name);

}  // namespace tca
