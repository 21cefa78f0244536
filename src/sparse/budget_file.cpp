// Budget file JSON writer, reader and validation (budget_file.h, docs/formats.md). The
// reader walks the document with checked accessors: every field's presence, type and range
// is tested before use, so malformed or hostile files give one-line errors, never a crash.
#include "sparse/budget_file.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/strings.h"
#include "model/tensor_names.h"
#include "sparse/calibration.h"

namespace tca {
namespace {

using Json = nlohmann::ordered_json;

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t kSampleAll = 64 * 1024;   // tensors up to this size are hashed whole
constexpr uint64_t kWindow = 4096;           // else: kWindows windows of this many bytes
constexpr uint64_t kWindows = 16;
constexpr uint64_t kMaxFileBytes = 64ULL << 20;  // a budget file is kilobytes; refuse absurd ones

void fnv(uint64_t& h, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= kFnvPrime;
    }
}
void fnv_u64(uint64_t& h, uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(v >> (8 * i));
    fnv(h, le, 8);
}

void hash_weight(uint64_t& h, const WeightView& w) {
    fnv(h, w.name.data(), w.name.size());
    const auto type = static_cast<uint32_t>(w.type);
    uint8_t t[4] = {static_cast<uint8_t>(type), static_cast<uint8_t>(type >> 8),
                    static_cast<uint8_t>(type >> 16), static_cast<uint8_t>(type >> 24)};
    fnv(h, t, 4);
    fnv_u64(h, static_cast<uint64_t>(w.ndim));
    for (int d = 0; d < w.ndim && d < 4; ++d) fnv_u64(h, static_cast<uint64_t>(w.shape[static_cast<size_t>(d)]));
    fnv_u64(h, w.n_bytes);
    if (w.n_bytes <= kSampleAll) {
        fnv(h, w.data, w.n_bytes);
        return;
    }
    for (uint64_t i = 0; i < kWindows; ++i) {
        const uint64_t off = i * (w.n_bytes - kWindow) / (kWindows - 1);
        fnv(h, w.data + off, kWindow);
    }
}

std::string hex64(uint64_t v) { return strformat("0x%016" PRIx64, v); }

// ---- checked reading ----------------------------------------------------------------------

class Reader {
public:
    explicit Reader(std::string source) : source_(std::move(source)) {}

    Status error(const std::string& msg) const {
        return data_loss("budget file %s: %s", source_.c_str(), msg.c_str());
    }
    Result<const Json*> field(const Json& obj, const std::string& path, const char* name) const {
        if (!obj.is_object()) return error("'" + path + "' must be an object");
        const auto it = obj.find(name);
        if (it == obj.end()) return error("missing field '" + join(path, name) + "'");
        return &*it;
    }
    Result<int64_t> get_int(const Json& obj, const std::string& path, const char* name, int64_t lo,
                            int64_t hi) const {
        TCA_ASSIGN_OR_RETURN(const Json* v, field(obj, path, name));
        const std::string f = join(path, name);
        if (!v->is_number_integer()) return error("field '" + f + "' must be an integer, got " + brief(*v));
        if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
            return error(strformat("field '%s' must be in [%lld, %lld], got %s", f.c_str(),
                                   static_cast<long long>(lo), static_cast<long long>(hi), brief(*v).c_str()));
        }
        const auto x = v->get<int64_t>();
        if (x < lo || x > hi) {
            return error(strformat("field '%s' must be in [%lld, %lld], got %lld", f.c_str(),
                                   static_cast<long long>(lo), static_cast<long long>(hi),
                                   static_cast<long long>(x)));
        }
        return x;
    }
    Result<double> get_double(const Json& obj, const std::string& path, const char* name,
                              double lo, double hi) const {
        TCA_ASSIGN_OR_RETURN(const Json* v, field(obj, path, name));
        return as_double(*v, join(path, name), lo, hi);
    }
    Result<double> as_double(const Json& v, const std::string& f, double lo, double hi) const {
        if (!v.is_number()) return error("field '" + f + "' must be a number, got " + brief(v));
        const auto x = v.get<double>();
        if (!std::isfinite(x) || x < lo || x > hi) {
            return error(strformat("field '%s' must be in [%g, %g], got %s", f.c_str(), lo, hi,
                                   brief(v).c_str()));
        }
        return x;
    }
    Result<std::string> get_string(const Json& obj, const std::string& path, const char* name) const {
        TCA_ASSIGN_OR_RETURN(const Json* v, field(obj, path, name));
        if (!v->is_string()) return error("field '" + join(path, name) + "' must be a string, got " + brief(*v));
        return v->get<std::string>();
    }
    Result<bool> get_bool(const Json& obj, const std::string& path, const char* name) const {
        TCA_ASSIGN_OR_RETURN(const Json* v, field(obj, path, name));
        if (!v->is_boolean()) return error("field '" + join(path, name) + "' must be true or false, got " + brief(*v));
        return v->get<bool>();
    }
    Result<const Json*> get_array(const Json& obj, const std::string& path, const char* name) const {
        TCA_ASSIGN_OR_RETURN(const Json* v, field(obj, path, name));
        if (!v->is_array()) return error("field '" + join(path, name) + "' must be an array, got " + brief(*v));
        return v;
    }

