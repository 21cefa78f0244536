// Reads the fields tca needs from a Hugging Face config.json, checking each JSON type.
#include "model/hf_config.h"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/strings.h"

namespace tca {

namespace {

using Json = nlohmann::json;

class Reader {
public:
    Reader(const Json& j, const std::string& name) : j_(j), name_(name) {}

    Status int_field(const char* key, int64_t* out, bool required) {
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) {
            if (required) return not_found("%s: key %s not found", name_.c_str(), key);
            return {};
        }
        if (!it->is_number_integer()) {
            return invalid_argument("%s: key %s is %s, expected an integer", name_.c_str(), key,
                                    clip(it->dump()).c_str());
        }
        *out = it->get<int64_t>();
        return {};
    }
    Status float_field(const Json& obj, const char* key, double* out) {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return {};
        if (!it->is_number()) {
            return invalid_argument("%s: key %s is %s, expected a number", name_.c_str(), key,
                                    clip(it->dump()).c_str());
        }
        *out = it->get<double>();
        return {};
    }
    Status bool_field(const char* key, bool* out) {
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return {};
        if (!it->is_boolean()) {
            return invalid_argument("%s: key %s is %s, expected true or false", name_.c_str(), key,
                                    clip(it->dump()).c_str());
        }
        *out = it->get<bool>();
        return {};
    }
    // An id or a list of ids (eos_token_id may be a list: the first is used).
    Status token_field(const char* key, int64_t* out) {
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return {};
        const Json* v = &*it;
        if (v->is_array()) {
            if (v->empty()) return {};
            v = &(*v)[0];
        }
        if (!v->is_number_integer()) {
            return invalid_argument("%s: key %s is %s, expected a token id", name_.c_str(), key,
                                    clip(it->dump()).c_str());
        }
        *out = v->get<int64_t>();
        return {};
    }
    static std::string clip(const std::string& s) {
        return s.size() > 64 ? s.substr(0, 64) + "..." : s;
    }

private:
    const Json& j_;
    const std::string& name_;
};

}  // namespace

Result<ModelConfig> config_from_hf_json(const std::string& text, const std::string& name) {
    // config.json is small; bound its size and let nlohmann (iterative parser) reject bad input.
    if (text.size() > (1u << 24)) return data_loss("%s: %zu bytes, too large", name.c_str(), text.size());
    const Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return data_loss("%s: not a JSON object", name.c_str());
    try {
        ModelConfig c;
        c.rope_style = RopeStyle::kHalfSplit;
        auto mt = j.find("model_type");
        if (mt == j.end() || !mt->is_string()) {
            return not_found("%s: model_type not found", name.c_str());
        }
        const std::string model_type = mt->get<std::string>();
        if (model_type == "llama") {
            c.arch = ModelArch::kLlama;
        } else if (model_type == "mistral") {
            c.arch = ModelArch::kMistral;
        } else if (model_type == "qwen2") {
            c.arch = ModelArch::kQwen2;
        } else {
            return unsupported("%s: model_type '%s' is unsupported (llama, mistral, qwen2 are)",
                               name.c_str(), Reader::clip(model_type).c_str());
        }
        Reader r(j, name);
        TCA_RETURN_IF_ERROR(r.int_field("vocab_size", &c.n_vocab, true));
        TCA_RETURN_IF_ERROR(r.int_field("hidden_size", &c.n_embd, true));
        TCA_RETURN_IF_ERROR(r.int_field("num_hidden_layers", &c.n_layer, true));
        TCA_RETURN_IF_ERROR(r.int_field("num_attention_heads", &c.n_head, true));
        TCA_RETURN_IF_ERROR(r.int_field("intermediate_size", &c.n_ff, true));
        c.n_head_kv = c.n_head;
        TCA_RETURN_IF_ERROR(r.int_field("num_key_value_heads", &c.n_head_kv, false));
        c.head_dim = c.n_head > 0 ? c.n_embd / c.n_head : 0;
        TCA_RETURN_IF_ERROR(r.int_field("head_dim", &c.head_dim, false));
        TCA_RETURN_IF_ERROR(r.int_field("max_position_embeddings", &c.context_length, false));
        TCA_RETURN_IF_ERROR(r.float_field(j, "rope_theta", &c.rope_freq_base));
        TCA_RETURN_IF_ERROR(r.float_field(j, "rms_norm_eps", &c.rms_norm_eps));
        TCA_RETURN_IF_ERROR(r.bool_field("tie_word_embeddings", &c.tied_output));
        c.attn_bias = c.arch == ModelArch::kQwen2;  // Qwen2 always has q/k/v biases
        if (c.arch != ModelArch::kQwen2) TCA_RETURN_IF_ERROR(r.bool_field("attention_bias", &c.attn_bias));
        TCA_RETURN_IF_ERROR(r.token_field("bos_token_id", &c.bos_id));
        TCA_RETURN_IF_ERROR(r.token_field("eos_token_id", &c.eos_id));
        // transformers >= 5 writes "rope_parameters" {rope_type, rope_theta, llama3 fields}
        // instead of "rope_theta" + "rope_scaling"; both forms are read.
        auto rs = j.find("rope_scaling");
        auto rp = j.find("rope_parameters");
        if (rp != j.end() && !rp->is_null()) {
            if (!rp->is_object()) return invalid_argument("%s: rope_parameters is not an object", name.c_str());
            TCA_RETURN_IF_ERROR(r.float_field(*rp, "rope_theta", &c.rope_freq_base));
            if (rs == j.end() || rs->is_null()) rs = rp;
        }
        if (rs != j.end() && !rs->is_null()) {
            if (!rs->is_object()) return invalid_argument("%s: rope_scaling is not an object", name.c_str());
            std::string type;
            for (const char* k : {"rope_type", "type"}) {
                auto t = rs->find(k);
                if (t != rs->end() && t->is_string()) {
                    type = t->get<std::string>();
                    break;
                }
            }
            if (type == "llama3") {
                RopeScaling& s = c.rope_scaling;
                s.type = RopeScaling::Type::kLlama3;
                TCA_RETURN_IF_ERROR(r.float_field(*rs, "factor", &s.factor));
                TCA_RETURN_IF_ERROR(r.float_field(*rs, "low_freq_factor", &s.low_freq_factor));
                TCA_RETURN_IF_ERROR(r.float_field(*rs, "high_freq_factor", &s.high_freq_factor));
                double orig = static_cast<double>(s.original_context_length);
                TCA_RETURN_IF_ERROR(r.float_field(*rs, "original_max_position_embeddings", &orig));
                if (!(orig >= 1.0 && orig <= 1e12)) {
                    return invalid_argument("%s: rope_scaling.original_max_position_embeddings %g",
                                            name.c_str(), orig);
                }
                s.original_context_length = static_cast<int64_t>(orig);
            } else if (type != "default" && !type.empty()) {
                return unsupported("%s: rope_scaling type '%s' is unsupported (llama3 is)",
                                   name.c_str(), Reader::clip(type).c_str());
            }
        }
        Status st = validate_config(c);
        if (!st.ok()) return Status(st.code(), name + ": " + st.message());
        return c;
    } catch (const nlohmann::json::exception& e) {
        return data_loss("%s: %s", name.c_str(), e.what());
    }
}

Result<ModelConfig> config_from_hf_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return not_found("cannot open %s", path.c_str());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return config_from_hf_json(text, path);
}

}  // namespace tca
