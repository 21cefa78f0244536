// The CPU engine benchmark vs llama.cpp (engine_bench.h). Per weight type: generate (or reuse)
// the model file, time tca's Engine (warm-up, then `reps` runs of prefill + decode on an empty
// cache; medians), run the llama.cpp peer with the same shape of work, print ratios.
#include "bench/engine_bench.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>

#include "bench/bench_common.h"
#include "core/strings.h"
#include "runtime/engine.h"

namespace tca::bench {
namespace {

Result<GgmlType> weight_type_from_name(const std::string& s) {
    if (s == "f32") return GgmlType::kF32;
    if (s == "f16") return GgmlType::kF16;
    if (s == "bf16") return GgmlType::kBF16;
    if (s == "q8_0") return GgmlType::kQ8_0;
    if (s == "q4_0") return GgmlType::kQ4_0;
    return usage_error("--types: unknown weight type '%s' (f32, f16, bf16, q8_0, q4_0)", s.c_str());
}

// The cached file name encodes every field of the spec, so a changed shape regenerates.
std::string model_file_name(const RandomModelSpec& s, const std::string& type) {
    return strformat("random-%s-e%lld-l%lld-h%lld-kv%lld-d%lld-ff%lld-v%lld-%s%s-s%llu.gguf",
                     s.arch.c_str(), static_cast<long long>(s.n_embd),
                     static_cast<long long>(s.n_layer), static_cast<long long>(s.n_head),
                     static_cast<long long>(s.n_head_kv), static_cast<long long>(s.head_dim),
                     static_cast<long long>(s.n_ff), static_cast<long long>(s.n_vocab),
                     type.c_str(), s.tied_output ? "-tied" : "",
                     static_cast<unsigned long long>(s.seed));
}

// The same prompt and decode ids as the peer's bench mode (1 + i * 7919 mod (V - 1)).
std::vector<int32_t> bench_prompt(int64_t n, int64_t n_vocab) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(1 + (i * 7919) % (n_vocab - 1));
    return ids;
}

struct Speeds {
    double prefill_tok_s = 0, decode_tok_s = 0;
    double prefill_min = 0, prefill_max = 0, decode_min = 0, decode_max = 0;
};

Result<Speeds> time_tca(const std::string& model, const EngineBenchOptions& opt, int64_t n_vocab) {
    EngineOptions eo;
    eo.model_path = model;
    eo.ctx_size = opt.n_prompt + opt.n_gen + 8;
    eo.batch_size = 512;
    eo.n_threads = opt.n_threads;
    TCA_ASSIGN_OR_RETURN(std::unique_ptr<Engine> e, Engine::create(eo));
    const std::vector<int32_t> prompt = bench_prompt(opt.n_prompt, n_vocab);
    // Warm-up: pages the weights in and starts the thread pool.
    TCA_RETURN_IF_ERROR(e->eval(std::span<const int32_t>(prompt.data(), std::min<size_t>(16, prompt.size())), nullptr));
    std::vector<double> prefill, decode;
    for (int64_t r = 0; r < opt.reps; ++r) {
        e->reset();
        double t0 = now_ms();
        TCA_RETURN_IF_ERROR(e->eval(prompt, nullptr));
        prefill.push_back(1000.0 * static_cast<double>(opt.n_prompt) / (now_ms() - t0));
        t0 = now_ms();
        int32_t tok = 1;
        for (int64_t i = 0; i < opt.n_gen; ++i) {
            const int32_t one[1] = {tok};
            TCA_RETURN_IF_ERROR(e->eval(one, nullptr));
            tok = static_cast<int32_t>(1 + (i * 104729) % (n_vocab - 1));
        }
        decode.push_back(1000.0 * static_cast<double>(opt.n_gen) / (now_ms() - t0));
    }
    const Stats p = summarize(prefill), d = summarize(decode);
    return Speeds{p.median, d.median, p.min, p.max, d.min, d.max};
}

// Parses "key":number from the peer's JSON line.
double json_number(const std::string& line, const std::string& key) {
    const size_t at = line.find("\"" + key + "\":");
    if (at == std::string::npos) return 0;
    return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}

Result<Speeds> time_peer(const std::string& model, const EngineBenchOptions& opt) {
    const std::string cmd = strformat("'%s' bench '%s' %lld %lld %d %lld 2>&1", opt.peer_path.c_str(),
                                      model.c_str(), static_cast<long long>(opt.n_prompt),
                                      static_cast<long long>(opt.n_gen), opt.n_threads,
                                      static_cast<long long>(opt.reps));
    std::FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return io_error("cannot run %s", opt.peer_path.c_str());
    std::string out;
    char buf[1024];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    const int rc = ::pclose(p);
    Speeds s;
    s.prefill_tok_s = json_number(out, "prefill_tokens_per_s");
    s.decode_tok_s = json_number(out, "decode_tokens_per_s");
    if (rc != 0 || s.prefill_tok_s <= 0 || s.decode_tok_s <= 0) {
        return io_error("llama.cpp peer failed (exit %d): %s", rc, out.c_str());
    }
    return s;
}

}  // namespace

