// Tokenizer (tokenizer.h): vocabulary indexing, special-token partition, SPM/BPE dispatch,
// decoding, and the chat templates.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <optional>

#include "tokenizer/encoders.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace tca {

namespace {
// Spelling of U+2581 (LOWER ONE EIGHTH BLOCK), SentencePiece's visible space.
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// "<0xNN>" -> NN, else -1.
int parse_byte_token(std::string_view text) {
    if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return -1;
    const int hi = hex_digit(text[3]);
    const int lo = hex_digit(text[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

struct SpecialToken {
    std::string_view text;
    int32_t id;
    bool control;  // matched only with parse_special
};
}  // namespace

struct Tokenizer::Impl {
    VocabData vocab;
    TokenIndex index;  // every token that is not kUnused
    std::vector<bool> eog;
    // Special and user-defined tokens by first byte, longest first (leftmost-longest match).
    std::array<std::vector<SpecialToken>, 256> specials;
    std::optional<SpmEncoder> spm;
    std::optional<BpeEncoder> bpe;

    void encode_raw(std::string_view text, bool prev_special, std::vector<int32_t>& out) const;
    void append_piece(int32_t id, bool render_special, std::string& out) const;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::create(VocabData vocab) {
    TCA_RETURN_IF_ERROR(validate_vocab(vocab));
    auto impl = std::make_unique<Impl>();
    impl->vocab = std::move(vocab);
    const VocabData& v = impl->vocab;
    const int32_t n = v.n_vocab();

    impl->index.reserve(static_cast<size_t>(n));
    TokenIndex pieces;  // SPM: what merging may produce
    for (int32_t id = 0; id < n; ++id) {
        const std::string& text = v.tokens[static_cast<size_t>(id)];
        const TokenType type = v.type(id);
        if (type == TokenType::kUnused || text.empty()) continue;
        // Duplicates: the first id wins for lookups (the later one stays decodable).
        impl->index.try_emplace(text, id);
        if (type == TokenType::kNormal || type == TokenType::kUserDefined) pieces.try_emplace(text, id);
        if (type == TokenType::kControl || type == TokenType::kUserDefined) {
            impl->specials[static_cast<uint8_t>(text[0])].push_back({text, id, type == TokenType::kControl});
        }
    }
    for (auto& bucket : impl->specials) {
        std::stable_sort(bucket.begin(), bucket.end(), [](const SpecialToken& a, const SpecialToken& b) {
            return a.text.size() > b.text.size();
        });
    }
    impl->eog.assign(static_cast<size_t>(n), false);
    if (v.eos_id >= 0) impl->eog[static_cast<size_t>(v.eos_id)] = true;
    for (int32_t id : v.eog_ids) impl->eog[static_cast<size_t>(id)] = true;

    if (v.kind == TokenizerKind::kSpm) {
        impl->spm.emplace(v, std::move(pieces), impl->index);
    } else {
        TCA_ASSIGN_OR_RETURN(BpeEncoder enc, BpeEncoder::create(v, impl->index));
        impl->bpe.emplace(std::move(enc));
    }
    return Tokenizer(std::move(impl));
}

void Tokenizer::Impl::encode_raw(std::string_view text, bool prev_special, std::vector<int32_t>& out) const {
    if (spm) {
        // llama.cpp's SPM: a space before the text (at the start and after a special token),
        // then every space spelled U+2581.
        std::string escaped;
        escaped.reserve(text.size() + 3 * 8);
        if (vocab.add_space_prefix && prev_special) escaped += kSpmSpace;
        for (char ch : text) {
            if (ch == ' ') {
                escaped += kSpmSpace;
            } else {
                escaped += ch;
            }
        }
        spm->encode(escaped, out);
        return;
    }
    std::string normalized;
    if (vocab.normalize_nfc) {
        normalized = nfc_normalize(text);
        text = normalized;
    }
    for (std::string_view word : pre_tokenize(vocab.pre, text)) bpe->encode_word(word, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
    std::vector<int32_t> out;
    const Impl& im = *impl_;
    if (add_bos && im.vocab.bos_id >= 0) out.push_back(im.vocab.bos_id);
    bool prev_special = true;  // the text start counts as after a special token (SPM prefix)
    size_t raw_start = 0;
    size_t pos = 0;
    auto flush = [&](size_t end) {
        if (end > raw_start) {
            im.encode_raw(text.substr(raw_start, end - raw_start), prev_special, out);
            prev_special = false;
        }
    };
    while (pos < text.size()) {
        const SpecialToken* hit = nullptr;
        for (const SpecialToken& sp : im.specials[static_cast<uint8_t>(text[pos])]) {
            if ((parse_special || !sp.control) && text.substr(pos).starts_with(sp.text)) {
                hit = &sp;
                break;
            }
        }
        if (hit == nullptr) {
            ++pos;
            continue;
        }
        flush(pos);
        out.push_back(hit->id);
        prev_special = true;
        pos += hit->text.size();
        raw_start = pos;
    }
    flush(text.size());
    return out;
}

void Tokenizer::Impl::append_piece(int32_t id, bool render_special, std::string& out) const {
    const std::string& text = vocab.tokens[static_cast<size_t>(id)];
    switch (vocab.type(id)) {
        case TokenType::kControl:
        case TokenType::kUnused:
            if (render_special) out += text;
            return;
        case TokenType::kUserDefined: out += text; return;
        case TokenType::kUnknown:
            // SentencePiece renders unk as U+2047 (double question mark) with spaces around.
            out += vocab.kind == TokenizerKind::kSpm ? " \xE2\x81\x87 " : text;
            return;
        case TokenType::kByte: {
            const int b = parse_byte_token(text);
            if (b >= 0) {
                out += static_cast<char>(b);
            } else {
                out += text;
            }
            return;
        }
        case TokenType::kNormal: break;
    }
    if (vocab.kind == TokenizerKind::kSpm) {
        for (size_t p = 0; p < text.size();) {
            if (std::string_view(text).substr(p).starts_with(kSpmSpace)) {
                out += ' ';
                p += kSpmSpace.size();
            } else {
                out += text[p++];
            }
        }
        return;
    }
    // Byte-level: every character stands for one byte; others (not from the mapping) as is.
    for (size_t p = 0; p < text.size();) {
        const size_t start = p;
        const uint32_t cp = next_code_point(text, p);
        const int b = unicode_to_byte(cp);
        if (b >= 0) {
            out += static_cast<char>(b);
        } else {
            out.append(text, start, p - start);
        }
    }
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
    std::string out;
    if (id < 0 || id >= n_vocab()) return out;
    impl_->append_piece(id, render_special, out);
    return out;
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
    std::string out;
    const Impl& im = *impl_;
    // SPM: encode put a space before the text at the start and after every special token;
    // drop it again from the first text piece there, so decode(encode(x)) == x.
    bool after_special = true;
    for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        if (id < 0 || id >= n_vocab()) {
            return invalid_argument("decode: ids[%zu] = %d out of range [0, %d)", i, id, n_vocab());
        }
        const TokenType type = im.vocab.type(id);
        const size_t before = out.size();
        im.append_piece(id, render_special, out);
        if (type == TokenType::kControl || type == TokenType::kUserDefined || type == TokenType::kUnused) {
            after_special = true;
            continue;
        }
        if (after_special && im.spm && im.vocab.add_space_prefix && out.size() > before && out[before] == ' ') {
            out.erase(before, 1);
        }
        after_special = false;
    }
    return out;
}

int32_t Tokenizer::n_vocab() const { return impl_->vocab.n_vocab(); }
int32_t Tokenizer::bos_id() const { return impl_->vocab.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->vocab.eos_id; }
bool Tokenizer::add_bos_default() const { return impl_->vocab.add_bos; }
bool Tokenizer::is_eog(int32_t id) const {
    return id >= 0 && id < n_vocab() && impl_->eog[static_cast<size_t>(id)];
}
std::optional<int32_t> Tokenizer::token_id(std::string_view text) const {
    const int32_t id = find_token(impl_->index, text);
    if (id < 0) return std::nullopt;
    return id;
}
const VocabData& Tokenizer::vocab() const { return impl_->vocab; }

// ---- chat templates ----

namespace {
std::string_view trim(std::string_view s) {
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}
}  // namespace

std::string apply_chat_template(ChatTemplate kind, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
    std::string out;
    for (const ChatMessage& m : messages) {
        if (kind == ChatTemplate::kLlama3) {
            out += "<|start_header_id|>";
            out += m.role;
            out += "<|end_header_id|>\n\n";
            out += trim(m.content);
            out += "<|eot_id|>";
        } else {
            out += "<|im_start|>";
            out += m.role;
            out += '\n';
            out += m.content;
            out += "<|im_end|>\n";
        }
    }
    if (add_generation_prompt) {
        out += kind == ChatTemplate::kLlama3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
                                             : "<|im_start|>assistant\n";
    }
    return out;
}

Result<ChatTemplate> chat_template_from_name(std::string_view name) {
    if (name == "llama3") return ChatTemplate::kLlama3;
    if (name == "chatml") return ChatTemplate::kChatMl;
    return invalid_argument("chat template \"%.*s\" (expected llama3 or chatml)", static_cast<int>(name.size()),
                            name.data());
}

std::optional<ChatTemplate> detect_chat_template(const Tokenizer& tokenizer) {
    if (tokenizer.token_id("<|start_header_id|>") && tokenizer.token_id("<|eot_id|>")) return ChatTemplate::kLlama3;
    if (tokenizer.token_id("<|im_start|>") && tokenizer.token_id("<|im_end|>")) return ChatTemplate::kChatMl;
    return std::nullopt;
}

}  // namespace tca
