// GGUF parser. Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv,
// n_kv x {string key, u32 type, value}, n_tensors x {string name, u32 n_dims, u64 ne[n_dims],
// u32 ggml type, u64 offset}, padding to `general.alignment`, tensor data. A string is
// {u64 length, bytes}; an array is {u32 element type, u64 count, elements}.
// Every read goes through Cursor, which checks the remaining byte count first.
#include "model/gguf_reader.h"

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <limits>

#include "core/strings.h"

namespace tca {

const char* gguf_value_type_name(GgufValueType t) {
    switch (t) {
        case GgufValueType::kU8: return "u8";
        case GgufValueType::kI8: return "i8";
        case GgufValueType::kU16: return "u16";
        case GgufValueType::kI16: return "i16";
        case GgufValueType::kU32: return "u32";
        case GgufValueType::kI32: return "i32";
        case GgufValueType::kF32: return "f32";
        case GgufValueType::kBool: return "bool";
        case GgufValueType::kString: return "string";
        case GgufValueType::kArray: return "array";
        case GgufValueType::kU64: return "u64";
        case GgufValueType::kI64: return "i64";
        case GgufValueType::kF64: return "f64";
    }
    return "?";
}

uint64_t gguf_value_type_size(GgufValueType t) {
    switch (t) {
        case GgufValueType::kU8:
        case GgufValueType::kI8:
        case GgufValueType::kBool: return 1;
        case GgufValueType::kU16:
        case GgufValueType::kI16: return 2;
        case GgufValueType::kU32:
        case GgufValueType::kI32:
        case GgufValueType::kF32: return 4;
        case GgufValueType::kU64:
        case GgufValueType::kI64:
        case GgufValueType::kF64: return 8;
        case GgufValueType::kString:
        case GgufValueType::kArray: return 0;
    }
    return 0;
}

namespace {

bool is_int_type(GgufValueType t) {
    switch (t) {
        case GgufValueType::kU8:
        case GgufValueType::kI8:
        case GgufValueType::kU16:
        case GgufValueType::kI16:
        case GgufValueType::kU32:
        case GgufValueType::kI32:
        case GgufValueType::kU64:
        case GgufValueType::kI64: return true;
        default: return false;
    }
}
bool is_signed_type(GgufValueType t) {
    return t == GgufValueType::kI8 || t == GgufValueType::kI16 || t == GgufValueType::kI32 ||
           t == GgufValueType::kI64;
}

// Decodes one fixed-size scalar at p (size already checked) into u/i/f.
void decode_scalar(GgufValueType t, const uint8_t* p, uint64_t* u, int64_t* i, double* f) {
    switch (t) {
        case GgufValueType::kU8:
        case GgufValueType::kBool: *u = p[0]; *i = static_cast<int64_t>(*u); break;
        case GgufValueType::kI8: {
            int8_t v; std::memcpy(&v, p, 1); *i = v; *u = static_cast<uint64_t>(*i); break;
        }
        case GgufValueType::kU16: {
            uint16_t v; std::memcpy(&v, p, 2); *u = v; *i = v; break;
        }
        case GgufValueType::kI16: {
            int16_t v; std::memcpy(&v, p, 2); *i = v; *u = static_cast<uint64_t>(*i); break;
        }
        case GgufValueType::kU32: {
            uint32_t v; std::memcpy(&v, p, 4); *u = v; *i = v; break;
        }
        case GgufValueType::kI32: {
            int32_t v; std::memcpy(&v, p, 4); *i = v; *u = static_cast<uint64_t>(*i); break;
        }
        case GgufValueType::kU64: {
            uint64_t v; std::memcpy(&v, p, 8); *u = v; *i = static_cast<int64_t>(v); break;
        }
        case GgufValueType::kI64: {
            int64_t v; std::memcpy(&v, p, 8); *i = v; *u = static_cast<uint64_t>(v); break;
        }
        case GgufValueType::kF32: {
            float v; std::memcpy(&v, p, 4); *f = v; break;
        }
        case GgufValueType::kF64: {
            double v; std::memcpy(&v, p, 8); *f = v; break;
        }
        default: break;
    }
}

std::string printable(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 64)) {
        out += (c >= 32 && c < 127) ? c : '?';
    }
    if (s.size() > 64) out += "...";
    return out;
}

}  // namespace

