// Unit tests of `tca eval`'s tasks, scoring and summary (src/eval/). Items are built with a
// stand-in token counter (whitespace-separated words + BOS), so no model is needed.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/eval_report.h"
#include "eval/eval_tasks.h"

namespace tca {
namespace {

int64_t count_words(std::string_view text) {
    int64_t n = 1;  // BOS
    bool in_word = false;
    for (char c : text) {
        const bool space = c == ' ' || c == '\n';
        if (!space && !in_word) ++n;
        in_word = !space;
    }
    return n;
}

const Haystack& filler() {
    static const Haystack h = generated_haystack();
    return h;
}

EvalItem make(EvalTask task, int64_t ctx, int64_t sample, int64_t n_samples = 4, uint64_t seed = 7,
              const Haystack& hay = filler()) {
    EvalItemSpec spec;
    spec.task = task;
    spec.ctx = ctx;
    spec.sample = sample;
    spec.n_samples = n_samples;
    spec.seed = seed;
    Result<EvalItem> item = make_eval_item(spec, hay, count_words);
    EXPECT_TRUE(item.ok()) << item.status().to_string();
    return item.ok() ? *item : EvalItem{};
}

// The context part of a prompt: between the instruction and the question.
std::string context_of(const std::string& prompt) {
    const size_t a = prompt.find("\n\n"), b = prompt.rfind("\n\nQuestion: ");
    EXPECT_NE(a, std::string::npos);
    EXPECT_NE(b, std::string::npos);
    return prompt.substr(a + 2, b - a - 2);
}

size_t occurrences(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

std::vector<EvalTask> all_tasks() {
    std::vector<EvalTask> v;
    for (int i = 0; i < kNumEvalTasks; ++i) v.push_back(static_cast<EvalTask>(i));
    return v;
}

TEST(EvalTasks, ParsesNamesGroupsAndRejectsBadLists) {
    Result<std::vector<EvalTask>> all = parse_eval_tasks("all");
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(all->size(), static_cast<size_t>(kNumEvalTasks));
    for (EvalTask t : all_tasks()) {
        Result<std::vector<EvalTask>> one = parse_eval_tasks(eval_task_name(t));
        ASSERT_TRUE(one.ok()) << eval_task_name(t);
        EXPECT_EQ(one->at(0), t);
    }
    Result<std::vector<EvalTask>> ns = parse_eval_tasks("niah_single,common_words");
    ASSERT_TRUE(ns.ok());
    EXPECT_EQ(ns->size(), 4u);
    for (const char* bad : {"", "bogus", "niah_multikey,niah_multikey", "niah_single,niah_single_word"}) {
        Result<std::vector<EvalTask>> r = parse_eval_tasks(bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.status().code(), StatusCode::kUsage) << bad;
    }
    EXPECT_NE(parse_eval_tasks("bogus").status().message().find("'bogus'"), std::string::npos);
}

TEST(EvalTasks, EveryTaskFitsItsContextAndHidesItsReferences) {
    const std::map<EvalTask, size_t> n_refs = {
        {EvalTask::kNiahSingleNumber, 1}, {EvalTask::kNiahSingleWord, 1},
        {EvalTask::kNiahSingleUuid, 1},   {EvalTask::kNiahMultikey, 1},
        {EvalTask::kNiahMultivalue, 4},   {EvalTask::kNiahMultiquery, 4},
        {EvalTask::kVariableTracking, 5}, {EvalTask::kCommonWords, 10}};
    for (EvalTask task : all_tasks()) {
        for (int64_t ctx : {512, 2048, 8192}) {
            for (int64_t s = 0; s < 3; ++s) {
                SCOPED_TRACE(std::string(eval_task_name(task)) + " ctx " + std::to_string(ctx));
                const EvalItem it = make(task, ctx, s, 3);
                EXPECT_EQ(it.task, task);
                EXPECT_EQ(it.n_answer_tokens, default_answer_tokens(task));
                EXPECT_EQ(it.n_prompt_tokens, count_words(it.prompt));
                const int64_t budget = ctx - it.n_answer_tokens;
                EXPECT_LE(it.n_prompt_tokens, budget);
                EXPECT_GE(it.n_prompt_tokens, budget * 9 / 10) << "context not filled";
                ASSERT_EQ(it.references.size(), n_refs.at(task));
                const std::string context = context_of(it.prompt);
                for (const std::string& ref : it.references) {
                    EXPECT_NE(context.find(ref), std::string::npos) << ref;
                }
                if (task == EvalTask::kCommonWords) {
                    // Every common word is listed more often than any other word.
                    std::map<std::string, int> freq;
                    std::istringstream lines(context);
                    for (std::string line; std::getline(lines, line);) {
                        const size_t dot = line.find(". ");
                        ASSERT_NE(dot, std::string::npos) << line;
                        ++freq[line.substr(dot + 2)];
                    }
                    int least_common = 1 << 30, most_other = 0;
                    for (const auto& [w, n] : freq) {
                        const bool common = std::find(it.references.begin(), it.references.end(), w) !=
                                            it.references.end();
                        if (common) least_common = std::min(least_common, n);
                        else most_other = std::max(most_other, n);
                    }
                    EXPECT_GT(least_common, most_other);
                    EXPECT_LT(it.depth, 0.0);
                } else {
                    EXPECT_GE(it.depth, 0.0);
                    EXPECT_LE(it.depth, 1.0);
                }
            }
        }
    }
}

TEST(EvalTasks, ItemsAreDeterministicPerSeedTaskCtxAndSample) {
    for (EvalTask task : all_tasks()) {
        SCOPED_TRACE(eval_task_name(task));
        const EvalItem a = make(task, 1024, 2), b = make(task, 1024, 2);
        EXPECT_EQ(a.prompt, b.prompt);
        EXPECT_EQ(a.references, b.references);
        EXPECT_EQ(a.depth, b.depth);
        EXPECT_EQ(fnv1a_hex(a.prompt), fnv1a_hex(b.prompt));
        EXPECT_NE(a.prompt, make(task, 1024, 1).prompt);
        EXPECT_NE(a.prompt, make(task, 1024, 2, 4, 8).prompt);  // another seed
        EXPECT_NE(a.references, make(task, 1024, 2, 4, 8).references);
    }
}

TEST(EvalTasks, SingleNeedleDepthsAreSpreadOverTheSamples) {
    const int64_t k = 5;
    for (int64_t s = 0; s < k; ++s) {
        const EvalItem it = make(EvalTask::kNiahSingleNumber, 4096, s, k);
        EXPECT_DOUBLE_EQ(it.depth, static_cast<double>(s) / (k - 1));
        const std::string context = context_of(it.prompt);
        const size_t at = context.find(it.references[0]);
        ASSERT_NE(at, std::string::npos);
        EXPECT_NEAR(static_cast<double>(at) / static_cast<double>(context.size()), it.depth, 0.05);
        EXPECT_EQ(occurrences(context, "special magic number"), 1u);
    }
    EXPECT_DOUBLE_EQ(make(EvalTask::kNiahSingleWord, 1024, 0, 1).depth, 0.5);
}

TEST(EvalTasks, NeedleValuesHaveTheirTypes) {
    const EvalItem num = make(EvalTask::kNiahSingleNumber, 1024, 0);
    ASSERT_EQ(num.references[0].size(), 7u);
    for (char c : num.references[0]) EXPECT_TRUE(c >= '0' && c <= '9');
    const EvalItem uuid = make(EvalTask::kNiahSingleUuid, 1024, 0);
    ASSERT_EQ(uuid.references[0].size(), 36u);
    EXPECT_EQ(uuid.references[0][14], '4');
    const EvalItem word = make(EvalTask::kNiahSingleWord, 1024, 0);
    EXPECT_NE(word.references[0].find('-'), std::string::npos);
    // Multi-key: 4 needles, one asked; multi-value: one key, 4 values.
    const EvalItem mk = make(EvalTask::kNiahMultikey, 2048, 1);
    EXPECT_EQ(occurrences(context_of(mk.prompt), "special magic numbers for"), 4u);
    const EvalItem mv = make(EvalTask::kNiahMultivalue, 2048, 1);
    const std::string key = mv.prompt.substr(mv.prompt.rfind(" for ") + 5);
    EXPECT_EQ(occurrences(context_of(mv.prompt), key.substr(0, key.find(' '))), 4u);
    // Variable tracking: the chain is in order, the value assigned once.
    const EvalItem vt = make(EvalTask::kVariableTracking, 2048, 0);
    const std::string ctx = context_of(vt.prompt);
    size_t last = 0;
    for (size_t i = 0; i < vt.references.size(); ++i) {
        const size_t at = ctx.find("VAR " + vt.references[i] + " = ");
        ASSERT_NE(at, std::string::npos);
        EXPECT_GE(at, last);
        last = at;
        if (i > 0) {
            EXPECT_NE(ctx.find("VAR " + vt.references[i] + " = VAR " + vt.references[i - 1] + "."),
                      std::string::npos);
        }
    }
}

TEST(EvalTasks, HaystackFromAFile) {
    const std::string path = testing::TempDir() + "/eval_haystack.txt";
    {
        std::ofstream out(path);
        out << "In the beginning was the word.  And the word was\nwith them!\n\nWas it? Yes. "
               "Last words without a stop";
    }
    Result<Haystack> h = load_haystack(path);
    ASSERT_TRUE(h.ok()) << h.status().to_string();
    EXPECT_TRUE(h->from_file);
    const std::vector<std::string> want = {"In the beginning was the word.", "And the word was with them!",
                                           "Was it?", "Yes.", "Last words without a stop"};
    EXPECT_EQ(h->sentences, want);
    const EvalItem it = make(EvalTask::kNiahSingleNumber, 512, 1, 4, 7, *h);
    EXPECT_NE(context_of(it.prompt).find("And the word was with them! Was it?"), std::string::npos);
    EXPECT_EQ(load_haystack(path + ".missing").status().code(), StatusCode::kNotFound);
    { std::ofstream out(path); out << " \n\t "; }
    EXPECT_EQ(load_haystack(path).status().code(), StatusCode::kInvalidArgument);
    std::remove(path.c_str());
}

TEST(EvalTasks, TooSmallContextIsAnErrorNamingTheTask) {
    EvalItemSpec spec;
    spec.task = EvalTask::kNiahMultiquery;
    spec.ctx = 96;
    Result<EvalItem> r = make_eval_item(spec, filler(), count_words);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("niah_multiquery"), std::string::npos) << r.status().message();
    spec.ctx = 10;  // less than the answer
    EXPECT_FALSE(make_eval_item(spec, filler(), count_words).ok());
    spec.ctx = 400;
    spec.answer_tokens = 8;  // an explicit answer length replaces the task's
    Result<EvalItem> ok = make_eval_item(spec, filler(), count_words);
    ASSERT_TRUE(ok.ok()) << ok.status().to_string();
    EXPECT_EQ(ok->n_answer_tokens, 8);
    EXPECT_LE(ok->n_prompt_tokens, 392);
}

TEST(EvalScoring, StringMatchAllIsTheFractionOfReferencesFound) {
    EXPECT_DOUBLE_EQ(string_match_all("The number is 1234567.", {"1234567"}), 1.0);
    EXPECT_DOUBLE_EQ(string_match_all("the values: ABC and def", {"abc", "DEF", "ghi", "jkl"}), 0.5);
    EXPECT_DOUBLE_EQ(string_match_all("QUIET-HARBOR", {"quiet-harbor"}), 1.0);
    EXPECT_DOUBLE_EQ(string_match_all("", {"x"}), 0.0);
    EXPECT_DOUBLE_EQ(string_match_all("anything", {}), 0.0);
    EXPECT_DOUBLE_EQ(string_match_all("12345", {"123456"}), 0.0);
}

EvalRecord rec(const std::string& task, int64_t ctx, const std::string& policy, int64_t sample,
               double score, double kv) {
    EvalRecord r;
    r.task = task;
    r.ctx = ctx;
    r.policy = policy;
    r.sample = sample;
    r.score = score;
    r.kv_fraction = kv;
    return r;
}

TEST(EvalSummary, AveragesPerTaskCtxAndPolicyInFirstAppearanceOrder) {
    std::vector<EvalRecord> rs;
    const double dense[4] = {1, 1, 0.5, 0}, tca[4] = {1, 0, 0.5, 0};
    for (int64_t s = 0; s < 4; ++s) {
        rs.push_back(rec("vt", 512, "dense", s, dense[s], 1.0));
        rs.push_back(rec("vt", 512, "tca", s, tca[s], 0.25 + 0.1 * static_cast<double>(s)));
    }
    rs.push_back(rec("cwe", 1024, "tca", 0, 1.0, 0.5));
    const std::vector<EvalSummaryRow> rows = summarize(rs);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].policy, "dense");
    EXPECT_EQ(rows[0].n_samples, 4);
    EXPECT_DOUBLE_EQ(rows[0].accuracy, 0.625);
    EXPECT_DOUBLE_EQ(rows[0].kv_fraction, 1.0);
    EXPECT_FALSE(rows[0].has_delta);
    EXPECT_EQ(rows[1].policy, "tca");
    EXPECT_DOUBLE_EQ(rows[1].accuracy, 0.375);
    EXPECT_NEAR(rows[1].kv_fraction, 0.4, 1e-12);
    ASSERT_TRUE(rows[1].has_delta);
    EXPECT_DOUBLE_EQ(rows[1].delta, -0.25);
    EXPECT_LE(rows[1].delta_lo, rows[1].delta);
    EXPECT_GE(rows[1].delta_hi, rows[1].delta);
    EXPECT_GE(rows[1].delta_lo, -1.0);
    EXPECT_LE(rows[1].delta_hi, 0.0);  // tca never beats dense on an item here
    EXPECT_EQ(rows[2].task, "cwe");
    EXPECT_EQ(rows[2].ctx, 1024);
    EXPECT_FALSE(rows[2].has_delta);  // no dense run at this ctx
    EXPECT_EQ(summarize(rs).at(1).delta_lo, rows[1].delta_lo);  // seeded bootstrap

