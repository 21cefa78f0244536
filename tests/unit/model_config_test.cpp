// Unit tests for ModelConfig (GGUF and HF config.json), tensor names, and load_model on
// generated GGUF models and all six stories260K variants.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "model/ggml_quants.h"
#include "model/gguf_reader.h"
#include "model/hf_config.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "model/tensor_names.h"
#include "model_test_util.h"

namespace tca {
namespace {

TEST(TensorNames, GgufAndHfNames) {
    EXPECT_EQ(gguf_tensor_name(LayerTensor::kAttnK, 3), "blk.3.attn_k.weight");
    EXPECT_EQ(gguf_tensor_name(LayerTensor::kAttnQBias, 0), "blk.0.attn_q.bias");
    EXPECT_EQ(gguf_tensor_name(GlobalTensor::kOutput), "output.weight");
    EXPECT_EQ(hf_tensor_name(LayerTensor::kAttnK, 3), "model.layers.3.self_attn.k_proj.weight");
    EXPECT_EQ(hf_tensor_name(LayerTensor::kFfnNorm, 1),
              "model.layers.1.post_attention_layernorm.weight");
    EXPECT_EQ(*hf_tensor_name(GlobalTensor::kTokenEmbd), "model.embed_tokens.weight");
    for (int t = 0; t < kNumLayerTensors; ++t) {
        const auto lt = static_cast<LayerTensor>(t);
        EXPECT_EQ(hf_to_gguf_name(hf_tensor_name(lt, 17)), gguf_tensor_name(lt, 17));
    }
    EXPECT_EQ(hf_to_gguf_name("lm_head.weight"), "output.weight");
    EXPECT_EQ(hf_to_gguf_name("model.norm.weight"), "output_norm.weight");
    EXPECT_FALSE(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"));
    EXPECT_FALSE(hf_to_gguf_name("model.layers.01.mlp.up_proj.weight"));
    EXPECT_FALSE(hf_to_gguf_name("model.layers.1"));
    EXPECT_FALSE(hf_to_gguf_name("model.layers.1.self_attn.rotary_emb.inv_freq"));
}

TEST(ModelConfig, ValidationMessages) {
    ModelConfig c;
    c.n_vocab = 100, c.n_embd = 64, c.n_layer = 2, c.n_head = 8, c.n_head_kv = 4;
    c.head_dim = 8, c.n_ff = 100;
    EXPECT_TRUE(validate_config(c).ok());
    c.n_head_kv = 3;
    EXPECT_NE(validate_config(c).message().find("n_head 8 is not divisible by n_head_kv 3"),
              std::string::npos);
    c.n_head_kv = 4;
    c.head_dim = 12;
    EXPECT_EQ(validate_config(c).code(), StatusCode::kUnsupported);
    EXPECT_NE(validate_config(c).message().find("head_dim 12"), std::string::npos);
    c.head_dim = 512;
    EXPECT_EQ(validate_config(c).code(), StatusCode::kUnsupported);
    c.head_dim = 8;
    c.n_layer = 0;
    EXPECT_NE(validate_config(c).message().find("n_layer is 0"), std::string::npos);
    c.n_layer = 2;
    c.rms_norm_eps = 0;
    EXPECT_FALSE(validate_config(c).ok());
    c.rms_norm_eps = 1e-5;
    c.eos_id = 100;
    EXPECT_FALSE(validate_config(c).ok());
}

TEST(ModelConfig, FromGeneratedGguf) {
    testing::TinyModelSpec spec;
    const std::vector<uint8_t> bytes = testing::make_tiny_gguf(spec);
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "tiny.gguf");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    auto c = config_from_gguf(*f);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->arch, ModelArch::kLlama);
    EXPECT_EQ(c->n_vocab, 64);
    EXPECT_EQ(c->head_dim, 8);
    EXPECT_EQ(c->rope_freq_base, 500000.0);
    EXPECT_EQ(c->rms_norm_eps, 1e-6);
    EXPECT_EQ(c->rope_style, RopeStyle::kAdjacentPairs);
    EXPECT_EQ(c->context_length, 256);
    EXPECT_FALSE(c->tied_output);
    EXPECT_EQ(c->bos_id, 1);
    EXPECT_EQ(c->eos_id, 2);

