// `tca calibrate`: offline calibration (tca-method M8). One dense forward pass over the
// calibration text (a single batch, so every layer sees all positions); after each layer's
// attention a LayerObserver hands the RoPE'd queries and the cached keys to
// sparse/calibration.h, which picks each KV head's configuration. Writes the budget file
// (sparse/budget_file.h, docs/formats.md) and optionally a heatmap PNG of the kept fractions.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "backend/device_memory.h"
#include "commands.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/png_writer.h"
#include "core/progress.h"
#include "core/strings.h"
#include "core/thread_pool.h"
#include "runtime/engine.h"
#include "sparse/budget_file.h"
#include "sparse/calibration.h"

namespace tca::cli {

namespace {

struct CalibrateFlags {
    std::string model, file, out, heatmap, mass_norm = "max", tokenizer, device = "cpu",
                statistic = "total", selection = "block";
    int64_t ctx = 4096, block_size = 128, local_window = 4096, obs_window = 1, row_stride = 1,
            threads = 0, pool = 0;
    double tau = 0.9, alpha = 0.5, min_keep = 0.0;
    bool bos = true, verbose = false;
};

// "block_size must be ..." -> "--block-size must be ...": the option's flag spelling.
Status as_flag_error(const Status& s) {
    std::string m = s.message();
    const size_t end = m.find(' ');
    for (size_t i = 0; i < end && i < m.size(); ++i) {
        if (m[i] == '_') m[i] = '-';
    }
    return Status(StatusCode::kUsage, "--" + m);
}

Result<CalibrationOptions> options_from_flags(const CalibrateFlags& f) {
    CalibrationOptions opt;
    auto as_int = [](int64_t v, const char* flag) -> Result<int> {
        if (v < 0 || v > (int64_t{1} << 30)) {
            return usage_error("--%s must be in [0, 2^30], got %lld", flag, static_cast<long long>(v));
        }
        return static_cast<int>(v);
    };
    TCA_ASSIGN_OR_RETURN(opt.sparse.block_size, as_int(f.block_size, "block-size"));
    TCA_ASSIGN_OR_RETURN(opt.sparse.local_window, as_int(f.local_window, "local-window"));
    TCA_ASSIGN_OR_RETURN(opt.sparse.obs_window, as_int(f.obs_window, "obs-window"));
    TCA_ASSIGN_OR_RETURN(opt.sparse.pool, as_int(f.pool, "pool"));
    TCA_ASSIGN_OR_RETURN(opt.sparse.selection, parse_select_flag(f.selection));
    opt.sparse.alpha = f.alpha;
    opt.sparse.tau = f.tau;
    Result<MassNorm> mn = parse_mass_norm(f.mass_norm);
    if (!mn.ok()) return as_flag_error(mn.status());
    opt.sparse.mass_norm = mn.value();
    opt.row_stride = f.row_stride;
    Result<MassStatistic> stat = parse_mass_statistic(f.statistic);
    if (!stat.ok()) return as_flag_error(stat.status());
    opt.statistic = stat.value();
    opt.min_keep = f.min_keep;
    if (Status s = validate(opt); !s.ok()) return as_flag_error(s);
    return opt;
}

Status calibrate_main(CalibrateFlags f, bool ctx_given) {
    if (f.model.empty()) return usage_error("a model is required (-m FILE)");
    if (f.file.empty()) return usage_error("calibration text is required (-f FILE)");
    if (f.out.empty()) return usage_error("an output budget file is required (-o FILE)");
    if (f.ctx < 1) return usage_error("--ctx must be >= 1, got %lld", static_cast<long long>(f.ctx));
    TCA_ASSIGN_OR_RETURN(const CalibrationOptions opt, options_from_flags(f));
    TCA_ASSIGN_OR_RETURN(const Device device, parse_device(f.device));
    TCA_RETURN_IF_ERROR(memory_space(device).status());  // no GPU: fail before reading anything
    const int64_t w = opt.sparse.local_window, b = opt.sparse.block_size;
    // Without --ctx, enough tokens for 8 candidate blocks even when w is at its 4096 default.
    if (!ctx_given) f.ctx = std::max<int64_t>(f.ctx, w + 8 * b);
    if (f.ctx < w + b) {
        return usage_error("--ctx %lld is shorter than local window + block size = %lld + %lld: "
                           "calibration needs candidate blocks", static_cast<long long>(f.ctx),
                           static_cast<long long>(w), static_cast<long long>(b));
    }
    std::ifstream in(f.file, std::ios::binary);
    if (!in) return not_found("cannot read calibration text %s", f.file.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();

    // The identity comes from the weights (a second mapping of the file: cheap).
    TCA_ASSIGN_OR_RETURN(const ModelWeights weights, load_model(f.model));
    const BudgetFileIdentity identity = model_identity(weights);

    EngineOptions eo;
    eo.model_path = f.model;
    eo.tokenizer_path = f.tokenizer;
    eo.ctx_size = f.ctx;
    eo.batch_size = f.ctx;  // one forward call: every layer sees all positions at once
    eo.n_threads = static_cast<int>(f.threads);
    eo.kv_dtype = DType::kF32;  // the statistic reads the keys: keep them exact on every device
    eo.device = device;
    TCA_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(eo));
    const ModelConfig& c = engine->config();
    TCA_LOG_INFO("model %s: %s", f.model.c_str(), c.to_string().c_str());

    const Tokenizer& tok = engine->tokenizer();
    std::vector<int32_t> ids = tok.encode(text, f.bos && tok.add_bos_default(), false);
    const auto n_text = static_cast<int64_t>(ids.size());
    if (n_text < w + b) {
        return invalid_argument("calibration text %s has %lld tokens, shorter than local window + "
                                "block size = %lld + %lld = %lld: calibration needs candidate blocks",
                                f.file.c_str(), static_cast<long long>(n_text), static_cast<long long>(w),
                                static_cast<long long>(b), static_cast<long long>(w + b));
    }
    if (n_text > f.ctx) ids.resize(static_cast<size_t>(f.ctx));
    const auto n = static_cast<int64_t>(ids.size());
    TCA_LOG_INFO("calibrating on %lld of %lld tokens (b %lld, w %lld, tau %g on %s mass, row "
                 "stride %lld, %d threads)", static_cast<long long>(n), static_cast<long long>(n_text),
                 static_cast<long long>(b), static_cast<long long>(w), opt.sparse.tau,
                 mass_statistic_name(opt.statistic), static_cast<long long>(opt.row_stride),
                 thread_pool().n_threads());

    std::vector<std::vector<HeadCalibration>> result(static_cast<size_t>(c.n_layer));
    Progress progress("calibrate", c.n_layer, 0.5);
    const LayerObserver observer = [&](int64_t layer, const TensorView& q, const KvLayer& kv,
                                       int64_t pos0, const TensorView&) -> Status {
        if (pos0 != 0 || q.shape[1] != n) {
            return invalid_argument("calibration needs all %lld tokens in one forward call, got "
                                    "%lld at position %lld", static_cast<long long>(n),
                                    static_cast<long long>(q.shape[1]), static_cast<long long>(pos0));
        }
        // Dense attention: slot == position, so slots [0, n) are the keys of positions [0, n).
        const TensorView k = slice(kv.k.view(), 1, 0, n);
        if (kv.k.on_host()) {
            TCA_ASSIGN_OR_RETURN(result[static_cast<size_t>(layer)], calibrate_layer(q, k, opt));
        } else {  // the statistic runs on the host: copy this layer's queries and keys there
            TCA_ASSIGN_OR_RETURN(const HostTensor q_host, to_host(q, kv.k.space()));
            TCA_ASSIGN_OR_RETURN(const HostTensor k_host, to_host(k, kv.k.space()));
            TCA_ASSIGN_OR_RETURN(result[static_cast<size_t>(layer)],
                                 calibrate_layer(q_host.view(), k_host.view(), opt));
        }
        progress.update(layer + 1);
        return Status();
    };
    TCA_RETURN_IF_ERROR(engine->eval(ids, nullptr, &observer));
    progress.done();

    BudgetFile file;
    file.identity = identity;
    file.budgets.options = opt.sparse;
    file.calibration.n_tokens = n;
    file.calibration.row_stride = opt.row_stride;
    file.calibration.n_candidates = opt.n_candidates;
    file.calibration.statistic = mass_statistic_name(opt.statistic);
    file.calibration.min_keep = opt.min_keep;
    const size_t slash = f.file.find_last_of('/');
    file.calibration.text = slash == std::string::npos ? f.file : f.file.substr(slash + 1);
    std::vector<std::vector<double>> kept(static_cast<size_t>(c.n_layer));
    std::printf("layer  mean_kept  dense_heads  mean_retained  kept per KV head\n");
    double total_kept = 0;
    int64_t total_dense = 0;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const auto& heads = result[static_cast<size_t>(l)];
        TCA_ASSERT(static_cast<int64_t>(heads.size()) == c.n_head_kv, "layer %lld not calibrated",
                   static_cast<long long>(l));
        file.budgets.heads.emplace_back();
        file.records.emplace_back();
        double sum_kept = 0, sum_ret = 0;
        int64_t dense = 0;
        std::string per_head;
        for (const HeadCalibration& h : heads) {
            file.calibration.n_query_rows = h.n_queries;
            file.budgets.heads.back().push_back(h.config);
            HeadBudgetRecord rec;
            rec.kept_fraction = h.kept_fraction;
            rec.decode_budget = decode_budget(h.config.p);
            rec.retained_mass = std::min(1.0, h.retained_mass);
            rec.dense = h.dense();
            rec.candidate = h.chosen;
            file.records.back().push_back(rec);
            kept[static_cast<size_t>(l)].push_back(h.kept_fraction);
            sum_kept += h.kept_fraction;
            sum_ret += h.retained_mass;
            dense += h.dense() ? 1 : 0;
            per_head += strformat(" %.3f%s", h.kept_fraction, h.dense() ? "d" : "");
        }
        const auto nh = static_cast<double>(heads.size());
        std::printf("%5lld  %9.4f  %11lld  %13.4f %s\n", static_cast<long long>(l), sum_kept / nh,
                    static_cast<long long>(dense), sum_ret / nh, per_head.c_str());
        total_kept += sum_kept;
        total_dense += dense;
    }
    std::printf("all    %9.4f  %11lld  (expected kept fraction of candidate tokens; d = dense)\n",
                total_kept / static_cast<double>(c.n_layer * c.n_head_kv),
                static_cast<long long>(total_dense));
    TCA_RETURN_IF_ERROR(write_budget_file(f.out, file));
    TCA_LOG_INFO("wrote %s", f.out.c_str());
    if (!f.heatmap.empty()) {
        const int64_t cells = std::max(c.n_layer, c.n_head_kv);
        const int cell_px = static_cast<int>(std::clamp<int64_t>(512 / cells, 6, 32));
        TCA_RETURN_IF_ERROR(write_png(f.heatmap, render_heatmap(kept, cell_px)));
        TCA_LOG_INFO("wrote %s (rows: layers, columns: KV heads, colour: kept fraction 0..1)",
                     f.heatmap.c_str());
    }
    return Status();
}

}  // namespace