    static std::string join(const std::string& path, const char* name) {
        return path.empty() ? std::string(name) : path + "." + name;
    }
    // A short rendering of a value for messages (one line, at most 40 characters).
    static std::string brief(const Json& v) {
        std::string s = v.dump();
        if (s.size() > 40) s = s.substr(0, 37) + "...";
        return s;
    }

private:
    std::string source_;
};

Result<uint64_t> parse_hex64(const Reader& r, const std::string& text, const std::string& f) {
    const bool ok = text.size() == 18 && text[0] == '0' && text[1] == 'x' &&
                    text.find_first_not_of("0123456789abcdefABCDEF", 2) == std::string::npos;
    if (!ok) return r.error("field '" + f + "' must be 0x and 16 hex digits, got " + Reader::brief(Json(text)));
    return static_cast<uint64_t>(std::stoull(text.substr(2), nullptr, 16));
}

constexpr int64_t kMaxCount = int64_t{1} << 20;  // layers, heads, dims, vocab: generous bounds
constexpr int64_t kMaxTokens = int64_t{1} << 40;

Result<BudgetFile> parse_doc(const Json& root, const Reader& r) {
    BudgetFile f;
    if (!root.is_object()) return r.error("the document must be a JSON object");
    TCA_ASSIGN_OR_RETURN(const std::string format, r.get_string(root, "", "format"));
    if (format != "tca-budgets") {
        return r.error("field 'format' must be \"tca-budgets\", got " + Reader::brief(Json(format)));
    }
    TCA_ASSIGN_OR_RETURN(const int64_t version, r.get_int(root, "", "format_version", 0, kMaxCount));
    if (version != kBudgetFileVersion) {
        return r.error(strformat("format_version %lld is not supported (this build reads %d)",
                                 static_cast<long long>(version), kBudgetFileVersion));
    }
    f.format_version = static_cast<int>(version);

    TCA_ASSIGN_OR_RETURN(const Json* model, r.field(root, "", "model"));
    BudgetFileIdentity& id = f.identity;
    TCA_ASSIGN_OR_RETURN(id.architecture, r.get_string(*model, "model", "architecture"));
    for (const char ch : id.architecture) {  // it is printed in messages: one printable line
        if (ch < 0x20 || ch > 0x7e || id.architecture.size() > 64) {
            return r.error("field 'model.architecture' must be a short printable name, got " +
                           Reader::brief(Json(id.architecture)));
        }
    }
    TCA_ASSIGN_OR_RETURN(id.n_layer, r.get_int(*model, "model", "n_layer", 1, kMaxCount));
    TCA_ASSIGN_OR_RETURN(id.n_head, r.get_int(*model, "model", "n_head", 1, kMaxCount));
    TCA_ASSIGN_OR_RETURN(id.n_head_kv, r.get_int(*model, "model", "n_head_kv", 1, id.n_head));
    TCA_ASSIGN_OR_RETURN(id.head_dim, r.get_int(*model, "model", "head_dim", 1, kMaxCount));
    TCA_ASSIGN_OR_RETURN(id.n_vocab, r.get_int(*model, "model", "n_vocab", 1, int64_t{1} << 31));
    TCA_ASSIGN_OR_RETURN(const std::string sum, r.get_string(*model, "model", "weights_checksum"));
    TCA_ASSIGN_OR_RETURN(id.weights_checksum, parse_hex64(r, sum, "model.weights_checksum"));

    TCA_ASSIGN_OR_RETURN(const Json* sp, r.field(root, "", "sparse"));
    SparseOptions& o = f.budgets.options;
    const int64_t int_max = std::numeric_limits<int>::max();
    TCA_ASSIGN_OR_RETURN(const int64_t b, r.get_int(*sp, "sparse", "block_size", 1, int_max));
    TCA_ASSIGN_OR_RETURN(const int64_t w, r.get_int(*sp, "sparse", "local_window", 0, int_max));
    TCA_ASSIGN_OR_RETURN(const int64_t obs, r.get_int(*sp, "sparse", "obs_window", 0, int_max));
    o.block_size = static_cast<int>(b);
    o.local_window = static_cast<int>(w);
    o.obs_window = static_cast<int>(obs);
    if (sp->contains("pool")) {  // absent in files written before the option: 0
        TCA_ASSIGN_OR_RETURN(const int64_t pool, r.get_int(*sp, "sparse", "pool", 0, kMaxPool));
        o.pool = static_cast<int>(pool);
    }
    if (sp->contains("selection")) {  // absent in files written before the option: block
        TCA_ASSIGN_OR_RETURN(const std::string sel, r.get_string(*sp, "sparse", "selection"));
        Result<Selection> parsed = parse_selection(sel);
        if (!parsed.ok()) {
            return r.error("field 'sparse.selection' must be \"block\" or \"global\", got " + Reader::brief(Json(sel)));
        }
        o.selection = parsed.value();
    }
    const double big = std::numeric_limits<double>::max();
    TCA_ASSIGN_OR_RETURN(o.alpha, r.get_double(*sp, "sparse", "alpha", -big, big));
    TCA_ASSIGN_OR_RETURN(o.tau, r.get_double(*sp, "sparse", "tau", -big, big));
    TCA_ASSIGN_OR_RETURN(const std::string mn, r.get_string(*sp, "sparse", "mass_norm"));
    Result<MassNorm> mass_norm = parse_mass_norm(mn);
    if (!mass_norm.ok()) {
        return r.error("field 'sparse.mass_norm' must be \"max\" or \"none\", got " + Reader::brief(Json(mn)));
    }
    o.mass_norm = mass_norm.value();
    if (Status s = validate(o); !s.ok()) return r.error("sparse." + s.message());

    TCA_ASSIGN_OR_RETURN(const Json* cal, r.field(root, "", "calibration"));
    CalibrationSummary& cs = f.calibration;
    TCA_ASSIGN_OR_RETURN(cs.n_tokens, r.get_int(*cal, "calibration", "n_tokens", 1, kMaxTokens));
    TCA_ASSIGN_OR_RETURN(cs.n_query_rows, r.get_int(*cal, "calibration", "n_query_rows", 0, kMaxTokens));
    TCA_ASSIGN_OR_RETURN(cs.row_stride, r.get_int(*cal, "calibration", "row_stride", 1, kMaxTokens));
    TCA_ASSIGN_OR_RETURN(const int64_t m, r.get_int(*cal, "calibration", "n_candidates", 2, 64));
    cs.n_candidates = static_cast<int>(m);
    TCA_ASSIGN_OR_RETURN(cs.text, r.get_string(*cal, "calibration", "text"));
    if (cal->contains("min_keep")) {  // absent in files written before the option: 0
        TCA_ASSIGN_OR_RETURN(cs.min_keep, r.get_double(*cal, "calibration", "min_keep", 0.0, 1.0));
    }
    if (cal->contains("statistic")) {  // absent in files written before the option: "total"
        TCA_ASSIGN_OR_RETURN(cs.statistic, r.get_string(*cal, "calibration", "statistic"));
        if (!parse_mass_statistic(cs.statistic).ok()) {
            return r.error("field 'calibration.statistic' must be \"total\" or \"far\", got " +
                           Reader::brief(Json(cs.statistic)));
        }
    }

    TCA_ASSIGN_OR_RETURN(const Json* layers, r.get_array(root, "", "layers"));
    if (static_cast<int64_t>(layers->size()) != id.n_layer) {
        return r.error(strformat("'layers' has %zu entries but model.n_layer is %lld", layers->size(),
                                 static_cast<long long>(id.n_layer)));
    }
    f.budgets.heads.resize(static_cast<size_t>(id.n_layer));
    f.records.resize(static_cast<size_t>(id.n_layer));
    for (int64_t l = 0; l < id.n_layer; ++l) {
        const Json& lj = (*layers)[static_cast<size_t>(l)];
        const std::string lp = strformat("layers[%lld]", static_cast<long long>(l));
        TCA_ASSIGN_OR_RETURN(const int64_t li, r.get_int(lj, lp, "layer", 0, kMaxCount));
        if (li != l) return r.error(strformat("field '%s.layer' is %lld, expected %lld", lp.c_str(), static_cast<long long>(li), static_cast<long long>(l)));
        TCA_ASSIGN_OR_RETURN(const Json* heads, r.get_array(lj, lp, "heads"));
        if (static_cast<int64_t>(heads->size()) != id.n_head_kv) {
            return r.error(strformat("'%s.heads' has %zu entries but model.n_head_kv is %lld", lp.c_str(),
                                     heads->size(), static_cast<long long>(id.n_head_kv)));
        }
        for (int64_t h = 0; h < id.n_head_kv; ++h) {
            const Json& hj = (*heads)[static_cast<size_t>(h)];
            const std::string hp = strformat("%s.heads[%lld]", lp.c_str(), static_cast<long long>(h));
            TCA_ASSIGN_OR_RETURN(const int64_t hi, r.get_int(hj, hp, "kv_head", 0, kMaxCount));
            if (hi != h) return r.error(strformat("field '%s.kv_head' is %lld, expected %lld", hp.c_str(), static_cast<long long>(hi), static_cast<long long>(h)));
            HeadConfig c;
            TCA_ASSIGN_OR_RETURN(const Json* pj, r.get_array(hj, hp, "p"));
            if (pj->size() > 64) return r.error(strformat("field '%s.p' has %zu entries", hp.c_str(), pj->size()));
            for (size_t i = 0; i < pj->size(); ++i) {
                TCA_ASSIGN_OR_RETURN(const double x, r.as_double((*pj)[i], strformat("%s.p[%zu]", hp.c_str(), i), -big, big));
                c.p.push_back(x);
            }
            if (Status s = validate_config(c.p, o.block_size); !s.ok()) return r.error(hp + ": " + s.message());
            TCA_ASSIGN_OR_RETURN(c.mu, r.get_double(hj, hp, "mu", -1e6, 1e6));
            // sigma 0: a point mass (dense_config), else the log-Gaussian width.
            TCA_ASSIGN_OR_RETURN(c.sigma, r.get_double(hj, hp, "sigma", 0.0, 1e6));
            HeadBudgetRecord rec;
            TCA_ASSIGN_OR_RETURN(rec.kept_fraction, r.get_double(hj, hp, "kept_fraction", 0.0, 1.0));
            TCA_ASSIGN_OR_RETURN(const int64_t t, r.get_int(hj, hp, "decode_budget", 1, o.block_size));
            rec.decode_budget = static_cast<int32_t>(t);
            TCA_ASSIGN_OR_RETURN(rec.retained_mass, r.get_double(hj, hp, "retained_mass", 0.0, 1.0 + 1e-6));
            TCA_ASSIGN_OR_RETURN(rec.dense, r.get_bool(hj, hp, "dense"));
            TCA_ASSIGN_OR_RETURN(const int64_t cand, r.get_int(hj, hp, "candidate", -1, cs.n_candidates - 1));
            rec.candidate = static_cast<int>(cand);
            if (rec.dense != (rec.candidate < 0)) {
                return r.error(strformat("%s: dense is %s but candidate is %d", hp.c_str(),
                                         rec.dense ? "true" : "false", rec.candidate));
            }
            f.budgets.heads[static_cast<size_t>(l)].push_back(std::move(c));
            f.records[static_cast<size_t>(l)].push_back(rec);
        }
    }
    return f;
}

}  // namespace

