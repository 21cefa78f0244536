// Unit tests for src/tokenizer: pre-tokenizer splits on tricky strings, SPM and byte-level BPE
// on small hand-made vocabularies, special tokens, round trips, chat templates, and errors for
// malformed tokenizer.json files and vocabularies.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace tca {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(PreTokenizer pre, std::string_view text) {
    Pieces out;
    for (std::string_view p : pre_tokenize(pre, text)) out.emplace_back(p);
    return out;
}

// ---- unicode helpers ----

TEST(TokenizerUnicode, Gpt2ByteMapping) {
    EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");   // U+0120 'Ġ'
    EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");  // U+010A 'Ċ'
    EXPECT_EQ(byte_to_unicode('a'), "a");
    EXPECT_EQ(byte_to_unicode(0xAD), "\xC5\x83");  // soft hyphen -> U+0143
    for (int b = 0; b < 256; ++b) {
        const std::string& s = byte_to_unicode(static_cast<uint8_t>(b));
        size_t pos = 0;
        const uint32_t cp = next_code_point(s, pos);
        EXPECT_EQ(pos, s.size());
        EXPECT_EQ(unicode_to_byte(cp), b);
    }
    EXPECT_EQ(unicode_to_byte(0x4E16), -1);
}

TEST(TokenizerUnicode, LenientUtf8AndClasses) {
    const std::string bad = "a\xFF\xC3";  // invalid byte, truncated sequence
    size_t pos = 0;
    EXPECT_EQ(next_code_point(bad, pos), 'a');
    EXPECT_EQ(next_code_point(bad, pos), kReplacementChar);
    EXPECT_EQ(pos, 2u);
    EXPECT_EQ(next_code_point(bad, pos), kReplacementChar);
    EXPECT_EQ(pos, 3u);
    EXPECT_FALSE(is_valid_utf8(bad));
    EXPECT_TRUE(is_valid_utf8("\xEF\xBF\xBD ok \xF0\x9F\xA6\x99"));
    EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));      // overlong '/'
    EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));  // surrogate
    EXPECT_EQ(char_class(0x00E9), CharClass::kLetter);  // é
    EXPECT_EQ(char_class(0x4E16), CharClass::kLetter);  // 世
    EXPECT_EQ(char_class(0x0663), CharClass::kNumber);  // Arabic-Indic 3
    EXPECT_EQ(char_class(0x00BD), CharClass::kNumber);  // ½ (No)
    EXPECT_EQ(char_class(0x00A0), CharClass::kSpace);   // no-break space
    EXPECT_EQ(char_class(0x3000), CharClass::kSpace);   // ideographic space
    EXPECT_EQ(char_class(0x2014), CharClass::kOther);   // em dash
    EXPECT_EQ(char_class(0x1F999), CharClass::kOther);  // emoji
    EXPECT_EQ(nfc_normalize("e\xCC\x81"), "\xC3\xA9");  // e + combining acute -> é
    EXPECT_EQ(nfc_normalize("plain"), "plain");
    EXPECT_EQ(nfc_normalize("\xFF" "e\xCC\x81"), "\xFF" "e\xCC\x81");  // invalid: untouched
}

// ---- pre-tokenizers ----

TEST(TokenizerPreTokenize, Llama3Basics) {
    const auto L = PreTokenizer::kLlama3;
    EXPECT_EQ(split(L, "Hello world"), (Pieces{"Hello", " world"}));
    EXPECT_EQ(split(L, ""), Pieces{});
    EXPECT_EQ(split(L, "Hello, world!"), (Pieces{"Hello", ",", " world", "!"}));
    EXPECT_EQ(split(L, "don't DON'T we'll"), (Pieces{"don", "'t", " DON", "'T", " we", "'ll"}));
    EXPECT_EQ(split(L, "'re'x"), (Pieces{"'re", "'x"}));  // 'x: optional non-letter + letters
    EXPECT_EQ(split(L, "1234567"), (Pieces{"123", "456", "7"}));
    EXPECT_EQ(split(L, "x1y"), (Pieces{"x", "1", "y"}));
    EXPECT_EQ(split(L, "$x"), (Pieces{"$x"}));
    EXPECT_EQ(split(L, " ?!x"), (Pieces{" ?!", "x"}));
    EXPECT_EQ(split(L, "!!!\n\nx"), (Pieces{"!!!\n\n", "x"}));
    EXPECT_EQ(split(L, "Äpfel über Straße"), (Pieces{"Äpfel", " über", " Straße"}));
    // A symbol may lead a letter run: [^\r\n\p{L}\p{N}]?\p{L}+
    EXPECT_EQ(split(L, "x\xF0\x9F\x98\x80y"), (Pieces{"x", "\xF0\x9F\x98\x80y"}));
    EXPECT_EQ(split(L, "x\xF0\x9F\x98\x80 y"), (Pieces{"x", "\xF0\x9F\x98\x80", " y"}));
}

