// `tca inspect`: what a model file holds: architecture and shapes, tensor types and sizes,
// tokenizer, and the memory the engine would use.
#include <cstdio>
#include <map>

#include "commands.h"
#include "core/flags.h"
#include "core/strings.h"
#include "kv/kv_cache.h"
#include "model/model_weights.h"
#include "tokenizer/tokenizer.h"

namespace tca::cli {
namespace {

Status inspect_main(const std::string& path, bool tensors) {
    if (path.empty()) return usage_error("a model is required (-m FILE)");
    TCA_ASSIGN_OR_RETURN(ModelWeights w, load_model(path));
    const ModelConfig& c = w.config;
    std::printf("model: %s (%s)\n", path.c_str(), w.format == ModelFormat::kGguf ? "GGUF" : "safetensors");
    std::printf("config: %s\n", c.to_string().c_str());
    std::printf("rms_norm_eps %g, context length %lld, output %s, attention bias %s\n",
                c.rms_norm_eps, static_cast<long long>(c.context_length),
                c.tied_output ? "tied to token_embd" : "separate", c.attn_bias ? "yes" : "no");
    // Weight types by total bytes.
    std::map<std::string, std::pair<int, uint64_t>> by_type;
    auto count = [&](const WeightView& v) {
        if (!v.present()) return;
        auto& e = by_type[ggml_type_label(static_cast<uint32_t>(v.type))];
        ++e.first;
        e.second += v.n_bytes;
    };
    count(w.token_embd);
    count(w.output_norm);
    if (!c.tied_output) count(w.output);
    for (const LayerWeights& l : w.layers) {
        for (const WeightView* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                                    &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
            count(*v);
        }
    }
    std::printf("weights: %s in total\n", format_bytes(w.total_bytes()).c_str());
    for (const auto& [type, e] : by_type) {
        std::printf("  %-6s %4d tensors  %s\n", type.c_str(), e.first, format_bytes(e.second).c_str());
    }
    if (tensors) {
        auto row = [](const WeightView& v) {
            if (v.present()) {
                std::printf("  %-32s %-6s %s\n", v.name.c_str(),
                            ggml_type_label(static_cast<uint32_t>(v.type)).c_str(), v.shape_string().c_str());
            }
        };
        row(w.token_embd);
        for (const LayerWeights& l : w.layers) {
            for (const WeightView* v : {&l.attn_norm, &l.wq, &l.bq, &l.wk, &l.bk, &l.wv, &l.bv, &l.wo,
                                        &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
                row(*v);
            }
        }
        row(w.output_norm);
        if (!c.tied_output) row(w.output);
    }
    const uint64_t kv_per_token = kv_cache_bytes(c.n_layer, c.n_head_kv, 1, c.head_dim, DType::kF32);
    std::printf("dense KV cache: %s per token in f32 (%s at 4096 tokens, %s at 131072)\n",
                format_bytes(kv_per_token).c_str(), format_bytes(kv_per_token * 4096).c_str(),
                format_bytes(kv_per_token * 131072).c_str());
    if (w.gguf) {
        Result<Tokenizer> tok = Tokenizer::from_gguf(*w.gguf);
        if (tok.ok()) {
            std::printf("tokenizer: %d tokens, bos %d, eos %d\n", tok->n_vocab(), tok->bos_id(), tok->eos_id());
        } else {
            std::printf("tokenizer: unavailable (%s)\n", tok.status().message().c_str());
        }
    }
    return Status();
}

}  // namespace

int cmd_inspect(const std::vector<std::string>& args) {
    std::string model;
    bool tensors = false;
    FlagSet flags("tca inspect", "Describes a model: architecture, shapes, tensor types and sizes,\n"
                                 "tokenizer, and the KV cache it needs.");
    flags.add_string("model", &model, "FILE", "model: GGUF file, .safetensors file or HF directory");
    flags.add_alias("-m", "model");
    flags.add_bool("tensors", &tensors, "list every tensor with its type and shape");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    return report_error(inspect_main(model, tensors));
}

}  // namespace tca::cli
