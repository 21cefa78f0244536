// vocab_from_gguf (gguf_vocab.h) and Tokenizer::from_gguf, over model/gguf_reader.h.
#include "tokenizer/gguf_vocab.h"

#include "model/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace tca {

namespace {

// Prefixes a reader Status with the file name unless it already starts with it.
Status named(const GgufFile& gguf, const Status& s) {
    if (s.message().rfind(gguf.name(), 0) == 0) return s;
    return Status(s.code(), gguf.name() + ": " + s.message());
}

// Optional token id: absent -> -1; 0xFFFFFFFF (llama.cpp's "none") -> -1.
Result<int32_t> optional_id(const GgufFile& gguf, const char* key, int64_t n_vocab) {
    if (!gguf.has_kv(key)) return -1;
    auto r = gguf.get_u64(key);
    if (!r.ok()) {
        // Some writers store ids as signed; -1 means none.
        auto s = gguf.get_i64(key);
        if (s.ok() && *s == -1) return -1;
        return named(gguf, r.status());
    }
    const uint64_t v = *r;
    if (v == 0xFFFFFFFFull || v == ~0ull) return -1;
    if (v >= static_cast<uint64_t>(n_vocab)) {
        return data_loss("%s: %s: %llu out of range [0, %lld)", gguf.name().c_str(), key,
                         static_cast<unsigned long long>(v), static_cast<long long>(n_vocab));
    }
    return static_cast<int32_t>(v);
}

}  // namespace

Result<VocabData> vocab_from_gguf(const GgufFile& gguf) {
    const std::string& name = gguf.name();
    VocabData v;
    v.source = name;
    auto model = gguf.get_string("tokenizer.ggml.model");
    if (!model.ok()) return named(gguf, model.status());
    if (*model == "llama") {
        v.kind = TokenizerKind::kSpm;
        v.pre = PreTokenizer::kNone;
    } else if (*model == "gpt2") {
        v.kind = TokenizerKind::kBpe;
    } else {
        return unsupported("%s: tokenizer.ggml.model: \"%s\" (supported: llama, gpt2)", name.c_str(),
                           model->c_str());
    }

    auto tokens = gguf.get_string_array("tokenizer.ggml.tokens");
    if (!tokens.ok()) return named(gguf, tokens.status());
    v.tokens = std::move(tokens).value();
    const auto n = static_cast<int64_t>(v.tokens.size());
    if (n == 0) return data_loss("%s: tokenizer.ggml.tokens: empty", name.c_str());

    if (gguf.has_kv("tokenizer.ggml.scores")) {
        auto scores = gguf.get_f32_array("tokenizer.ggml.scores");
        if (!scores.ok()) return named(gguf, scores.status());
        if (static_cast<int64_t>(scores->size()) != n) {
            return data_loss("%s: tokenizer.ggml.scores: %zu values for %lld tokens", name.c_str(), scores->size(),
                             static_cast<long long>(n));
        }
        v.scores = std::move(scores).value();
    }
    if (gguf.has_kv("tokenizer.ggml.token_type")) {
        auto types = gguf.get_int_array("tokenizer.ggml.token_type");
        if (!types.ok()) return named(gguf, types.status());
        if (static_cast<int64_t>(types->size()) != n) {
            return data_loss("%s: tokenizer.ggml.token_type: %zu values for %lld tokens", name.c_str(),
                             types->size(), static_cast<long long>(n));
        }
        v.token_types.resize(types->size());
        for (size_t i = 0; i < types->size(); ++i) {
            const int64_t t = (*types)[i];
            if (t < 1 || t > 6) {
                return data_loss("%s: tokenizer.ggml.token_type[%zu]: %lld not in [1, 6]", name.c_str(), i,
                                 static_cast<long long>(t));
            }
            v.token_types[i] = static_cast<TokenType>(t);
        }
    }
    if (v.kind == TokenizerKind::kBpe) {
        auto merges = gguf.get_string_array("tokenizer.ggml.merges");
        if (!merges.ok()) return named(gguf, merges.status());
        v.merges = std::move(merges).value();
        auto pre = gguf.get_string_or("tokenizer.ggml.pre", "default");
        if (!pre.ok()) return named(gguf, pre.status());
        auto parsed = pre_tokenizer_from_name(*pre);
        if (!parsed.ok()) return Status(parsed.status().code(), name + ": tokenizer.ggml.pre: " + parsed.status().message());
        v.pre = *parsed;
        // Llama 3 emits a pre-token that is a whole token as is (HF "ignore_merges": true).
        v.ignore_merges = v.pre == PreTokenizer::kLlama3;
    }

    TCA_ASSIGN_OR_RETURN(v.bos_id, optional_id(gguf, "tokenizer.ggml.bos_token_id", n));
    TCA_ASSIGN_OR_RETURN(v.eos_id, optional_id(gguf, "tokenizer.ggml.eos_token_id", n));
    TCA_ASSIGN_OR_RETURN(v.unk_id, optional_id(gguf, "tokenizer.ggml.unknown_token_id", n));
    TCA_ASSIGN_OR_RETURN(v.pad_id, optional_id(gguf, "tokenizer.ggml.padding_token_id", n));
    TCA_ASSIGN_OR_RETURN(int32_t eot, optional_id(gguf, "tokenizer.ggml.eot_token_id", n));
    TCA_ASSIGN_OR_RETURN(int32_t eom, optional_id(gguf, "tokenizer.ggml.eom_token_id", n));
    for (int32_t id : {eot, eom}) {
        if (id >= 0) v.eog_ids.push_back(id);
    }
    // Control tokens that end a turn in the vocabularies we know.
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        const std::string& t = v.tokens[i];
        if (v.type(static_cast<int32_t>(i)) == TokenType::kControl &&
            (t == "<|eot_id|>" || t == "<|eom_id|>" || t == "<|im_end|>" || t == "<|endoftext|>" ||
             t == "<|end_of_text|>" || t == "<|end|>" || t == "<end_of_turn>")) {
            v.eog_ids.push_back(static_cast<int32_t>(i));
        }
    }

    // Defaults when the keys are absent: SPM adds BOS and a space prefix; BPE adds BOS except
    // for Qwen2 (its BOS id is <|endoftext|>, which Qwen's own tokenizer never prepends).
    const bool default_bos = v.pre != PreTokenizer::kQwen2;
    auto add_bos = gguf.has_kv("tokenizer.ggml.add_bos_token") ? gguf.get_bool("tokenizer.ggml.add_bos_token")
                                                                 : Result<bool>(default_bos);
    if (!add_bos.ok()) return named(gguf, add_bos.status());
    v.add_bos = *add_bos && v.bos_id >= 0;
    if (v.kind == TokenizerKind::kSpm) {
        auto prefix = gguf.has_kv("tokenizer.ggml.add_space_prefix")
                          ? gguf.get_bool("tokenizer.ggml.add_space_prefix")
                          : Result<bool>(true);
        if (!prefix.ok()) return named(gguf, prefix.status());
        v.add_space_prefix = *prefix;
    } else {
        v.add_space_prefix = false;
    }
    TCA_RETURN_IF_ERROR(validate_vocab(v));
    return v;
}

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
    TCA_ASSIGN_OR_RETURN(VocabData vocab, vocab_from_gguf(gguf));
    return Tokenizer::create(std::move(vocab));
}

}  // namespace tca