// \s+(?!\S): a whitespace run before a non-space gives its last char to the next piece.
TEST(TokenizerPreTokenize, Llama3Whitespace) {
    const auto L = PreTokenizer::kLlama3;
    EXPECT_EQ(split(L, "a  b"), (Pieces{"a", " ", " b"}));
    EXPECT_EQ(split(L, "a   b"), (Pieces{"a", "  ", " b"}));
    EXPECT_EQ(split(L, "   x"), (Pieces{"  ", " x"}));
    EXPECT_EQ(split(L, "x   "), (Pieces{"x", "   "}));
    EXPECT_EQ(split(L, " "), (Pieces{" "}));
    EXPECT_EQ(split(L, "\t\tx"), (Pieces{"\t", "\tx"}));
    EXPECT_EQ(split(L, "a\n\nb"), (Pieces{"a", "\n\n", "b"}));
    EXPECT_EQ(split(L, "a \n b"), (Pieces{"a", " \n", " b"}));
    EXPECT_EQ(split(L, "a\n  \n\t b"), (Pieces{"a", "\n  \n", "\t", " b"}));
    EXPECT_EQ(split(L, "a\r\n"), (Pieces{"a", "\r\n"}));
    EXPECT_EQ(split(L, "x  \xC2\xA0y"), (Pieces{"x", "  ", "\xC2\xA0y"}));  // NBSP is \s
    EXPECT_EQ(split(L, "  1"), (Pieces{" ", " ", "1"}));  // digits take no leading space
}

TEST(TokenizerPreTokenize, Qwen2SingleDigits) {
    EXPECT_EQ(split(PreTokenizer::kQwen2, "1234 x"), (Pieces{"1", "2", "3", "4", " x"}));
    EXPECT_EQ(split(PreTokenizer::kQwen2, "3.14"), (Pieces{"3", ".", "1", "4"}));
}