// Parses the file in one pass; a friend of GgufFile so it fills the private fields directly.
class GgufParser {
public:
    GgufParser(GgufFile& out) : f_(out) {}  // NOLINT(google-explicit-constructor)

    Status run() {
        if (f_.size_ < 4 || std::memcmp(f_.base_, "GGUF", 4) != 0) {
            return err_loss("not a GGUF file (bad magic)");
        }
        pos_ = 4;
        uint32_t version = 0;
        TCA_RETURN_IF_ERROR(read_u32(&version, "version"));
        f_.version_ = version;
        if (version == 1) return unsupported("gguf file %s: GGUF v1 is not supported (v2, v3 are)",
                                             f_.name_.c_str());
        if (version != 2 && version != 3) {
            return unsupported("gguf file %s: unsupported GGUF version %u (v2, v3 are)",
                               f_.name_.c_str(), version);
        }
        uint64_t n_tensors = 0, n_kv = 0;
        TCA_RETURN_IF_ERROR(read_u64(&n_tensors, "tensor count"));
        TCA_RETURN_IF_ERROR(read_u64(&n_kv, "kv count"));
        // Smallest KV: 8-byte key length, 4-byte type, 1-byte value. Smallest tensor info:
        // 8-byte name length, u32 n_dims, one u64 dim, u32 type, u64 offset.
        if (n_kv > remaining() / 13) {
            return err_loss("kv count %llu cannot fit in the %llu bytes after the header",
                            ull(n_kv), ull(remaining()));
        }
        // Reserve modestly: the bound above is per byte, so a garbage count in a large file
        // could still reserve ~10x the file size; real files have a few dozen KVs.
        f_.kvs_.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, 1024)));
        for (uint64_t k = 0; k < n_kv; ++k) TCA_RETURN_IF_ERROR(read_kv(k));
        TCA_RETURN_IF_ERROR(read_alignment());
        if (n_tensors > remaining() / 32) {
            return err_loss("tensor count %llu cannot fit in the %llu bytes after the metadata",
                            ull(n_tensors), ull(remaining()));
        }
        f_.tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, 4096)));
        for (uint64_t t = 0; t < n_tensors; ++t) TCA_RETURN_IF_ERROR(read_tensor_info(t));
        // Data section: next multiple of the alignment (may equal the file size when empty).
        const uint64_t a = f_.alignment_;
        f_.data_offset_ = (pos_ + a - 1) / a * a;  // pos_ <= size_ < 2^63: no overflow
        for (GgufTensorInfo& ti : f_.tensors_) TCA_RETURN_IF_ERROR(place_tensor(ti));
        return {};
    }