uint64_t weights_checksum(const ModelWeights& weights) {
    uint64_t h = kFnvOffset;
    hash_weight(h, weights.token_embd);
    hash_weight(h, weights.output_norm);
    if (!weights.config.tied_output && weights.output.present()) hash_weight(h, weights.output);
    if (weights.rope_freqs.present()) hash_weight(h, weights.rope_freqs);
    for (const LayerWeights& l : weights.layers) {
        for (int t = 0; t < kNumLayerTensors; ++t) {
            const WeightView& w = l.get(static_cast<LayerTensor>(t));
            if (w.present()) hash_weight(h, w);
        }
    }
    return h;
}

BudgetFileIdentity model_identity(const ModelWeights& weights) {
    const ModelConfig& c = weights.config;
    BudgetFileIdentity id;
    id.architecture = model_arch_name(c.arch);
    id.n_layer = c.n_layer;
    id.n_head = c.n_head;
    id.n_head_kv = c.n_head_kv;
    id.head_dim = c.head_dim;
    id.n_vocab = c.n_vocab;
    id.weights_checksum = weights_checksum(weights);
    return id;
}

std::string budget_file_json(const BudgetFile& file) {
    const BudgetFileIdentity& id = file.identity;
    const SparseOptions& o = file.budgets.options;
    Json root;
    root["format"] = "tca-budgets";
    root["format_version"] = file.format_version;
    root["model"] = {{"architecture", id.architecture}, {"n_layer", id.n_layer},
                     {"n_head", id.n_head},             {"n_head_kv", id.n_head_kv},
                     {"head_dim", id.head_dim},         {"n_vocab", id.n_vocab},
                     {"weights_checksum", hex64(id.weights_checksum)}};
    root["sparse"] = {{"block_size", o.block_size}, {"local_window", o.local_window},
                      {"alpha", o.alpha},           {"mass_norm", mass_norm_name(o.mass_norm)},
                      {"obs_window", o.obs_window}, {"pool", o.pool},
                      {"selection", selection_name(o.selection)}, {"tau", o.tau}};
    const CalibrationSummary& cs = file.calibration;
    root["calibration"] = {{"n_tokens", cs.n_tokens}, {"n_query_rows", cs.n_query_rows},
                           {"row_stride", cs.row_stride}, {"n_candidates", cs.n_candidates},
                           {"statistic", cs.statistic}, {"min_keep", cs.min_keep}, {"text", cs.text}};
    Json layers = Json::array();
    for (size_t l = 0; l < file.budgets.heads.size(); ++l) {
        Json heads = Json::array();
        for (size_t h = 0; h < file.budgets.heads[l].size(); ++h) {
            const HeadConfig& c = file.budgets.heads[l][h];
            const HeadBudgetRecord rec = l < file.records.size() && h < file.records[l].size()
                                             ? file.records[l][h] : HeadBudgetRecord{};
            heads.push_back({{"kv_head", h}, {"p", c.p}, {"mu", c.mu}, {"sigma", c.sigma},
                             {"kept_fraction", rec.kept_fraction},
                             {"decode_budget", rec.decode_budget},
                             {"retained_mass", rec.retained_mass}, {"dense", rec.dense},
                             {"candidate", rec.candidate}});
        }
        layers.push_back({{"layer", l}, {"heads", std::move(heads)}});
    }
    root["layers"] = std::move(layers);
    return root.dump(2) + "\n";
}

