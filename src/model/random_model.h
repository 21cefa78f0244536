// Random-weight llama-family GGUF models of any shape (arch llama or qwen2), written with
// GgufWriter so tests and benchmarks can compare tca with llama.cpp on the same file without
// downloading weights. The file carries everything llama.cpp needs to load it: the arch keys,
// a minimal SentencePiece vocabulary (<unk>, <s>, </s>, 256 byte tokens, filler pieces), and
// optionally Llama 3 rope scaling as the per-dimension `rope_freqs.weight` tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/ggml_types.h"

namespace tca {

struct RandomModelSpec {
    std::string arch = "llama";  // "llama" (adjacent-pair RoPE) or "qwen2" (half-split, qkv bias)
    int64_t n_vocab = 512;       // >= 259 (3 specials + 256 byte tokens)
    int64_t n_embd = 256;
    int64_t n_layer = 2;
    int64_t n_head = 4;
    int64_t n_head_kv = 4;
    int64_t head_dim = 64;  // qwen2 in llama.cpp needs n_head * head_dim == n_embd
    int64_t n_ff = 512;
    int64_t context_length = 4096;
    double rope_freq_base = 10000.0;
    double rms_norm_eps = 1e-5;
    // Llama 3 frequency scaling, stored as rope_freqs.weight [head_dim / 2] (factors >= 1).
    bool llama3_rope = false;
    double rope_factor = 8.0;
    double rope_low_freq_factor = 1.0;
    double rope_high_freq_factor = 4.0;
    int64_t rope_original_context = 8192;
    bool tied_output = false;  // no output.weight: the output projection is token_embd
    bool qkv_bias = false;     // attn_{q,k,v}.bias (always on for qwen2)
    // Type of the 2-d matrices (F32, F16, BF16, Q8_0, Q4_0); norms, biases and rope_freqs
    // stay F32. Quantized types need n_embd, q_dim and n_ff to be multiples of 32.
    GgmlType weight_type = GgmlType::kF32;
    uint64_t seed = 1;
};

// The rope_freqs.weight factors llama.cpp's converter writes for Llama 3 scaling: with
// f_i = base^(-2i/d) and wavelength L = 2 pi / f_i, 1 for L < ctx / high_freq_factor, factor for
// L > ctx / low_freq_factor, and 1 / ((1 - s) / factor + s) between, s = (ctx / L - low) /
// (high - low). llama.cpp divides each frequency by its factor.
std::vector<float> llama3_rope_factors(const RandomModelSpec& s);

// Checks the spec (counts >= 1, divisibility, block alignment of quantized rows, vocabulary
// size); errors name the field and the value.
Status validate_random_model_spec(const RandomModelSpec& s);

// Writes the model to `path`. Weights are seeded normals: matrices with std 1/sqrt(n_in)
// (so activations keep unit scale through the layers), token_embd std 1, norms 1 + N(0, 0.1),
// biases N(0, 0.1). The same spec always gives the same file.
Status write_random_model(const std::string& path, const RandomModelSpec& s);

// Number of weight parameters of the spec (tied output counted once).
int64_t random_model_n_params(const RandomModelSpec& s);

}  // namespace tca
