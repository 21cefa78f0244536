// Hugging Face folder -> GGUF (hf_convert.h). Weights go through f32 (exact for F32/F16/BF16
// sources), Q/K rows of llama checkpoints are permuted to GGUF's adjacent-pair RoPE layout,
// and the tokenizer.json vocabulary is written as tokenizer.ggml.* keys (model gpt2).
#include "model/hf_convert.h"

#include <algorithm>
#include <filesystem>

#include "core/log.h"
#include "model/gguf_writer.h"
#include "model/model_weights.h"
#include "model/random_model.h"
#include "tokenizer/hf_tokenizer_json.h"

namespace tca {

namespace {

// GGUF tokenizer.ggml.pre names llama.cpp maps to the same split regexes we implement.
const char* gguf_pre_name(PreTokenizer pre) {
    switch (pre) {
        case PreTokenizer::kGpt2: return "gpt-2";
        case PreTokenizer::kLlama3: return "llama-bpe";
        case PreTokenizer::kQwen2: return "qwen2";
        case PreTokenizer::kNone: break;
    }
    return "default";
}

// The vocabulary as tokenizer.ggml.* keys. Tokens beyond the tokenizer's (the embedding may be
// padded, e.g. to a multiple of 64) are written as unused "[PAD<i>]" so counts match.
Status add_vocab(GgufWriter& w, const VocabData& v, int64_t n_vocab_model) {
    if (v.kind != TokenizerKind::kBpe) return unsupported("%s: only byte-level BPE vocabularies convert", v.source.c_str());
    if (v.n_vocab() > n_vocab_model) {
        return invalid_argument("%s: %d tokens but the model's vocab_size is %lld", v.source.c_str(),
                                v.n_vocab(), static_cast<long long>(n_vocab_model));
    }
    // The GGUF reader turns ignore_merges on exactly for the Llama 3 pre-tokenizer; another
    // combination would not give the same ids after conversion.
    if (v.ignore_merges != (v.pre == PreTokenizer::kLlama3)) {
        return unsupported("%s: ignore_merges %s with pre-tokenizer %s has no GGUF equivalent",
                           v.source.c_str(), v.ignore_merges ? "true" : "false", pre_tokenizer_name(v.pre));
    }
    if (v.normalize_nfc) {
        TCA_LOG_WARN("%s: the NFC normalizer is not stored in GGUF (ids differ only on text that is "
                     "not already NFC)", v.source.c_str());
    }
    std::vector<std::string> tokens = v.tokens;
    std::vector<int32_t> types;
    for (int32_t i = 0; i < v.n_vocab(); ++i) types.push_back(static_cast<int32_t>(v.type(i)));
    for (int64_t i = v.n_vocab(); i < n_vocab_model; ++i) {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        types.push_back(static_cast<int32_t>(TokenType::kUnused));
    }
    std::vector<std::string> merges = v.merges;
    for (size_t i = 0; i < v.merge_pairs.size(); ++i) {
        const auto& [a, b] = v.merge_pairs[i];
        if (a.find(' ') != std::string::npos || b.find(' ') != std::string::npos) {
            return unsupported("%s: merge %zu has a space inside a part (GGUF stores \"left right\")",
                               v.source.c_str(), i);
        }
        merges.push_back(a + " " + b);
    }
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", gguf_pre_name(v.pre));
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_string_array("tokenizer.ggml.merges", merges);
    const auto id = [&](const char* key, int32_t value) {
        if (value >= 0) w.add_u32(key, static_cast<uint32_t>(value));
    };
    id("tokenizer.ggml.bos_token_id", v.bos_id);
    id("tokenizer.ggml.eos_token_id", v.eos_id);
    id("tokenizer.ggml.unknown_token_id", v.unk_id);
    id("tokenizer.ggml.padding_token_id", v.pad_id);
    w.add_bool("tokenizer.ggml.add_bos_token", v.add_bos);
    w.add_bool("tokenizer.ggml.add_eos_token", false);
    return Status();
}

bool quantized(GgmlType t) { return t == GgmlType::kQ8_0 || t == GgmlType::kQ4_0; }

}  // namespace

Result<GgmlType> parse_convert_type(const std::string& name) {
    if (name == "f32") return GgmlType::kF32;
    if (name == "f16") return GgmlType::kF16;
    if (name == "bf16") return GgmlType::kBF16;
    if (name == "q8_0") return GgmlType::kQ8_0;
    return usage_error("--type must be f32, f16, bf16 or q8_0, got '%s'", name.c_str());
}

std::vector<float> permute_rope_rows(const std::vector<float>& rows, int64_t n_heads,
                                     int64_t head_dim, int64_t row_len) {
    TCA_ASSERT(static_cast<int64_t>(rows.size()) == n_heads * head_dim * row_len && head_dim % 2 == 0,
               "permute_rope_rows: %zu values for %lld heads x %lld x %lld", rows.size(),
               static_cast<long long>(n_heads), static_cast<long long>(head_dim),
               static_cast<long long>(row_len));
    std::vector<float> out(rows.size());
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        for (int64_t i = 0; i < half; ++i) {
            for (int64_t j = 0; j < 2; ++j) {
                const int64_t dst = h * head_dim + 2 * i + j, src = h * head_dim + j * half + i;
                std::copy_n(rows.begin() + src * row_len, row_len, out.begin() + dst * row_len);
            }
        }
    }
    return out;
}