private:
    static unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }
    uint64_t remaining() const { return f_.size_ - pos_; }

    Status err_loss(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        va_list args;
        va_start(args, fmt);
        std::string msg = vstrformat(fmt, args);
        va_end(args);
        return Status(StatusCode::kDataLoss, "gguf file " + f_.name_ + ": " + msg);
    }

    Status need(uint64_t n, const char* what) {
        if (n > remaining()) {
            return err_loss("%s [offset %llu, %llu bytes] runs past end of file (size %llu)", what,
                            ull(pos_), ull(n), ull(f_.size_));
        }
        return {};
    }
    Status read_bytes(void* dst, uint64_t n, const char* what) {
        TCA_RETURN_IF_ERROR(need(n, what));
        std::memcpy(dst, f_.base_ + pos_, static_cast<size_t>(n));
        pos_ += n;
        return {};
    }
    Status read_u32(uint32_t* v, const char* what) { return read_bytes(v, 4, what); }
    Status read_u64(uint64_t* v, const char* what) { return read_bytes(v, 8, what); }
    // A string as a view into the file.
    Status read_string(std::string_view* s, const std::string& what) {
        uint64_t len = 0;
        TCA_RETURN_IF_ERROR(read_u64(&len, what.c_str()));
        if (len > remaining()) {
            return err_loss("%s: string length %llu runs past end of file (offset %llu, size %llu)",
                            what.c_str(), ull(len), ull(pos_), ull(f_.size_));
        }
        *s = std::string_view(reinterpret_cast<const char*>(f_.base_ + pos_),
                              static_cast<size_t>(len));
        pos_ += len;
        return {};
    }
    Status read_type(GgufValueType* t, const std::string& what) {
        uint32_t raw = 0;
        TCA_RETURN_IF_ERROR(read_u32(&raw, what.c_str()));
        if (raw > 12) return err_loss("%s: unknown value type %u", what.c_str(), raw);
        *t = static_cast<GgufValueType>(raw);
        return {};
    }

    // Skips (validating) an array's elements; the element type and count are already read.
    Status skip_array(GgufValueType elem, uint64_t count, int depth, const std::string& what) {
        if (depth > kGgufMaxArrayDepth) {
            return err_loss("%s: arrays nested deeper than %d", what.c_str(), kGgufMaxArrayDepth);
        }
        const uint64_t es = gguf_value_type_size(elem);
        if (es != 0) {
            if (count > remaining() / es) {
                return err_loss("%s: array of %llu %s runs past end of file (offset %llu, size "
                                "%llu)",
                                what.c_str(), ull(count), gguf_value_type_name(elem), ull(pos_),
                                ull(f_.size_));
            }
            pos_ += count * es;
            return {};
        }
        // Strings take >= 8 bytes each, nested arrays >= 12: the loop is bounded by the file.
        const uint64_t min_bytes = elem == GgufValueType::kString ? 8 : 12;
        if (count > remaining() / min_bytes) {
            return err_loss("%s: array of %llu %s cannot fit in the %llu bytes left", what.c_str(),
                            ull(count), gguf_value_type_name(elem), ull(remaining()));
        }
        for (uint64_t i = 0; i < count; ++i) {
            if (elem == GgufValueType::kString) {
                std::string_view s;
                TCA_RETURN_IF_ERROR(read_string(&s, what));
            } else {
                GgufValueType inner = GgufValueType::kU8;
                uint64_t inner_count = 0;
                TCA_RETURN_IF_ERROR(read_type(&inner, what));
                TCA_RETURN_IF_ERROR(read_u64(&inner_count, what.c_str()));
                TCA_RETURN_IF_ERROR(skip_array(inner, inner_count, depth + 1, what));
            }
        }
        return {};
    }

    Status read_kv(uint64_t index) {
        std::string_view key;
        TCA_RETURN_IF_ERROR(read_string(&key, strformat("kv %llu key", ull(index))));
        GgufKv kv;
        kv.key = std::string(key);
        const std::string what = "kv " + printable(key);
        if (f_.kv_index_.count(kv.key)) return err_loss("%s: duplicate key", what.c_str());
        TCA_RETURN_IF_ERROR(read_type(&kv.type, what));
        kv.payload_offset = pos_;
        if (kv.type == GgufValueType::kString) {
            std::string_view s;
            TCA_RETURN_IF_ERROR(read_string(&s, what));
            kv.str = std::string(s);
        } else if (kv.type == GgufValueType::kArray) {
            TCA_RETURN_IF_ERROR(read_type(&kv.array_type, what));
            TCA_RETURN_IF_ERROR(read_u64(&kv.array_count, what.c_str()));
            kv.payload_offset = pos_;
            TCA_RETURN_IF_ERROR(skip_array(kv.array_type, kv.array_count, 1, what));
        } else {
            const uint64_t n = gguf_value_type_size(kv.type);
            TCA_RETURN_IF_ERROR(need(n, what.c_str()));
            decode_scalar(kv.type, f_.base_ + pos_, &kv.u, &kv.i, &kv.f);
            if (kv.type == GgufValueType::kBool && kv.u > 1) {
                return err_loss("%s: bool value %llu is not 0 or 1", what.c_str(), ull(kv.u));
            }
            pos_ += n;
        }
        kv.payload_bytes = pos_ - kv.payload_offset;
        f_.kv_index_.emplace(kv.key, f_.kvs_.size());
        f_.kvs_.push_back(std::move(kv));
        return {};
    }

    Status read_alignment() {
        const GgufKv* kv = f_.find_kv("general.alignment");
        if (kv == nullptr) return {};
        if (!kv->is_integer() || (is_signed_type(kv->type) && kv->i < 0)) {
            return err_loss("general.alignment has type %s, expected an unsigned integer",
                            gguf_value_type_name(kv->type));
        }
        const uint64_t a = kv->u;
        if (a == 0 || (a & (a - 1)) != 0 || a > (uint64_t{1} << 30)) {
            return err_loss("general.alignment %llu is not a power of two in [1, 2^30]", ull(a));
        }
        f_.alignment_ = a;
        return {};
    }

    Status read_tensor_info(uint64_t index) {
        std::string_view name;
        TCA_RETURN_IF_ERROR(read_string(&name, strformat("tensor %llu name", ull(index))));
        GgufTensorInfo ti;
        ti.name = std::string(name);
        const std::string what = "tensor " + printable(name);
        if (f_.tensor_index_.count(ti.name)) return err_loss("%s: duplicate name", what.c_str());
        uint32_t n_dims = 0;
        TCA_RETURN_IF_ERROR(read_u32(&n_dims, what.c_str()));
        if (n_dims < 1 || n_dims > 4) {
            return err_loss("%s: n_dims %u is not in [1, 4]", what.c_str(), n_dims);
        }
        ti.n_dims = static_cast<int>(n_dims);
        int64_t n_el = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne = 0;
            TCA_RETURN_IF_ERROR(read_u64(&ne, what.c_str()));
            if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                return err_loss("%s: dimension %u is %llu (negative as int64)", what.c_str(), d,
                                ull(ne));
            }
            ti.ne[d] = static_cast<int64_t>(ne);
            if (__builtin_mul_overflow(n_el, ti.ne[d], &n_el)) {
                return err_loss("%s: element count overflows int64", what.c_str());
            }
        }
        for (int d = 0; d < ti.n_dims; ++d) {
            ti.shape[static_cast<size_t>(d)] = ti.ne[static_cast<size_t>(ti.n_dims - 1 - d)];
        }
        ti.n_elements = static_cast<uint64_t>(n_el);
        TCA_RETURN_IF_ERROR(read_u32(&ti.type_id, what.c_str()));
        const GgmlTypeTraits* tr = ggml_type_traits(ti.type_id);
        if (tr == nullptr) {
            return err_loss("%s: unknown ggml type id %u", what.c_str(), ti.type_id);
        }
        ti.type = static_cast<GgmlType>(ti.type_id);
        if (ti.ne[0] % tr->block_elems != 0) {
            return err_loss("%s: row length %lld is not a multiple of the %s block size %lld",
                            what.c_str(), static_cast<long long>(ti.ne[0]), tr->name,
                            static_cast<long long>(tr->block_elems));
        }
        int64_t bytes = 0;
        if (__builtin_mul_overflow(n_el / tr->block_elems, tr->block_bytes, &bytes)) {
            return err_loss("%s: byte size overflows int64", what.c_str());
        }
        ti.n_bytes = static_cast<uint64_t>(bytes);
        TCA_RETURN_IF_ERROR(read_u64(&ti.offset, what.c_str()));
        f_.tensor_index_.emplace(ti.name, f_.tensors_.size());
        f_.tensors_.push_back(std::move(ti));
        return {};
    }

    Status place_tensor(GgufTensorInfo& ti) {
        const std::string what = "tensor " + printable(ti.name);
        if (ti.offset % f_.alignment_ != 0) {
            return err_loss("%s: data offset %llu is not a multiple of the alignment %llu",
                            what.c_str(), ull(ti.offset), ull(f_.alignment_));
        }
        const uint64_t avail = f_.size_ >= f_.data_offset_ ? f_.size_ - f_.data_offset_ : 0;
        if (ti.offset > avail || ti.n_bytes > avail - ti.offset) {
            return err_loss("%s: data [offset %llu, %llu bytes] runs past end of file (size %llu)",
                            what.c_str(), ull(f_.data_offset_ + ti.offset), ull(ti.n_bytes),
                            ull(f_.size_));
        }
        ti.data = f_.base_ + f_.data_offset_ + ti.offset;
        return {};
    }

    GgufFile& f_;
    uint64_t pos_ = 0;
};

