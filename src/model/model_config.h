// ModelConfig: the hyper-parameters of a llama-family decoder (llama, mistral, qwen2) read from
// GGUF metadata (here) or a Hugging Face config.json (hf_config.h), and their validation.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tca {

class GgufFile;

enum class ModelArch { kLlama, kMistral, kQwen2 };
const char* model_arch_name(ModelArch a);

// How RoPE pairs the dimensions of a head.
//  kAdjacentPairs: (x[2i], x[2i+1]) rotate together (GGUF llama/mistral, llama.cpp "NORM").
//  kHalfSplit:     (x[i], x[i + head_dim/2]) rotate together (GGUF qwen2, llama.cpp "NEOX",
//                  and every Hugging Face checkpoint: HF stores llama q/k weights permuted for
//                  its rotate_half, so safetensors models use kHalfSplit with the weights as
//                  stored; llama.cpp's converter undoes that permutation when writing GGUF).
enum class RopeStyle { kAdjacentPairs, kHalfSplit };
const char* rope_style_name(RopeStyle s);

// Llama-3 frequency scaling (HF rope_scaling.rope_type "llama3"). In GGUF files the same
// information is stored as a per-dimension factor tensor `rope_freqs.weight` instead (see
// ModelWeights::rope_freqs), so config_from_gguf leaves this kNone.
struct RopeScaling {
    enum class Type { kNone, kLinear, kLlama3 };  // kLinear: position interpolation
    Type type = Type::kNone;
    double factor = 1.0;
    double low_freq_factor = 1.0;
    double high_freq_factor = 4.0;
    int64_t original_context_length = 8192;
};

struct ModelConfig {
    ModelArch arch = ModelArch::kLlama;
    int64_t n_vocab = 0;
    int64_t n_embd = 0;     // hidden size
    int64_t n_layer = 0;
    int64_t n_head = 0;     // query heads
    int64_t n_head_kv = 0;  // key/value heads (GQA when < n_head)
    int64_t head_dim = 0;
    int64_t n_ff = 0;       // MLP intermediate size
    double rope_freq_base = 10000.0;
    RopeStyle rope_style = RopeStyle::kAdjacentPairs;
    RopeScaling rope_scaling;
    double rms_norm_eps = 1e-5;
    int64_t context_length = 0;  // trained / maximum positions from the metadata
    bool tied_output = false;    // output projection shares token_embd
    bool attn_bias = false;      // q/k/v projections have biases (qwen2)
    int64_t bos_id = -1;         // -1: none
    int64_t eos_id = -1;

    int64_t n_q_per_kv() const { return n_kv_ok() ? n_head / n_head_kv : 0; }
    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_head_kv * head_dim; }
    std::string to_string() const;  // one line for logs

private:
    bool n_kv_ok() const { return n_head_kv > 0; }
};

// Checks ranges and the shapes tca supports; messages name the field and the value.
Status validate_config(const ModelConfig& c);

// Reads `general.architecture` and the `<arch>.*` keys; n_vocab from `<arch>.vocab_size`, else
// the tokenizer.ggml.tokens count, else token_embd.weight; tied output when output.weight is
// absent; attention bias when blk.0.attn_q.bias is present. Validates the result.
Result<ModelConfig> config_from_gguf(const GgufFile& file);

}  // namespace tca