TEST(TokenizerPreTokenize, Gpt2) {
    const auto G = PreTokenizer::kGpt2;
    EXPECT_EQ(split(G, "Hello  world"), (Pieces{"Hello", " ", " world"}));
    EXPECT_EQ(split(G, "it's IT'S"), (Pieces{"it", "'s", " IT", "'", "S"}));  // case-sensitive
    EXPECT_EQ(split(G, "abc 12345 !?"), (Pieces{"abc", " 12345", " !?"}));
    EXPECT_EQ(split(G, "a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));  // only ' ' leads a word
}

TEST(TokenizerPreTokenize, CoversInvalidUtf8) {
    const std::string text = "ab\xFF\xFE cd\xC3";
    std::string joined;
    for (const std::string& p : split(PreTokenizer::kLlama3, text)) joined += p;
    EXPECT_EQ(joined, text);
}

// ---- SPM on a small vocabulary ----

VocabData small_spm() {
    VocabData v;
    v.kind = TokenizerKind::kSpm;
    v.source = "small-spm";
    auto add = [&](std::string text, float score, TokenType type) {
        v.tokens.push_back(std::move(text));
        v.scores.push_back(score);
        v.token_types.push_back(type);
    };
    add("<unk>", 0, TokenType::kUnknown);
    add("<s>", 0, TokenType::kControl);
    add("</s>", 0, TokenType::kControl);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        add(name, 0, TokenType::kByte);
    }
    // ids from 259
    for (const char* t : {"\xE2\x96\x81", "h", "e", "l", "o", "a", "b", "c"}) add(t, -10, TokenType::kNormal);
    add("he", -3, TokenType::kNormal);          // 267
    add("ll", -2, TokenType::kNormal);          // 268
    add("hell", -4, TokenType::kNormal);        // 269
    add("hello", -5, TokenType::kNormal);       // 270
    add("\xE2\x96\x81hello", -6, TokenType::kNormal);  // 271
    add("ab", -2, TokenType::kNormal);          // 272
    add("bc", -1, TokenType::kNormal);          // 273: higher score than "ab"
    add("<tool>", 0, TokenType::kUserDefined);  // 274
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    v.add_bos = true;
    return v;
}

TEST(TokenizerSpm, MergesByScoreWithSpacePrefix) {
    auto tok = Tokenizer::create(small_spm());
    ASSERT_TRUE(tok.ok()) << tok.status().to_string();
    EXPECT_EQ(tok->encode("hello", false, false), (std::vector<int32_t>{271}));
    EXPECT_EQ(tok->encode("hello", true, false), (std::vector<int32_t>{1, 271}));
    // "abc": bc (score -1) beats ab (-2).
    EXPECT_EQ(tok->encode("abc", false, false), (std::vector<int32_t>{259, 264, 273}));
    EXPECT_EQ(tok->encode("", true, false), (std::vector<int32_t>{1}));
    EXPECT_TRUE(tok->encode("", false, false).empty());
}

TEST(TokenizerSpm, ByteFallbackAndRoundTrip) {
    auto tok = Tokenizer::create(small_spm());
    ASSERT_TRUE(tok.ok());
    // 'é' is not a token: its two UTF-8 bytes become <0xC3> <0xA9> (ids 3 + byte).
    const auto ids = tok->encode("h\xC3\xA9", false, false);
    EXPECT_EQ(ids, (std::vector<int32_t>{259, 260, 3 + 0xC3, 3 + 0xA9}));
    auto text = tok->decode(ids);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, "h\xC3\xA9");
    for (const char* s : {"hello hello", "  abc  ", "hello\n", "x\xF0\x9F\xA6\x99"}) {
        auto back = tok->decode(tok->encode(s, true, false));
        ASSERT_TRUE(back.ok());
        EXPECT_EQ(*back, s);
    }
    // Streaming pieces keep the space.
    EXPECT_EQ(tok->token_to_piece(271), " hello");
    EXPECT_EQ(tok->token_to_piece(1), "");
    EXPECT_EQ(tok->token_to_piece(1, true), "<s>");
    EXPECT_EQ(tok->token_to_piece(3 + 'A'), "A");
    EXPECT_EQ(tok->token_to_piece(99999), "");
}

// Word segmentation (a speed-up) must not change results: a vocabulary with a piece that has
// U+2581 inside ("x▁y") is merged over the whole text.
TEST(TokenizerSpm, PieceSpanningASpace) {
    VocabData v = small_spm();
    v.tokens.push_back("x");  // 275
    v.tokens.push_back("y");  // 276
    v.tokens.push_back("\xE2\x96\x81y");  // 277
    v.tokens.push_back("x\xE2\x96\x81y");  // 278
    for (int k = 0; k < 4; ++k) {
        v.scores.push_back(k == 3 ? 5.0f : -1.0f);
        v.token_types.push_back(TokenType::kNormal);
    }
    auto tok = Tokenizer::create(v);
    ASSERT_TRUE(tok.ok());
    EXPECT_EQ(tok->encode("x y", false, false), (std::vector<int32_t>{259, 278}));
    EXPECT_EQ(tok->encode("hello x y", false, false), (std::vector<int32_t>{271, 259, 278}));
    // Without that piece the words are merged separately: same ids as whole-text merging.
    v.tokens[278] = "zz";
    auto plain = Tokenizer::create(v);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(plain->encode("x y", false, false), (std::vector<int32_t>{259, 275, 277}));
}