    const std::string md = summary_markdown(rows);
    EXPECT_NE(md.find("| vt | 512 | tca | 0.375 | 0.400 | 4 | -0.250 ["), std::string::npos) << md;
    const nlohmann::json j = nlohmann::json::parse(summary_json(rows, "m.gguf", 3, "generated"));
    ASSERT_EQ(j["results"].size(), 3u);
    EXPECT_EQ(j["results"][1]["policy"], "tca");
    EXPECT_DOUBLE_EQ(j["results"][1]["accuracy"].get<double>(), 0.375);
    EXPECT_DOUBLE_EQ(j["results"][1]["delta_vs_dense"].get<double>(), -0.25);
    EXPECT_FALSE(j["results"][0].contains("delta_vs_dense"));
    EXPECT_EQ(j["seed"], 3);
}

TEST(EvalSummary, TaggedLabelsPairWithDenseOfTheirTag) {
    // tca eval --tag: labels "policy:TAG"; merged runs keep one row per label, and each sparse
    // label pairs with dense of its own tag, else with the untagged dense.
    EXPECT_EQ(label_policy("tca:tau0.9"), "tca");
    EXPECT_EQ(label_tag("tca:tau0.9"), "tau0.9");
    EXPECT_EQ(label_policy("dense"), "dense");
    EXPECT_EQ(label_tag("dense"), "");
    std::vector<EvalRecord> rs;
    for (int64_t s = 0; s < 2; ++s) {
        rs.push_back(rec("vt", 512, "dense:a", s, 1.0, 1.0));
        rs.push_back(rec("vt", 512, "tca:a", s, 0.5, 0.3));
        rs.push_back(rec("vt", 512, "dense", s, 0.0, 1.0));
        rs.push_back(rec("vt", 512, "tca:b", s, 0.5, 0.2));
    }
    const std::vector<EvalSummaryRow> rows = summarize(rs);
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].policy, "dense:a");
    EXPECT_FALSE(rows[0].has_delta);  // a dense run, tagged or not, has no delta
    EXPECT_EQ(rows[1].policy, "tca:a");
    ASSERT_TRUE(rows[1].has_delta);
    EXPECT_DOUBLE_EQ(rows[1].delta, -0.5);  // vs dense:a
    EXPECT_FALSE(rows[2].has_delta);
    EXPECT_EQ(rows[3].policy, "tca:b");
    ASSERT_TRUE(rows[3].has_delta);
    EXPECT_DOUBLE_EQ(rows[3].delta, 0.5);  // no dense:b: vs the untagged dense
    EXPECT_NE(summary_markdown(rows).find("| vt | 512 | tca:a | 0.500 | 0.300 | 2 | -0.500 ["),
              std::string::npos);
    const nlohmann::json j = nlohmann::json::parse(summary_json(rows, "m.gguf", 0, "generated"));
    EXPECT_EQ(j["results"][1]["policy"], "tca:a");
    // One legend colour per label: the fourth palette colour (green) is tca:b's.
    const RgbImage img = render_accuracy_chart(rows);
    int64_t green = 0;
    for (size_t i = 0; i + 2 < img.pixels.size(); i += 3) {
        if (img.pixels[i] == 44 && img.pixels[i + 1] == 160 && img.pixels[i + 2] == 44) ++green;
    }
    EXPECT_GT(green, 50);
}

