// tokenizer.json -> VocabData (hf_tokenizer_json.h). The file is untrusted: every field's type
// is checked before use and errors name the field, e.g. "x.json: model.merges[12]: ...".
#include "tokenizer/hf_tokenizer_json.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/strings.h"
#include "tokenizer/tokenizer.h"

namespace tca {

namespace {

using Json = nlohmann::json;

// The Split regexes of the pre-tokenizers we implement (pretokenize.cpp), as in the files.
constexpr std::string_view kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// Tokens that end a turn or a document in the vocabularies we know (llama.cpp uses a similar
// list); those present as control tokens become end-of-generation ids.
constexpr std::string_view kEogNames[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>",
                                          "<|im_end|>", "<|end|>",    "</s>",            "<end_of_turn>"};

class Loader {
public:
    explicit Loader(std::string_view name) : name_(name) {}

    Status error(const std::string& field, const std::string& what) const {
        return data_loss("%s: %s: %s", name_.c_str(), field.c_str(), what.c_str());
    }
    Status unsupported_field(const std::string& field, const std::string& what) const {
        return unsupported("%s: %s: %s", name_.c_str(), field.c_str(), what.c_str());
    }

    Result<VocabData> load(const Json& root, const Json* config);

private:
    Status load_vocab(const Json& model, VocabData& v);
    Status load_added(const Json& root, VocabData& v);
    Status load_merges(const Json& model, VocabData& v);
    Status load_pre_tokenizer(const Json& root, VocabData& v);
    Status load_normalizer(const Json& root, VocabData& v);
    Status load_specials(const Json& root, const Json* config, VocabData& v);
    Result<int32_t> id_of(const VocabData& v, const std::string& field, const std::string& content) const;