    spec.arch = "qwen2";
    spec.qkv_bias = true;
    spec.tied = true;
    const std::vector<uint8_t> q = testing::make_tiny_gguf(spec);
    auto fq = GgufFile::parse(q.data(), q.size(), "qwen.gguf");
    ASSERT_TRUE(fq.ok());
    auto cq = config_from_gguf(*fq);
    ASSERT_TRUE(cq.ok()) << cq.status().to_string();
    EXPECT_EQ(cq->rope_style, RopeStyle::kHalfSplit);
    EXPECT_TRUE(cq->attn_bias);
    EXPECT_TRUE(cq->tied_output);

    GgufWriter w;
    w.add_string("general.architecture", "gpt2");
    const std::vector<uint8_t> g = w.to_bytes();
    auto fg = GgufFile::parse(g.data(), g.size(), "g.gguf");
    ASSERT_TRUE(fg.ok());
    EXPECT_EQ(config_from_gguf(*fg).status().code(), StatusCode::kUnsupported);
}

// Writes a tiny model to a temp file and loads it: every view present with the right type.
TEST(ModelWeights, LoadsGeneratedModels) {
    testing::TempDir dir("weights");
    for (GgmlType mt : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0,
                        GgmlType::kQ4_0}) {
        for (bool tied : {false, true}) {
            testing::TinyModelSpec spec;
            spec.matrix_type = mt;
            spec.tied = tied;
            spec.qkv_bias = tied;  // exercise both
            const std::string path = dir.file(std::string("m_") + ggml_type_name(mt) + ".gguf");
            {
                std::vector<uint8_t> bytes = testing::make_tiny_gguf(spec);
                std::FILE* fp = std::fopen(path.c_str(), "wb");
                ASSERT_NE(fp, nullptr);
                ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), fp), bytes.size());
                std::fclose(fp);
            }
            auto w = load_model(path);
            ASSERT_TRUE(w.ok()) << w.status().to_string();
            EXPECT_EQ(w->layers.size(), 2u);
            EXPECT_EQ(w->config.tied_output, tied);
            EXPECT_EQ(w->layers[1].wq.type, mt);
            EXPECT_EQ(w->layers[1].wk.shape_string(), "[16, 32]");
            EXPECT_EQ(w->layers[0].bq.present(), tied);
            EXPECT_EQ(w->output.data, tied ? w->token_embd.data : w->output.data);
            EXPECT_FALSE(w->rope_freqs.present());
            ASSERT_NE(w->gguf, nullptr);
            // Dequantized token embedding row 3 matches the encoded source values.
            std::vector<float> row(32);
            ASSERT_TRUE(w->token_embd.dequantize_rows(3, 1, row.data()).ok());
            const std::vector<float> src = testing::test_values(64 * 32, 1);
            auto enc = encode_from_f32(mt, src.data() + 3 * 32, 32);
            std::vector<float> expect(32);
            ASSERT_TRUE(dequantize(mt, enc->data(), expect.data(), 32).ok());
            EXPECT_EQ(row, expect);
        }
    }
}

TEST(ModelWeights, ShapeAndPresenceErrorsNameTheTensor) {
    // Swap attn_k's dims in a hand-written model: [32, 16] instead of [16, 32].
    testing::TinyModelSpec spec;
    spec.n_layer = 1;
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.embedding_length", 32);
    w.add_u32("llama.block_count", 1);
    w.add_u32("llama.feed_forward_length", 48);
    w.add_u32("llama.attention.head_count", 4);
    w.add_u32("llama.attention.head_count_kv", 2);
    w.add_u32("llama.vocab_size", 64);
    const std::vector<float> v = testing::test_values(64 * 48, 1);
    auto add = [&](const std::string& n, std::vector<int64_t> shape) {
        ASSERT_TRUE(w.add_tensor(n, GgmlType::kF32, shape, v.data()).ok());
    };
    add("token_embd.weight", {64, 32});
    add("output_norm.weight", {32});
    add("blk.0.attn_norm.weight", {32});
    add("blk.0.attn_q.weight", {32, 32});
    add("blk.0.attn_k.weight", {32, 16});
    const std::vector<uint8_t> bytes = w.to_bytes();
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "bad.gguf");
    ASSERT_TRUE(f.ok());
    // Non-owning parse: wrap in a shared_ptr that does not outlive `bytes`.
    auto shared = std::make_shared<const GgufFile>(std::move(f).value());
    auto r = load_model_from_gguf(shared);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("tensor blk.0.attn_k.weight: expected [16, 32], got "
                                        "[32, 16]"),
              std::string::npos)
        << r.status().message();
    // Tied output is inferred (no output.weight), so the first missing tensor is attn_v.
    GgufWriter w2;
    w2.add_string("general.architecture", "llama");
    w2.add_u32("llama.embedding_length", 32);
    w2.add_u32("llama.block_count", 1);
    w2.add_u32("llama.feed_forward_length", 48);
    w2.add_u32("llama.attention.head_count", 4);
    w2.add_u32("llama.vocab_size", 64);
    const std::vector<uint8_t> b2 = w2.to_bytes();
    auto f2 = GgufFile::parse(b2.data(), b2.size(), "empty.gguf");
    ASSERT_TRUE(f2.ok());
    auto r2 = load_model_from_gguf(std::make_shared<const GgufFile>(std::move(f2).value()));
    ASSERT_FALSE(r2.ok());
    EXPECT_EQ(r2.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r2.status().message().find("tensor token_embd.weight not found"), std::string::npos)
        << r2.status().message();
}

