// Tokenizer: the engine's text <-> token ids facade over a validated VocabData, for SPM
// (llama.cpp "llama" vocab) and byte-level BPE (Llama 3, Qwen2 pre-tokenizers). Special and
// added tokens in the text are matched leftmost-longest before the model-specific encoder runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/vocab.h"

namespace tca {

class GgufFile;

class Tokenizer {
public:
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;
    ~Tokenizer();

    // Validates `vocab` and builds the lookup tables (merges are resolved to token ids here:
    // a malformed merge is a kDataLoss Status naming vocab.source and the merge index).
    static Result<Tokenizer> create(VocabData vocab);
    // Hugging Face tokenizer.json (+ tokenizer_config.json beside it, when present).
    static Result<Tokenizer> from_hf_json_file(const std::string& path);
    // tokenizer.ggml.* metadata of an open GGUF file.
    static Result<Tokenizer> from_gguf(const GgufFile& gguf);

    // Text to ids. add_bos prepends the BOS id (when the vocabulary has one); parse_special
    // lets control tokens written in the text (e.g. "<|begin_of_text|>") map to their ids.
    // User-defined added tokens are always matched. Never fails: any bytes are encodable.
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

    // Ids to text. Control tokens are rendered only with render_special; SPM drops the space
    // encode added (first text piece at the start and after each special token), so
    // decode(encode(x)) == x. An id outside [0, n_vocab) is an error.
    Result<std::string> decode(std::span<const int32_t> ids, bool render_special = false) const;
    // The bytes of one token for streaming output (may be a partial UTF-8 sequence; SPM pieces
    // keep their leading space). Ids outside [0, n_vocab) give an empty piece.
    std::string token_to_piece(int32_t id, bool render_special = false) const;

    int32_t n_vocab() const;
    int32_t bos_id() const;  // -1 when none
    int32_t eos_id() const;
    bool add_bos_default() const;  // whether the model expects BOS (tokenizer.ggml.add_bos_token)
    // End of generation: eos and the vocabulary's other end tokens (<|eot_id|>, <|im_end|>, ...).
    bool is_eog(int32_t id) const;
    // The id of a token written exactly as `text` (any type), if there is one.
    std::optional<int32_t> token_id(std::string_view text) const;
    const VocabData& vocab() const;

private:
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Chat formats. Llama 3: "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>" per
// message (content trimmed, as Meta's template does); ChatML: "<|im_start|>ROLE\nCONTENT<|im_end|>\n".
// The result has no BOS text: encode it with add_bos = add_bos_default() and parse_special = true.
enum class ChatTemplate { kLlama3, kChatMl };

struct ChatMessage {
    std::string role;  // "system", "user", "assistant", ...
    std::string content;
};

std::string apply_chat_template(ChatTemplate kind, std::span<const ChatMessage> messages,
                                bool add_generation_prompt);
// "llama3" or "chatml".
Result<ChatTemplate> chat_template_from_name(std::string_view name);
// The template whose markers the vocabulary has (<|start_header_id|> or <|im_start|>).
std::optional<ChatTemplate> detect_chat_template(const Tokenizer& tokenizer);

}  // namespace tca
