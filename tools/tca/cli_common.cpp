// Helpers shared by the subcommands (commands.h): error reporting and common flags.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "commands.h"

namespace tca::cli {

std::optional<int> parse_flags(FlagSet& flags, const std::vector<std::string>& args) {
    bool help = false;
    if (Status s = flags.parse(args, &help); !s.ok()) return report_error(s);
    if (help) {
        std::printf("%s", flags.usage().c_str());
        return 0;
    }
    return std::nullopt;
}

int report_error(const Status& status) {
    if (status.ok()) return 0;
    std::fprintf(stderr, "tca: %s\n", status.message().c_str());
    return status.code() == StatusCode::kUsage ? 2 : 1;
}

Result<DType> parse_kv_type(const std::string& name) {
    if (name == "f32") return DType::kF32;
    if (name == "f16") return DType::kF16;
    if (name == "bf16") return DType::kBF16;
    return usage_error("--kv-type must be f32, f16 or bf16, got '%s'", name.c_str());
}

Result<std::optional<DType>> parse_optional_kv_type(const std::string& name) {
    if (name.empty()) return std::optional<DType>();
    TCA_ASSIGN_OR_RETURN(const DType t, parse_kv_type(name));
    return std::optional<DType>(t);
}

void add_policy_flags(FlagSet& flags, PolicyFlags* f) {
    flags.add_string("budget-file", &f->budget_file, "FILE", "tca: per-head budgets from tca calibrate");
    flags.add_double("keep", &f->keep, "tca without --budget-file: kept fraction of candidate tokens for every head");
    flags.add_int("block-size", &f->block_size, "tca: block size b (power of two)");
    flags.add_int("local-window", &f->local_window, "tca: local window w (multiple of b)");
    flags.add_double("alpha", &f->alpha, "tca: blend of mass and spread in the block score");
    flags.add_double("min-prefill-gain", &f->min_prefill_gain,
                     "tca: sparse prefill only when dense attention would do this many times its work "
                     "(else the prompt is attended densely, then its cache keeps what the sparse prefill would have "
                     "selected: short contexts attend at dense speed); 0 = always sparse");
    flags.add_string("mass-norm", &f->mass_norm, "M", "tca: block mass normalisation, max or none");
    flags.add_int("pool", &f->pool, "tca without --budget-file: rank a block's tokens by the largest "
                  "importance within +-N positions, so a span is kept with its attended start (0 = the "
                  "paper; a budget file carries its own)");
    flags.add_string("select", &f->selection, "S", "tca without --budget-file: which tokens fill a "
                     "head's budget: block (the paper: each block its own t_j best) or global (the "
                     "sum of the t_j best of all candidate tokens; a budget file carries its own)");
    flags.add_int("kv-budget", &f->kv_budget, "streaming/snapkv/oracle: tokens kept per KV head");
    flags.add_int("n-sink", &f->n_sink, "streaming: first tokens always kept");
    flags.add_int("obs-window", &f->obs_window, "snapkv: last prompt queries that score the prompt");
}

Result<AttentionPolicy> policy_from_flags(const std::string& attention, const PolicyFlags& f) {
    AttentionPolicy p;
    TCA_ASSIGN_OR_RETURN(p.kind, parse_attention_kind(attention));
    p.kv_budget = f.kv_budget;
    p.n_sink = f.n_sink;
    p.obs_window = f.obs_window;
    if (p.kind != AttentionKind::kTca) return p;
    if (!(f.min_prefill_gain >= 0.0 && f.min_prefill_gain <= 1e6)) {
        return usage_error("--min-prefill-gain must be in [0, 1e6], got %g", f.min_prefill_gain);
    }
    p.min_prefill_gain = f.min_prefill_gain;
    SparseOptions o;
    o.block_size = static_cast<int>(f.block_size);
    o.local_window = static_cast<int>(f.local_window);
    o.alpha = f.alpha;
    TCA_ASSIGN_OR_RETURN(o.mass_norm, parse_mass_norm(f.mass_norm));
    if (f.pool < 0 || f.pool > kMaxPool) {
        return usage_error("--pool must be in [0, %d], got %lld", kMaxPool, static_cast<long long>(f.pool));
    }
    o.pool = static_cast<int>(f.pool);
    TCA_ASSIGN_OR_RETURN(o.selection, parse_select_flag(f.selection));
    if (Status s = validate(o); !s.ok()) return Status(StatusCode::kUsage, s.message());
    Result<HeadConfig> cfg = config_for_keep_fraction(f.keep, o.block_size);
    if (!cfg.ok()) return Status(StatusCode::kUsage, "--keep: " + cfg.status().message());
    p.budgets.options = o;
    p.uniform = *cfg;  // expanded to every layer and KV head by the engine
    return p;
}

Result<Selection> parse_select_flag(const std::string& name) {
    Result<Selection> sel = parse_selection(name);
    if (!sel.ok()) return usage_error("--select must be block or global, got '%s'", name.c_str());
    return sel;
}

Result<Device> parse_device(const std::string& name) {
    if (name == "cpu") return Device::kCpu;
    if (name == "cuda") return Device::kCuda;
    return usage_error("--device must be cpu or cuda, got '%s'", name.c_str());
}

Result<std::string> model_or_default(const std::string& model) {
    if (!model.empty()) return model;
    if (const char* env = std::getenv("TCA_MODEL"); env != nullptr && env[0] != '\0') return std::string(env);
    const std::string shipped = std::string(TCA_SOURCE_DIR) + "/" + kShippedModel;
    std::error_code ec;
    if (std::filesystem::is_regular_file(shipped, ec)) return shipped;
    return usage_error("a model is required (-m FILE): TCA_MODEL is unset and the shipped model %s is missing",
                       shipped.c_str());
}

Result<std::string> read_prompt(const std::string& text, const std::string& file, bool text_given) {
    if (text_given == !file.empty()) {
        return usage_error("give the prompt with exactly one of -p TEXT or -f FILE");
    }
    if (text_given) return text;
    std::ifstream in(file, std::ios::binary);
    if (!in) return not_found("cannot read prompt file %s", file.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace tca::cli
