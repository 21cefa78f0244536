// Robustness of the model-file readers on untrusted input: truncations at every header length
// and on a coarse grid, seeded byte flips and u64 overwrites in the header / tensor-info region
// of a generated GGUF and of stories260K.gguf, and the same for safetensors headers and
// config.json. Every case must give OK or a clean Status: never a crash, hang or huge
// allocation (the suite also runs under ASan+UBSan, which checks the reads stay in bounds:
// each input is an exactly sized heap buffer).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>

#include "model/hf_config.h"
#include "model/model_weights.h"
#include "model/safetensors_reader.h"
#include "model_test_util.h"

namespace tca {
namespace {

struct Tally {
    int ok = 0, failed = 0;
};

// Parses a GGUF image and, when it parses, builds the config and weight views and dequantizes
// the last row of every weight (the bytes nearest each tensor's end).
void exercise_gguf(const std::vector<uint8_t>& bytes, Tally* tally) {
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "fuzz.gguf");
    if (!f.ok()) {
        EXPECT_FALSE(f.status().message().empty());
        ++tally->failed;
        return;
    }
    // Getters over every KV must stay in bounds too.
    for (const GgufKv& kv : f->kvs()) {
        if (kv.type == GgufValueType::kArray) {
            (void)f->get_string_array_views(kv.key);
            (void)f->get_int_array(kv.key);
            (void)f->get_f32_array(kv.key);
        }
    }
    auto w = load_model_from_gguf(std::make_shared<const GgufFile>(std::move(f).value()));
    if (!w.ok()) {
        EXPECT_FALSE(w.status().message().empty());
        ++tally->failed;
        return;
    }
    std::vector<float> row;
    auto last_row = [&](const WeightView& v) {
        if (!v.present() || v.n_rows() == 0) return;
        row.resize(static_cast<size_t>(v.row_elems()));
        EXPECT_TRUE(v.dequantize_rows(v.n_rows() - 1, 1, row.data()).ok()) << v.name;
    };
    last_row(w->token_embd);
    last_row(w->output);
    last_row(w->output_norm);
    for (const LayerWeights& l : w->layers) {
        for (int t = 0; t < kNumLayerTensors; ++t) last_row(l.get(static_cast<LayerTensor>(t)));
    }
    ++tally->ok;
}

uint64_t header_end(const std::vector<uint8_t>& bytes) {
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "x");
    TCA_ASSERT(f.ok(), "the unmutated file parses");
    return f->data_offset();
}

// Truncations: every length up to the data section (capped at `max_every`, then every
// `stride`), and 64 lengths spread over the whole file.
void fuzz_truncations(const std::vector<uint8_t>& full, uint64_t max_every, uint64_t stride,
                      Tally* tally) {
    const uint64_t hdr = header_end(full);
    std::vector<uint64_t> lengths;
    for (uint64_t n = 0; n <= hdr; n += (n < max_every ? 1 : stride)) lengths.push_back(n);
    for (int i = 0; i <= 64; ++i) lengths.push_back(full.size() * static_cast<uint64_t>(i) / 64);
    lengths.push_back(full.size() - 1);
    for (uint64_t n : lengths) {
        const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
        exercise_gguf(cut, tally);
    }
}

// Mutations in [0, data_offset): single-byte flips, and u64 overwrites with edge values.
void fuzz_mutations(std::vector<uint8_t> bytes, int n_flips, int n_u64, uint64_t seed,
                    Tally* tally) {
    const uint64_t hdr = header_end(bytes);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < n_flips; ++i) {
        const size_t pos = static_cast<size_t>(rng() % hdr);
        const uint8_t old = bytes[pos];
        bytes[pos] = static_cast<uint8_t>(old ^ static_cast<uint8_t>(1u + rng() % 255u));
        exercise_gguf(bytes, tally);
        bytes[pos] = old;
    }
    const uint64_t size = bytes.size();
    const uint64_t edge[] = {0,           1,          ~uint64_t{0},     uint64_t{1} << 63,
                             uint64_t{1} << 60, uint64_t{1} << 32, 0xffffffffu, size,
                             size - 1,    size + 1,   size / 2,         31};
    for (int i = 0; i < n_u64; ++i) {
        const size_t pos = static_cast<size_t>(rng() % (hdr - 8));
        uint64_t v = (rng() % 2) ? edge[rng() % std::size(edge)] : rng();
        if (rng() % 4 == 0) v &= 0xffff;  // small values hit counts/types/dims
        uint8_t old[8];
        std::memcpy(old, bytes.data() + pos, 8);
        std::memcpy(bytes.data() + pos, &v, 8);
        exercise_gguf(bytes, tally);
        std::memcpy(bytes.data() + pos, old, 8);
    }
}