Result<HfConvertReport> convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path,
                                           const HfConvertOptions& options) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(hf_dir, ec)) {
        return not_found("%s: not a directory (expected a Hugging Face folder with config.json, "
                         "safetensors and tokenizer.json)", hf_dir.c_str());
    }
    const GgmlType wt = options.weight_type;
    if (wt != GgmlType::kF32 && wt != GgmlType::kF16 && wt != GgmlType::kBF16 && wt != GgmlType::kQ8_0) {
        return unsupported("convert: weight type %s (F32, F16, BF16, Q8_0)", ggml_type_name(wt));
    }
    TCA_ASSIGN_OR_RETURN(ModelWeights m, load_model(hf_dir));
    if (m.format != ModelFormat::kSafetensors) return invalid_argument("%s: not a safetensors model", hf_dir.c_str());
    const std::string tok_path = (fs::path(hf_dir) / "tokenizer.json").string();
    if (!fs::exists(tok_path, ec)) return not_found("%s not found (the vocabulary is embedded in the GGUF)", tok_path.c_str());
    TCA_ASSIGN_OR_RETURN(VocabData vocab, load_hf_tokenizer_json(tok_path));
    const ModelConfig& c = m.config;

    HfConvertReport rep;
    const bool qwen2 = c.arch == ModelArch::kQwen2;
    rep.arch = qwen2 ? "qwen2" : "llama";
    GgufWriter w;
    const std::string a = rep.arch + ".";
    const auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
    std::string name = options.name;
    if (name.empty()) name = fs::path(hf_dir).lexically_normal().filename().string();
    if (name.empty()) name = fs::absolute(hf_dir).parent_path().filename().string();
    w.add_string("general.architecture", rep.arch);
    w.add_string("general.name", name);
    w.add_u32(a + "context_length", u32(c.context_length > 0 ? c.context_length : 4096));
    w.add_u32(a + "embedding_length", u32(c.n_embd));
    w.add_u32(a + "block_count", u32(c.n_layer));
    w.add_u32(a + "feed_forward_length", u32(c.n_ff));
    w.add_u32(a + "attention.head_count", u32(c.n_head));
    w.add_u32(a + "attention.head_count_kv", u32(c.n_head_kv));
    w.add_u32(a + "attention.key_length", u32(c.head_dim));
    w.add_u32(a + "attention.value_length", u32(c.head_dim));
    w.add_u32(a + "rope.dimension_count", u32(c.head_dim));
    w.add_u32(a + "vocab_size", u32(c.n_vocab));
    w.add_f32(a + "rope.freq_base", static_cast<float>(c.rope_freq_base));
    w.add_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
    TCA_RETURN_IF_ERROR(add_vocab(w, vocab, c.n_vocab));

    Status st;
    // One weight: dequantized to f32, optionally permuted, stored as `type`.
    const auto add = [&](const std::string& gguf_name, const WeightView& v, bool matrix, int64_t rope_heads) {
        if (!st.ok()) return;
        const int64_t n = v.n_rows() * v.row_elems();
        std::vector<float> x(static_cast<size_t>(n));
        st = v.dequantize_rows(0, v.n_rows(), x.data());
        if (!st.ok()) return;
        if (rope_heads > 0 && !qwen2) x = permute_rope_rows(x, rope_heads, c.head_dim, n / (rope_heads * c.head_dim));
        GgmlType t = matrix ? wt : GgmlType::kF32;
        if (quantized(t) && v.row_elems() % 32 != 0) {
            t = GgmlType::kF16;
            ++rep.n_fallback_f16;
        }
        std::vector<int64_t> shape(v.shape.begin(), v.shape.begin() + v.ndim);
        st = w.add_tensor(gguf_name, t, shape, x.data());
        ++rep.n_tensors;
        rep.n_params += n;
    };
    add(gguf_tensor_name(GlobalTensor::kTokenEmbd), m.token_embd, true, 0);
    if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
        // GGUF stores Llama 3 scaling as per-dimension divisors (see RopeScaling).
        RandomModelSpec s;
        s.head_dim = c.head_dim;
        s.rope_freq_base = c.rope_freq_base;
        s.rope_factor = c.rope_scaling.factor;
        s.rope_low_freq_factor = c.rope_scaling.low_freq_factor;
        s.rope_high_freq_factor = c.rope_scaling.high_freq_factor;
        s.rope_original_context = c.rope_scaling.original_context_length;
        const std::vector<float> f = llama3_rope_factors(s);
        if (st.ok()) st = w.add_tensor(gguf_tensor_name(GlobalTensor::kRopeFreqs), GgmlType::kF32, {c.head_dim / 2}, f.data());
    } else if (c.rope_scaling.type != RopeScaling::Type::kNone) {
        return unsupported("%s: rope scaling other than llama3 does not convert", hf_dir.c_str());
    }
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& lw = m.layers[static_cast<size_t>(l)];
        for (int t = 0; t < kNumLayerTensors; ++t) {
            const auto lt = static_cast<LayerTensor>(t);
            const WeightView& v = lw.get(lt);
            if (!v.present()) continue;
            int64_t rope_heads = 0;
            if (lt == LayerTensor::kAttnQ || lt == LayerTensor::kAttnQBias) rope_heads = c.n_head;
            if (lt == LayerTensor::kAttnK || lt == LayerTensor::kAttnKBias) rope_heads = c.n_head_kv;
            add(gguf_tensor_name(lt, l), v, !is_bias(lt) && !is_norm(lt), rope_heads);
        }
    }
    add(gguf_tensor_name(GlobalTensor::kOutputNorm), m.output_norm, false, 0);
    if (!c.tied_output) add(gguf_tensor_name(GlobalTensor::kOutput), m.output, true, 0);
    TCA_RETURN_IF_ERROR(st);
    if (rep.n_fallback_f16 > 0) {
        TCA_LOG_WARN("%lld matrices with rows not a multiple of 32 stored as F16",
                     static_cast<long long>(rep.n_fallback_f16));
    }
    TCA_RETURN_IF_ERROR(w.write_file(out_path));
    rep.file_bytes = fs::file_size(out_path, ec);
    return rep;
}

}  // namespace tca