TEST(ModelWeights, UnsupportedTypeIsNamed) {
    testing::TinyModelSpec spec;
    spec.n_layer = 1;
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.embedding_length", 256);
    w.add_u32("llama.block_count", 1);
    w.add_u32("llama.feed_forward_length", 256);
    w.add_u32("llama.attention.head_count", 4);
    w.add_u32("llama.vocab_size", 4);
    ASSERT_TRUE(w.add_tensor_bytes("token_embd.weight", GgmlType::kQ2_K, {4, 256},
                                   std::vector<uint8_t>(4 * 84)).ok());
    const std::vector<uint8_t> bytes = w.to_bytes();
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "q2.gguf");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    auto r = load_model_from_gguf(std::make_shared<const GgufFile>(std::move(f).value()));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("tensor token_embd.weight: unsupported tensor type Q2_K"),
              std::string::npos)
        << r.status().message();
}

TEST(ModelWeights, Stories260KAllVariants) {
    const std::string dir = testing::shared_models_dir();
    if (!std::filesystem::exists(dir + "/stories260K.gguf")) {
        GTEST_SKIP() << "stories260K models not found in " << dir << ": skipping";
    }
    std::vector<float> ref_row(64);
    for (const char* variant : {"", "-f16", "-bf16", "-q8_0", "-q4_0", "-q4_k_m"}) {
        SCOPED_TRACE(variant);
        auto w = load_model(dir + "/stories260K" + variant + ".gguf");
        ASSERT_TRUE(w.ok()) << w.status().to_string();
        const ModelConfig& c = w->config;
        EXPECT_EQ(c.arch, ModelArch::kLlama);
        EXPECT_EQ(c.n_vocab, 512);
        EXPECT_EQ(c.n_embd, 64);
        EXPECT_EQ(c.n_layer, 5);
        EXPECT_EQ(c.n_head, 8);
        EXPECT_EQ(c.n_head_kv, 4);
        EXPECT_EQ(c.head_dim, 8);
        EXPECT_EQ(c.n_ff, 172);
        EXPECT_EQ(c.rope_freq_base, 10000.0);
        EXPECT_EQ(c.rms_norm_eps, 1e-5);
        EXPECT_EQ(c.rope_style, RopeStyle::kAdjacentPairs);
        EXPECT_EQ(c.context_length, 2048);
        EXPECT_FALSE(c.tied_output);
        EXPECT_NE(w->output.data, w->token_embd.data);
        EXPECT_FALSE(c.attn_bias);
        EXPECT_EQ(c.bos_id, 1);
        EXPECT_EQ(c.eos_id, 2);
        ASSERT_EQ(w->layers.size(), 5u);
        EXPECT_EQ(w->layers[3].wk.shape_string(), "[32, 64]");
        EXPECT_EQ(w->layers[3].w_down.shape_string(), "[64, 172]");
        EXPECT_EQ(w->layers[3].attn_norm.type, GgmlType::kF32);
        // Every weight dequantizes; the embedding stays close to the F32 model's.
        for (const LayerWeights& l : w->layers) {
            for (int t = 0; t < kNumLayerTensors; ++t) {
                const WeightView& v = l.get(static_cast<LayerTensor>(t));
                if (!v.present()) continue;
                std::vector<float> all(static_cast<size_t>(v.n_rows() * v.row_elems()));
                ASSERT_TRUE(v.dequantize_rows(0, v.n_rows(), all.data()).ok()) << v.name;
                for (float x : all) ASSERT_TRUE(std::isfinite(x)) << v.name;
            }
        }
        std::vector<float> row(64);
        ASSERT_TRUE(w->token_embd.dequantize_rows(100, 1, row.data()).ok());
        if (std::string(variant).empty()) {
            ref_row = row;
        } else {
            double err = 0, norm = 0;
            for (int i = 0; i < 64; ++i) {
                err += (row[i] - ref_row[i]) * (row[i] - ref_row[i]);
                norm += ref_row[i] * ref_row[i];
            }
            EXPECT_LT(std::sqrt(err / norm), 0.15) << "relative error of embedding row 100";
        }
    }
}

