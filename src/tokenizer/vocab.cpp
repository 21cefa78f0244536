// VocabData validation and the enum names/parsers of vocab.h.
#include "tokenizer/vocab.h"

#include <cmath>

namespace tca {

namespace {
// Larger than any real vocabulary (Gemma: 262K); keeps a hostile file from sizing tables.
constexpr int64_t kMaxVocab = int64_t{1} << 24;
}  // namespace

const char* tokenizer_kind_name(TokenizerKind kind) {
    switch (kind) {
        case TokenizerKind::kSpm: return "spm";
        case TokenizerKind::kBpe: return "bpe";
    }
    return "?";
}

const char* pre_tokenizer_name(PreTokenizer pre) {
    switch (pre) {
        case PreTokenizer::kNone: return "none";
        case PreTokenizer::kGpt2: return "gpt2";
        case PreTokenizer::kLlama3: return "llama3";
        case PreTokenizer::kQwen2: return "qwen2";
    }
    return "?";
}

Result<PreTokenizer> pre_tokenizer_from_name(std::string_view name) {
    if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return PreTokenizer::kLlama3;
    if (name == "qwen2") return PreTokenizer::kQwen2;
    if (name == "default" || name == "gpt2" || name == "gpt-2") return PreTokenizer::kGpt2;
    return unsupported("pre-tokenizer \"%.*s\" (supported: llama-bpe, llama3, qwen2, default, gpt2)",
                       static_cast<int>(name.size()), name.data());
}

Status validate_vocab(const VocabData& vocab) {
    const char* src = vocab.source.empty() ? "vocab" : vocab.source.c_str();
    const int64_t n = static_cast<int64_t>(vocab.tokens.size());
    if (n == 0) return data_loss("%s: empty vocabulary", src);
    if (n > kMaxVocab) {
        return data_loss("%s: vocabulary of %lld tokens exceeds the limit %lld", src,
                         static_cast<long long>(n), static_cast<long long>(kMaxVocab));
    }
    if (!vocab.scores.empty() && static_cast<int64_t>(vocab.scores.size()) != n) {
        return data_loss("%s: %zu scores for %lld tokens", src, vocab.scores.size(),
                         static_cast<long long>(n));
    }
    if (!vocab.token_types.empty() && static_cast<int64_t>(vocab.token_types.size()) != n) {
        return data_loss("%s: %zu token types for %lld tokens", src, vocab.token_types.size(),
                         static_cast<long long>(n));
    }
    for (size_t i = 0; i < vocab.token_types.size(); ++i) {
        const auto t = static_cast<int32_t>(vocab.token_types[i]);
        if (t < static_cast<int32_t>(TokenType::kNormal) || t > static_cast<int32_t>(TokenType::kByte)) {
            return data_loss("%s: token %zu: token type %d not in [1, 6]", src, i, t);
        }
    }
    for (size_t i = 0; i < vocab.scores.size(); ++i) {
        if (!std::isfinite(vocab.scores[i])) return data_loss("%s: token %zu: score is not finite", src, i);
    }
    auto check_id = [&](const char* what, int32_t id) -> Status {
        if (id < -1 || id >= n) {
            return data_loss("%s: %s %d out of range [0, %lld)", src, what, id, static_cast<long long>(n));
        }
        return Status::ok_status();
    };
    TCA_RETURN_IF_ERROR(check_id("bos id", vocab.bos_id));
    TCA_RETURN_IF_ERROR(check_id("eos id", vocab.eos_id));
    TCA_RETURN_IF_ERROR(check_id("unk id", vocab.unk_id));
    TCA_RETURN_IF_ERROR(check_id("pad id", vocab.pad_id));
    for (int32_t id : vocab.eog_ids) {
        TCA_RETURN_IF_ERROR(check_id("end-of-generation id", id));
        if (id < 0) return data_loss("%s: end-of-generation id %d", src, id);
    }
    if (vocab.kind == TokenizerKind::kBpe && vocab.pre == PreTokenizer::kNone) {
        return data_loss("%s: byte-level BPE needs a pre-tokenizer", src);
    }
    if (vocab.kind == TokenizerKind::kSpm && (!vocab.merges.empty() || !vocab.merge_pairs.empty())) {
        return unsupported("%s: SPM vocabulary with merges", src);
    }
    if (!vocab.merges.empty() && !vocab.merge_pairs.empty()) {
        return data_loss("%s: merges given in both string and pair form", src);
    }
    return Status::ok_status();
}

}  // namespace tca