TEST(EvalSummary, RecordLinesAreJsonWithEveryField) {
    EvalRecord r = rec("niah_single_number", 512, "tca", 3, 0.5, 0.123456789);
    r.references = {"1234567", "7654321"};
    r.prediction = "is 1234567\n\"quoted\" \xff";  // model output may be any bytes
    r.n_prompt_tokens = 480;
    r.prefill_ms = 1.5;
    r.prompt_hash = fnv1a_hex("x");
    nlohmann::json j = nlohmann::json::parse(record_json(r));
    EXPECT_EQ(record_json(r).find('\n'), std::string::npos);
    for (const char* k : {"task", "ctx", "policy", "sample", "depth", "references", "prediction", "score",
                          "n_prompt_tokens", "kv_fraction", "kv_bytes", "prefill_ms", "prompt_hash"}) {
        EXPECT_TRUE(j.contains(k)) << k;
    }
    EXPECT_TRUE(j["depth"].is_null());
    EXPECT_DOUBLE_EQ(j["kv_fraction"].get<double>(), 0.123457);
    EXPECT_EQ(j["references"][1], "7654321");
    r.depth = 0.25;
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(record_json(r))["depth"].get<double>(), 0.25);
    EXPECT_EQ(fnv1a_hex(""), "cbf29ce484222325");
}

