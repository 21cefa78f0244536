// ModelConfig from GGUF metadata, validation, and printing.
#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/strings.h"
#include "model/gguf_reader.h"

namespace tca {

const char* model_arch_name(ModelArch a) {
    switch (a) {
        case ModelArch::kLlama: return "llama";
        case ModelArch::kMistral: return "mistral";
        case ModelArch::kQwen2: return "qwen2";
    }
    return "?";
}

const char* rope_style_name(RopeStyle s) {
    return s == RopeStyle::kAdjacentPairs ? "adjacent-pairs" : "half-split";
}

std::string ModelConfig::to_string() const {
    std::string s = strformat(
        "arch %s, vocab %lld, n_embd %lld, layers %lld, heads %lld/%lld kv, head_dim %lld, "
        "n_ff %lld, rope %s base %g",
        model_arch_name(arch), static_cast<long long>(n_vocab), static_cast<long long>(n_embd),
        static_cast<long long>(n_layer), static_cast<long long>(n_head),
        static_cast<long long>(n_head_kv), static_cast<long long>(head_dim),
        static_cast<long long>(n_ff), rope_style_name(rope_style), rope_freq_base);
    if (rope_scaling.type == RopeScaling::Type::kLlama3) {
        s += strformat(" (llama3 scaling x%g, orig ctx %lld)", rope_scaling.factor,
                       static_cast<long long>(rope_scaling.original_context_length));
    }
    s += strformat(", eps %g, ctx %lld%s%s", rms_norm_eps, static_cast<long long>(context_length),
                   tied_output ? ", tied output" : "", attn_bias ? ", qkv bias" : "");
    return s;
}

Status validate_config(const ModelConfig& c) {
    struct Field {
        const char* name;
        int64_t value;
        int64_t max;
    };
    // Upper bounds only reject nonsense (and keep products far from int64 overflow).
    const Field fields[] = {
        {"n_vocab", c.n_vocab, int64_t{1} << 24}, {"n_embd", c.n_embd, int64_t{1} << 17},
        {"n_layer", c.n_layer, 1024},             {"n_head", c.n_head, 1024},
        {"n_head_kv", c.n_head_kv, 1024},         {"head_dim", c.head_dim, 1 << 16},
        {"n_ff", c.n_ff, int64_t{1} << 20},
    };
    for (const Field& f : fields) {
        if (f.value <= 0 || f.value > f.max) {
            return invalid_argument("model config: %s is %lld, expected 1..%lld", f.name,
                                    static_cast<long long>(f.value),
                                    static_cast<long long>(f.max));
        }
    }
    if (c.n_head % c.n_head_kv != 0) {
        return invalid_argument("model config: n_head %lld is not divisible by n_head_kv %lld",
                                static_cast<long long>(c.n_head),
                                static_cast<long long>(c.n_head_kv));
    }
    if (c.head_dim % 8 != 0 || c.head_dim > 256) {
        return unsupported("model config: head_dim %lld is unsupported (a multiple of 8, at most "
                           "256)",
                           static_cast<long long>(c.head_dim));
    }
    if (!(c.rope_freq_base > 0.0) || !std::isfinite(c.rope_freq_base)) {
        return invalid_argument("model config: rope_freq_base is %g, expected > 0",
                                c.rope_freq_base);
    }
    if (!(c.rms_norm_eps > 0.0 && c.rms_norm_eps < 1.0)) {
        return invalid_argument("model config: rms_norm_eps is %g, expected in (0, 1)",
                                c.rms_norm_eps);
    }
    if (c.context_length < 0) {
        return invalid_argument("model config: context_length is %lld",
                                static_cast<long long>(c.context_length));
    }
    if (c.bos_id >= c.n_vocab || c.eos_id >= c.n_vocab) {
        return invalid_argument("model config: bos %lld / eos %lld outside the vocabulary of %lld",
                                static_cast<long long>(c.bos_id), static_cast<long long>(c.eos_id),
                                static_cast<long long>(c.n_vocab));
    }
    const RopeScaling& rs = c.rope_scaling;
    if (rs.type == RopeScaling::Type::kLlama3) {
        if (!(rs.factor >= 1.0) || !(rs.low_freq_factor > 0.0) ||
            !(rs.high_freq_factor > rs.low_freq_factor) || rs.original_context_length <= 0) {
            return invalid_argument("model config: llama3 rope scaling factor %g, low %g, high %g, "
                                    "original context %lld is invalid",
                                    rs.factor, rs.low_freq_factor, rs.high_freq_factor,
                                    static_cast<long long>(rs.original_context_length));
        }
    }
    return {};
}

namespace {

Result<int64_t> gguf_int(const GgufFile& f, const std::string& key) {
    TCA_ASSIGN_OR_RETURN(const uint64_t v, f.get_u64(key));
    if (v > (uint64_t{1} << 40)) {
        return invalid_argument("gguf file %s: key %s is %llu, out of range", f.name().c_str(),
                                key.c_str(), static_cast<unsigned long long>(v));
    }
    return static_cast<int64_t>(v);
}

Result<int64_t> gguf_int_or(const GgufFile& f, const std::string& key, int64_t def) {
    if (!f.has_kv(key)) return def;
    return gguf_int(f, key);
}

}  // namespace

Result<ModelConfig> config_from_gguf(const GgufFile& f) {
    ModelConfig c;
    TCA_ASSIGN_OR_RETURN(const std::string arch, f.get_string("general.architecture"));
    if (arch == "llama") {
        c.arch = ModelArch::kLlama;
        c.rope_style = RopeStyle::kAdjacentPairs;
    } else if (arch == "mistral") {
        c.arch = ModelArch::kMistral;
        c.rope_style = RopeStyle::kAdjacentPairs;
    } else if (arch == "qwen2") {
        c.arch = ModelArch::kQwen2;
        c.rope_style = RopeStyle::kHalfSplit;
    } else {
        return unsupported("gguf file %s: architecture '%s' is unsupported (llama, mistral, "
                           "qwen2 are)",
                           f.name().c_str(), arch.c_str());
    }
    const std::string p = arch + ".";
    TCA_ASSIGN_OR_RETURN(c.n_embd, gguf_int(f, p + "embedding_length"));
    TCA_ASSIGN_OR_RETURN(c.n_layer, gguf_int(f, p + "block_count"));
    TCA_ASSIGN_OR_RETURN(c.n_ff, gguf_int(f, p + "feed_forward_length"));
    TCA_ASSIGN_OR_RETURN(c.n_head, gguf_int(f, p + "attention.head_count"));
    TCA_ASSIGN_OR_RETURN(c.n_head_kv, gguf_int_or(f, p + "attention.head_count_kv", c.n_head));
    TCA_ASSIGN_OR_RETURN(c.context_length, gguf_int_or(f, p + "context_length", 0));
    const int64_t default_head_dim = c.n_head > 0 ? c.n_embd / c.n_head : 0;
    TCA_ASSIGN_OR_RETURN(c.head_dim, gguf_int_or(f, p + "attention.key_length", default_head_dim));
    TCA_ASSIGN_OR_RETURN(const int64_t v_dim,
                         gguf_int_or(f, p + "attention.value_length", c.head_dim));
    if (v_dim != c.head_dim) {
        return unsupported("gguf file %s: value head size %lld differs from key head size %lld",
                           f.name().c_str(), static_cast<long long>(v_dim),
                           static_cast<long long>(c.head_dim));
    }
    TCA_ASSIGN_OR_RETURN(const int64_t n_rot, gguf_int_or(f, p + "rope.dimension_count",
                                                          c.head_dim));
    if (n_rot != c.head_dim) {
        return unsupported("gguf file %s: partial rotary embedding (rope.dimension_count %lld, "
                           "head_dim %lld) is unsupported",
                           f.name().c_str(), static_cast<long long>(n_rot),
                           static_cast<long long>(c.head_dim));
    }
    TCA_ASSIGN_OR_RETURN(c.rope_freq_base, f.get_f64_or(p + "rope.freq_base", 10000.0));
    TCA_ASSIGN_OR_RETURN(c.rms_norm_eps,
                         f.get_f64_or(p + "attention.layer_norm_rms_epsilon", 1e-5));
    // Round the f32-stored epsilon to the value it was written from (1e-5f -> 1e-5).
    c.rms_norm_eps = std::strtod(strformat("%.7g", c.rms_norm_eps).c_str(), nullptr);
    TCA_ASSIGN_OR_RETURN(const std::string scaling,
                         f.get_string_or(p + "rope.scaling.type", "none"));
    if (scaling != "none") {
        TCA_ASSIGN_OR_RETURN(const double factor, f.get_f64_or(p + "rope.scaling.factor", 1.0));
        if (factor != 1.0) {
            return unsupported("gguf file %s: rope scaling type '%s' (factor %g) is unsupported",
                               f.name().c_str(), scaling.c_str(), factor);
        }
    }
    // Vocabulary size.
    if (f.has_kv(p + "vocab_size")) {
        TCA_ASSIGN_OR_RETURN(c.n_vocab, gguf_int(f, p + "vocab_size"));
    } else if (f.has_kv("tokenizer.ggml.tokens")) {
        TCA_ASSIGN_OR_RETURN(const uint64_t n, f.get_array_count("tokenizer.ggml.tokens"));
        c.n_vocab = static_cast<int64_t>(std::min<uint64_t>(n, uint64_t{1} << 40));
    } else if (const GgufTensorInfo* emb = f.find_tensor("token_embd.weight")) {
        c.n_vocab = emb->n_dims == 2 ? emb->shape[0] : 0;
    }
    TCA_ASSIGN_OR_RETURN(c.bos_id, gguf_int_or(f, "tokenizer.ggml.bos_token_id", -1));
    TCA_ASSIGN_OR_RETURN(c.eos_id, gguf_int_or(f, "tokenizer.ggml.eos_token_id", -1));
    c.tied_output = f.find_tensor("output.weight") == nullptr;
    c.attn_bias = c.arch == ModelArch::kQwen2 || f.find_tensor("blk.0.attn_q.bias") != nullptr;
    Status st = validate_config(c);
    if (!st.ok()) return Status(st.code(), "gguf file " + f.name() + ": " + st.message());
    return c;
}

}  // namespace tca
