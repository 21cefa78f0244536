// Tensor name tables (GGUF and Hugging Face) and expected shapes per config.
#include "model/tensor_names.h"

#include <charconv>

namespace tca {

namespace {

struct LayerNames {
    LayerTensor t;
    const char* gguf;  // after "blk.N."
    const char* hf;    // after "model.layers.N."
};

constexpr LayerNames kLayerNames[] = {
    {LayerTensor::kAttnNorm, "attn_norm.weight", "input_layernorm.weight"},
    {LayerTensor::kAttnQ, "attn_q.weight", "self_attn.q_proj.weight"},
    {LayerTensor::kAttnK, "attn_k.weight", "self_attn.k_proj.weight"},
    {LayerTensor::kAttnV, "attn_v.weight", "self_attn.v_proj.weight"},
    {LayerTensor::kAttnOutput, "attn_output.weight", "self_attn.o_proj.weight"},
    {LayerTensor::kAttnQBias, "attn_q.bias", "self_attn.q_proj.bias"},
    {LayerTensor::kAttnKBias, "attn_k.bias", "self_attn.k_proj.bias"},
    {LayerTensor::kAttnVBias, "attn_v.bias", "self_attn.v_proj.bias"},
    {LayerTensor::kFfnNorm, "ffn_norm.weight", "post_attention_layernorm.weight"},
    {LayerTensor::kFfnGate, "ffn_gate.weight", "mlp.gate_proj.weight"},
    {LayerTensor::kFfnUp, "ffn_up.weight", "mlp.up_proj.weight"},
    {LayerTensor::kFfnDown, "ffn_down.weight", "mlp.down_proj.weight"},
};

const LayerNames& layer_names(LayerTensor t) {
    for (const LayerNames& n : kLayerNames) {
        if (n.t == t) return n;
    }
    TCA_ASSERT(false, "unknown LayerTensor %d", static_cast<int>(t));
}

}  // namespace

std::string gguf_tensor_name(LayerTensor t, int64_t layer) {
    return "blk." + std::to_string(layer) + "." + layer_names(t).gguf;
}

std::string gguf_tensor_name(GlobalTensor t) {
    switch (t) {
        case GlobalTensor::kTokenEmbd: return "token_embd.weight";
        case GlobalTensor::kOutputNorm: return "output_norm.weight";
        case GlobalTensor::kOutput: return "output.weight";
        case GlobalTensor::kRopeFreqs: return "rope_freqs.weight";
    }
    return "";
}

std::string hf_tensor_name(LayerTensor t, int64_t layer) {
    return "model.layers." + std::to_string(layer) + "." + layer_names(t).hf;
}

std::optional<std::string> hf_tensor_name(GlobalTensor t) {
    switch (t) {
        case GlobalTensor::kTokenEmbd: return "model.embed_tokens.weight";
        case GlobalTensor::kOutputNorm: return "model.norm.weight";
        case GlobalTensor::kOutput: return "lm_head.weight";
        case GlobalTensor::kRopeFreqs: return std::nullopt;
    }
    return std::nullopt;
}

std::optional<std::string> hf_to_gguf_name(std::string_view hf) {
    for (GlobalTensor g : {GlobalTensor::kTokenEmbd, GlobalTensor::kOutputNorm,
                           GlobalTensor::kOutput}) {
        if (hf == *hf_tensor_name(g)) return gguf_tensor_name(g);
    }
    constexpr std::string_view kPrefix = "model.layers.";
    if (hf.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
    std::string_view rest = hf.substr(kPrefix.size());
    int64_t layer = -1;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
    if (ec != std::errc() || end == rest.data() || end == rest.data() + rest.size() ||
        *end != '.' || layer < 0) {
        return std::nullopt;
    }
    // Reject leading zeros ("01") so the mapping is one-to-one.
    if (rest[0] == '0' && end - rest.data() > 1) return std::nullopt;
    const std::string_view suffix = rest.substr(static_cast<size_t>(end - rest.data()) + 1);
    for (const LayerNames& n : kLayerNames) {
        if (suffix == n.hf) return gguf_tensor_name(n.t, layer);
    }
    return std::nullopt;
}

bool is_bias(LayerTensor t) {
    return t == LayerTensor::kAttnQBias || t == LayerTensor::kAttnKBias ||
           t == LayerTensor::kAttnVBias;
}
bool is_norm(LayerTensor t) { return t == LayerTensor::kAttnNorm || t == LayerTensor::kFfnNorm; }

std::vector<int64_t> expected_shape(LayerTensor t, const ModelConfig& c) {
    switch (t) {
        case LayerTensor::kAttnNorm:
        case LayerTensor::kFfnNorm: return {c.n_embd};
        case LayerTensor::kAttnQ: return {c.q_dim(), c.n_embd};
        case LayerTensor::kAttnK:
        case LayerTensor::kAttnV: return {c.kv_dim(), c.n_embd};
        case LayerTensor::kAttnOutput: return {c.n_embd, c.q_dim()};
        case LayerTensor::kAttnQBias: return {c.q_dim()};
        case LayerTensor::kAttnKBias:
        case LayerTensor::kAttnVBias: return {c.kv_dim()};
        case LayerTensor::kFfnGate:
        case LayerTensor::kFfnUp: return {c.n_ff, c.n_embd};
        case LayerTensor::kFfnDown: return {c.n_embd, c.n_ff};
    }
    return {};
}

std::vector<int64_t> expected_shape(GlobalTensor t, const ModelConfig& c) {
    switch (t) {
        case GlobalTensor::kTokenEmbd:
        case GlobalTensor::kOutput: return {c.n_vocab, c.n_embd};
        case GlobalTensor::kOutputNorm: return {c.n_embd};
        case GlobalTensor::kRopeFreqs: return {c.head_dim / 2};
    }
    return {};
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

}  // namespace tca