    std::string name_;
    std::vector<std::pair<std::string, int64_t>> vocab_entries_;
};

std::string describe(const Json& j) {
    std::string s = j.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
}

Status Loader::load_vocab(const Json& model, VocabData& v) {
    const auto it = model.find("vocab");
    if (it == model.end() || !it->is_object()) return error("model.vocab", "expected an object of token -> id");
    int64_t max_id = -1;
    vocab_entries_.reserve(it->size());
    for (const auto& [text, id] : it->items()) {
        if (!id.is_number_integer()) {
            return error(strformat("model.vocab[%s]", describe(Json(text)).c_str()), "expected an integer id, got " + describe(id));
        }
        const int64_t value = id.get<int64_t>();
        if (value < 0 || value > kMaxTokenId) {
            return error(strformat("model.vocab[%s]", describe(Json(text)).c_str()),
                         strformat("id %lld out of range [0, %lld]", static_cast<long long>(value),
                                   static_cast<long long>(kMaxTokenId)));
        }
        max_id = std::max(max_id, value);
        vocab_entries_.emplace_back(text, value);
    }
    if (vocab_entries_.empty()) return error("model.vocab", "empty");
    // Added tokens may extend the range; sized for now by the vocab alone.
    v.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
    v.token_types.assign(static_cast<size_t>(max_id + 1), TokenType::kUnused);  // holes stay unused
    for (auto& [text, id] : vocab_entries_) {
        const auto k = static_cast<size_t>(id);
        if (v.token_types[k] != TokenType::kUnused) {
            return error("model.vocab", strformat("id %lld used by both %s and %s", static_cast<long long>(id),
                                                  describe(Json(v.tokens[k])).c_str(), describe(Json(text)).c_str()));
        }
        v.tokens[k] = std::move(text);
        v.token_types[k] = TokenType::kNormal;
    }
    vocab_entries_.clear();
    return Status::ok_status();
}

Status Loader::load_added(const Json& root, VocabData& v) {
    const auto it = root.find("added_tokens");
    if (it == root.end() || it->is_null()) return Status::ok_status();
    if (!it->is_array()) return error("added_tokens", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
        const Json& t = (*it)[i];
        const std::string field = strformat("added_tokens[%zu]", i);
        if (!t.is_object()) return error(field, "expected an object");
        const auto id = t.find("id");
        const auto content = t.find("content");
        if (id == t.end() || !id->is_number_integer()) return error(field + ".id", "expected an integer");
        if (content == t.end() || !content->is_string()) return error(field + ".content", "expected a string");
        const int64_t value = id->get<int64_t>();
        if (value < 0 || value > kMaxTokenId) {
            return error(field + ".id", strformat("%lld out of range [0, %lld]", static_cast<long long>(value),
                                                  static_cast<long long>(kMaxTokenId)));
        }
        std::string text = content->get<std::string>();
        if (text.empty()) return error(field + ".content", "empty");
        bool special = false;
        const auto sp = t.find("special");
        if (sp != t.end() && !sp->is_null()) {
            if (!sp->is_boolean()) return error(field + ".special", "expected a boolean");
            special = sp->get<bool>();
        }
        const auto k = static_cast<size_t>(value);
        if (k >= v.tokens.size()) {
            v.tokens.resize(k + 1);
            v.token_types.resize(k + 1, TokenType::kUnused);
        }
        v.tokens[k] = std::move(text);
        v.token_types[k] = special ? TokenType::kControl : TokenType::kUserDefined;
    }
    return Status::ok_status();
}

Status Loader::load_merges(const Json& model, VocabData& v) {
    const auto it = model.find("merges");
    if (it == model.end() || it->is_null()) return Status::ok_status();  // a vocab without merges
    if (!it->is_array()) return error("model.merges", "expected an array");
    bool any_pair = false;
    for (const Json& m : *it) any_pair = any_pair || m.is_array();
    if (any_pair) v.merge_pairs.reserve(it->size()); else v.merges.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
        const Json& m = (*it)[i];
        const std::string field = strformat("model.merges[%zu]", i);
        if (m.is_string()) {
            std::string s = m.get<std::string>();
            const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
            if (sp == std::string::npos || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos) {
                return error(field, "expected \"a b\" or [a, b], got " + describe(m));
            }
            if (any_pair) {
                v.merge_pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
            } else {
                v.merges.push_back(std::move(s));
            }
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string() &&
                   !m[0].get_ref<const std::string&>().empty() && !m[1].get_ref<const std::string&>().empty()) {
            v.merge_pairs.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        } else {
            return error(field, "expected \"a b\" or [a, b], got " + describe(m));
        }
    }
    return Status::ok_status();
}

Status Loader::load_pre_tokenizer(const Json& root, VocabData& v) {
    const auto it = root.find("pre_tokenizer");
    if (it == root.end() || !it->is_object()) {
        return unsupported_field("pre_tokenizer", "absent (only byte-level BPE is supported)");
    }
    std::vector<std::pair<std::string, const Json*>> steps;
    const auto type = it->find("type");
    if (type != it->end() && type->is_string() && *type == "Sequence") {
        const auto list = it->find("pretokenizers");
        if (list == it->end() || !list->is_array()) return error("pre_tokenizer.pretokenizers", "expected an array");
        for (size_t i = 0; i < list->size(); ++i) {
            steps.emplace_back(strformat("pre_tokenizer.pretokenizers[%zu]", i), &(*list)[i]);
        }
    } else {
        steps.emplace_back("pre_tokenizer", &*it);
    }
    bool byte_level = false;
    bool byte_level_regex = false;
    std::string split_regex;
    for (const auto& [field, step] : steps) {
        if (!step->is_object()) return error(field, "expected an object");
        const auto t = step->find("type");
        if (t == step->end() || !t->is_string()) return error(field + ".type", "expected a string");
        const std::string& kind = t->get_ref<const std::string&>();
        if (kind == "Split") {
            const auto pattern = step->find("pattern");
            const Json* regex = nullptr;
            if (pattern != step->end() && pattern->is_object()) {
                const auto r = pattern->find("Regex");
                if (r != pattern->end() && r->is_string()) regex = &*r;
            }
            if (regex == nullptr) return unsupported_field(field + ".pattern", "only {\"Regex\": ...} patterns are supported");
            if (!split_regex.empty()) return unsupported_field(field, "more than one Split");
            split_regex = regex->get<std::string>();
            const auto behavior = step->find("behavior");
            if (behavior != step->end() && (!behavior->is_string() || *behavior != "Isolated")) {
                return unsupported_field(field + ".behavior", "only Isolated is supported, got " + describe(*behavior));
            }
            const auto invert = step->find("invert");
            if (invert != step->end() && (!invert->is_boolean() || invert->get<bool>())) {
                return unsupported_field(field + ".invert", "only false is supported");
            }
        } else if (kind == "ByteLevel") {
            byte_level = true;
            const auto prefix = step->find("add_prefix_space");
            if (prefix != step->end() && prefix->is_boolean() && prefix->get<bool>()) {
                return unsupported_field(field + ".add_prefix_space", "true is not supported");
            }
            const auto use_regex = step->find("use_regex");
            byte_level_regex = use_regex == step->end() || (use_regex->is_boolean() && use_regex->get<bool>());
        } else {
            return unsupported_field(field + ".type", "pre-tokenizer \"" + kind + "\" (supported: Split, ByteLevel)");
        }
    }
    if (!byte_level) return unsupported_field("pre_tokenizer", "no ByteLevel step (only byte-level BPE is supported)");
    if (!split_regex.empty() && byte_level_regex) {
        return unsupported_field("pre_tokenizer", "Split followed by a ByteLevel that splits again");
    }
    if (split_regex.empty()) {
        if (!byte_level_regex) return unsupported_field("pre_tokenizer", "ByteLevel without a split regex");
        v.pre = PreTokenizer::kGpt2;
    } else if (split_regex == kLlama3Regex) {
        v.pre = PreTokenizer::kLlama3;
    } else if (split_regex == kQwen2Regex) {
        v.pre = PreTokenizer::kQwen2;
    } else if (split_regex == kGpt2Regex) {
        v.pre = PreTokenizer::kGpt2;
    } else {
        return unsupported_field("pre_tokenizer", "unknown Split regex " + describe(Json(split_regex)) +
                                                      " (supported: Llama 3, Qwen2, GPT-2)");
    }
    return Status::ok_status();
}

Status Loader::load_normalizer(const Json& root, VocabData& v) {
    const auto it = root.find("normalizer");
    if (it == root.end() || it->is_null()) return Status::ok_status();
    const auto t = it->is_object() ? it->find("type") : it->end();
    if (t == it->end() || !t->is_string()) return error("normalizer.type", "expected a string");
    if (*t == "NFC") {
        v.normalize_nfc = true;
        return Status::ok_status();
    }
    if (*t == "Sequence") {
        const auto list = it->find("normalizers");
        if (list != it->end() && list->is_array() && list->empty()) return Status::ok_status();
    }
    return unsupported_field("normalizer", "only NFC is supported, got " + describe(*it));
}

Result<int32_t> Loader::id_of(const VocabData& v, const std::string& field, const std::string& content) const {
    for (size_t i = v.tokens.size(); i-- > 0;) {  // added tokens live at the end
        if (v.tokens[i] == content && v.token_types[i] != TokenType::kUnused) return static_cast<int32_t>(i);
    }
    return error(field, "token " + describe(Json(content)) + " is not in the vocabulary");
}

// A token named in tokenizer_config.json: a string, {"content": ...}, or null.
Result<std::optional<std::string>> config_token(const Json& config, const char* key, const Loader& loader,
                                                const std::string& config_name) {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::optional<std::string>();
    if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
    if (it->is_object()) {
        const auto c = it->find("content");
        if (c != it->end() && c->is_string()) return std::optional<std::string>(c->get<std::string>());
    }
    return loader.error(config_name + key, "expected a string or {\"content\": string}");
}

Status Loader::load_specials(const Json& root, const Json* config, VocabData& v) {
    // BOS: the first special token of post_processor's single-sequence template.
    std::vector<const Json*> procs;
    const auto pp = root.find("post_processor");
    if (pp != root.end() && pp->is_object()) {
        procs.push_back(&*pp);
        const auto list = pp->find("processors");
        if (list != pp->end() && list->is_array()) {
            for (const Json& p : *list) procs.push_back(&p);
        }
    }
    for (const Json* p : procs) {
        if (!p->is_object()) continue;
        const auto t = p->find("type");
        const auto single = p->find("single");
        if (t == p->end() || *t != "TemplateProcessing" || single == p->end() || !single->is_array() ||
            single->empty()) {
            continue;
        }
        const Json& first = (*single)[0];
        if (first.is_object() && first.contains("SpecialToken") && first["SpecialToken"].is_object()) {
            const auto id = first["SpecialToken"].find("id");
            if (id != first["SpecialToken"].end() && id->is_string()) {
                TCA_ASSIGN_OR_RETURN(v.bos_id, id_of(v, "post_processor.single[0].SpecialToken.id", id->get<std::string>()));
                v.add_bos = true;
            }
        }
    }
    for (std::string_view eog : kEogNames) {
        for (size_t i = 0; i < v.tokens.size(); ++i) {
            if (v.tokens[i] == eog && v.token_types[i] == TokenType::kControl) {
                v.eog_ids.push_back(static_cast<int32_t>(i));
                if (v.eos_id < 0 && (eog == "<|end_of_text|>" || eog == "<|endoftext|>" || eog == "</s>")) {
                    v.eos_id = static_cast<int32_t>(i);
                }
            }
        }
    }
    if (config == nullptr) return Status::ok_status();
    const std::string cfg = "tokenizer_config.json: ";
    TCA_ASSIGN_OR_RETURN(auto bos, config_token(*config, "bos_token", *this, cfg));
    if (bos) {
        TCA_ASSIGN_OR_RETURN(v.bos_id, id_of(v, cfg + "bos_token", *bos));
    }
    TCA_ASSIGN_OR_RETURN(auto eos, config_token(*config, "eos_token", *this, cfg));
    if (eos) {
        TCA_ASSIGN_OR_RETURN(v.eos_id, id_of(v, cfg + "eos_token", *eos));
    }
    TCA_ASSIGN_OR_RETURN(auto pad, config_token(*config, "pad_token", *this, cfg));
    if (pad) {
        TCA_ASSIGN_OR_RETURN(v.pad_id, id_of(v, cfg + "pad_token", *pad));
    }
    const auto add_bos = config->find("add_bos_token");
    if (add_bos != config->end() && !add_bos->is_null()) {
        if (!add_bos->is_boolean()) return error(cfg + "add_bos_token", "expected a boolean");
        v.add_bos = add_bos->get<bool>();
    }
    if (v.bos_id < 0) v.add_bos = false;
    return Status::ok_status();
}

Result<VocabData> Loader::load(const Json& root, const Json* config) {
    if (!root.is_object()) return error("(root)", "expected an object");
    const auto model = root.find("model");
    if (model == root.end() || !model->is_object()) return error("model", "expected an object");
    const auto type = model->find("type");
    if (type != model->end() && (!type->is_string() || *type != "BPE")) {
        return unsupported_field("model.type", "only BPE is supported, got " + describe(*type));
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const auto f = model->find(key);
        if (f != model->end() && !f->is_null() && !(f->is_string() && f->get_ref<const std::string&>().empty())) {
            return unsupported_field(std::string("model.") + key, describe(*f));
        }
    }
    VocabData v;
    v.kind = TokenizerKind::kBpe;
    v.source = name_;
    v.add_space_prefix = false;
    const auto ignore = model->find("ignore_merges");
    if (ignore != model->end() && !ignore->is_null()) {
        if (!ignore->is_boolean()) return error("model.ignore_merges", "expected a boolean");
        v.ignore_merges = ignore->get<bool>();
    }
    TCA_RETURN_IF_ERROR(load_vocab(*model, v));
    TCA_RETURN_IF_ERROR(load_added(root, v));
    TCA_RETURN_IF_ERROR(load_merges(*model, v));
    TCA_RETURN_IF_ERROR(load_pre_tokenizer(root, v));
    TCA_RETURN_IF_ERROR(load_normalizer(root, v));
    TCA_RETURN_IF_ERROR(load_specials(root, config, v));
    TCA_RETURN_IF_ERROR(validate_vocab(v));
    return v;
}

Result<std::string> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return not_found("%s: cannot open", path.c_str());
    std::ostringstream s;
    s << f.rdbuf();
    if (f.bad()) return io_error("%s: read failed", path.c_str());
    return s.str();
}

}  // namespace

