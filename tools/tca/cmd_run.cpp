// `tca run`: generate text from a prompt with a model (stdout: the generated text only; stats
// and memory on stderr). `--logits-out` writes the prompt's logits for comparisons.
#include <cstdio>

#include "commands.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/strings.h"
#include "core/thread_pool.h"
#include "runtime/engine.h"
#include "sparse/attention_policy.h"

namespace tca::cli {

namespace {

struct RunFlags {
    std::string model, prompt, file, logits_out, tokenizer, kv_type, chat, system;
    std::string attention = "dense", stats_json;
    std::string matmul_activations = "native", device = "cpu";
    PolicyFlags policy;
    int64_t n_predict = 128, ctx_size = 0, batch_size = 512, threads = 0, top_k = 40, seed = 0;
    int64_t tensor_parallel = 1, warmup = 0;
    double temp = 0.0, top_p = 0.95;
    bool bos = true, verbose = false, time_stages = false;
};

Status run_main(RunFlags f, bool prompt_given) {
    TCA_ASSIGN_OR_RETURN(std::string text, read_prompt(f.prompt, f.file, prompt_given));
    TCA_ASSIGN_OR_RETURN(Device device, parse_device(f.device));
    TCA_ASSIGN_OR_RETURN(const std::optional<DType> kv_type, parse_optional_kv_type(f.kv_type));
    if (f.n_predict < 0) return usage_error("-n must be >= 0, got %lld", static_cast<long long>(f.n_predict));
    if (f.warmup < 0) return usage_error("--warmup must be >= 0, got %lld", static_cast<long long>(f.warmup));
    TCA_ASSIGN_OR_RETURN(f.model, model_or_default(f.model));
    SamplerOptions so;
    so.temperature = f.temp;
    so.top_k = f.top_k;
    so.top_p = f.top_p;
    so.seed = static_cast<uint64_t>(f.seed);
    if (Status s = validate(so); !s.ok()) return Status(StatusCode::kUsage, "--" + s.message());

    TCA_ASSIGN_OR_RETURN(AttentionPolicy policy, policy_from_flags(f.attention, f.policy));
    if (f.matmul_activations != "native" && f.matmul_activations != "f32") {
        return usage_error("--matmul-activations must be f32 or native, got %s", f.matmul_activations.c_str());
    }
    EngineOptions eo;
    eo.matmul_activations = f.matmul_activations == "f32" ? MatmulActivations::kF32
                                                          : MatmulActivations::kWeightDotType;
    eo.attention = std::move(policy);
    eo.budget_file = f.policy.budget_file;
    eo.model_path = f.model;
    eo.tokenizer_path = f.tokenizer;
    eo.ctx_size = f.ctx_size;
    eo.batch_size = f.batch_size;
    eo.n_threads = static_cast<int>(f.threads);
    if (f.tensor_parallel < 1 || f.tensor_parallel > 64) {
        return usage_error("--tensor-parallel must be in [1, 64], got %lld", static_cast<long long>(f.tensor_parallel));
    }
    eo.tensor_parallel = static_cast<int>(f.tensor_parallel);
    eo.kv_dtype = kv_type;
    eo.device = device;
    eo.all_logits = !f.logits_out.empty();
    eo.time_tca_stages = f.time_stages;
    TCA_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(eo));
    TCA_LOG_INFO("model %s: %s", f.model.c_str(), engine->config().to_string().c_str());
    TCA_LOG_INFO("memory: %s", engine->memory_report().c_str());
    TCA_RETURN_IF_ERROR(engine->warmup(f.warmup));

