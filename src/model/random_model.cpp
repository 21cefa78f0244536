// Random-weight llama-family GGUF models (random_model.h).
#include "model/random_model.h"

#include <cmath>
#include <cstdio>

#include "core/rng.h"
#include "model/gguf_writer.h"

namespace tca {
namespace {

constexpr double kPi = 3.14159265358979323846;

// SentencePiece token types as GGUF stores them (tokenizer.ggml.token_type).
constexpr int32_t kTypeNormal = 1, kTypeUnknown = 2, kTypeControl = 3, kTypeByte = 6;

bool is_quantized(GgmlType t) { return t == GgmlType::kQ8_0 || t == GgmlType::kQ4_0; }

// A seeded normal tensor of `shape` (outermost first) with the given mean and std.
std::vector<float> normal_values(Rng& rng, int64_t n, double mean, double stddev) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = static_cast<float>(mean + stddev * rng.normal());
    return v;
}

// Minimal valid SPM vocabulary: <unk> <s> </s>, the 256 byte tokens <0xNN>, then distinct
// filler pieces "▁t<i>" (scores decreasing with the id, like a trained SPM model's).
void add_vocab(GgufWriter& w, int64_t n_vocab) {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    tokens.reserve(static_cast<size_t>(n_vocab));
    tokens.insert(tokens.end(), {"<unk>", "<s>", "</s>"});
    types.insert(types.end(), {kTypeUnknown, kTypeControl, kTypeControl});
    for (int b = 0; b < 256; ++b) {
        char piece[8];
        std::snprintf(piece, sizeof piece, "<0x%02X>", b);
        tokens.emplace_back(piece);
        types.push_back(kTypeByte);
    }
    for (auto i = static_cast<int64_t>(tokens.size()); i < n_vocab; ++i) {
        tokens.push_back("\xe2\x96\x81t" + std::to_string(i));  // U+2581 + "t<i>"
        types.push_back(kTypeNormal);
    }
    for (int64_t i = 0; i < n_vocab; ++i) {
        scores.push_back(i < 259 ? 0.0f : -static_cast<float>(i - 259));
    }
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_f32_array("tokenizer.ggml.scores", scores);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_u32("tokenizer.ggml.unknown_token_id", 0);
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    w.add_bool("tokenizer.ggml.add_bos_token", true);
    w.add_bool("tokenizer.ggml.add_eos_token", false);
}

}  // namespace

std::vector<float> llama3_rope_factors(const RandomModelSpec& s) {
    const double ctx = static_cast<double>(s.rope_original_context);
    const double low_wavelen = ctx / s.rope_low_freq_factor;
    const double high_wavelen = ctx / s.rope_high_freq_factor;
    std::vector<float> factors;
    for (int64_t i = 0; i < s.head_dim / 2; ++i) {
        const double freq =
            std::pow(s.rope_freq_base, -2.0 * static_cast<double>(i) / static_cast<double>(s.head_dim));
        const double wavelen = 2.0 * kPi / freq;
        double f = 1.0;
        if (wavelen > low_wavelen) {
            f = s.rope_factor;
        } else if (wavelen >= high_wavelen) {
            const double smooth = (ctx / wavelen - s.rope_low_freq_factor) /
                                  (s.rope_high_freq_factor - s.rope_low_freq_factor);
            f = 1.0 / ((1.0 - smooth) / s.rope_factor + smooth);
        }
        factors.push_back(static_cast<float>(f));
    }
    return factors;
}

Status validate_random_model_spec(const RandomModelSpec& s) {
    if (s.arch != "llama" && s.arch != "qwen2") {
        return invalid_argument("random model: arch '%s' (llama or qwen2)", s.arch.c_str());
    }
    const struct {
        const char* name;
        int64_t v;
    } counts[] = {{"n_vocab", s.n_vocab}, {"n_embd", s.n_embd},       {"n_layer", s.n_layer},
                  {"n_head", s.n_head},   {"n_head_kv", s.n_head_kv}, {"head_dim", s.head_dim},
                  {"n_ff", s.n_ff},       {"context_length", s.context_length}};
    for (const auto& c : counts) {
        if (c.v < 1 || c.v > (int64_t{1} << 24)) {
            return invalid_argument("random model: %s is %lld, expected 1..2^24", c.name,
                                    static_cast<long long>(c.v));
        }
    }
    if (s.n_vocab < 259) {
        return invalid_argument("random model: n_vocab %lld < 259 (3 specials + 256 byte tokens)",
                                static_cast<long long>(s.n_vocab));
    }
    if (s.n_head % s.n_head_kv != 0) {
        return invalid_argument("random model: n_head %lld not divisible by n_head_kv %lld",
                                static_cast<long long>(s.n_head), static_cast<long long>(s.n_head_kv));
    }
    if (s.head_dim % 2 != 0) {
        return invalid_argument("random model: head_dim %lld is odd", static_cast<long long>(s.head_dim));
    }
    if (s.arch == "qwen2" && s.n_head * s.head_dim != s.n_embd) {
        return invalid_argument("random model: qwen2 needs n_head * head_dim (%lld) == n_embd (%lld)",
                                static_cast<long long>(s.n_head * s.head_dim),
                                static_cast<long long>(s.n_embd));
    }
    if (is_quantized(s.weight_type) &&
        (s.n_embd % 32 != 0 || (s.n_head * s.head_dim) % 32 != 0 || s.n_ff % 32 != 0)) {
        return invalid_argument("random model: %s rows need n_embd, n_head * head_dim and n_ff "
                                "divisible by 32 (%lld, %lld, %lld)",
                                ggml_type_label(static_cast<uint32_t>(s.weight_type)).c_str(),
                                static_cast<long long>(s.n_embd),
                                static_cast<long long>(s.n_head * s.head_dim),
                                static_cast<long long>(s.n_ff));
    }
    const GgmlType t = s.weight_type;
    if (t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16 && !is_quantized(t)) {
        return unsupported("random model: weight type %s (F32, F16, BF16, Q8_0, Q4_0)",
                           ggml_type_label(static_cast<uint32_t>(t)).c_str());
    }
    if (!(s.rope_freq_base > 1.0) || !(s.rms_norm_eps > 0.0 && s.rms_norm_eps < 1.0)) {
        return invalid_argument("random model: rope base %g (> 1) or rms eps %g (in (0, 1))",
                                s.rope_freq_base, s.rms_norm_eps);
    }
    if (s.llama3_rope && !(s.rope_factor >= 1.0 && s.rope_high_freq_factor > s.rope_low_freq_factor &&
                           s.rope_low_freq_factor > 0.0 && s.rope_original_context > 0)) {
        return invalid_argument("random model: llama3 rope factor %g, low %g, high %g, ctx %lld",
                                s.rope_factor, s.rope_low_freq_factor, s.rope_high_freq_factor,
                                static_cast<long long>(s.rope_original_context));
    }
    return Status();
}

