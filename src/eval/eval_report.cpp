// Scoring, summary and output files of `tca eval` (eval_report.h). The chart is drawn with
// our PNG writer and a built-in 5x7 pixel font (upper case, digits, a few signs), so the
// command needs no plotting program.
#include "eval/eval_report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "core/strings.h"

namespace tca {

namespace {

using Json = nlohmann::ordered_json;

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

double round6(double x) { return std::round(x * 1e6) / 1e6; }

Json rounded(const std::vector<double>& v) {
    Json a = Json::array();
    for (double x : v) a.push_back(round6(x));
    return a;
}

// Element-wise mean of equal-length vectors; empty when there are none or the lengths differ.
std::vector<double> mean_of(const std::vector<const std::vector<double>*>& vs) {
    if (vs.empty() || vs.front()->empty()) return {};
    std::vector<double> m(vs.front()->size(), 0.0);
    for (const std::vector<double>* v : vs) {
        if (v->size() != m.size()) return {};
        for (size_t i = 0; i < m.size(); ++i) m[i] += (*v)[i];
    }
    for (double& x : m) x /= static_cast<double>(vs.size());
    return m;
}

double average(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

// ---- chart drawing ---------------------------------------------------------------------

struct Glyph {
    char c;
    std::array<uint8_t, 7> rows;  // 5 pixels per row, bit 4 = leftmost
};
constexpr Glyph kFont[] = {
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
};

struct Rgb {
    uint8_t r, g, b;
};
constexpr Rgb kBlack{0, 0, 0}, kGrid{225, 225, 225};
constexpr Rgb kPalette[] = {{20, 20, 20},   {31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                            {214, 39, 40},  {148, 103, 189}, {140, 86, 75},  {227, 119, 194}};

void put(RgbImage& img, int64_t x, int64_t y, Rgb c) {
    if (x >= 0 && y >= 0 && x < img.width && y < img.height) img.set(x, y, c.r, c.g, c.b);
}

// Text with its top-left corner at (x, y); lower case is drawn as upper case, other
// characters without a glyph as blanks. Returns the width drawn.
int64_t draw_text(RgbImage& img, int64_t x, int64_t y, std::string_view text, Rgb c) {
    for (size_t i = 0; i < text.size(); ++i) {
        char ch = text[i];
        if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
        for (const Glyph& g : kFont) {
            if (g.c != ch) continue;
            for (int r = 0; r < 7; ++r) {
                for (int col = 0; col < 5; ++col) {
                    if (g.rows[static_cast<size_t>(r)] & (0x10 >> col)) {
                        put(img, x + static_cast<int64_t>(i) * 6 + col, y + r, c);
                    }
                }
            }
        }
    }
    return static_cast<int64_t>(text.size()) * 6;
}

// Mark shapes, one per task: filled square, disc, triangle up, triangle down, diamond, plus,
// cross, hollow square (then repeating). Centre (cx, cy), half-size 5.
void draw_mark(RgbImage& img, int shape, int64_t cx, int64_t cy, Rgb c) {
    constexpr int s = 5;
    for (int dy = -s; dy <= s; ++dy) {
        for (int dx = -s; dx <= s; ++dx) {
            const int ax = std::abs(dx), ay = std::abs(dy);
            bool on = false;
            switch (shape % 8) {
                case 0: on = ax <= s - 1 && ay <= s - 1; break;
                case 1: on = dx * dx + dy * dy <= s * s; break;
                case 2: on = 2 * ax <= dy + s; break;
                case 3: on = 2 * ax <= s - dy; break;
                case 4: on = ax + ay <= s; break;
                case 5: on = ax <= 1 || ay <= 1; break;
                case 6: on = std::abs(ax - ay) <= 1; break;
                default: on = (ax == s - 1 && ay <= s - 1) || (ay == s - 1 && ax <= s - 1); break;
            }
            if (on) put(img, cx + dx, cy + dy, c);
        }
    }
}

}  // namespace

double string_match_all(std::string_view prediction, const std::vector<std::string>& references) {
    if (references.empty()) return 0.0;
    std::string pred(prediction);
    std::transform(pred.begin(), pred.end(), pred.begin(), lower);
    int64_t hits = 0;
    for (const std::string& ref : references) {
        std::string r = ref;
        std::transform(r.begin(), r.end(), r.begin(), lower);
        if (pred.find(r) != std::string::npos) ++hits;
    }
    return static_cast<double>(hits) / static_cast<double>(references.size());
}

std::string record_json(const EvalRecord& r) {
    Json j;
    j["task"] = r.task;
    j["ctx"] = r.ctx;
    j["policy"] = r.policy;
    j["sample"] = r.sample;
    j["depth"] = r.depth < 0 ? Json(nullptr) : Json(round6(r.depth));
    j["references"] = r.references;
    j["prediction"] = r.prediction;
    j["score"] = r.score;
    j["n_prompt_tokens"] = r.n_prompt_tokens;
    j["kv_fraction"] = round6(r.kv_fraction);
    j["kv_bytes"] = r.kv_bytes;
    j["prefill_ms"] = std::round(r.prefill_ms * 1000.0) / 1000.0;
    j["prompt_hash"] = r.prompt_hash;
    if (!r.attn_recall.empty()) {
        j["attn_recall"] = rounded(r.attn_recall);
        j["attn_prefill_error"] = rounded(r.attn_prefill_error);
        j["attn_decode_error"] = rounded(r.attn_decode_error);
    }
    // Predictions are model output: replace invalid UTF-8 rather than fail.
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string_view label_policy(std::string_view label) { return label.substr(0, label.find(':')); }

std::string_view label_tag(std::string_view label) {
    const size_t colon = label.find(':');
    return colon == std::string_view::npos ? std::string_view() : label.substr(colon + 1);
}

std::vector<EvalSummaryRow> summarize(const std::vector<EvalRecord>& records) {
    // Group in first-appearance order of task, ctx and policy.
    std::vector<std::string> tasks, policies;
    std::vector<int64_t> ctxs;
    auto note = [](auto& list, const auto& v) {
        if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
    };
    for (const EvalRecord& r : records) {
        note(tasks, r.task);
        note(ctxs, r.ctx);
        note(policies, r.policy);
    }
    std::vector<EvalSummaryRow> rows;
    for (const std::string& task : tasks) {
        for (int64_t ctx : ctxs) {
            // dense label ("dense" or "dense:TAG") -> sample -> score, for the paired difference
            std::map<std::string, std::map<int64_t, double>, std::less<>> dense_runs;
            for (const EvalRecord& r : records) {
                if (r.task == task && r.ctx == ctx && label_policy(r.policy) == "dense") {
                    dense_runs[r.policy][r.sample] = r.score;
                }
            }
            static const std::map<int64_t, double> kNone;
            for (const std::string& policy : policies) {
                EvalSummaryRow row;
                row.task = task;
                row.ctx = ctx;
                row.policy = policy;
                // A tagged policy pairs with dense of its own tag, else with the untagged dense.
                const std::string_view tag = label_tag(policy);
                auto ref = tag.empty() ? dense_runs.end() : dense_runs.find("dense:" + std::string(tag));
                if (ref == dense_runs.end()) ref = dense_runs.find("dense");
                const std::map<int64_t, double>& dense = ref == dense_runs.end() ? kNone : ref->second;
                std::vector<double> deltas;
                std::vector<const std::vector<double>*> recall, prefill_err, decode_err;
                bool paired = !dense.empty() && label_policy(policy) != "dense";
                for (const EvalRecord& r : records) {
                    if (r.task != task || r.ctx != ctx || r.policy != policy) continue;
                    recall.push_back(&r.attn_recall);
                    prefill_err.push_back(&r.attn_prefill_error);
                    decode_err.push_back(&r.attn_decode_error);
                    row.accuracy += r.score;
                    row.kv_fraction += r.kv_fraction;
                    ++row.n_samples;
                    auto it = dense.find(r.sample);
                    if (it == dense.end()) paired = false;
                    else deltas.push_back(r.score - it->second);
                }
                if (row.n_samples == 0) continue;
                const auto n = static_cast<double>(row.n_samples);
                row.accuracy /= n;
                row.kv_fraction /= n;
                row.attn_recall = mean_of(recall);
                row.attn_prefill_error = mean_of(prefill_err);
                row.attn_decode_error = mean_of(decode_err);
                if (paired && !deltas.empty()) {
                    row.has_delta = true;
                    double sum = 0;
                    for (double d : deltas) sum += d;
                    row.delta = sum / static_cast<double>(deltas.size());
                    Rng rng(0xb007);
                    std::vector<double> means;
                    for (int b = 0; b < 1000; ++b) {
                        double s = 0;
                        for (size_t i = 0; i < deltas.size(); ++i) s += deltas[rng.below(deltas.size())];
                        means.push_back(s / static_cast<double>(deltas.size()));
                    }
                    std::sort(means.begin(), means.end());
                    row.delta_lo = means[25];
                    row.delta_hi = means[974];
                }
                rows.push_back(row);
            }
        }
    }
    return rows;
}

std::string summary_json(const std::vector<EvalSummaryRow>& rows, const std::string& model,
                         uint64_t seed, const std::string& haystack) {
    Json j;
    j["model"] = model;
    j["seed"] = seed;
    j["haystack"] = haystack;
    j["metric"] = "string_match_all";
    Json results = Json::array();
    for (const EvalSummaryRow& r : rows) {
        Json o;
        o["task"] = r.task;
        o["ctx"] = r.ctx;
        o["policy"] = r.policy;
        o["accuracy"] = round6(r.accuracy);
        o["kv_fraction"] = round6(r.kv_fraction);
        o["n_samples"] = r.n_samples;
        if (r.has_delta) {
            o["delta_vs_dense"] = round6(r.delta);
            o["delta_ci95"] = {round6(r.delta_lo), round6(r.delta_hi)};
        }
        if (!r.attn_recall.empty()) {
            o["attn_recall"] = round6(average(r.attn_recall));
            o["attn_prefill_error"] = round6(average(r.attn_prefill_error));
            o["attn_decode_error"] = round6(average(r.attn_decode_error));
            o["attn_recall_by_layer"] = rounded(r.attn_recall);
            o["attn_prefill_error_by_layer"] = rounded(r.attn_prefill_error);
            o["attn_decode_error_by_layer"] = rounded(r.attn_decode_error);
        }
        results.push_back(o);
    }
    j["results"] = results;
    return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string summary_markdown(const std::vector<EvalSummaryRow>& rows) {
    std::string out = "| task | ctx | policy | accuracy | kv_fraction | n_samples | vs dense (95% CI) |\n"
                      "|---|---:|---|---:|---:|---:|---|\n";
    for (const EvalSummaryRow& r : rows) {
        const std::string delta = r.has_delta
            ? strformat("%+.3f [%+.3f, %+.3f]", r.delta, r.delta_lo, r.delta_hi) : "";
        out += strformat("| %s | %lld | %s | %.3f | %.3f | %lld | %s |\n", r.task.c_str(),
                         static_cast<long long>(r.ctx), r.policy.c_str(), r.accuracy, r.kv_fraction,
                         static_cast<long long>(r.n_samples), delta.c_str());
    }
    // Attention fidelity per (ctx, policy), the tasks' rows averaged.
    std::vector<std::pair<int64_t, std::string>> keys;
    for (const EvalSummaryRow& r : rows) {
        const std::pair<int64_t, std::string> k{r.ctx, r.policy};
        if (!r.attn_recall.empty() && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
    if (keys.empty()) return out;
    out += "\nAttention fidelity against dense on the same inputs (per layer, then averaged over layers "
           "and tasks): recall = dense attention mass of the prompt's last query on the kept KV; errors = "
           "||out - dense|| / ||dense|| of the prefill output (last probe rows) and of the last query over "
           "the kept cache.\n\n"
           "| ctx | policy | recall | prefill error | decode error | recall by layer | decode error by layer |\n"
           "|---:|---|---:|---:|---:|---|---|\n";
    for (const auto& [ctx, policy] : keys) {
        std::vector<const std::vector<double>*> recall, prefill_err, decode_err;
        for (const EvalSummaryRow& r : rows) {
            if (r.ctx != ctx || r.policy != policy || r.attn_recall.empty()) continue;
            recall.push_back(&r.attn_recall);
            prefill_err.push_back(&r.attn_prefill_error);
            decode_err.push_back(&r.attn_decode_error);
        }
        const std::vector<double> rec = mean_of(recall), pre = mean_of(prefill_err), dec = mean_of(decode_err);
        auto list = [](const std::vector<double>& v) {
            std::string s;
            for (double x : v) s += strformat("%s%.3f", s.empty() ? "" : " ", x);
            return s;
        };
        out += strformat("| %lld | %s | %.4f | %.4f | %.4f | %s | %s |\n", static_cast<long long>(ctx),
                         policy.c_str(), average(rec), average(pre), average(dec), list(rec).c_str(),
                         list(dec).c_str());
    }
    return out;
}

RgbImage render_accuracy_chart(const std::vector<EvalSummaryRow>& rows) {
    // Plot area [px0, px1] x [py0, py1]; the legend sits right of it.
    constexpr int64_t W = 720, H = 480, px0 = 56, px1 = 456, py0 = 36, py1 = 436;
    RgbImage img(W, H, 255, 255, 255);
    std::vector<std::string> tasks, policies;
    for (const EvalSummaryRow& r : rows) {
        if (std::find(tasks.begin(), tasks.end(), r.task) == tasks.end()) tasks.push_back(r.task);
        if (std::find(policies.begin(), policies.end(), r.policy) == policies.end()) policies.push_back(r.policy);
    }
    auto to_x = [&](double v) { return px0 + std::llround(std::clamp(v, 0.0, 1.0) * (px1 - px0)); };
    auto to_y = [&](double v) { return py1 - std::llround(std::clamp(v, 0.0, 1.0) * (py1 - py0)); };
    for (int t = 0; t <= 4; ++t) {
        const double v = t / 4.0;
        for (int64_t i = px0; i <= px1; ++i) put(img, i, to_y(v), kGrid);
        for (int64_t i = py0; i <= py1; ++i) put(img, to_x(v), i, kGrid);
        const std::string label = t == 0 ? "0" : t == 4 ? "1" : strformat("%.2g", v);
        draw_text(img, px0 - 8 - static_cast<int64_t>(label.size()) * 6, to_y(v) - 3, label, kBlack);
        draw_text(img, to_x(v) - static_cast<int64_t>(label.size()) * 3, py1 + 8, label, kBlack);
    }
    for (int64_t i = px0; i <= px1; ++i) put(img, i, py1, kBlack);
    for (int64_t i = py0; i <= py1; ++i) put(img, px0, i, kBlack);
    draw_text(img, (px0 + px1) / 2 - 33, py1 + 24, "KV FRACTION", kBlack);
    draw_text(img, px0 - 40, py0 - 22, "ACCURACY (STRING_MATCH_ALL)", kBlack);

    // One mark per (task, policy): the mean over the contexts.
    for (size_t t = 0; t < tasks.size(); ++t) {
        for (size_t p = 0; p < policies.size(); ++p) {
            double acc = 0, kv = 0;
            int n = 0;
            for (const EvalSummaryRow& r : rows) {
                if (r.task != tasks[t] || r.policy != policies[p]) continue;
                acc += r.accuracy;
                kv += r.kv_fraction;
                ++n;
            }
            if (n == 0) continue;
            draw_mark(img, static_cast<int>(t), to_x(kv / n), to_y(acc / n),
                      kPalette[p % std::size(kPalette)]);
        }
    }
    int64_t ly = py0;
    const int64_t lx = px1 + 24;
    draw_text(img, lx, ly, "POLICY (COLOUR)", kBlack);
    for (size_t p = 0; p < policies.size(); ++p) {
        ly += 16;
        const Rgb c = kPalette[p % std::size(kPalette)];
        img.fill_rect(lx, ly - 1, 10, 10, c.r, c.g, c.b);
        draw_text(img, lx + 16, ly, policies[p], kBlack);
    }
    ly += 28;
    draw_text(img, lx, ly, "TASK (SHAPE)", kBlack);
    for (size_t t = 0; t < tasks.size(); ++t) {
        ly += 16;
        draw_mark(img, static_cast<int>(t), lx + 5, ly + 3, kBlack);
        draw_text(img, lx + 16, ly, tasks[t], kBlack);
    }
    return img;
}

}  // namespace tca