Status write_budget_file(const std::string& path, const BudgetFile& file) {
    const std::string text = budget_file_json(file);
    std::FILE* out = std::fopen(path.c_str(), "wb");
    if (!out) return io_error("cannot write budget file %s", path.c_str());
    const size_t n = std::fwrite(text.data(), 1, text.size(), out);
    const bool ok = std::fclose(out) == 0 && n == text.size();
    if (!ok) return io_error("short write to budget file %s", path.c_str());
    return Status();
}

Result<BudgetFile> parse_budget_file(const std::string& text, const std::string& source) {
    const Reader r(source);
    Json root;
    try {
        root = Json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        return r.error(std::string("malformed JSON: ") + e.what());
    }
    return parse_doc(root, r);
}

Result<BudgetFile> read_budget_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return not_found("cannot read budget file %s", path.c_str());
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0 || static_cast<uint64_t>(size) > kMaxFileBytes) {
        return data_loss("budget file %s: size %lld is not plausible (limit %llu bytes)", path.c_str(),
                         static_cast<long long>(size), static_cast<unsigned long long>(kMaxFileBytes));
    }
    in.seekg(0);
    std::string text(static_cast<size_t>(size), '\0');
    in.read(text.data(), size);
    if (!in) return io_error("cannot read budget file %s", path.c_str());
    return parse_budget_file(text, path);
}

