// Names of the weights of a llama-family model in GGUF (llama.cpp) and Hugging Face
// (safetensors) conventions, their expected shapes (outermost first, [out, in] for matrices)
// from a ModelConfig, and the HF -> GGUF name mapping.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model_config.h"

namespace tca {

enum class LayerTensor {
    kAttnNorm,
    kAttnQ,
    kAttnK,
    kAttnV,
    kAttnOutput,
    kAttnQBias,
    kAttnKBias,
    kAttnVBias,
    kFfnNorm,
    kFfnGate,
    kFfnUp,
    kFfnDown,
};
inline constexpr int kNumLayerTensors = 12;

enum class GlobalTensor { kTokenEmbd, kOutputNorm, kOutput, kRopeFreqs };

// "blk.3.attn_k.weight"
std::string gguf_tensor_name(LayerTensor t, int64_t layer);
// "token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"
std::string gguf_tensor_name(GlobalTensor t);
// "model.layers.3.self_attn.k_proj.weight"
std::string hf_tensor_name(LayerTensor t, int64_t layer);
// "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"; nullopt for kRopeFreqs
// (HF computes rope frequencies from config.json).
std::optional<std::string> hf_tensor_name(GlobalTensor t);
// Maps an HF name to its GGUF name; nullopt when it is not a tensor tca uses.
std::optional<std::string> hf_to_gguf_name(std::string_view hf_name);

// Expected shape, outermost first: matrices are [out_features, in_features]
// (e.g. attn_k [n_head_kv * head_dim, n_embd]); norms and biases are 1-d.
std::vector<int64_t> expected_shape(LayerTensor t, const ModelConfig& c);
std::vector<int64_t> expected_shape(GlobalTensor t, const ModelConfig& c);

bool is_bias(LayerTensor t);
bool is_norm(LayerTensor t);

std::string shape_to_string(const std::vector<int64_t>& shape);  // "[256, 64]"

}  // namespace tca
