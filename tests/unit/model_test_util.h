// Helpers shared by the model-file unit tests: shared asset paths, file slurping, a small
// deterministic GGUF model built with GgufWriter.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include "model/gguf_writer.h"

namespace tca::testing {

inline std::string shared_models_dir() { return std::string(TCA_SHARED_DIR) + "/models"; }

inline bool read_file_bytes(const std::string& path, std::vector<uint8_t>* out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return true;
}

// A temporary directory removed when the object dies.
class TempDir {
public:
    explicit TempDir(const std::string& tag) {
        path_ = std::filesystem::temp_directory_path() /
                ("tca_" + tag + "_" + std::to_string(::getpid()) + "_" +
                 std::to_string(reinterpret_cast<uintptr_t>(this)));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string path() const { return path_.string(); }

private:
    std::filesystem::path path_;
};

// Deterministic pseudo-random floats in [-1, 1).
inline std::vector<float> test_values(int64_t n, uint32_t seed) {
    std::vector<float> v(static_cast<size_t>(n));
    uint32_t s = seed * 2654435761u + 1u;
    for (auto& x : v) {
        s = s * 1664525u + 1013904223u;
        x = static_cast<float>(s >> 8) / static_cast<float>(1u << 23) - 1.0f;
    }
    return v;
}

struct TinyModelSpec {
    int64_t n_vocab = 64, n_embd = 32, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 48;
    GgmlType matrix_type = GgmlType::kF32;
    bool tied = false;
    bool qkv_bias = false;
    std::string arch = "llama";
};

// A complete llama-style GGUF (metadata + tokenizer keys + all tensors) with seeded weights.
inline std::vector<uint8_t> make_tiny_gguf(const TinyModelSpec& s) {
    GgufWriter w;
    const std::string a = s.arch;
    w.add_string("general.architecture", a);
    w.add_string("general.name", "tiny");
    w.add_u32(a + ".context_length", 256);
    w.add_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
    w.add_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
    w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
    w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head));
    w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
    w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
    w.add_f32(a + ".rope.freq_base", 500000.0f);
    w.add_string("tokenizer.ggml.model", "llama");
    std::vector<std::string> tokens;
    for (int64_t i = 0; i < s.n_vocab; ++i) tokens.push_back("tok" + std::to_string(i));
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_f32_array("tokenizer.ggml.scores", std::vector<float>(static_cast<size_t>(s.n_vocab), 0.5f));
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    const int64_t hd = s.n_embd / s.n_head;
    uint32_t seed = 1;
    auto add = [&](const std::string& name, GgmlType t, std::vector<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        const std::vector<float> v = test_values(n, seed++);
        const Status st = w.add_tensor(name, t, shape, v.data());
        TCA_ASSERT(st.ok(), "%s", st.to_string().c_str());
    };
    const GgmlType mt = s.matrix_type;
    add("token_embd.weight", mt, {s.n_vocab, s.n_embd});
    for (int64_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", GgmlType::kF32, {s.n_embd});
        add(p + "attn_q.weight", mt, {s.n_head * hd, s.n_embd});
        add(p + "attn_k.weight", mt, {s.n_head_kv * hd, s.n_embd});
        add(p + "attn_v.weight", mt, {s.n_head_kv * hd, s.n_embd});
        if (s.qkv_bias) {
            add(p + "attn_q.bias", GgmlType::kF32, {s.n_head * hd});
            add(p + "attn_k.bias", GgmlType::kF32, {s.n_head_kv * hd});
            add(p + "attn_v.bias", GgmlType::kF32, {s.n_head_kv * hd});
        }
        add(p + "attn_output.weight", mt, {s.n_embd, s.n_head * hd});
        add(p + "ffn_norm.weight", GgmlType::kF32, {s.n_embd});
        add(p + "ffn_gate.weight", mt, {s.n_ff, s.n_embd});
        add(p + "ffn_up.weight", mt, {s.n_ff, s.n_embd});
        add(p + "ffn_down.weight", GgmlType::kF32, {s.n_embd, s.n_ff});
    }
    add("output_norm.weight", GgmlType::kF32, {s.n_embd});
    if (!s.tied) add("output.weight", mt, {s.n_vocab, s.n_embd});
    return w.to_bytes();
}

}  // namespace tca::testing

namespace tca::testing {

struct StTensorSpec {
    std::string name;
    std::string dtype;  // "F32", "F16", "BF16", ...
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

// A safetensors file: header JSON written by hand (offsets contiguous, in order), padded with
// spaces to a multiple of 8 like the reference writer.
inline std::vector<uint8_t> make_safetensors(const std::vector<StTensorSpec>& tensors,
                                             const std::string& metadata_json = "") {
    std::string h = "{";
    uint64_t off = 0;
    bool first = true;
    if (!metadata_json.empty()) {
        h += "\"__metadata__\":" + metadata_json;
        first = false;
    }
    for (const StTensorSpec& t : tensors) {
        if (!first) h += ",";
        first = false;
        h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
        for (size_t i = 0; i < t.shape.size(); ++i) {
            h += (i ? "," : "") + std::to_string(t.shape[i]);
        }
        h += "],\"data_offsets\":[" + std::to_string(off) + "," +
             std::to_string(off + t.bytes.size()) + "]}";
        off += t.bytes.size();
    }
    h += "}";
    while (h.size() % 8) h += ' ';
    // Built as a string: GCC 12 misreports vector inserts after a fixed-size prefix.
    std::string all(8, '\0');
    const uint64_t n = h.size();
    std::memcpy(all.data(), &n, 8);
    all += h;
    for (const StTensorSpec& t : tensors) {
        all.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    }
    return std::vector<uint8_t>(all.begin(), all.end());
}

inline std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace tca::testing
