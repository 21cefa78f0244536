// Unit tests for the safetensors reader (round trip, metadata, dtypes, malformed headers),
// multi-file indexes, and load_model on a Hugging Face style directory.
#include <gtest/gtest.h>

#include <cstring>

#include "core/half.h"
#include "model/model_weights.h"
#include "model/safetensors_reader.h"
#include "model_test_util.h"

namespace tca {
namespace {

using testing::StTensorSpec;

Status st_status(const std::vector<uint8_t>& b) {
    return SafetensorsFile::parse(b.data(), b.size(), "x.safetensors").status();
}

// Replaces the header of a file with `json` (keeping the data section of `data_bytes`).
std::vector<uint8_t> with_header(const std::string& json, size_t data_bytes) {
    std::string all(8, '\0');
    const uint64_t n = json.size();
    std::memcpy(all.data(), &n, 8);
    all += json;
    all.resize(all.size() + data_bytes, '\0');
    return std::vector<uint8_t>(all.begin(), all.end());
}

TEST(Safetensors, RoundTrip) {
    const std::vector<float> v = testing::test_values(24, 5);
    std::vector<uint8_t> bf(12 * 2);
    for (int i = 0; i < 12; ++i) {
        const uint16_t h = f32_to_bf16(v[i]);
        std::memcpy(bf.data() + 2 * i, &h, 2);
    }
    const auto bytes = testing::make_safetensors(
        {{"a", "F32", {2, 3, 4}, testing::f32_bytes(v)},
         {"b", "BF16", {12}, bf},
         {"c", "I64", {2}, std::vector<uint8_t>(16)},
         {"empty", "F16", {0, 5}, {}}},
        R"({"format": "pt"})");
    auto f = SafetensorsFile::parse(bytes.data(), bytes.size(), "x.safetensors");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    ASSERT_EQ(f->tensors().size(), 4u);
    const SafetensorsTensor* a = f->find("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3, 4}));
    EXPECT_EQ(a->n_bytes, 96u);
    EXPECT_EQ(std::memcmp(a->data, v.data(), 96), 0);
    EXPECT_EQ(*safetensors_ggml_type(*a), GgmlType::kF32);
    EXPECT_EQ(*safetensors_ggml_type(*f->find("b")), GgmlType::kBF16);
    const auto c_type = safetensors_ggml_type(*f->find("c"));
    EXPECT_EQ(c_type.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(c_type.status().message().find("tensor c: unsupported safetensors dtype I64"),
              std::string::npos);
    EXPECT_EQ(f->metadata().at("format"), "pt");
    EXPECT_EQ(f->find("empty")->n_bytes, 0u);
}

TEST(Safetensors, MalformedHeaders) {
    EXPECT_FALSE(st_status({1, 2, 3}).ok());
    // Header length 2^63 and header length just past the end.
    std::vector<uint8_t> b(16, 0);
    b[7] = 0x80;
    EXPECT_NE(st_status(b).message().find("runs past end of file"), std::string::npos);
    b = with_header("{}", 0);
    b[0] = 3;
    EXPECT_FALSE(st_status(b).ok());
    EXPECT_TRUE(st_status(with_header("{}", 0)).ok());

    struct Case {
        const char* json;
        const char* expect;
    };
    const Case cases[] = {
        {"{", "not valid JSON"},
        {"[1]", "not a JSON object"},
        {R"({"t": 5})", "entry is not an object"},
        {R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]}})", "pair"},
        {R"({"t": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}})", "dtype"},
        {R"({"t": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", "unknown dtype Q4"},
        {R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", "shape entry -2"},
        {R"({"t": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", "shape entry 2.5"},
        {R"({"t": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", "shape array"},
        {R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", "data offset -8"},
        {R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}})", "data offset 8.0"},
        {R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", "outside"},
        {R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [64, 72]}})",
         "data_offsets [64, 72] outside the data section of 16 bytes"},
        {R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
         "hold 8 bytes, F32 [3] needs 12"},
        {R"({"t": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}})",
         "overflow"},
        {R"({"t": {"dtype": "F32", "shape": [18446744073709551616], "data_offsets": [0, 8]}})",
         "shape entry"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", "overlap"},
        {R"({"__metadata__": {"k": 1}})", "not a string"},
        {R"({"__metadata__": []})", "not an object"},
    };
    for (const Case& c : cases) {
        const Status st = st_status(with_header(c.json, 16));
        EXPECT_FALSE(st.ok()) << c.json;
        EXPECT_NE(st.message().find(c.expect), std::string::npos) << c.json << " -> " << st.message();
    }
    // Deep nesting is refused before parsing.
    std::string deep = R"({"__metadata__": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
    EXPECT_NE(st_status(with_header(deep, 0)).message().find("nests deeper"), std::string::npos);
}