bool GgufKv::is_integer() const { return is_int_type(type); }

std::vector<int64_t> GgufTensorInfo::shape_vector() const {
    return std::vector<int64_t>(shape.begin(), shape.begin() + n_dims);
}

std::string GgufTensorInfo::shape_string() const {
    std::string s = "[";
    for (int d = 0; d < n_dims; ++d) {
        if (d) s += ", ";
        s += std::to_string(shape[static_cast<size_t>(d)]);
    }
    return s + "]";
}

Result<GgufFile> GgufFile::open(const std::string& path) {
    TCA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::open(path));
    return from_file(std::move(file));
}

Result<GgufFile> GgufFile::from_file(MappedFile file) {
    GgufFile f;
    f.file_ = std::move(file);
    f.base_ = f.file_.data();
    f.size_ = f.file_.size();
    f.name_ = f.file_.path();
    GgufParser parser(f);
    TCA_RETURN_IF_ERROR(parser.run());
    return f;
}

Result<GgufFile> GgufFile::parse(const uint8_t* data, uint64_t size, std::string name) {
    GgufFile f;
    f.base_ = data;
    f.size_ = size;
    f.name_ = std::move(name);
    GgufParser parser(f);
    TCA_RETURN_IF_ERROR(parser.run());
    return f;
}