// --attn-stats: per-layer lists in items.jsonl; the summary averages them per layer over
// the items, and the fidelity table averages over tasks, then layers.
TEST(EvalSummary, AttentionStatsAveragePerLayer) {
    std::vector<EvalRecord> rs;
    for (const char* task : {"vt", "cwe"}) {
        for (int64_t s = 0; s < 2; ++s) {
            EvalRecord r = rec(task, 512, "tca", s, 1.0, 0.3);
            const double k = static_cast<double>(s);
            r.attn_recall = {0.9 + 0.02 * k, 0.8};
            r.attn_prefill_error = {0.1, 0.2 + 0.2 * k};
            r.attn_decode_error = {0.05, 0.15};
            rs.push_back(r);
        }
    }
    rs.push_back(rec("vt", 512, "dense", 0, 1.0, 1.0));  // run without --attn-stats: no lists
    const nlohmann::json item = nlohmann::json::parse(record_json(rs[1]));
    ASSERT_EQ(item["attn_recall"].size(), 2u);
    EXPECT_DOUBLE_EQ(item["attn_recall"][0].get<double>(), 0.92);
    EXPECT_DOUBLE_EQ(item["attn_prefill_error"][1].get<double>(), 0.4);
    EXPECT_FALSE(nlohmann::json::parse(record_json(rs.back())).contains("attn_recall"));
    const std::vector<EvalSummaryRow> rows = summarize(rs);
    ASSERT_EQ(rows.size(), 3u);
    ASSERT_EQ(rows[0].attn_recall.size(), 2u);
    EXPECT_NEAR(rows[0].attn_recall[0], 0.91, 1e-12);
    EXPECT_NEAR(rows[0].attn_prefill_error[1], 0.3, 1e-12);
    EXPECT_TRUE(rows[1].attn_recall.empty());  // dense had none
    const nlohmann::json j = nlohmann::json::parse(summary_json(rows, "m.gguf", 0, "generated"));
    EXPECT_NEAR(j["results"][0]["attn_recall"].get<double>(), 0.855, 1e-9);
    EXPECT_NEAR(j["results"][0]["attn_decode_error"].get<double>(), 0.1, 1e-9);
    EXPECT_EQ(j["results"][0]["attn_recall_by_layer"].size(), 2u);
    EXPECT_FALSE(j["results"][1].contains("attn_recall"));
    const std::string md = summary_markdown(rows);
    EXPECT_NE(md.find("| 512 | tca | 0.8550 | 0.2000 | 0.1000 | 0.910 0.800 | 0.050 0.150 |"), std::string::npos) << md;
    EXPECT_EQ(md.find("\n| 512 | dense | "), std::string::npos) << "no fidelity row without stats";
    EXPECT_EQ(summary_markdown(summarize({rec("vt", 512, "dense", 0, 1.0, 1.0)})).find("fidelity"), std::string::npos);
}

TEST(EvalSummary, ChartDrawsMarksInsideThePlot) {
    std::vector<EvalRecord> rs = {rec("vt", 512, "dense", 0, 1.0, 1.0), rec("vt", 512, "tca", 0, 0.0, 0.0)};
    const RgbImage img = render_accuracy_chart(summarize(rs));
    ASSERT_GT(img.width, 0);
    // Count pixels of the first two palette colours (dense near-black, tca blue).
    int64_t blue = 0;
    for (size_t i = 0; i + 2 < img.pixels.size(); i += 3) {
        if (img.pixels[i] == 31 && img.pixels[i + 1] == 119 && img.pixels[i + 2] == 180) ++blue;
    }
    EXPECT_GT(blue, 50);  // the tca mark and its legend swatch
    EXPECT_EQ(encode_png(img).substr(1, 3), "PNG");
}

}  // namespace
}  // namespace tca