Result<VocabData> parse_hf_tokenizer_json(std::string_view json_text, std::string_view name,
                                          std::string_view config_text) {
    Loader loader(name);
    const std::string name_str(name);
    try {
        Json root;
        try {
            root = Json::parse(json_text);
        } catch (const Json::parse_error& e) {
            return data_loss("%s: invalid JSON: %s", name_str.c_str(), e.what());
        }
        Json config;
        if (!config_text.empty()) {
            try {
                config = Json::parse(config_text);
            } catch (const Json::parse_error& e) {
                return data_loss("%s: tokenizer_config.json: invalid JSON: %s", name_str.c_str(), e.what());
            }
            if (!config.is_object()) return data_loss("%s: tokenizer_config.json: expected an object", name_str.c_str());
        }
        return loader.load(root, config_text.empty() ? nullptr : &config);
    } catch (const Json::exception& e) {
        // Field checks above should make this unreachable; a JSON library error is still the
        // file's fault, never a crash.
        return data_loss("%s: %s", name_str.c_str(), e.what());
    }
}

Result<VocabData> load_hf_tokenizer_json(const std::string& path) {
    TCA_ASSIGN_OR_RETURN(std::string text, read_file(path));
    std::string config;
    std::error_code ec;
    const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    if (std::filesystem::exists(config_path, ec)) {
        TCA_ASSIGN_OR_RETURN(config, read_file(config_path.string()));
    }
    return parse_hf_tokenizer_json(text, path, config);
}

Result<Tokenizer> Tokenizer::from_hf_json_file(const std::string& path) {
    TCA_ASSIGN_OR_RETURN(VocabData vocab, load_hf_tokenizer_json(path));
    return Tokenizer::create(std::move(vocab));
}

}  // namespace tca
