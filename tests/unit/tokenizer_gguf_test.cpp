// Unit tests for the GGUF tokenizer adapter (src/tokenizer/gguf_vocab.h): small SPM and BPE
// vocabularies written with GgufWriter, and malformed tokenizer.ggml.* metadata that must give
// a Status naming the file and the key.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "model/gguf_reader.h"
#include "model/gguf_writer.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace tca {
namespace {

// Parses the writer's bytes; `bytes` must outlive the GgufFile.
Result<Tokenizer> tokenizer_of(const GgufWriter& w, std::vector<uint8_t>& bytes) {
    bytes = w.to_bytes();
    TCA_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::parse(bytes.data(), bytes.size(), "v.gguf"));
    return Tokenizer::from_gguf(gguf);
}

struct SpmSpec {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "h", "i", "hi", "\xE2\x96\x81hi"};
    std::vector<float> scores = {0, 0, 0, -1, -1, -1, -2, -3};
    std::vector<int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1};
};

GgufWriter spm_writer(const SpmSpec& s, uint32_t bos = 1) {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_string_array("tokenizer.ggml.tokens", s.tokens);
    w.add_f32_array("tokenizer.ggml.scores", s.scores);
    w.add_i32_array("tokenizer.ggml.token_type", s.types);
    w.add_u32("tokenizer.ggml.bos_token_id", bos);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    w.add_u32("tokenizer.ggml.unknown_token_id", 0);
    w.add_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);  // llama.cpp's "none"
    return w;
}

TEST(TokenizerGguf, SmallSpm) {
    std::vector<uint8_t> bytes;
    auto tok = tokenizer_of(spm_writer(SpmSpec{}), bytes);
    ASSERT_TRUE(tok.ok()) << tok.status().to_string();
    EXPECT_EQ(tok->vocab().kind, TokenizerKind::kSpm);
    EXPECT_TRUE(tok->add_bos_default());
    EXPECT_EQ(tok->vocab().pad_id, -1);
    EXPECT_EQ(tok->encode("hi", true, false), (std::vector<int32_t>{1, 7}));
    // No byte tokens in this vocabulary: an unknown character becomes <unk>.
    EXPECT_EQ(tok->encode("x", false, false), (std::vector<int32_t>{3, 0}));
}

TEST(TokenizerGguf, SmallBpe) {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_to_unicode(static_cast<uint8_t>(b)));
    tokens.push_back("hi");             // 256
    tokens.push_back("<|endoftext|>");  // 257
    std::vector<int32_t> types(tokens.size(), 1);
    types[257] = 3;
    GgufWriter w;
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", "qwen2");
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_string_array("tokenizer.ggml.merges", {"h i"});
    w.add_u32("tokenizer.ggml.eos_token_id", 257);
    std::vector<uint8_t> bytes;
    auto tok = tokenizer_of(w, bytes);
    ASSERT_TRUE(tok.ok()) << tok.status().to_string();
    EXPECT_EQ(tok->vocab().pre, PreTokenizer::kQwen2);
    EXPECT_EQ(tok->encode("hi12<|endoftext|>", false, true), (std::vector<int32_t>{256, '1', '2', 257}));
    EXPECT_TRUE(tok->is_eog(257));
    EXPECT_EQ(tok->bos_id(), -1);
}

TEST(TokenizerGguf, MalformedMetadata) {
    struct Case {
        const char* what;
        std::function<GgufWriter()> make;
        const char* expect;
    };
    const std::vector<Case> cases = {
        {"no model",
         [] {
             GgufWriter w;
             w.add_string_array("tokenizer.ggml.tokens", {"a"});
             return w;
         },
         "tokenizer.ggml.model"},
        {"unknown model",
         [] {
             GgufWriter w;
             w.add_string("tokenizer.ggml.model", "bert");
             return w;
         },
         "tokenizer.ggml.model: \"bert\""},
        {"tokens not an array",
         [] {
             GgufWriter w;
             w.add_string("tokenizer.ggml.model", "llama");
             w.add_string("tokenizer.ggml.tokens", "abc");
             return w;
         },
         "tokenizer.ggml.tokens"},
        {"scores short",
         [] {
             SpmSpec s;
             s.scores.pop_back();
             return spm_writer(s);
         },
         "tokenizer.ggml.scores: 7 values for 8 tokens"},
        {"token type 9",
         [] {
             SpmSpec s;
             s.types[4] = 9;
             return spm_writer(s);
         },
         "tokenizer.ggml.token_type[4]: 9"},
        {"bos out of range",
         [] { return spm_writer(SpmSpec{}, 8); },
         "tokenizer.ggml.bos_token_id: 8 out of range [0, 8)"},
        {"bpe without merges",
         [] {
             GgufWriter w;
             w.add_string("tokenizer.ggml.model", "gpt2");
             w.add_string_array("tokenizer.ggml.tokens", {"a"});
             return w;
         },
         "tokenizer.ggml.merges"},
        {"unknown pre",
         [] {
             GgufWriter w;
             w.add_string("tokenizer.ggml.model", "gpt2");
             w.add_string("tokenizer.ggml.pre", "mystery");
             w.add_string_array("tokenizer.ggml.tokens", {"a"});
             w.add_string_array("tokenizer.ggml.merges", {});
             return w;
         },
         "tokenizer.ggml.pre: pre-tokenizer \"mystery\""},
        {"bad merge",
         [] {
             std::vector<std::string> tokens;
             for (int b = 0; b < 256; ++b) tokens.push_back(byte_to_unicode(static_cast<uint8_t>(b)));
             GgufWriter w;
             w.add_string("tokenizer.ggml.model", "gpt2");
             w.add_string("tokenizer.ggml.pre", "llama-bpe");
             w.add_string_array("tokenizer.ggml.tokens", tokens);
             w.add_string_array("tokenizer.ggml.merges", {"a b", "ab"});
             return w;
         },
         "merges[1]: expected \"a b\""},
    };
    for (const Case& c : cases) {
        std::vector<uint8_t> bytes;
        auto tok = tokenizer_of(c.make(), bytes);
        ASSERT_FALSE(tok.ok()) << c.what << ": loaded";
        const std::string& msg = tok.status().message();
        EXPECT_EQ(msg.rfind("v.gguf", 0), 0u) << c.what << ": " << msg;
        EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": " << msg;
    }
}

}  // namespace
}  // namespace tca
