// `tca eval`: RULER-style long-context evaluation (docs/eval.md). Dense and each listed
// attention policy answer identical seeded items; stdout gets the markdown results table,
// --out DIR gets items.jsonl, summary.json, summary.md and accuracy_vs_kv.png.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/device_memory.h"
#include "commands.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/strings.h"
#include "eval/eval_runner.h"
#include "model/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace tca::cli {

namespace {

struct EvalFlags {
    std::string model, task = "all", attention = "dense,tca", out, haystack, tokenizer, kv_type;
    std::string export_train, device = "cpu", tag;
    double chars_per_token = 4.0;
    std::vector<int64_t> ctx = {4096};
    int64_t n_samples = 10, seed = 0, threads = 0, max_answer_tokens = 0;
    PolicyFlags policy;
    bool bos = true, verbose = false, attn_stats = false;
};

// --attn-stats: prefill outputs of this many last prompt queries are compared with dense.
constexpr int64_t kProbeRows = 64;

Status write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    out.close();
    if (!out) return io_error("cannot write %s", path.c_str());
    return Status();
}

// The tokenizer of -m MODEL (GGUF file or HF folder's tokenizer.json) or --tokenizer FILE.
Result<std::unique_ptr<Tokenizer>> export_tokenizer(const EvalFlags& f) {
    std::string json = f.tokenizer;
    if (json.empty() && std::filesystem::is_directory(f.model)) json = f.model + "/tokenizer.json";
    if (!json.empty()) {
        TCA_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::from_hf_json_file(json));
        return std::make_unique<Tokenizer>(std::move(t));
    }
    TCA_ASSIGN_OR_RETURN(GgufFile g, GgufFile::open(f.model));
    TCA_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::from_gguf(g));
    return std::make_unique<Tokenizer>(std::move(t));
}

// --export-train: training items from the evaluation's generators (and the dense associative
// recall of the curriculum) as JSON lines, no model run (docs/eval.md, "Training items").
Status export_main(const EvalFlags& f, const std::vector<EvalTask>& tasks, bool assoc) {
    if (f.seed < static_cast<int64_t>(kTrainSeedBase)) {
        return usage_error("--export-train needs --seed >= %llu (training seeds; tca eval uses the seeds "
                           "below)", static_cast<unsigned long long>(kTrainSeedBase));
    }
    if (!(f.chars_per_token > 0.5 && f.chars_per_token < 64)) {
        return usage_error("--chars-per-token must be in (0.5, 64), got %g", f.chars_per_token);
    }
    TokenCounter count;
    std::unique_ptr<Tokenizer> tok;
    std::string counter_name;
    if (!f.model.empty() || !f.tokenizer.empty()) {
        TCA_ASSIGN_OR_RETURN(tok, export_tokenizer(f));
        const bool bos = f.bos && tok->add_bos_default();
        count = [&tok, bos](std::string_view t) { return static_cast<int64_t>(tok->encode(t, bos, false).size()); };
        counter_name = "tokenizer";
    } else {
        // No tokenizer yet (the training tokenizer is made on the GPU machine): an estimate;
        // the trainer re-tokenizes and trims or drops items longer than its sequence length.
        const double cpt = f.chars_per_token;
        count = [cpt](std::string_view t) { return 1 + static_cast<int64_t>(std::ceil(static_cast<double>(t.size()) / cpt)); };
        counter_name = strformat("%g chars per token", cpt);
    }
    Haystack hay;
    if (f.haystack.empty()) {
        hay = generated_haystack();
    } else {
        TCA_ASSIGN_OR_RETURN(hay, load_haystack(f.haystack));
    }
    std::ofstream out(f.export_train, std::ios::binary | std::ios::trunc);
    if (!out) return io_error("cannot write %s", f.export_train.c_str());
    int64_t n = 0;
    for (int64_t ctx : f.ctx) {
        for (EvalTask task : tasks) {
            for (int64_t i = 0; i < f.n_samples; ++i) {
                EvalItemSpec spec;
                spec.task = task;
                spec.ctx = ctx;
                spec.sample = i;
                spec.n_samples = f.n_samples;
                spec.seed = static_cast<uint64_t>(f.seed);
                spec.answer_tokens = f.max_answer_tokens;
                TCA_ASSIGN_OR_RETURN(EvalItem item, make_eval_item(spec, hay, count));
                const nlohmann::json j = {{"task", eval_task_name(task)}, {"ctx", ctx}, {"sample", i},
                                          {"seed", f.seed}, {"depth", item.depth},
                                          {"prompt", item.prompt}, {"answer", reference_answer_text(item)},
                                          {"references", item.references},
                                          {"n_prompt_tokens", item.n_prompt_tokens}};
                out << j.dump() << '\n';
                ++n;
            }
        }
        if (!assoc) continue;
        for (int64_t i = 0; i < f.n_samples; ++i) {
            AssocRecallSpec spec;
            spec.seed = static_cast<uint64_t>(f.seed);
            spec.sample = i;
            spec.n_tokens = ctx;
            TCA_ASSIGN_OR_RETURN(AssocRecallItem item, make_assoc_recall_item(spec, count));
            const auto [b, e] = item.answer_spans.back();
            nlohmann::json spans = nlohmann::json::array();
            for (size_t k = 0; k + 1 < item.answer_spans.size(); ++k) {
                spans.push_back({item.answer_spans[k].first, item.answer_spans[k].second});
            }
            const nlohmann::json j = {{"task", "assoc_recall"}, {"ctx", ctx}, {"sample", i}, {"seed", f.seed},
                                      {"prompt", item.text.substr(0, b)}, {"answer", item.text.substr(b, e - b)},
                                      {"answer_spans", spans}, {"n_needles", item.n_needles},
                                      {"n_prompt_tokens", item.n_tokens}};
            out << j.dump() << '\n';
            ++n;
        }
    }
    out.close();
    if (!out) return io_error("cannot write %s", f.export_train.c_str());
    TCA_LOG_INFO("wrote %lld training items to %s (tokens counted with %s)", static_cast<long long>(n),
                 f.export_train.c_str(), counter_name.c_str());
    return Status();
}

