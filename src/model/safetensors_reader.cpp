// Safetensors parsing. The JSON header is untrusted: its nesting depth is bounded before
// nlohmann parses it, every field's JSON type is checked before use, offsets must lie inside
// the data section, match dtype x shape exactly, and not overlap.
#include "model/safetensors_reader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/strings.h"

namespace tca {

namespace {

using Json = nlohmann::json;

uint64_t dtype_bytes(const std::string& d) {
    static const std::pair<const char*, uint64_t> kTable[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2},     {"BF16", 2},    {"I64", 8},  {"I32", 4},
        {"I16", 2}, {"I8", 1},  {"U64", 8},     {"U32", 4},     {"U16", 2},  {"U8", 1},
        {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
    };
    for (const auto& [name, n] : kTable) {
        if (d == name) return n;
    }
    return 0;
}

// Max nesting of [] / {} outside strings; stops early past `limit`.
int json_depth(const uint8_t* p, uint64_t n, int limit) {
    int depth = 0, max_depth = 0;
    bool in_str = false, esc = false;
    for (uint64_t i = 0; i < n; ++i) {
        const char c = static_cast<char>(p[i]);
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            max_depth = std::max(max_depth, ++depth);
            if (max_depth > limit) return max_depth;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return max_depth;
}

std::string clip(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 64)) out += (c >= 32 && c < 127) ? c : '?';
    return s.size() > 64 ? out + "..." : out;
}

}  // namespace

std::string SafetensorsTensor::shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

Result<GgmlType> safetensors_ggml_type(const SafetensorsTensor& t) {
    if (t.dtype == "F32") return GgmlType::kF32;
    if (t.dtype == "F16") return GgmlType::kF16;
    if (t.dtype == "BF16") return GgmlType::kBF16;
    return unsupported("tensor %s: unsupported safetensors dtype %s (F32, F16, BF16 are)",
                       t.name.c_str(), t.dtype.c_str());
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    TCA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::open(path));
    return from_file(std::move(file));
}

Result<SafetensorsFile> SafetensorsFile::from_file(MappedFile file) {
    SafetensorsFile f;
    f.file_ = std::move(file);
    f.base_ = f.file_.data();
    f.size_ = f.file_.size();
    f.name_ = f.file_.path();
    TCA_RETURN_IF_ERROR(f.parse_header());
    return f;
}

