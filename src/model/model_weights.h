// ModelWeights: a loaded model = its ModelConfig plus a view of every weight, checked for
// presence, type and shape. Weights stay in the file mapping in their stored ggml type
// (quantized blocks as-is); the runtime dequantizes or runs quantized matmuls later.
// Sources: a GGUF file, a .safetensors file, or a Hugging Face directory (config.json +
// *.safetensors, optionally with model.safetensors.index.json).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/ggml_types.h"
#include "model/gguf_reader.h"
#include "model/model_config.h"
#include "model/safetensors_reader.h"
#include "model/tensor_names.h"

namespace tca {

// A weight in the file: `shape` outermost first ([out, in] for matrices); rows are the
// innermost dim, each row ggml_row_bytes(type, row_elems()) bytes, stored contiguously.
struct WeightView {
    std::string name;  // name in the source file
    GgmlType type = GgmlType::kF32;
    int ndim = 0;
    std::array<int64_t, 4> shape{};
    const uint8_t* data = nullptr;  // nullptr: absent (optional weight)
    uint64_t n_bytes = 0;

    bool present() const { return data != nullptr; }
    int64_t row_elems() const { return ndim > 0 ? shape[static_cast<size_t>(ndim - 1)] : 0; }
    int64_t n_rows() const;
    uint64_t row_bytes() const;
    std::string shape_string() const;
    // Dequantizes rows [row0, row0 + n) into out[n * row_elems()].
    Status dequantize_rows(int64_t row0, int64_t n, float* out) const;
};

struct LayerWeights {
    WeightView attn_norm;   // [n_embd] f32
    WeightView wq;          // [n_head * head_dim, n_embd]
    WeightView wk;          // [n_head_kv * head_dim, n_embd]
    WeightView wv;          // [n_head_kv * head_dim, n_embd]
    WeightView wo;          // [n_embd, n_head * head_dim]
    WeightView bq, bk, bv;  // [q_dim] / [kv_dim]; present iff config.attn_bias
    WeightView ffn_norm;    // [n_embd]
    WeightView w_gate;      // [n_ff, n_embd]
    WeightView w_up;        // [n_ff, n_embd]
    WeightView w_down;      // [n_embd, n_ff]

    WeightView& get(LayerTensor t);
    const WeightView& get(LayerTensor t) const;
};

enum class ModelFormat { kGguf, kSafetensors };

struct ModelWeights {
    ModelFormat format = ModelFormat::kGguf;
    std::string path;
    ModelConfig config;
    WeightView token_embd;   // [n_vocab, n_embd]
    WeightView output_norm;  // [n_embd]
    WeightView output;       // [n_vocab, n_embd]; same data as token_embd when tied
    WeightView rope_freqs;   // [head_dim / 2] f32 per-dimension rope divisors (GGUF llama3);
                             // absent otherwise
    std::vector<LayerWeights> layers;

    // The sources the views point into (kept alive by these). `gguf` is set for GGUF models so
    // the tokenizer can read tokenizer.ggml.* keys.
    std::shared_ptr<const GgufFile> gguf;
    std::shared_ptr<const SafetensorsModel> safetensors;

    uint64_t total_bytes() const;  // sum of the weights' stored bytes (tied output once)
};

// Opens `path`: a GGUF file (by magic), a .safetensors file (config.json next to it), or a
// directory with config.json and safetensors shards.
Result<ModelWeights> load_model(const std::string& path);
// From an already-parsed GGUF file.
Result<ModelWeights> load_model_from_gguf(std::shared_ptr<const GgufFile> file);
// From safetensors shards and a config (config_from_hf_*).
Result<ModelWeights> load_model_from_safetensors(std::shared_ptr<const SafetensorsModel> st,
                                                 const ModelConfig& config, std::string path);

}  // namespace tca