// --tag TEXT: appended to every policy label as "policy:TEXT" (letters, digits and . _ - = /,
// which the chart's font draws; ':' stays the separator, so a label splits unambiguously).
Status check_tag(const std::string& tag) {
    constexpr size_t kMaxTag = 24;  // "streaming:" + 24 characters fit the chart's legend
    if (tag.size() > kMaxTag) {
        return usage_error("--tag must be at most %zu characters, got %zu", kMaxTag, tag.size());
    }
    for (char c : tag) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == '-' || c == '=' || c == '/';
        if (!ok) {
            return usage_error("--tag may hold letters, digits and . _ - = /, got '%s'", tag.c_str());
        }
    }
    return Status();
}

Status eval_main(EvalFlags f) {
    if (!f.export_train.empty()) {
        // assoc_recall is a training-only task: taken out of the list before the eval tasks parse.
        std::string list;
        bool assoc = false;
        for (const std::string& t : split(f.task, ',')) {
            if (t == "assoc_recall") {
                assoc = true;
            } else {
                list += (list.empty() ? "" : ",") + t;
            }
        }
        std::vector<EvalTask> tasks;
        if (!list.empty()) {
            TCA_ASSIGN_OR_RETURN(tasks, parse_eval_tasks(list));
        }
        if (f.ctx.empty()) return usage_error("--ctx: no context size given");
        if (f.n_samples < 1 || f.n_samples > 1000000) {
            return usage_error("--n-samples must be in [1, 1000000], got %lld", static_cast<long long>(f.n_samples));
        }
        return export_main(f, tasks, assoc);
    }
    TCA_ASSIGN_OR_RETURN(f.model, model_or_default(f.model));
    if (f.seed >= static_cast<int64_t>(kTrainSeedBase)) {
        return usage_error("--seed %lld is a training seed (>= %llu, used by --export-train); evaluation "
                           "seeds are below it", static_cast<long long>(f.seed),
                           static_cast<unsigned long long>(kTrainSeedBase));
    }
    TCA_ASSIGN_OR_RETURN(const std::vector<EvalTask> tasks, parse_eval_tasks(f.task));
    if (f.ctx.empty()) return usage_error("--ctx: no context size given");
    for (int64_t c : f.ctx) {
        if (c < 1 || c > (int64_t{1} << 30)) {
            return usage_error("--ctx must be in [1, 2^30], got %lld", static_cast<long long>(c));
        }
    }
    if (f.n_samples < 1 || f.n_samples > 1000000) {
        return usage_error("--n-samples must be in [1, 1000000], got %lld", static_cast<long long>(f.n_samples));
    }
    if (f.seed < 0) return usage_error("--seed must be >= 0, got %lld", static_cast<long long>(f.seed));
    if (f.max_answer_tokens < 0) {
        return usage_error("--max-answer-tokens must be >= 0, got %lld",
                           static_cast<long long>(f.max_answer_tokens));
    }
    TCA_ASSIGN_OR_RETURN(const Device device, parse_device(f.device));
    TCA_ASSIGN_OR_RETURN(const std::optional<DType> kv_type, parse_optional_kv_type(f.kv_type));
    TCA_RETURN_IF_ERROR(check_tag(f.tag));

    // One engine configuration per listed policy; --budget-file goes to tca only.
    std::vector<EvalPolicy> policies;
    bool has_tca = false;
    for (const std::string& name : split(f.attention, ',')) {
        for (const EvalPolicy& p : policies) {
            if (label_policy(p.name) == name) return usage_error("--attention lists %s twice", name.c_str());
        }
        EvalPolicy p;
        p.name = f.tag.empty() ? name : name + ":" + f.tag;
        TCA_ASSIGN_OR_RETURN(p.engine.attention, policy_from_flags(name, f.policy));
        if (p.engine.attention.kind == AttentionKind::kTca) {
            p.engine.budget_file = f.policy.budget_file;
            has_tca = true;
        }
        p.engine.model_path = f.model;
        p.engine.tokenizer_path = f.tokenizer;
        p.engine.n_threads = static_cast<int>(f.threads);
        p.engine.kv_dtype = kv_type;
        p.engine.device = device;
        p.engine.probe_rows = f.attn_stats ? kProbeRows : 0;
        policies.push_back(std::move(p));
    }
    if (policies.empty()) return usage_error("--attention: no policy given");
    if (!f.policy.budget_file.empty() && !has_tca) {
        return usage_error("--budget-file applies to tca, which --attention %s does not list",
                           f.attention.c_str());
    }
    // --device cuda without a usable GPU: one error before the haystack and the items.
    TCA_RETURN_IF_ERROR(memory_space(device).status());

    EvalRunOptions opt;
    opt.tasks = tasks;
    opt.ctxs = f.ctx;
    opt.n_samples = f.n_samples;
    opt.seed = static_cast<uint64_t>(f.seed);
    opt.answer_tokens = f.max_answer_tokens;
    opt.bos = f.bos;
    if (f.haystack.empty()) {
        opt.haystack = generated_haystack();
    } else {
        TCA_ASSIGN_OR_RETURN(opt.haystack, load_haystack(f.haystack));
    }

    std::ofstream items;
    std::string items_path;
    if (!f.out.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(f.out, ec);
        if (ec) return io_error("cannot create output directory %s: %s", f.out.c_str(), ec.message().c_str());
        items_path = f.out + "/items.jsonl";
        items.open(items_path, std::ios::binary | std::ios::trunc);
        if (!items) return io_error("cannot write %s", items_path.c_str());
    }
    std::vector<EvalRecord> records;
    TCA_RETURN_IF_ERROR(run_eval(opt, policies, [&](const EvalRecord& r) -> Status {
        records.push_back(r);
        if (!items_path.empty()) {
            items << record_json(r) << '\n';
            items.flush();
            if (!items) return io_error("cannot write %s", items_path.c_str());
        }
        std::string expected;
        for (const std::string& ref : r.references) expected += (expected.empty() ? "" : ", ") + ref;
        TCA_LOG_DEBUG("%s ctx %lld %s sample %lld: score %.2f, prefill %.0f ms, KV %.2f MiB (%.3f of dense), "
                      "answer '%s' (expected %s)", r.task.c_str(), static_cast<long long>(r.ctx), r.policy.c_str(),
                      static_cast<long long>(r.sample), r.score, r.prefill_ms,
                      static_cast<double>(r.kv_bytes) / (1024.0 * 1024.0), r.kv_fraction, r.prediction.c_str(),
                      expected.c_str());
        return Status();
    }));

    const std::vector<EvalSummaryRow> rows = summarize(records);
    const std::string table = summary_markdown(rows);
    std::printf("%s", table.c_str());
    if (!f.out.empty()) {
        items.close();
        if (!items) return io_error("cannot write %s", items_path.c_str());
        TCA_RETURN_IF_ERROR(write_text(f.out + "/summary.json",
                                       summary_json(rows, f.model, opt.seed, opt.haystack.source)));
        TCA_RETURN_IF_ERROR(write_text(f.out + "/summary.md", table));
        TCA_RETURN_IF_ERROR(write_png(f.out + "/accuracy_vs_kv.png", render_accuracy_chart(rows)));
        TCA_LOG_INFO("wrote %s/{items.jsonl, summary.json, summary.md, accuracy_vs_kv.png}", f.out.c_str());
    }
    return Status();
}

}  // namespace