    const Tokenizer& tok = engine->tokenizer();
    bool add_bos = f.bos && tok.add_bos_default();
    if (!f.chat.empty()) {
        std::optional<ChatTemplate> kind;
        if (f.chat == "auto") {
            kind = detect_chat_template(tok);
            if (!kind) return usage_error("--chat auto: the vocabulary has no Llama 3 or ChatML markers");
        } else {
            TCA_ASSIGN_OR_RETURN(ChatTemplate k, chat_template_from_name(f.chat));
            kind = k;
        }
        std::vector<ChatMessage> msgs;
        if (!f.system.empty()) msgs.push_back({"system", f.system});
        msgs.push_back({"user", text});
        text = apply_chat_template(*kind, msgs, true);
    }
    const std::vector<int32_t> ids = tok.encode(text, add_bos, true);
    if (ids.empty()) return usage_error("the prompt encodes to no tokens");
    if (static_cast<int64_t>(ids.size()) + f.n_predict > engine->ctx_size()) {
        return invalid_argument("prompt of %zu tokens + %lld to generate exceeds the context size "
                                "%lld (--ctx-size)", ids.size(), static_cast<long long>(f.n_predict),
                                static_cast<long long>(engine->ctx_size()));
    }
    std::vector<float> logits;
    TCA_RETURN_IF_ERROR(engine->eval(ids, f.logits_out.empty() ? nullptr : &logits));
    if (!f.logits_out.empty()) {
        std::FILE* out = std::fopen(f.logits_out.c_str(), "wb");
        if (!out) return io_error("cannot write %s", f.logits_out.c_str());
        const size_t written = std::fwrite(logits.data(), sizeof(float), logits.size(), out);
        const bool ok = std::fclose(out) == 0 && written == logits.size();
        if (!ok) return io_error("short write to %s", f.logits_out.c_str());
    }
    Sampler sampler(so, engine->config().n_vocab);
    std::string pending;  // bytes of an incomplete UTF-8 character are held back
    TCA_RETURN_IF_ERROR(engine->generate(f.n_predict, sampler, [&](int32_t id) {
        pending += tok.token_to_piece(id);
        size_t cut = pending.size();
        // Keep a trailing partial UTF-8 sequence for the next token.
        for (size_t back = 1; back <= 3 && back <= pending.size(); ++back) {
            const auto ch = static_cast<unsigned char>(pending[pending.size() - back]);
            if ((ch & 0xC0) == 0xC0) {
                const size_t need = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : 2;
                if (back < need) cut = pending.size() - back;
                break;
            }
            if ((ch & 0x80) == 0) break;
        }
        std::fwrite(pending.data(), 1, cut, stdout);
        std::fflush(stdout);
        pending.erase(0, cut);
        return true;
    }));
    std::fwrite(pending.data(), 1, pending.size(), stdout);
    if (f.n_predict > 0) std::printf("\n");
    const EngineStats st = engine->stats();
    TCA_LOG_INFO("prompt %lld tokens in %.1f ms (%.1f tok/s), generated %lld tokens in %.1f ms "
                 "(%.1f tok/s), %d threads",
                 static_cast<long long>(st.n_prompt_tokens), st.prefill_ms, st.prefill_tokens_per_s(),
                 static_cast<long long>(st.n_generated), st.decode_ms, st.decode_tokens_per_s(),
                 thread_pool().n_threads());
    TCA_LOG_INFO("attention %s: kv cache holds %s (dense would hold %s, %.1f%%)",
                 attention_kind_name(engine->attention().policy().kind), format_bytes(st.kv_bytes).c_str(),
                 format_bytes(st.kv_bytes_dense).c_str(),
                 st.kv_bytes_dense ? 100.0 * static_cast<double>(st.kv_bytes) / static_cast<double>(st.kv_bytes_dense) : 0.0);
    if (!f.stats_json.empty()) {
        std::FILE* out = std::fopen(f.stats_json.c_str(), "w");
        if (!out) return io_error("cannot write %s", f.stats_json.c_str());
        std::fprintf(out, "%s\n", engine->stats_json().c_str());
        if (std::fclose(out) != 0) return io_error("cannot write %s", f.stats_json.c_str());
    }
    return Status();
}

}  // namespace