TEST(HfConfig, LlamaQwenAndErrors) {
    const std::string llama3 = R"({
      "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
      "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
      "intermediate_size": 14336, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
      "max_position_embeddings": 131072, "tie_word_embeddings": false,
      "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";
    auto c = config_from_hf_json(llama3, "llama3.json");
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->head_dim, 128);
    EXPECT_EQ(c->n_head_kv, 8);
    EXPECT_EQ(c->rope_freq_base, 500000.0);
    EXPECT_EQ(c->rope_style, RopeStyle::kHalfSplit);
    EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
    EXPECT_EQ(c->rope_scaling.factor, 8.0);
    EXPECT_EQ(c->rope_scaling.original_context_length, 8192);
    EXPECT_EQ(c->eos_id, 128001);
    EXPECT_FALSE(c->attn_bias);

    // transformers >= 5: rope_theta and the scaling live in "rope_parameters".
    const std::string llama3_v5 = R"({
      "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
      "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
      "intermediate_size": 14336, "rms_norm_eps": 1e-05,
      "rope_parameters": {"rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
                          "rope_type": "llama3"}})";
    auto c5 = config_from_hf_json(llama3_v5, "llama3_v5.json");
    ASSERT_TRUE(c5.ok()) << c5.status().to_string();
    EXPECT_EQ(c5->rope_freq_base, 500000.0);
    EXPECT_EQ(c5->rope_scaling.type, RopeScaling::Type::kLlama3);
    EXPECT_EQ(c5->rope_scaling.original_context_length, 8192);
    auto c6 = config_from_hf_json(R"({"model_type": "qwen2", "vocab_size": 1000, "hidden_size": 256,
      "num_hidden_layers": 2, "num_attention_heads": 8, "intermediate_size": 512,
      "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}})", "qwen_v5.json");
    ASSERT_TRUE(c6.ok()) << c6.status().to_string();
    EXPECT_EQ(c6->rope_freq_base, 1000000.0);
    EXPECT_EQ(c6->rope_scaling.type, RopeScaling::Type::kNone);

    const std::string qwen = R"({"model_type": "qwen2", "vocab_size": 151936,
      "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
      "num_key_value_heads": 2, "intermediate_size": 4864, "rope_theta": 1000000.0,
      "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "rope_scaling": null,
      "max_position_embeddings": 32768})";
    auto q = config_from_hf_json(qwen, "qwen.json");
    ASSERT_TRUE(q.ok()) << q.status().to_string();
    EXPECT_EQ(q->head_dim, 64);
    EXPECT_TRUE(q->attn_bias);
    EXPECT_TRUE(q->tied_output);
    EXPECT_EQ(q->arch, ModelArch::kQwen2);

    EXPECT_EQ(config_from_hf_json("{", "x").status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(config_from_hf_json("[]", "x").status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(config_from_hf_json(R"({"model_type": "gpt2"})", "x").status().code(),
              StatusCode::kUnsupported);
    auto missing = config_from_hf_json(R"({"model_type": "llama"})", "x.json");
    EXPECT_NE(missing.status().message().find("vocab_size not found"), std::string::npos);
    std::string bad = qwen;
    bad.replace(bad.find("896"), 3, "\"896\"");
    auto b = config_from_hf_json(bad, "x.json");
    EXPECT_NE(b.status().message().find("hidden_size is \"896\", expected an integer"),
              std::string::npos)
        << b.status().message();
    std::string yarn = llama3;
    yarn.replace(yarn.find("\"llama3\""), 8, "\"yarn\"");
    EXPECT_EQ(config_from_hf_json(yarn, "x").status().code(), StatusCode::kUnsupported);
    std::string odd = qwen;
    odd.replace(odd.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
    EXPECT_NE(config_from_hf_json(odd, "x").status().message().find("not divisible"),
              std::string::npos);
}

}  // namespace
}  // namespace tca
