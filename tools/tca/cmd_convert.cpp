// `tca convert`: a Hugging Face folder (config.json + safetensors + tokenizer.json) to one
// GGUF file with the tokenizer embedded (model/hf_convert.h). No math here.
#include <cstdio>

#include "commands.h"
#include "core/flags.h"
#include "model/hf_convert.h"

namespace tca::cli {

int cmd_convert(const std::vector<std::string>& args) {
    std::string model, out, type = "f16", name;
    FlagSet flags("tca convert",
                  "Converts a Hugging Face folder (config.json, model.safetensors or sharded with\n"
                  "model.safetensors.index.json, tokenizer.json) into one GGUF file (arch llama;\n"
                  "qwen2 stays qwen2) with the byte-level BPE tokenizer embedded. Q/K rows are\n"
                  "permuted to GGUF's adjacent-pair RoPE, so `tca run -m OUT.gguf` gives the same\n"
                  "token ids and logits as `tca run -m DIR`, and llama.cpp loads the file.");
    flags.add_string("model", &model, "DIR", "Hugging Face folder to convert");
    flags.add_alias("-m", "model");
    flags.add_string("out", &out, "FILE", "GGUF file to write");
    flags.add_alias("-o", "out");
    flags.add_string("type", &type, "T",
                     "matrix storage: f32, f16, bf16 or q8_0 (norms stay f32; q8_0 rows not a "
                     "multiple of 32 fall back to f16)");
    flags.add_string("name", &name, "TEXT", "general.name in the file (default: the folder's name)");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    if (model.empty()) return report_error(usage_error("a Hugging Face folder is required (-m DIR)"));
    if (out.empty()) return report_error(usage_error("an output file is required (-o OUT.gguf)"));
    Result<GgmlType> t = parse_convert_type(type);
    if (!t.ok()) return report_error(t.status());
    HfConvertOptions opt;
    opt.weight_type = *t;
    opt.name = name;
    Result<HfConvertReport> r = convert_hf_to_gguf(model, out, opt);
    if (!r.ok()) return report_error(r.status());
    std::fprintf(stderr, "tca: wrote %s: arch %s, %lld tensors, %.2fM parameters, %s, %.2f MiB\n",
                 out.c_str(), r->arch.c_str(), static_cast<long long>(r->n_tensors),
                 static_cast<double>(r->n_params) / 1e6, type.c_str(),
                 static_cast<double>(r->file_bytes) / (1024.0 * 1024.0));
    return 0;
}

}  // namespace tca::cli
