// load_model: finds each expected tensor by name, checks type (dequantizable) and shape against
// the config, and records views. Errors name the tensor: "tensor blk.3.attn_k.weight: expected
// [256, 64], got [64, 256]".
#include "model/model_weights.h"

#include <cstring>
#include <filesystem>

#include "core/strings.h"
#include "model/ggml_quants.h"
#include "model/hf_config.h"

namespace tca {

int64_t WeightView::n_rows() const {
    int64_t n = 1;
    for (int i = 0; i + 1 < ndim; ++i) n *= shape[static_cast<size_t>(i)];
    return n;
}

uint64_t WeightView::row_bytes() const {
    auto r = ggml_row_bytes(type, row_elems());
    TCA_ASSERT(r.ok(), "weight %s was validated", name.c_str());
    return *r;
}

std::string WeightView::shape_string() const {
    return shape_to_string(std::vector<int64_t>(shape.begin(), shape.begin() + ndim));
}

Status WeightView::dequantize_rows(int64_t row0, int64_t n, float* out) const {
    TCA_ASSERT(present(), "dequantize_rows on absent weight %s", name.c_str());
    TCA_ASSERT(row0 >= 0 && n >= 0 && row0 + n <= n_rows(), "rows [%lld, +%lld) of %s",
               static_cast<long long>(row0), static_cast<long long>(n), name.c_str());
    const uint64_t rb = row_bytes();
    return dequantize(type, data + static_cast<uint64_t>(row0) * rb, out, n * row_elems());
}

WeightView& LayerWeights::get(LayerTensor t) {
    switch (t) {
        case LayerTensor::kAttnNorm: return attn_norm;
        case LayerTensor::kAttnQ: return wq;
        case LayerTensor::kAttnK: return wk;
        case LayerTensor::kAttnV: return wv;
        case LayerTensor::kAttnOutput: return wo;
        case LayerTensor::kAttnQBias: return bq;
        case LayerTensor::kAttnKBias: return bk;
        case LayerTensor::kAttnVBias: return bv;
        case LayerTensor::kFfnNorm: return ffn_norm;
        case LayerTensor::kFfnGate: return w_gate;
        case LayerTensor::kFfnUp: return w_up;
        case LayerTensor::kFfnDown: return w_down;
    }
    TCA_ASSERT(false, "bad LayerTensor");
}
const WeightView& LayerWeights::get(LayerTensor t) const {
    return const_cast<LayerWeights*>(this)->get(t);
}

uint64_t ModelWeights::total_bytes() const {
    uint64_t n = token_embd.n_bytes + output_norm.n_bytes + rope_freqs.n_bytes;
    if (!config.tied_output) n += output.n_bytes;
    for (const LayerWeights& l : layers) {
        for (int t = 0; t < kNumLayerTensors; ++t) n += l.get(static_cast<LayerTensor>(t)).n_bytes;
    }
    return n;
}

namespace {

constexpr LayerTensor kAllLayerTensors[] = {
    LayerTensor::kAttnNorm,  LayerTensor::kAttnQ,     LayerTensor::kAttnK,
    LayerTensor::kAttnV,     LayerTensor::kAttnOutput, LayerTensor::kAttnQBias,
    LayerTensor::kAttnKBias, LayerTensor::kAttnVBias, LayerTensor::kFfnNorm,
    LayerTensor::kFfnGate,   LayerTensor::kFfnUp,     LayerTensor::kFfnDown,
};

// A found tensor, whatever the source format.
struct Found {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    const uint8_t* data;
    uint64_t n_bytes;
};

// Checks type and shape and fills the view. Norms, biases and rope_freqs must be float.
Status make_view(const Found& f, const std::vector<int64_t>& expect, bool float_only,
                 WeightView* out) {
    Status st = ggml_check_dequantizable(f.type);
    if (!st.ok()) return Status(st.code(), "tensor " + f.name + ": " + st.message());
    if (float_only && f.type != GgmlType::kF32 && f.type != GgmlType::kF16 &&
        f.type != GgmlType::kBF16) {
        return unsupported("tensor %s: type %s, expected F32, F16 or BF16", f.name.c_str(),
                           ggml_type_name(f.type));
    }
    if (f.shape != expect) {
        return invalid_argument("tensor %s: expected %s, got %s", f.name.c_str(),
                                shape_to_string(expect).c_str(), shape_to_string(f.shape).c_str());
    }
    if (f.shape.size() > 4) return unsupported("tensor %s: more than 4 dims", f.name.c_str());
    out->name = f.name;
    out->type = f.type;
    out->ndim = static_cast<int>(f.shape.size());
    for (size_t i = 0; i < f.shape.size(); ++i) out->shape[i] = f.shape[i];
    out->data = f.data;
    out->n_bytes = f.n_bytes;
    return {};
}

// Fills every view of `w` using `lookup(gguf_name) -> optional<Found>`.
template <class Lookup>
Status fill_weights(ModelWeights* w, Lookup&& lookup) {
    const ModelConfig& c = w->config;
    auto require = [&](const std::string& gguf_name, const std::vector<int64_t>& expect,
                       bool float_only, WeightView* out) -> Status {
        std::optional<Found> f = lookup(gguf_name);
        if (!f) return not_found("tensor %s not found in %s", gguf_name.c_str(), w->path.c_str());
        return make_view(*f, expect, float_only, out);
    };
    TCA_RETURN_IF_ERROR(require(gguf_tensor_name(GlobalTensor::kTokenEmbd),
                                expected_shape(GlobalTensor::kTokenEmbd, c), false,
                                &w->token_embd));
    TCA_RETURN_IF_ERROR(require(gguf_tensor_name(GlobalTensor::kOutputNorm),
                                expected_shape(GlobalTensor::kOutputNorm, c), true,
                                &w->output_norm));
    if (c.tied_output) {
        w->output = w->token_embd;
    } else {
        TCA_RETURN_IF_ERROR(require(gguf_tensor_name(GlobalTensor::kOutput),
                                    expected_shape(GlobalTensor::kOutput, c), false, &w->output));
    }
    if (lookup(gguf_tensor_name(GlobalTensor::kRopeFreqs))) {
        TCA_RETURN_IF_ERROR(require(gguf_tensor_name(GlobalTensor::kRopeFreqs),
                                    expected_shape(GlobalTensor::kRopeFreqs, c), true,
                                    &w->rope_freqs));
    }
    w->layers.resize(static_cast<size_t>(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        for (LayerTensor t : kAllLayerTensors) {
            if (is_bias(t) && !c.attn_bias) continue;
            TCA_RETURN_IF_ERROR(require(gguf_tensor_name(t, l), expected_shape(t, c),
                                        is_norm(t) || is_bias(t),
                                        &w->layers[static_cast<size_t>(l)].get(t)));
        }
    }
    return {};
}

bool has_gguf_magic(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return false;
    char magic[4] = {};
    const size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    return n == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

Result<ModelWeights> load_model_from_gguf(std::shared_ptr<const GgufFile> file) {
    ModelWeights w;
    w.format = ModelFormat::kGguf;
    w.path = file->name();
    TCA_ASSIGN_OR_RETURN(w.config, config_from_gguf(*file));
    const GgufFile& f = *file;
    TCA_RETURN_IF_ERROR(fill_weights(&w, [&](const std::string& name) -> std::optional<Found> {
        const GgufTensorInfo* ti = f.find_tensor(name);
        if (ti == nullptr) return std::nullopt;
        return Found{ti->name, ti->type, ti->shape_vector(), ti->data, ti->n_bytes};
    }));
    w.gguf = std::move(file);
    return w;
}

Result<ModelWeights> load_model_from_safetensors(std::shared_ptr<const SafetensorsModel> st,
                                                 const ModelConfig& config, std::string path) {
    ModelWeights w;
    w.format = ModelFormat::kSafetensors;
    w.path = std::move(path);
    w.config = config;
    // Tied embeddings: some checkpoints omit lm_head.weight, some store a copy; use it if there.
    if (w.config.tied_output && st->find("lm_head.weight") != nullptr) w.config.tied_output = false;
    if (!w.config.tied_output && st->find("lm_head.weight") == nullptr) {
        return not_found("tensor lm_head.weight not found in %s and tie_word_embeddings is false",
                         w.path.c_str());
    }
    // Translate GGUF names back to HF names through a reverse table built once.
    std::unordered_map<std::string, const SafetensorsTensor*> by_gguf;
    for (const SafetensorsFile& file : st->files()) {
        for (const SafetensorsTensor& t : file.tensors()) {
            if (auto g = hf_to_gguf_name(t.name)) by_gguf.emplace(*g, &t);
        }
    }
    Status type_error;  // the clearer "unsupported safetensors dtype" message, if any
    const Status filled = fill_weights(&w, [&](const std::string& name) -> std::optional<Found> {
        auto it = by_gguf.find(name);
        if (it == by_gguf.end()) return std::nullopt;
        const SafetensorsTensor& t = *it->second;
        auto type = safetensors_ggml_type(t);
        if (!type.ok()) {
            if (type_error.ok()) type_error = type.status();
            // An id ggml never defined: make_view then fails, and type_error is returned.
            return Found{t.name, static_cast<GgmlType>(0xffffu), t.shape, t.data, t.n_bytes};
        }
        return Found{t.name, *type, t.shape, t.data, t.n_bytes};
    });
    if (!filled.ok() && !type_error.ok()) return type_error;
    TCA_RETURN_IF_ERROR(filled);
    w.safetensors = std::move(st);
    return w;
}

Result<ModelWeights> load_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        const std::string config_path = (fs::path(path) / "config.json").string();
        if (!fs::exists(config_path, ec)) {
            return not_found("model directory %s has no config.json", path.c_str());
        }
        TCA_ASSIGN_OR_RETURN(const ModelConfig config, config_from_hf_file(config_path));
        TCA_ASSIGN_OR_RETURN(SafetensorsModel st, SafetensorsModel::open(path));
        return load_model_from_safetensors(std::make_shared<const SafetensorsModel>(std::move(st)),
                                           config, path);
    }
    if (!fs::exists(path, ec)) return not_found("model file %s not found", path.c_str());
    if (has_gguf_magic(path)) {
        TCA_ASSIGN_OR_RETURN(GgufFile f, GgufFile::open(path));
        return load_model_from_gguf(std::make_shared<const GgufFile>(std::move(f)));
    }
    const fs::path p(path);
    if (p.extension() == ".safetensors" || p.extension() == ".json") {
        const std::string config_path = (p.parent_path() / "config.json").string();
        if (!fs::exists(config_path, ec)) {
            return not_found("%s: no config.json next to it", path.c_str());
        }
        TCA_ASSIGN_OR_RETURN(const ModelConfig config, config_from_hf_file(config_path));
        TCA_ASSIGN_OR_RETURN(SafetensorsModel st, SafetensorsModel::open(path));
        return load_model_from_safetensors(std::make_shared<const SafetensorsModel>(std::move(st)),
                                           config, path);
    }
    return invalid_argument("%s is neither a GGUF file (magic GGUF) nor safetensors", path.c_str());
}

}  // namespace tca