// A tiny llama as a Hugging Face directory: config.json + two shards + index.
class HfDir : public ::testing::Test {
protected:
    static constexpr int64_t kVocab = 32, kEmbd = 16, kFf = 24, kHeads = 2, kKv = 1;
    std::string config_json(bool tied) const {
        return std::string(R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "intermediate_size": 24, "rms_norm_eps": 1e-6, "max_position_embeddings": 64,
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": )") +
               (tied ? "true" : "false") + "}";
    }
    std::vector<StTensorSpec> layer_tensors(int l, const std::string& dtype) const {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        auto t = [&](const std::string& n, std::vector<int64_t> shape, const std::string& dt) {
            int64_t numel = 1;
            for (int64_t d : shape) numel *= d;
            const uint64_t es = dt == "F32" ? 4 : 2;
            return StTensorSpec{p + n, dt, shape,
                                std::vector<uint8_t>(static_cast<size_t>(numel) * es, 0x3c)};
        };
        const int64_t hd = kEmbd / kHeads;
        return {t("input_layernorm.weight", {kEmbd}, "F32"),
                t("self_attn.q_proj.weight", {kHeads * hd, kEmbd}, dtype),
                t("self_attn.k_proj.weight", {kKv * hd, kEmbd}, dtype),
                t("self_attn.v_proj.weight", {kKv * hd, kEmbd}, dtype),
                t("self_attn.o_proj.weight", {kEmbd, kHeads * hd}, dtype),
                t("post_attention_layernorm.weight", {kEmbd}, "F32"),
                t("mlp.gate_proj.weight", {kFf, kEmbd}, dtype),
                t("mlp.up_proj.weight", {kFf, kEmbd}, dtype),
                t("mlp.down_proj.weight", {kEmbd, kFf}, dtype)};
    }
};

