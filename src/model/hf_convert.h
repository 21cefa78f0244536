// Hugging Face folder -> GGUF conversion (`tca convert`): config.json + safetensors +
// tokenizer.json become one GGUF file of arch llama (or qwen2) that llama.cpp and tca load,
// with the byte-level BPE vocabulary embedded as tokenizer.ggml.* keys.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/ggml_types.h"

namespace tca {

struct HfConvertOptions {
    // Storage of the 2-d matrices (F32, F16, BF16, Q8_0); norms and biases stay F32. A Q8_0
    // matrix whose rows are not a multiple of 32 is stored F16 instead (logged).
    GgmlType weight_type = GgmlType::kF16;
    std::string name;  // general.name; empty: the folder's name
};

// "f32", "f16", "bf16", "q8_0" -> type; anything else is a usage error naming the value.
Result<GgmlType> parse_convert_type(const std::string& name);

// Q/K rows of one projection from Hugging Face's half-split layout (rotate_half pairs x[i] with
// x[i + d/2]) to GGUF llama's adjacent-pair layout (x[2i] with x[2i+1]): GGUF row h*d + 2i + j
// is HF row h*d + j*d/2 + i. `rows` holds [n_heads * head_dim, row_len] f32 values; biases are
// the case row_len == 1.
std::vector<float> permute_rope_rows(const std::vector<float>& rows, int64_t n_heads,
                                     int64_t head_dim, int64_t row_len);

struct HfConvertReport {
    std::string arch;        // GGUF arch written
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t file_bytes = 0;
    int64_t n_fallback_f16 = 0;  // Q8_0 matrices stored as F16 (rows not a multiple of 32)
};

// Converts the folder `hf_dir` (config.json, model.safetensors or an index with shards,
// tokenizer.json and optionally tokenizer_config.json) into `out_path`. HF llama/mistral
// checkpoints become arch llama with permuted Q/K rows (so that tca and llama.cpp apply
// adjacent-pair RoPE and compute the same attention as the half-split original); qwen2 stays
// qwen2 (half-split in GGUF too). Errors name the file and the field.
Result<HfConvertReport> convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path,
                                           const HfConvertOptions& options);

}  // namespace tca