RandomModelSpec default_engine_bench_spec() {
    RandomModelSpec s;
    s.n_embd = 768;
    s.n_layer = 12;
    s.n_head = 12;
    s.n_head_kv = 12;
    s.head_dim = 64;
    s.n_ff = 2048;
    s.n_vocab = 32000;
    s.tied_output = true;
    s.context_length = 2048;
    s.seed = 7;
    return s;
}

Status run_engine_bench(const EngineBenchOptions& opt, std::FILE* out) {
    if (opt.n_prompt < 1 || opt.n_gen < 1 || opt.reps < 1) {
        return usage_error("--prompt, --gen and --reps must be >= 1");
    }
    TCA_ASSIGN_OR_RETURN(JsonLines json, JsonLines::open(opt.json_path));
    std::error_code ec;
    std::filesystem::create_directories(opt.model_dir, ec);
    if (ec) return io_error("cannot create %s: %s", opt.model_dir.c_str(), ec.message().c_str());
    const std::string cpu = cpu_description(opt.n_threads), rev = git_revision();
    std::fprintf(out, "engine bench: %s, git %s; prompt %lld, decode %lld, %lld reps (medians)\n",
                 cpu.c_str(), rev.c_str(), static_cast<long long>(opt.n_prompt),
                 static_cast<long long>(opt.n_gen), static_cast<long long>(opt.reps));
    if (opt.peer_path.empty()) {
        std::fprintf(out, "  (no llama.cpp peer: build tca_llama_peer after scripts/test-assets.sh,"
                          " or pass --peer)\n");
    }
    std::fprintf(out, "%-6s %9s | %12s %12s %7s | %12s %12s %7s\n", "type", "params", "tca pp t/s",
                 "llama pp t/s", "ratio", "tca tg t/s", "llama tg t/s", "ratio");
    for (const std::string& type : opt.types) {
        RandomModelSpec spec = opt.spec;
        TCA_ASSIGN_OR_RETURN(spec.weight_type, weight_type_from_name(type));
        const std::string path = opt.model_dir + "/" + model_file_name(spec, type);
        if (!std::filesystem::exists(path)) {
            std::fprintf(out, "  generating %s\n", path.c_str());
            std::fflush(out);
            const std::string tmp = path + ".tmp";
            TCA_RETURN_IF_ERROR(write_random_model(tmp, spec));
            std::filesystem::rename(tmp, path, ec);
            if (ec) return io_error("cannot rename %s: %s", tmp.c_str(), ec.message().c_str());
        }
        TCA_ASSIGN_OR_RETURN(const Speeds t, time_tca(path, opt, spec.n_vocab));
        Speeds l;
        if (!opt.peer_path.empty()) {
            TCA_ASSIGN_OR_RETURN(l, time_peer(path, opt));
        }
        const double pp_ratio = l.prefill_tok_s > 0 ? t.prefill_tok_s / l.prefill_tok_s : 0;
        const double tg_ratio = l.decode_tok_s > 0 ? t.decode_tok_s / l.decode_tok_s : 0;
        const int64_t n_params = random_model_n_params(spec);
        std::fprintf(out, "%-6s %8.1fM | %12.1f %12.1f %6.2fx | %12.2f %12.2f %6.2fx\n",
                     type.c_str(), static_cast<double>(n_params) / 1e6, t.prefill_tok_s,
                     l.prefill_tok_s, pp_ratio, t.decode_tok_s, l.decode_tok_s, tg_ratio);
        std::fflush(out);
        json.write(strformat(
            "{\"bench\":\"engine\",\"git\":\"%s\",\"device\":\"%s\",\"weights\":\"%s\","
            "\"n_params\":%lld,\"n_embd\":%lld,\"n_layer\":%lld,\"n_head\":%lld,\"n_head_kv\":%lld,"
            "\"head_dim\":%lld,\"n_ff\":%lld,\"n_vocab\":%lld,\"n_prompt\":%lld,\"n_gen\":%lld,"
            "\"threads\":%d,\"reps\":%lld,\"tca_prefill_tok_s\":%.3f,\"tca_prefill_min\":%.3f,"
            "\"tca_prefill_max\":%.3f,\"tca_decode_tok_s\":%.3f,\"tca_decode_min\":%.3f,"
            "\"tca_decode_max\":%.3f,\"llama_prefill_tok_s\":%.3f,\"llama_decode_tok_s\":%.3f,"
            "\"prefill_ratio\":%.4f,\"decode_ratio\":%.4f}",
            rev.c_str(), cpu.c_str(), type.c_str(), static_cast<long long>(n_params),
            static_cast<long long>(spec.n_embd), static_cast<long long>(spec.n_layer),
            static_cast<long long>(spec.n_head), static_cast<long long>(spec.n_head_kv),
            static_cast<long long>(spec.head_dim), static_cast<long long>(spec.n_ff),
            static_cast<long long>(spec.n_vocab), static_cast<long long>(opt.n_prompt),
            static_cast<long long>(opt.n_gen), opt.n_threads, static_cast<long long>(opt.reps),
            t.prefill_tok_s, t.prefill_min, t.prefill_max, t.decode_tok_s, t.decode_min,
            t.decode_max, l.prefill_tok_s, l.decode_tok_s, pp_ratio, tg_ratio));
    }
    return Status();
}

}  // namespace tca::bench