TEST_F(HfDir, LoadsShardedDirectory) {
    testing::TempDir dir("hf");
    const std::string cfg = config_json(false);
    testing::write_bytes(dir.file("config.json"), std::vector<uint8_t>(cfg.begin(), cfg.end()));
    std::vector<StTensorSpec> s1 = layer_tensors(0, "BF16");
    s1.push_back({"model.embed_tokens.weight", "F16", {kVocab, kEmbd},
                  std::vector<uint8_t>(kVocab * kEmbd * 2, 0)});
    std::vector<StTensorSpec> s2 = layer_tensors(1, "BF16");
    s2.push_back({"model.norm.weight", "F32", {kEmbd}, std::vector<uint8_t>(kEmbd * 4, 0)});
    s2.push_back({"lm_head.weight", "F32", {kVocab, kEmbd},
                  std::vector<uint8_t>(kVocab * kEmbd * 4, 0)});
    s2.push_back({"model.layers.1.self_attn.rotary_emb.inv_freq", "F32", {4},
                  std::vector<uint8_t>(16, 0)});
    testing::write_bytes(dir.file("model-00001-of-00002.safetensors"), testing::make_safetensors(s1));
    testing::write_bytes(dir.file("model-00002-of-00002.safetensors"), testing::make_safetensors(s2));
    std::string index = R"({"metadata": {}, "weight_map": {)";
    bool first = true;
    for (const auto& [specs, file] : {std::pair{&s1, "model-00001-of-00002.safetensors"},
                                      std::pair{&s2, "model-00002-of-00002.safetensors"}}) {
        for (const StTensorSpec& t : *specs) {
            index += (first ? "" : ",") + ("\"" + t.name + "\": \"" + file + "\"");
            first = false;
        }
    }
    index += "}}";
    testing::write_bytes(dir.file("model.safetensors.index.json"),
                         std::vector<uint8_t>(index.begin(), index.end()));

    auto w = load_model(dir.path());
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    EXPECT_EQ(w->format, ModelFormat::kSafetensors);
    EXPECT_EQ(w->config.rope_style, RopeStyle::kHalfSplit);
    EXPECT_EQ(w->config.head_dim, 8);
    ASSERT_EQ(w->layers.size(), 2u);
    EXPECT_EQ(w->layers[1].wk.type, GgmlType::kBF16);
    EXPECT_EQ(w->layers[1].wk.shape_string(), "[8, 16]");
    EXPECT_EQ(w->layers[1].wk.name, "model.layers.1.self_attn.k_proj.weight");
    EXPECT_EQ(w->token_embd.type, GgmlType::kF16);
    EXPECT_EQ(w->output.type, GgmlType::kF32);
    std::vector<float> row(16);
    ASSERT_TRUE(w->layers[0].wq.dequantize_rows(2, 1, row.data()).ok());
    EXPECT_EQ(row[0], bf16_to_f32(0x3c3c));
    EXPECT_EQ(w->safetensors->n_tensors(), s1.size() + s2.size());

    // Opening the index directly works too; a missing shard is a clean error naming it.
    EXPECT_TRUE(SafetensorsModel::open(dir.file("model.safetensors.index.json")).ok());
    std::filesystem::remove(dir.file("model-00002-of-00002.safetensors"));
    auto missing = load_model(dir.path());
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.status().message().find("model-00002-of-00002.safetensors"),
              std::string::npos);
}

TEST_F(HfDir, SingleFileTiedAndErrors) {
    testing::TempDir dir("hf1");
    const std::string cfg = config_json(true);
    testing::write_bytes(dir.file("config.json"), std::vector<uint8_t>(cfg.begin(), cfg.end()));
    std::vector<StTensorSpec> s;
    for (int l = 0; l < 2; ++l) {
        for (auto& t : layer_tensors(l, "F32")) s.push_back(t);
    }
    s.push_back({"model.embed_tokens.weight", "F32", {kVocab, kEmbd},
                 std::vector<uint8_t>(kVocab * kEmbd * 4, 0)});
    s.push_back({"model.norm.weight", "F32", {kEmbd}, std::vector<uint8_t>(kEmbd * 4, 0)});
    testing::write_bytes(dir.file("model.safetensors"), testing::make_safetensors(s));
    auto w = load_model(dir.file("model.safetensors"));
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    EXPECT_TRUE(w->config.tied_output);
    EXPECT_EQ(w->output.data, w->token_embd.data);

    // Wrong dtype on a matrix and a transposed matrix.
    std::vector<StTensorSpec> bad = s;
    bad[1].dtype = "I32";
    testing::write_bytes(dir.file("model.safetensors"), testing::make_safetensors(bad));
    auto r = load_model(dir.path());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("unsupported safetensors dtype I32"), std::string::npos)
        << r.status().message();
    bad = s;
    bad[2].shape = {kEmbd, 8};
    testing::write_bytes(dir.file("model.safetensors"), testing::make_safetensors(bad));
    r = load_model(dir.path());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(
                  "tensor model.layers.0.self_attn.k_proj.weight: expected [8, 16], got [16, 8]"),
              std::string::npos)
        << r.status().message();
}

}  // namespace
}  // namespace tca