TEST(TokenizerSpm, SpecialTokens) {
    auto tok = Tokenizer::create(small_spm());
    ASSERT_TRUE(tok.ok());
    // Control tokens only with parse_special; after one, the text gets its space prefix again.
    EXPECT_EQ(tok->encode("</s>hello", false, true), (std::vector<int32_t>{2, 271}));
    EXPECT_EQ(tok->decode(std::vector<int32_t>{2, 271}, true).value(), "</s>hello");
    EXPECT_EQ(tok->decode(tok->encode("a </s> b", true, true), true).value(), "<s>a </s> b");
    const auto literal = tok->encode("</s>", false, false);
    EXPECT_NE(literal, (std::vector<int32_t>{2}));
    // User-defined tokens are matched always.
    EXPECT_EQ(tok->encode("<tool>", false, false), (std::vector<int32_t>{274}));
    EXPECT_TRUE(tok->is_eog(2));
    EXPECT_FALSE(tok->is_eog(1));
    EXPECT_FALSE(tok->is_eog(-1));
}

// ---- byte-level BPE on a small vocabulary ----

VocabData small_bpe(std::vector<std::string> merges) {
    VocabData v;
    v.kind = TokenizerKind::kBpe;
    v.pre = PreTokenizer::kLlama3;
    v.source = "small-bpe";
    for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_to_unicode(static_cast<uint8_t>(b)));
    for (const char* t : {"ab", "bc", "abc", "\xC4\xA0" "a", "<|eot|>", "<x>"}) v.tokens.emplace_back(t);
    v.token_types.assign(v.tokens.size(), TokenType::kNormal);
    v.token_types[260] = TokenType::kControl;
    v.token_types[261] = TokenType::kUserDefined;
    v.eos_id = 260;
    v.merges = std::move(merges);
    return v;
}

TEST(TokenizerBpe, MergesByRank) {
    // b c first (rank 0), then a bc.
    auto t1 = Tokenizer::create(small_bpe({"b c", "a b", "a bc"}));
    ASSERT_TRUE(t1.ok()) << t1.status().to_string();
    EXPECT_EQ(t1->encode("abc", false, false), (std::vector<int32_t>{258}));
    // a b first: "ab c" has no merge, so ab + c.
    auto t2 = Tokenizer::create(small_bpe({"a b", "b c", "a bc"}));
    ASSERT_TRUE(t2.ok());
    EXPECT_EQ(t2->encode("abc", false, false), (std::vector<int32_t>{256, 'c'}));
    // Leftmost wins on equal ranks: "abab" -> ab ab.
    EXPECT_EQ(t2->encode("abab", false, false), (std::vector<int32_t>{256, 256}));
    // " a" is one pre-token: Ġ + a merge.
    auto t3 = Tokenizer::create(small_bpe({"\xC4\xA0 a"}));
    ASSERT_TRUE(t3.ok());
    EXPECT_EQ(t3->encode("a a", false, false), (std::vector<int32_t>{'a', 259}));
}

TEST(TokenizerBpe, IgnoreMergesTakesWholeTokens) {
    VocabData v = small_bpe({"a b"});  // no merge builds "abc"
    auto plain = Tokenizer::create(v);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(plain->encode("abc", false, false), (std::vector<int32_t>{256, 'c'}));
    v.ignore_merges = true;
    auto whole = Tokenizer::create(v);
    ASSERT_TRUE(whole.ok());
    EXPECT_EQ(whole->encode("abc", false, false), (std::vector<int32_t>{258}));
}