const GgufKv* GgufFile::find_kv(std::string_view key) const {
    auto it = kv_index_.find(std::string(key));
    return it == kv_index_.end() ? nullptr : &kvs_[it->second];
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<const GgufKv*> GgufFile::require(std::string_view key) const {
    const GgufKv* kv = find_kv(key);
    if (kv == nullptr) {
        return not_found("gguf file %s: key %.*s not found", name_.c_str(),
                         static_cast<int>(key.size()), key.data());
    }
    return kv;
}

Status GgufFile::bad_type(const GgufKv& kv, const char* wanted) const {
    std::string got = gguf_value_type_name(kv.type);
    if (kv.type == GgufValueType::kArray) {
        got += strformat(" of %s", gguf_value_type_name(kv.array_type));
    }
    return invalid_argument("gguf file %s: key %s has type %s, expected %s", name_.c_str(),
                            kv.key.c_str(), got.c_str(), wanted);
}

Result<uint64_t> GgufFile::get_u64(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require(key));
    if (!kv->is_integer()) return bad_type(*kv, "an integer");
    if (is_signed_type(kv->type) && kv->i < 0) {
        return invalid_argument("gguf file %s: key %s is %lld, expected a non-negative value",
                                name_.c_str(), kv->key.c_str(), static_cast<long long>(kv->i));
    }
    return kv->u;
}

Result<int64_t> GgufFile::get_i64(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require(key));
    if (!kv->is_integer()) return bad_type(*kv, "an integer");
    if (kv->type == GgufValueType::kU64 &&
        kv->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return invalid_argument("gguf file %s: key %s is %llu, out of int64 range", name_.c_str(),
                                kv->key.c_str(), static_cast<unsigned long long>(kv->u));
    }
    return kv->i;
}

Result<uint32_t> GgufFile::get_u32(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const uint64_t v, get_u64(key));
    if (v > std::numeric_limits<uint32_t>::max()) {
        return invalid_argument("gguf file %s: key %.*s is %llu, out of u32 range", name_.c_str(),
                                static_cast<int>(key.size()), key.data(),
                                static_cast<unsigned long long>(v));
    }
    return static_cast<uint32_t>(v);
}