Result<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, uint64_t size,
                                               std::string name) {
    SafetensorsFile f;
    f.base_ = data;
    f.size_ = size;
    f.name_ = std::move(name);
    TCA_RETURN_IF_ERROR(f.parse_header());
    return f;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::parse_header() {
    const std::string where = "safetensors file " + name_;
    auto loss = [&](const std::string& msg) { return Status(StatusCode::kDataLoss, where + ": " + msg); };
    if (size_ < 8) return loss(strformat("%llu bytes, too short for the header length",
                                         static_cast<unsigned long long>(size_)));
    uint64_t header_len = 0;
    std::memcpy(&header_len, base_, 8);
    if (header_len > size_ - 8) {
        return loss(strformat("header length %llu runs past end of file (size %llu)",
                              static_cast<unsigned long long>(header_len),
                              static_cast<unsigned long long>(size_)));
    }
    if (header_len > kSafetensorsMaxHeaderBytes) {
        return loss(strformat("header length %llu exceeds the %llu-byte limit",
                              static_cast<unsigned long long>(header_len),
                              static_cast<unsigned long long>(kSafetensorsMaxHeaderBytes)));
    }
    data_offset_ = 8 + header_len;
    const uint64_t data_size = size_ - data_offset_;
    const uint8_t* h = base_ + 8;
    if (json_depth(h, header_len, kSafetensorsMaxJsonDepth) > kSafetensorsMaxJsonDepth) {
        return loss(strformat("header JSON nests deeper than %d", kSafetensorsMaxJsonDepth));
    }
    Json j = Json::parse(h, h + header_len, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return loss("header is not valid JSON");
    if (!j.is_object()) return loss("header is not a JSON object");
    try {
        tensors_.reserve(j.size());
        for (auto it = j.begin(); it != j.end(); ++it) {
            const std::string& key = it.key();
            const Json& v = it.value();
            if (key == "__metadata__") {
                if (!v.is_object()) return loss("__metadata__ is not an object");
                for (auto m = v.begin(); m != v.end(); ++m) {
                    if (!m.value().is_string()) {
                        return loss("__metadata__ value " + clip(m.key()) + " is not a string");
                    }
                    metadata_[m.key()] = m.value().get<std::string>();
                }
                continue;
            }
            const std::string what = "tensor " + clip(key);
            if (!v.is_object()) return loss(what + ": entry is not an object");
            auto dt = v.find("dtype");
            auto sh = v.find("shape");
            auto off = v.find("data_offsets");
            if (dt == v.end() || !dt->is_string()) return loss(what + ": missing string dtype");
            if (sh == v.end() || !sh->is_array()) return loss(what + ": missing shape array");
            if (off == v.end() || !off->is_array() || off->size() != 2) {
                return loss(what + ": data_offsets is not a [begin, end] pair");
            }
            SafetensorsTensor t;
            t.name = key;
            t.dtype = dt->get<std::string>();
            t.elem_bytes = dtype_bytes(t.dtype);
            if (t.elem_bytes == 0) {
                return Status(StatusCode::kUnsupported,
                              where + ": " + what + ": unknown dtype " + clip(t.dtype));
            }
            if (sh->size() > 8) {
                return loss(what + strformat(": %zu dims, at most 8 supported", sh->size()));
            }
            uint64_t numel = 1;
            for (const Json& d : *sh) {
                if (!d.is_number_unsigned()) {
                    return loss(what + ": shape entry " + clip(d.dump()) +
                                " is not a non-negative integer");
                }
                const uint64_t dv = d.get<uint64_t>();
                if (dv > (uint64_t{1} << 62) || __builtin_mul_overflow(numel, dv, &numel)) {
                    return loss(what + ": element count overflows");
                }
                t.shape.push_back(static_cast<int64_t>(dv));
            }
            for (const Json& o : *off) {
                if (!o.is_number_unsigned()) {
                    return loss(what + ": data offset " + clip(o.dump()) +
                                " is not a non-negative integer");
                }
            }
            t.begin = (*off)[0].get<uint64_t>();
            t.end = (*off)[1].get<uint64_t>();
            t.n_elements = numel;
            if (__builtin_mul_overflow(numel, t.elem_bytes, &t.n_bytes) ||
                t.n_bytes > (uint64_t{1} << 62)) {
                return loss(what + ": byte size overflows");
            }
            if (t.begin > t.end || t.end > data_size) {
                return loss(what + strformat(": data_offsets [%llu, %llu] outside the data "
                                             "section of %llu bytes",
                                             static_cast<unsigned long long>(t.begin),
                                             static_cast<unsigned long long>(t.end),
                                             static_cast<unsigned long long>(data_size)));
            }
            if (t.end - t.begin != t.n_bytes) {
                return loss(what + strformat(": data_offsets [%llu, %llu] hold %llu bytes, %s %s "
                                             "needs %llu",
                                             static_cast<unsigned long long>(t.begin),
                                             static_cast<unsigned long long>(t.end),
                                             static_cast<unsigned long long>(t.end - t.begin),
                                             t.dtype.c_str(), t.shape_string().c_str(),
                                             static_cast<unsigned long long>(t.n_bytes)));
            }
            t.data = base_ + data_offset_ + t.begin;
            index_.emplace(t.name, tensors_.size());
            tensors_.push_back(std::move(t));
        }
    } catch (const nlohmann::json::exception& e) {
        return loss(std::string("bad header: ") + e.what());
    }
    // No two tensors may share bytes.
    std::vector<const SafetensorsTensor*> order;
    order.reserve(tensors_.size());
    for (const auto& t : tensors_) {
        if (t.n_bytes > 0) order.push_back(&t);
    }
    std::sort(order.begin(), order.end(),
              [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < order.size(); ++i) {
        if (order[i]->begin < order[i - 1]->end) {
            return loss("tensors " + clip(order[i - 1]->name) + " and " + clip(order[i]->name) +
                        " overlap");
        }
    }
    return {};
}

Result<SafetensorsModel> SafetensorsModel::from_files(std::vector<SafetensorsFile> files) {
    SafetensorsModel m;
    m.files_ = std::make_shared<std::vector<SafetensorsFile>>(std::move(files));
    for (const SafetensorsFile& f : *m.files_) {
        for (const SafetensorsTensor& t : f.tensors()) {
            if (!m.index_.emplace(t.name, &t).second) {
                return invalid_argument("safetensors: tensor %s is in more than one file (%s)",
                                        clip(t.name).c_str(), f.name().c_str());
            }
        }
    }
    return m;
}

const SafetensorsTensor* SafetensorsModel::find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : it->second;
}

namespace {

Result<SafetensorsModel> open_index(const std::filesystem::path& index_path) {
    const std::string ip = index_path.string();
    std::ifstream in(index_path, std::ios::binary);
    if (!in) return not_found("cannot open %s", ip.c_str());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.size() > kSafetensorsMaxHeaderBytes ||
        json_depth(reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                   kSafetensorsMaxJsonDepth) > kSafetensorsMaxJsonDepth) {
        return data_loss("%s: index too large or nested too deeply", ip.c_str());
    }
    const Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return data_loss("%s: not a JSON object", ip.c_str());
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) return data_loss("%s: no weight_map object", ip.c_str());
    std::vector<std::string> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string()) {
            return data_loss("%s: weight_map[%s] is not a file name", ip.c_str(),
                             clip(it.key()).c_str());
        }
        const std::string file = it.value().get<std::string>();
        if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
            return data_loss("%s: weight_map[%s] = '%s' is not a plain file name", ip.c_str(),
                             clip(it.key()).c_str(), clip(file).c_str());
        }
        if (std::find(shards.begin(), shards.end(), file) == shards.end()) shards.push_back(file);
    }
    std::vector<SafetensorsFile> files;
    for (const std::string& s : shards) {
        TCA_ASSIGN_OR_RETURN(SafetensorsFile f,
                             SafetensorsFile::open((index_path.parent_path() / s).string()));
        files.push_back(std::move(f));
    }
    TCA_ASSIGN_OR_RETURN(SafetensorsModel m, SafetensorsModel::from_files(std::move(files)));
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (m.find(it.key()) == nullptr) {
            return data_loss("%s: tensor %s is listed in weight_map but not in %s", ip.c_str(),
                             clip(it.key()).c_str(),
                             clip(it.value().get<std::string>()).c_str());
        }
    }
    return m;
}

}  // namespace

Result<SafetensorsModel> SafetensorsModel::open(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path p(path);
    if (fs::is_directory(p, ec)) {
        if (fs::exists(p / "model.safetensors.index.json", ec)) {
            return open_index(p / "model.safetensors.index.json");
        }
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(p, ec)) {
            if (e.path().extension() == ".safetensors") names.push_back(e.path().string());
        }
        if (names.empty()) return not_found("%s: no .safetensors files", path.c_str());
        std::sort(names.begin(), names.end());
        std::vector<SafetensorsFile> files;
        for (const std::string& n : names) {
            TCA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(n));
            files.push_back(std::move(f));
        }
        return from_files(std::move(files));
    }
    if (p.extension() == ".json") return open_index(p);
    TCA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(path));
    std::vector<SafetensorsFile> files;
    files.push_back(std::move(f));
    return from_files(std::move(files));
}

}  // namespace tca
