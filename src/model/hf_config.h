// Hugging Face config.json -> ModelConfig for LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM checkpoints (model_type llama / mistral / qwen2).
#pragma once

#include <string>

#include "core/status.h"
#include "model/model_config.h"

namespace tca {

// `name` is used in messages. RoPE style is always kHalfSplit: HF stores q/k weights in the
// layout its rotate_half expects (see RopeStyle). rope_scaling may be null or
// {"rope_type"|"type": "llama3", factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings}; other scaling types are unsupported.
Result<ModelConfig> config_from_hf_json(const std::string& json_text, const std::string& name);
Result<ModelConfig> config_from_hf_file(const std::string& path);

}  // namespace tca