Status check_identity(const BudgetFileIdentity& file, const BudgetFileIdentity& model) {
    auto mismatch = [](const char* what, const std::string& a, const std::string& b) {
        return invalid_argument("budget file is for another model: %s is %s in the file, %s in "
                                "the model", what, a.c_str(), b.c_str());
    };
    if (file.architecture != model.architecture) {
        return mismatch("architecture", file.architecture, model.architecture);
    }
    const struct {
        const char* name;
        int64_t a, b;
    } fields[] = {{"n_layer", file.n_layer, model.n_layer},
                  {"n_head", file.n_head, model.n_head},
                  {"n_head_kv", file.n_head_kv, model.n_head_kv},
                  {"head_dim", file.head_dim, model.head_dim},
                  {"n_vocab", file.n_vocab, model.n_vocab}};
    for (const auto& f : fields) {
        if (f.a != f.b) return mismatch(f.name, std::to_string(f.a), std::to_string(f.b));
    }
    if (file.weights_checksum != model.weights_checksum) {
        return mismatch("weights_checksum", hex64(file.weights_checksum), hex64(model.weights_checksum));
    }
    return Status();
}

Status check_budgets_for_model(const BudgetFileIdentity& file, const ModelWeights& weights) {
    return check_identity(file, model_identity(weights));
}

}  // namespace tca