TEST(ModelFileFuzz, GeneratedGguf) {
    testing::TinyModelSpec spec;
    spec.n_vocab = 16, spec.n_embd = 32, spec.n_layer = 1, spec.n_ff = 32;
    spec.matrix_type = GgmlType::kQ8_0;
    spec.qkv_bias = true;
    const std::vector<uint8_t> bytes = testing::make_tiny_gguf(spec);
    Tally tally;
    exercise_gguf(bytes, &tally);
    ASSERT_EQ(tally.ok, 1);
    fuzz_truncations(bytes, ~uint64_t{0}, 1, &tally);
    fuzz_mutations(bytes, 3000, 2000, 42, &tally);
    EXPECT_GT(tally.failed, 0);
    EXPECT_GT(tally.ok, 1);  // some flips (e.g. inside weights' names' ... or values) still load
    std::printf("generated gguf: %d ok, %d clean errors\n", tally.ok, tally.failed);
}

TEST(ModelFileFuzz, Stories260K) {
    const std::string path = testing::shared_models_dir() + "/stories260K.gguf";
    std::vector<uint8_t> bytes;
    if (!testing::read_file_bytes(path, &bytes)) GTEST_SKIP() << path << " not found: skipping";
    Tally tally;
    exercise_gguf(bytes, &tally);
    ASSERT_EQ(tally.ok, 1);
    fuzz_truncations(bytes, 2048, 7, &tally);
    fuzz_mutations(bytes, 1500, 1000, 7, &tally);
    EXPECT_GT(tally.failed, 0);
    std::printf("stories260K: %d ok, %d clean errors\n", tally.ok, tally.failed);
}

void exercise_safetensors(const std::vector<uint8_t>& bytes, Tally* tally) {
    auto f = SafetensorsFile::parse(bytes.data(), bytes.size(), "fuzz.safetensors");
    if (!f.ok()) {
        EXPECT_FALSE(f.status().message().empty());
        ++tally->failed;
        return;
    }
    // Every tensor's bytes are inside the buffer: touch the first and last.
    uint64_t sum = 0;
    for (const SafetensorsTensor& t : f->tensors()) {
        if (t.n_bytes > 0) sum += t.data[0] + t.data[t.n_bytes - 1];
    }
    EXPECT_GE(sum, 0u);
    ++tally->ok;
}

TEST(ModelFileFuzz, SafetensorsHeaders) {
    const std::vector<uint8_t> bytes = testing::make_safetensors(
        {{"model.embed_tokens.weight", "F32", {4, 8}, std::vector<uint8_t>(128, 1)},
         {"b", "BF16", {3, 2}, std::vector<uint8_t>(12, 2)},
         {"c", "F16", {0}, {}},
         {"d", "I64", {2}, std::vector<uint8_t>(16, 3)}},
        R"({"format": "pt", "x": "y"})");
    Tally tally;
    exercise_safetensors(bytes, &tally);
    ASSERT_EQ(tally.ok, 1);
    uint64_t hdr = 0;
    std::memcpy(&hdr, bytes.data(), 8);
    hdr += 8;
    for (size_t n = 0; n <= bytes.size(); ++n) {
        exercise_safetensors(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n)), &tally);
    }
    std::mt19937_64 rng(1234);
    std::vector<uint8_t> m = bytes;
    // Flips in the JSON text: printable replacements ('[', '}', '"', digits, '-', '.') keep it
    // JSON-like enough to reach the semantic checks, random bytes exercise the parser.
    const char kJsonish[] = "[]{}\",:-.0123456789eE \\";
    for (int i = 0; i < 4000; ++i) {
        const size_t pos = static_cast<size_t>(rng() % hdr);
        const uint8_t old = m[pos];
        m[pos] = (rng() % 2) ? static_cast<uint8_t>(kJsonish[rng() % (sizeof kJsonish - 1)])
                             : static_cast<uint8_t>(rng());
        exercise_safetensors(m, &tally);
        m[pos] = old;
    }
    // Header length overwrites.
    for (uint64_t v : {uint64_t{0}, uint64_t{1}, hdr - 9, hdr - 7, ~uint64_t{0},
                       uint64_t{1} << 63, uint64_t{200'000'000}, uint64_t{bytes.size()}}) {
        std::memcpy(m.data(), &v, 8);
        exercise_safetensors(m, &tally);
    }
    EXPECT_GT(tally.failed, 0);
    std::printf("safetensors: %d ok, %d clean errors\n", tally.ok, tally.failed);
}

TEST(ModelFileFuzz, HfConfigJson) {
    const std::string cfg = R"({"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "intermediate_size": 11008, "rope_theta": 10000.0, "rms_norm_eps": 1e-05,
        "eos_token_id": [2, 3], "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})";
    ASSERT_TRUE(config_from_hf_json(cfg, "c").ok());
    std::mt19937_64 rng(99);
    const char kJsonish[] = "[]{}\",:-.0123456789eE ntrufl";
    int ok = 0;
    for (int i = 0; i < 3000; ++i) {
        std::string m = cfg;
        for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) {
            m[rng() % m.size()] = kJsonish[rng() % (sizeof kJsonish - 1)];
        }
        auto r = config_from_hf_json(m, "c");
        ok += r.ok();
        if (!r.ok()) {
            EXPECT_FALSE(r.status().message().empty());
        }
    }
    EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace tca