TEST(TokenizerBpe, SpecialTokensAndDecode) {
    auto tok = Tokenizer::create(small_bpe({"a b"}));
    ASSERT_TRUE(tok.ok());
    EXPECT_EQ(tok->encode("ab<|eot|>", false, true), (std::vector<int32_t>{256, 260}));
    EXPECT_EQ(tok->encode("<x>", false, false), (std::vector<int32_t>{261}));
    const auto literal = tok->encode("<|eot|>", false, false);
    EXPECT_EQ(literal.size(), 7u);  // one byte token per character
    EXPECT_TRUE(tok->is_eog(260));
    auto text = tok->decode(std::vector<int32_t>{256, 260, 261});
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, "ab<x>");
    text = tok->decode(std::vector<int32_t>{256, 260}, /*render_special=*/true);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, "ab<|eot|>");
    // Bytes that are not valid UTF-8 come back as they were.
    const std::string raw = "\xFF\xC3 a\xE2\x82";
    text = tok->decode(tok->encode(raw, false, false));
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, raw);
    EXPECT_EQ(tok->token_to_piece(0xC3), "\xC3");  // a partial UTF-8 piece
    auto bad = tok->decode(std::vector<int32_t>{1, 100000});
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("ids[1] = 100000"), std::string::npos) << bad.status().message();
}

TEST(TokenizerBpe, BadVocabularies) {
    VocabData missing_byte = small_bpe({});
    missing_byte.tokens[7] = "zz";
    auto r = Tokenizer::create(missing_byte);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("byte 0x07"), std::string::npos) << r.status().message();

    auto bad_merge = Tokenizer::create(small_bpe({"a b", "ab"}));
    ASSERT_FALSE(bad_merge.ok());
    EXPECT_NE(bad_merge.status().message().find("small-bpe: merges[1]"), std::string::npos)
        << bad_merge.status().message();

    VocabData bad_bos = small_bpe({});
    bad_bos.bos_id = 5000;
    r = Tokenizer::create(bad_bos);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("bos id 5000"), std::string::npos);

    VocabData bad_scores = small_bpe({});
    bad_scores.scores = {1.0f};
    EXPECT_FALSE(Tokenizer::create(bad_scores).ok());

    VocabData empty;
    EXPECT_EQ(Tokenizer::create(empty).status().code(), StatusCode::kDataLoss);
}

// ---- tokenizer.json ----

nlohmann::json minimal_json() {
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_to_unicode(static_cast<uint8_t>(b))] = b;
    vocab["ab"] = 256;
    vocab["\xC4\xA0" "ab"] = 257;
    return {
        {"version", "1.0"},
        {"added_tokens",
         {{{"id", 258}, {"content", "<|begin_of_text|>"}, {"special", true}},
          {{"id", 259}, {"content", "<|eot_id|>"}, {"special", true}},
          {{"id", 260}, {"content", "<think>"}, {"special", false}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern",
              {{"Regex",
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}}}}}},
        {"model",
         {{"type", "BPE"},
          {"ignore_merges", false},
          {"vocab", vocab},
          {"merges", {"a b", "\xC4\xA0 ab"}}}},
    };
}

Result<VocabData> parse(const nlohmann::json& j) { return parse_hf_tokenizer_json(j.dump(), "tok.json"); }

TEST(TokenizerHfJson, LoadsBothMergeForms) {
    auto v = parse(minimal_json());
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_EQ(v->pre, PreTokenizer::kLlama3);
    EXPECT_EQ(v->bos_id, 258);
    EXPECT_TRUE(v->add_bos);
    EXPECT_EQ(v->type(258), TokenType::kControl);
    EXPECT_EQ(v->type(260), TokenType::kUserDefined);
    auto tok = Tokenizer::create(std::move(v).value());
    ASSERT_TRUE(tok.ok()) << tok.status().to_string();
    // "a b" (rank 0) applies first, then "Ġ ab" (rank 1).
    EXPECT_EQ(tok->encode("ab ab", true, false), (std::vector<int32_t>{258, 256, 257}));
    EXPECT_EQ(tok->encode("<think>ab<|eot_id|>", false, true), (std::vector<int32_t>{260, 256, 259}));
    EXPECT_TRUE(tok->is_eog(259));
    EXPECT_EQ(detect_chat_template(*tok), std::nullopt);

    nlohmann::json pairs = minimal_json();
    using nlohmann::json;
    pairs["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"\xC4\xA0", "ab"})});
    auto tok2 = Tokenizer::create(parse(pairs).value());
    ASSERT_TRUE(tok2.ok());
    EXPECT_EQ(tok2->encode("ab ab", true, false), (std::vector<int32_t>{258, 256, 257}));
}

TEST(TokenizerHfJson, ConfigOverridesSpecials) {
    const std::string config = R"({"bos_token": null, "eos_token": {"content": "<|eot_id|>"}, "add_bos_token": false})";
    auto v = parse_hf_tokenizer_json(minimal_json().dump(), "tok.json", config);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_EQ(v->eos_id, 259);
    EXPECT_FALSE(v->add_bos);
    auto bad = parse_hf_tokenizer_json(minimal_json().dump(), "tok.json", R"({"eos_token": "<nope>"})");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("eos_token"), std::string::npos) << bad.status().message();
}