int cmd_calibrate(const std::vector<std::string>& args) {
    CalibrateFlags f;
    FlagSet flags("tca calibrate",
                  "Offline calibration (tca-method M8): one dense forward pass over a calibration\n"
                  "text, then for every (layer, KV head) the budget configuration with the fewest\n"
                  "selected tokens that keeps a mean attention mass >= tau. Writes a budget file\n"
                  "(docs/formats.md) for --budget-file. stdout: a per-layer summary.");
    flags.add_string("model", &f.model, "FILE", "model: GGUF file, .safetensors file or HF directory");
    flags.add_alias("-m", "model");
    flags.add_string("file", &f.file, "FILE", "calibration text (any domain, a few thousand tokens)");
    flags.add_alias("-f", "file");
    flags.add_string("output", &f.out, "FILE", "budget file to write (JSON)");
    flags.add_alias("-o", "output");
    flags.add_int("ctx", &f.ctx, "calibration tokens: the first N of the text, clipped to it; "
                  "unset: at least w + 8b (5120 at the default b, w)");
    flags.add_double("tau", &f.tau, "retained attention mass a head must keep, in (0, 1]");
    flags.add_string("statistic", &f.statistic, "S",
                     "what tau bounds: total (the paper: mean share of each query's attention kept, "
                     "local band included) or far (share of the attention beyond the local band "
                     "that the selected tokens keep; for models whose band alone holds > tau)");
    flags.add_int("block-size", &f.block_size, "block size b (a power of two)");
    flags.add_int("local-window", &f.local_window, "local window w (a multiple of b)");
    flags.add_double("alpha", &f.alpha, "blend of mass and spread in the block score, in [0, 1]");
    flags.add_string("mass-norm", &f.mass_norm, "M", "block mass normalisation: max or none");
    flags.add_int("obs-window", &f.obs_window, "last queries averaged for token importance");
    flags.add_double("min-keep", &f.min_keep, "budget floor: no head keeps less than this expected "
                     "share of its candidate tokens (candidates below it are not valid; 0 = the paper)");
    flags.add_int("pool", &f.pool, "rank a block's tokens by the largest importance within +-N "
                  "positions (tca-method M5 option; stored in the budget file; 0 = the paper)");
    flags.add_string("select", &f.selection, "S", "which tokens fill a head's budget: block (the "
                     "paper: each block its own t_j best) or global (the sum of the t_j best of all "
                     "candidate tokens; tca-method M5 option, stored in the budget file)");
    flags.add_int("row-stride", &f.row_stride, "use every S-th query row for the statistic (long texts)");
    flags.add_int("threads", &f.threads, "worker threads (0 = all cores)");
    flags.add_string("device", &f.device, "D", "where the forward pass runs: cpu or cuda (the "
                     "statistic itself runs on the host)");
    flags.add_string("tokenizer", &f.tokenizer, "FILE", "use this tokenizer.json instead of the model's");
    flags.add_bool("bos", &f.bos, "prepend BOS when the model expects it (--no-bos to skip)");
    flags.add_string("heatmap", &f.heatmap, "FILE", "also write a PNG of the kept fraction per (layer, KV head)");
    flags.add_bool("verbose", &f.verbose, "debug logging");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    if (f.verbose) set_log_level(LogLevel::kDebug);
    return report_error(calibrate_main(f, flags.given("ctx")));
}

}  // namespace tca::cli