Result<double> GgufFile::get_f64(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require(key));
    if (kv->is_float()) return kv->f;
    if (kv->is_integer()) {
        return is_signed_type(kv->type) ? static_cast<double>(kv->i) : static_cast<double>(kv->u);
    }
    return bad_type(*kv, "a number");
}

Result<float> GgufFile::get_f32(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const double v, get_f64(key));
    return static_cast<float>(v);
}

Result<bool> GgufFile::get_bool(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require(key));
    if (kv->type != GgufValueType::kBool) return bad_type(*kv, "bool");
    return kv->u != 0;
}

Result<std::string> GgufFile::get_string(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require(key));
    if (kv->type != GgufValueType::kString) return bad_type(*kv, "string");
    return kv->str;
}

Result<uint64_t> GgufFile::get_u64_or(std::string_view key, uint64_t def) const {
    if (!has_kv(key)) return def;
    return get_u64(key);
}
Result<double> GgufFile::get_f64_or(std::string_view key, double def) const {
    if (!has_kv(key)) return def;
    return get_f64(key);
}
Result<std::string> GgufFile::get_string_or(std::string_view key, std::string def) const {
    if (!has_kv(key)) return def;
    return get_string(key);
}

Result<const GgufKv*> GgufFile::require_array(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require(key));
    if (kv->type != GgufValueType::kArray) return bad_type(*kv, "array");
    return kv;
}

Result<uint64_t> GgufFile::get_array_count(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require_array(key));
    return kv->array_count;
}

Result<std::vector<std::string_view>> GgufFile::get_string_array_views(
    std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require_array(key));
    if (kv->array_type != GgufValueType::kString) return bad_type(*kv, "array of string");
    // The parser validated every length, so this walk stays inside the payload.
    std::vector<std::string_view> out;
    out.reserve(static_cast<size_t>(kv->array_count));
    uint64_t pos = kv->payload_offset;
    for (uint64_t i = 0; i < kv->array_count; ++i) {
        uint64_t len = 0;
        std::memcpy(&len, base_ + pos, 8);
        pos += 8;
        TCA_ASSERT(len <= size_ - pos, "string array %s was validated", kv->key.c_str());
        out.emplace_back(reinterpret_cast<const char*>(base_ + pos), static_cast<size_t>(len));
        pos += len;
    }
    return out;
}

Result<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(std::vector<std::string_view> views, get_string_array_views(key));
    return std::vector<std::string>(views.begin(), views.end());
}

Result<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require_array(key));
    if (!is_int_type(kv->array_type)) return bad_type(*kv, "array of integers");
    const uint64_t es = gguf_value_type_size(kv->array_type);
    std::vector<int64_t> out(static_cast<size_t>(kv->array_count));
    for (uint64_t i = 0; i < kv->array_count; ++i) {
        uint64_t u = 0;
        int64_t v = 0;
        double f = 0;
        decode_scalar(kv->array_type, base_ + kv->payload_offset + i * es, &u, &v, &f);
        out[static_cast<size_t>(i)] = v;
    }
    return out;
}

Result<std::vector<float>> GgufFile::get_f32_array(std::string_view key) const {
    TCA_ASSIGN_OR_RETURN(const GgufKv* kv, require_array(key));
    const GgufValueType et = kv->array_type;
    if (!is_int_type(et) && et != GgufValueType::kF32 && et != GgufValueType::kF64) {
        return bad_type(*kv, "array of numbers");
    }
    const uint64_t es = gguf_value_type_size(et);
    std::vector<float> out(static_cast<size_t>(kv->array_count));
    for (uint64_t i = 0; i < kv->array_count; ++i) {
        uint64_t u = 0;
        int64_t v = 0;
        double f = 0;
        decode_scalar(et, base_ + kv->payload_offset + i * es, &u, &v, &f);
        float x = 0.0f;
        if (et == GgufValueType::kF32 || et == GgufValueType::kF64) {
            x = static_cast<float>(f);
        } else {
            x = is_signed_type(et) ? static_cast<float>(v) : static_cast<float>(u);
        }
        out[static_cast<size_t>(i)] = x;
    }
    return out;
}

}  // namespace tca
