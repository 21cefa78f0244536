// `tca bench attention`: the CPU attention benchmark (bench/attention_bench.h).
#include <cstdio>

#include "bench/attention_bench.h"
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
    bool help = false;
    if (Status s = flags.parse(args, &help); !s.ok()) return report_error(s);
    if (help) {
        std::printf("%s", flags.usage().c_str());
        return 0;
    }
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

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
    if (args.empty() || args[0] == "--help" || args[0] == "-h") {
        std::fprintf(args.empty() ? stderr : stdout,
                     "usage: tca bench <what> [options]\n\n  attention  dense vs TCA attention on "
                     "this CPU (tca bench attention --help)\n");
        return args.empty() ? 2 : 0;
    }
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    if (args[0] == "attention") return bench_attention(rest);
    std::fprintf(stderr, "tca: unknown benchmark '%s' (see tca bench --help)\n", args[0].c_str());
    return 2;
}

}  // namespace tca::cli
