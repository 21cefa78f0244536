// `tca bench attention`: the CPU attention benchmark (bench/attention_bench.h).
// `tca bench engine`: the CPU engine vs llama.cpp on a generated model (bench/engine_bench.h).
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "bench/attention_bench.h"
#include "bench/engine_bench.h"
#include "commands.h"
#include "core/flags.h"
#include "core/thread_pool.h"

namespace tca::cli {

namespace {

int bench_attention(const std::vector<std::string>& args) {
    bench::AttentionBenchOptions opt;
    int64_t threads = static_cast<int64_t>(thread_pool().n_threads());
    int64_t seed = static_cast<int64_t>(opt.seed);
    FlagSet flags("tca bench attention",
                  "Times one layer's attention for a KV-head group at each length: our dense CPU\n"
                  "attention vs TCA (token importance, block scores, budgets, selection, gather\n"
                  "and sparse attention). Prints speedup, selection share, GFLOP/s and the\n"
                  "FLOP-ratio ceiling; --json appends one JSON line per length.");
    flags.add_int_list("lengths", &opt.lengths, "context lengths (k suffix = 1024)");
    flags.add_int("heads", &opt.n_q_heads, "query heads");
    flags.add_int("kv-heads", &opt.n_kv_heads, "KV heads (GQA group = heads / kv-heads)");
    flags.add_int("head-dim", &opt.head_dim, "head dimension (multiple of 8, <= 256)");
    flags.add_string("dtype", &opt.dtype, "T", "K/V storage type: f32, f16 or bf16");
    flags.add_int("block-size", &opt.block_size, "TCA block size b (power of two)");
    flags.add_int("local-window", &opt.local_window, "TCA local window w (multiple of b)");
    flags.add_double("keep", &opt.keep, "kept fraction of candidate tokens, in (0, 1]");
    flags.add_int("reps", &opt.reps, "timed repetitions per length (median reported)");
    flags.add_int("threads", &threads, "worker threads");
    flags.add_int("seed", &seed, "random seed of the inputs");
    flags.add_bool("validate", &opt.validate, "check both paths against the float64 reference first");
    flags.add_string("json", &opt.json_path, "FILE", "append JSON lines to FILE");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    if (threads < 1 || threads > 1024) {
        return report_error(usage_error("--threads must be in [1, 1024], got %lld",
                                        static_cast<long long>(threads)));
    }
    if (!(opt.keep > 0.0 && opt.keep <= 1.0)) {
        return report_error(usage_error("--keep must be in (0, 1], got %g", opt.keep));
    }
    set_num_threads(static_cast<int>(threads));
    opt.seed = static_cast<uint64_t>(seed);
    if (Status s = bench::run_attention_bench(opt, stdout); !s.ok()) return report_error(s);
    return 0;
}

// The llama.cpp peer built next to this executable (tests/CMakeLists.txt puts tca_llama_peer
// in the build folder's root); empty when absent.
std::string default_peer_path() {
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return "";
    const std::filesystem::path peer = self.parent_path() / "tca_llama_peer";
    return std::filesystem::exists(peer, ec) ? peer.string() : "";
}

int bench_engine(const std::vector<std::string>& args) {
    bench::EngineBenchOptions opt;
    opt.spec = bench::default_engine_bench_spec();
    opt.peer_path = default_peer_path();
    opt.model_dir = (std::filesystem::temp_directory_path() / "tca-bench-models").string();
    int64_t threads = opt.n_threads, n_embd = opt.spec.n_embd, n_layer = opt.spec.n_layer;
    int64_t n_head = opt.spec.n_head, n_head_kv = opt.spec.n_head_kv, head_dim = opt.spec.head_dim;
    int64_t n_ff = opt.spec.n_ff, n_vocab = opt.spec.n_vocab;
    std::string types = "f16,q8_0";
    FlagSet flags("tca bench engine",
                  "Generates a random-weight llama GGUF (default ~110M parameters: 768 wide, 12\n"
                  "layers, 12 heads of 64, n_ff 2048, vocab 32000, tied output) per weight type,\n"
                  "and times prefill and decode tokens/s of tca's engine and of llama.cpp (the\n"
                  "tca_llama_peer driver) on the same file and thread count; prints tca/llama.cpp\n"
                  "ratios (target P10: >= 1.0). --json appends one JSON line per weight type.");
    flags.add_string("types", &types, "LIST", "weight types, comma-separated: f32 f16 bf16 q8_0 q4_0");
    flags.add_int("prompt", &opt.n_prompt, "prompt tokens (prefill, in batches of 512)");
    flags.add_int("gen", &opt.n_gen, "decoded tokens");
    flags.add_int("reps", &opt.reps, "timed repetitions after a warm-up (median reported)");
    flags.add_int("threads", &threads, "threads for both engines");
    flags.add_int("n-embd", &n_embd, "model width");
    flags.add_int("layers", &n_layer, "layers");
    flags.add_int("heads", &n_head, "query heads");
    flags.add_int("kv-heads", &n_head_kv, "KV heads");
    flags.add_int("head-dim", &head_dim, "head dimension");
    flags.add_int("ff", &n_ff, "MLP width");
    flags.add_int("vocab", &n_vocab, "vocabulary size");
    flags.add_string("model-dir", &opt.model_dir, "DIR", "where generated models are cached");
    flags.add_string("peer", &opt.peer_path, "FILE",
                     "tca_llama_peer (default: next to this executable; empty: tca only)");
    flags.add_string("json", &opt.json_path, "FILE", "append JSON lines to FILE");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    if (threads < 1 || threads > 1024) {
        return report_error(usage_error("--threads must be in [1, 1024], got %lld",
                                        static_cast<long long>(threads)));
    }
    opt.n_threads = static_cast<int>(threads);
    opt.spec.n_embd = n_embd;
    opt.spec.n_layer = n_layer;
    opt.spec.n_head = n_head;
    opt.spec.n_head_kv = n_head_kv;
    opt.spec.head_dim = head_dim;
    opt.spec.n_ff = n_ff;
    opt.spec.n_vocab = n_vocab;
    opt.types.clear();
    for (size_t start = 0; start <= types.size();) {
        const size_t comma = std::min(types.find(',', start), types.size());
        if (comma > start) opt.types.push_back(types.substr(start, comma - start));
        start = comma + 1;
    }
    if (Status s = validate_random_model_spec(opt.spec); !s.ok()) return report_error(s);
    if (Status s = bench::run_engine_bench(opt, stdout); !s.ok()) return report_error(s);
    return 0;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
    if (args.empty() || args[0] == "--help" || args[0] == "-h") {
        std::fprintf(args.empty() ? stderr : stdout,
                     "usage: tca bench <what> [options]\n\n  attention  dense vs TCA attention on "
                     "this CPU (tca bench attention --help)\n  engine     tca vs llama.cpp "
                     "prefill/decode tok/s on a generated model (tca bench engine --help)\n");
        return args.empty() ? 2 : 0;
    }
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    if (args[0] == "attention") return bench_attention(rest);
    if (args[0] == "engine") return bench_engine(rest);
    std::fprintf(stderr, "tca: unknown benchmark '%s' (see tca bench --help)\n", args[0].c_str());
    return 2;
}

}  // namespace tca::cli
