// RoPE inverse frequencies, computed once on the host and passed to the rope op
// (RopeParams::inv_freq): inv_freq[i] = base^(-2i / head_dim), optionally rescaled for long
// contexts (linear position interpolation, or Llama 3's frequency-dependent scaling).
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/model_config.h"

namespace tca {

// RopeScaling: model/model_config.h (GGUF rope.scaling.* keys, HF config.json "rope_scaling").

// inv_freq [head_dim / 2], computed in double and rounded once to f32.
//  - kNone:   base^(-2i / d)
//  - kLinear: base^(-2i / d) / factor
//  - kLlama3: with wavelength L = 2 pi / f, low = ctx / low_freq_factor, high = ctx /
//    high_freq_factor: L < high keeps f, L > low gives f / factor, otherwise
//    (1 - s) f / factor + s f with s = (ctx / L - low_freq_factor) / (high_freq_factor -
//    low_freq_factor).
// Errors name the bad parameter and its value (odd head_dim, base <= 1, factor <= 0, ...).
Result<std::vector<float>> rope_inv_freq(int64_t head_dim, double base, const RopeScaling& scaling);

}  // namespace tca