int cmd_run(const std::vector<std::string>& args) {
    RunFlags f;
    FlagSet flags("tca run", "Generates text from a prompt. stdout: the generated text only;\n"
                             "model, memory and speed go to stderr.");
    flags.add_string("model", &f.model, "FILE", kModelHelp);
    flags.add_alias("-m", "model");
    flags.add_string("prompt", &f.prompt, "TEXT", "prompt text (special tokens in it are parsed)");
    flags.add_alias("-p", "prompt");
    flags.add_string("file", &f.file, "FILE", "read the prompt from FILE");
    flags.add_alias("-f", "file");
    flags.add_int("n-predict", &f.n_predict, "tokens to generate (stops early at end of generation)");
    flags.add_alias("-n", "n-predict");
    flags.add_double("temp", &f.temp, "sampling temperature; 0 = greedy");
    flags.add_int("top-k", &f.top_k, "keep the k most likely tokens (0 = off)");
    flags.add_double("top-p", &f.top_p, "nucleus sampling mass (1 = off)");
    flags.add_int("seed", &f.seed, "sampling seed");
    flags.add_int("ctx-size", &f.ctx_size, "context size in tokens (0 = model's, at most 4096)");
    flags.add_int("batch-size", &f.batch_size, "prompt tokens per forward pass (chunked prefill)");
    flags.add_int("threads", &f.threads, "worker threads (0 = all cores)");
    flags.add_int("tensor-parallel", &f.tensor_parallel,
                  "split attention heads and MLP columns over N ranks (cpu: N threads sharing "
                  "--threads; cuda: GPUs 0..N-1 over NCCL); KV heads and the MLP size must divide by N");
    flags.add_string("device", &f.device, "D", "where the model runs: cpu or cuda (a GPU of compute "
                     "capability >= 8.0; quantized weights are dequantized to bf16 at load)");
    flags.add_string("kv-type", &f.kv_type, "T", kKvTypeHelp);
    flags.add_string("matmul-activations", &f.matmul_activations, "M",
                     "matmul activations: native (the weight type's dot type, as llama.cpp: f16/bf16 "
                     "rounding, 8-bit blocks for quantized weights) or f32");
    flags.add_string("tokenizer", &f.tokenizer, "FILE", "use this tokenizer.json instead of the model's");
    flags.add_bool("bos", &f.bos, "prepend BOS when the model expects it (--no-bos to skip)");
    flags.add_string("chat", &f.chat, "T", "wrap the prompt in a chat template: llama3, chatml or auto");
    flags.add_string("system", &f.system, "TEXT", "system message for --chat");
    flags.add_string("logits-out", &f.logits_out, "FILE",
                     "write float32 [n_prompt_tokens x n_vocab] logits, row i = after token i");
    flags.add_string("attention", &f.attention, "P", "attention policy: dense, tca, streaming, snapkv or oracle");
    add_policy_flags(flags, &f.policy);
    flags.add_string("stats-json", &f.stats_json, "FILE", "write speed and KV-cache statistics as JSON");
    flags.add_int("warmup", &f.warmup, "before the prompt, evaluate N synthetic tokens and one decode step, "
                  "then forget them, so that GPU kernels load and buffers are allocated outside the timed "
                  "prompt (with tca, N > --local-window + --block-size warms its prompt-end selection too); "
                  "0 = off");
    flags.add_bool("time-stages", &f.time_stages, "time the TCA prefill stages on a GPU too (tca_selection_ms and "
                   "tca_attend_ms in --stats-json; each stage is then bracketed by synchronisations, which slows "
                   "the prefill; the CPU always times them)");
    flags.add_bool("verbose", &f.verbose, "debug logging");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    if (f.verbose) set_log_level(LogLevel::kDebug);
    return report_error(run_main(f, flags.given("prompt")));
}

}  // namespace tca::cli