// Each malformed file gives a Status whose message names the file and the field.
TEST(TokenizerHfJson, MalformedFiles) {
    struct Case {
        const char* what;
        std::function<void(nlohmann::json&)> edit;
        const char* expect;
        StatusCode code;
    };
    const std::vector<Case> cases = {
        {"merge number", [](auto& j) { j["model"]["merges"][1] = 5; },
         "tok.json: model.merges[1]: expected \"a b\" or [a, b]", StatusCode::kDataLoss},
        {"merge without space", [](auto& j) { j["model"]["merges"][0] = "ab"; }, "model.merges[0]",
         StatusCode::kDataLoss},
        {"merge triple", [](auto& j) { j["model"]["merges"][0] = nlohmann::json::array({"a", "b", "c"}); },
         "model.merges[0]",
         StatusCode::kDataLoss},
        {"merges object", [](auto& j) { j["model"]["merges"] = {{"a", 1}}; }, "model.merges: expected an array",
         StatusCode::kDataLoss},
        {"merge pair of numbers", [](auto& j) { j["model"]["merges"][0] = nlohmann::json::array({1, 2}); },
         "model.merges[0]", StatusCode::kDataLoss},
        {"no model", [](auto& j) { j.erase("model"); }, "tok.json: model: expected an object", StatusCode::kDataLoss},
        {"vocab array", [](auto& j) { j["model"]["vocab"] = {1, 2}; }, "model.vocab", StatusCode::kDataLoss},
        {"negative id", [](auto& j) { j["model"]["vocab"]["zz"] = -3; }, "model.vocab[\"zz\"]: id -3",
         StatusCode::kDataLoss},
        {"huge id", [](auto& j) { j["model"]["vocab"]["zz"] = 1LL << 40; }, "out of range", StatusCode::kDataLoss},
        {"string id", [](auto& j) { j["model"]["vocab"]["zz"] = "7"; }, "expected an integer id",
         StatusCode::kDataLoss},
        {"duplicate id", [](auto& j) { j["model"]["vocab"]["zz"] = 5; }, "id 5 used by both", StatusCode::kDataLoss},
        {"added no content", [](auto& j) { j["added_tokens"][1].erase("content"); }, "added_tokens[1].content",
         StatusCode::kDataLoss},
        {"added bad id", [](auto& j) { j["added_tokens"][0]["id"] = "x"; }, "added_tokens[0].id",
         StatusCode::kDataLoss},
        {"unigram", [](auto& j) { j["model"]["type"] = "Unigram"; }, "model.type", StatusCode::kUnsupported},
        {"regex", [](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; },
         "unknown Split regex", StatusCode::kUnsupported},
        {"no byte level", [](auto& j) { j["pre_tokenizer"]["pretokenizers"].erase(1); }, "no ByteLevel",
         StatusCode::kUnsupported},
        {"metaspace", [](auto& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }, "Metaspace",
         StatusCode::kUnsupported},
        {"normalizer", [](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "normalizer",
         StatusCode::kUnsupported},
        {"bos name", [](auto& j) { j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<nope>"; },
         "post_processor.single[0].SpecialToken.id", StatusCode::kDataLoss},
        {"root array", [](auto& j) { j = nlohmann::json::array(); }, "(root)", StatusCode::kDataLoss},
    };
    for (const Case& c : cases) {
        nlohmann::json j = minimal_json();
        c.edit(j);
        auto r = parse(j);
        ASSERT_FALSE(r.ok()) << c.what;
        EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status().to_string();
        EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << c.what << ": " << r.status().message();
        EXPECT_EQ(r.status().message().rfind("tok.json: ", 0), 0u) << r.status().message();
    }
    auto not_json = parse_hf_tokenizer_json("{\"model\": [", "tok.json");
    ASSERT_FALSE(not_json.ok());
    EXPECT_NE(not_json.status().message().find("tok.json: invalid JSON"), std::string::npos);
    auto bad_utf8 = parse_hf_tokenizer_json("{\"model\": {\"vocab\": {\"\xFF\": \"x\"}}}", "tok.json");
    EXPECT_FALSE(bad_utf8.ok());
    auto missing = load_hf_tokenizer_json("/nonexistent/tokenizer.json");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// Truncations of a valid file never crash, they fail with a Status.
TEST(TokenizerHfJson, TruncatedFilesFail) {
    const std::string text = minimal_json().dump();
    for (size_t n = 0; n < text.size(); n += 97) {
        EXPECT_FALSE(parse_hf_tokenizer_json(std::string_view(text).substr(0, n), "tok.json").ok()) << n;
    }
}

// Random bytes (invalid UTF-8, NULs, control characters) round-trip exactly through both
// encoders, and corrupted tokenizer.json files fail with a Status or load, never crash.
TEST(TokenizerRobustness, RandomBytesRoundTrip) {
    auto spm = Tokenizer::create(small_spm());
    auto bpe = Tokenizer::create(small_bpe({"a b", "b c", "\xC4\xA0 a"}));
    ASSERT_TRUE(spm.ok() && bpe.ok());
    std::mt19937 rng(7);
    const std::string alphabet = std::string("abch elo\n\t\r'1 ") + "\xE2\x96\x81\xC3\xA9\xFF\x80" + std::string(1, '\0');
    for (int iter = 0; iter < 300; ++iter) {
        std::string text;
        const int len = static_cast<int>(rng() % 40);
        for (int k = 0; k < len; ++k) {
            text += (rng() % 4 == 0) ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()];
        }
        for (const Tokenizer* tok : {&spm.value(), &bpe.value()}) {
            auto back = tok->decode(tok->encode(text, true, true), /*render_special=*/true);
            ASSERT_TRUE(back.ok());
            // render_special shows the BOS of the SPM vocabulary.
            const std::string expect = tok == &spm.value() ? "<s>" + text : text;
            EXPECT_EQ(*back, expect) << "iter " << iter;
        }
    }
}

TEST(TokenizerRobustness, CorruptedJson) {
    const std::string good = minimal_json().dump();
    std::mt19937 rng(11);
    for (int iter = 0; iter < 300; ++iter) {
        std::string text = good;
        for (int k = 0; k < 3; ++k) text[rng() % text.size()] = static_cast<char>(rng() % 256);
        auto v = parse_hf_tokenizer_json(text, "tok.json");
        if (v.ok()) {
            auto tok = Tokenizer::create(std::move(v).value());
            if (tok.ok()) (void)tok->encode("ab <|eot_id|> \xFF", true, true);
        } else {
            EXPECT_EQ(v.status().message().rfind("tok.json: ", 0), 0u) << v.status().message();
        }
    }
}

// ---- chat templates ----

TEST(TokenizerChat, Llama3AndChatMl) {
    const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "  Hi!\n"}};
    EXPECT_EQ(apply_chat_template(ChatTemplate::kLlama3, msgs, true),
              "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(apply_chat_template(ChatTemplate::kChatMl, msgs, true),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi!\n<|im_end|>\n"
              "<|im_start|>assistant\n");
    EXPECT_EQ(apply_chat_template(ChatTemplate::kChatMl, {}, false), "");
    EXPECT_EQ(chat_template_from_name("chatml").value(), ChatTemplate::kChatMl);
    EXPECT_EQ(chat_template_from_name("llama3").value(), ChatTemplate::kLlama3);
    EXPECT_EQ(chat_template_from_name("vicuna").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tca