int64_t random_model_n_params(const RandomModelSpec& s) {
    const int64_t q = s.n_head * s.head_dim, kv = s.n_head_kv * s.head_dim;
    const bool bias = s.qkv_bias || s.arch == "qwen2";
    int64_t per_layer = 2 * s.n_embd + s.n_embd * (q + 2 * kv) + q * s.n_embd + 3 * s.n_embd * s.n_ff;
    if (bias) per_layer += q + 2 * kv;
    return s.n_layer * per_layer + s.n_vocab * s.n_embd * (s.tied_output ? 1 : 2) + s.n_embd;
}

Status write_random_model(const std::string& path, const RandomModelSpec& s) {
    TCA_RETURN_IF_ERROR(validate_random_model_spec(s));
    GgufWriter w;
    const std::string a = s.arch + ".";
    const auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
    w.add_string("general.architecture", s.arch);
    w.add_string("general.name", "tca-random");
    w.add_u32(a + "context_length", u32(s.context_length));
    w.add_u32(a + "embedding_length", u32(s.n_embd));
    w.add_u32(a + "block_count", u32(s.n_layer));
    w.add_u32(a + "feed_forward_length", u32(s.n_ff));
    w.add_u32(a + "attention.head_count", u32(s.n_head));
    w.add_u32(a + "attention.head_count_kv", u32(s.n_head_kv));
    w.add_u32(a + "attention.key_length", u32(s.head_dim));
    w.add_u32(a + "attention.value_length", u32(s.head_dim));
    w.add_u32(a + "rope.dimension_count", u32(s.head_dim));
    w.add_f32(a + "rope.freq_base", static_cast<float>(s.rope_freq_base));
    w.add_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(s.rms_norm_eps));
    add_vocab(w, s.n_vocab);

    Rng rng(s.seed);
    Status st;
    const auto add = [&](const std::string& name, GgmlType type, std::vector<int64_t> shape,
                         double mean, double stddev) {
        if (!st.ok()) return;
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        const std::vector<float> v = normal_values(rng, n, mean, stddev);
        st = w.add_tensor(name, type, shape, v.data());
    };
    const int64_t q = s.n_head * s.head_dim, kv = s.n_head_kv * s.head_dim;
    const GgmlType mt = s.weight_type, f32 = GgmlType::kF32;
    const auto inv_sqrt = [](int64_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
    // token_embd std 1/sqrt(n_embd): when tied it is also the output projection, and logits
    // then have std ~1 like those of a separate output matrix.
    add("token_embd.weight", mt, {s.n_vocab, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
    if (s.llama3_rope && st.ok()) {
        const std::vector<float> f = llama3_rope_factors(s);
        st = w.add_tensor("rope_freqs.weight", f32, {s.head_dim / 2}, f.data());
    }
    const bool bias = s.qkv_bias || s.arch == "qwen2";
    for (int64_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", f32, {s.n_embd}, 1.0, 0.1);
        add(p + "attn_q.weight", mt, {q, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
        add(p + "attn_k.weight", mt, {kv, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
        add(p + "attn_v.weight", mt, {kv, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
        if (bias) {
            add(p + "attn_q.bias", f32, {q}, 0.0, 0.1);
            add(p + "attn_k.bias", f32, {kv}, 0.0, 0.1);
            add(p + "attn_v.bias", f32, {kv}, 0.0, 0.1);
        }
        add(p + "attn_output.weight", mt, {s.n_embd, q}, 0.0, inv_sqrt(q));
        add(p + "ffn_norm.weight", f32, {s.n_embd}, 1.0, 0.1);
        add(p + "ffn_gate.weight", mt, {s.n_ff, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
        add(p + "ffn_up.weight", mt, {s.n_ff, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
        add(p + "ffn_down.weight", mt, {s.n_embd, s.n_ff}, 0.0, inv_sqrt(s.n_ff));
    }
    add("output_norm.weight", f32, {s.n_embd}, 1.0, 0.1);
    if (!s.tied_output) add("output.weight", mt, {s.n_vocab, s.n_embd}, 0.0, inv_sqrt(s.n_embd));
    TCA_RETURN_IF_ERROR(st);
    return w.write_file(path);
}

}  // namespace tca