int cmd_eval(const std::vector<std::string>& args) {
    EvalFlags f;
    FlagSet flags("tca eval",
                  "RULER-style long-context evaluation (docs/eval.md): seeded needle-in-a-haystack,\n"
                  "variable-tracking and common-words items, fitted to each --ctx, answered greedily\n"
                  "by every --attention policy on identical prompts and scored by string_match_all.\n"
                  "stdout: a markdown table per (task, ctx, policy) of accuracy and KV fraction.");
    flags.add_string("model", &f.model, "FILE", kModelHelp);
    flags.add_alias("-m", "model");
    flags.add_string("task", &f.task, "T,...",
                     "tasks: all, niah_single (its 3 value types), niah_single_number, "
                     "niah_single_word, niah_single_uuid, niah_multikey, niah_multivalue, "
                     "niah_multiquery, variable_tracking, common_words");
    flags.add_int_list("ctx", &f.ctx, "context sizes in tokens (prompt + answer), k suffix = 1024");
    flags.add_int("n-samples", &f.n_samples, "items per task and context (needle depths spread evenly over them)");
    flags.add_int("seed", &f.seed, "item seed: the same seed gives the same items");
    flags.add_string("attention", &f.attention, "P,...",
                     "policies to compare: dense, tca, streaming, snapkv, oracle (all on the same items)");
    add_policy_flags(flags, &f.policy);
    flags.add_int("max-answer-tokens", &f.max_answer_tokens,
                  "greedy answer tokens per item (0 = per task: niah 32, uuid 48, multivalue and "
                  "multiquery 64, variable tracking 32, common words 96)");
    flags.add_string("haystack", &f.haystack, "FILE",
                     "text that fills the context (e.g. the KJV bible, docs/eval.md); default: "
                     "generated filler sentences");
    flags.add_string("out", &f.out, "DIR",
                     "write items.jsonl, summary.json, summary.md and accuracy_vs_kv.png into DIR");
    flags.add_int("threads", &f.threads, "worker threads (0 = all cores)");
    flags.add_string("device", &f.device, "D", "where every policy's model runs: cpu or cuda (a GPU of "
                     "compute capability >= 8.0; quantized weights are dequantized to bf16 at load)");
    flags.add_string("kv-type", &f.kv_type, "T", kKvTypeHelp);
    flags.add_string("tag", &f.tag, "TEXT",
                     "label the policies policy:TEXT in the table, items.jsonl, summary.json and the "
                     "chart (e.g. tca:tau0.9), so runs with different budget files merge into one table; "
                     "sparse policies pair with dense:TEXT");
    flags.add_string("tokenizer", &f.tokenizer, "FILE", "use this tokenizer.json instead of the model's");
    flags.add_bool("attn-stats", &f.attn_stats,
                   strformat("also measure, per layer, each policy's attention against dense on the same inputs: "
                             "recall (dense attention mass of the prompt's last query on the KV kept) and the "
                             "relative output error of the prefill (last %lld queries) and of the last query "
                             "over the kept cache; prompts then run as one batch under every policy "
                             "(docs/eval.md)", static_cast<long long>(kProbeRows)));
    flags.add_bool("bos", &f.bos, "prepend BOS when the model expects it (--no-bos to skip)");
    flags.add_bool("verbose", &f.verbose, "debug logging (each item's answer)");
    flags.add_string("export-train", &f.export_train, "FILE",
                     "write training items as JSON lines {task, ctx, prompt, answer, ...} instead of "
                     "evaluating (needs --seed >= 1000000; --task may add assoc_recall, the dense "
                     "associative recall of the curriculum; -m/--tokenizer count tokens, else "
                     "--chars-per-token)");
    flags.add_double("chars-per-token", &f.chars_per_token,
                     "--export-train without a tokenizer: estimated bytes per token");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    if (f.verbose) set_log_level(LogLevel::kDebug);
    return report_error(eval_main(f));
}

}  // namespace tca::cli
