// GgufWriter implementation: KVs are encoded as they are added; to_bytes() lays out the header,
// tensor infos (dims reversed to ggml's fastest-first order) and aligned tensor data.
#include "model/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "model/ggml_quants.h"

namespace tca {

namespace {

void put(std::vector<uint8_t>& out, const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) { put(out, &v, 4); }
void put_u64(std::vector<uint8_t>& out, uint64_t v) { put(out, &v, 8); }
void put_str(std::vector<uint8_t>& out, const std::string& s) {
    put_u64(out, s.size());
    put(out, s.data(), s.size());
}

}  // namespace

void GgufWriter::set_alignment(uint32_t alignment) {
    TCA_ASSERT(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment %u", alignment);
    alignment_ = alignment;
    if (alignment != 32) add_u32("general.alignment", alignment);
}

void GgufWriter::add_scalar(const std::string& key, GgufValueType type, const void* v, size_t n) {
    put_str(kv_bytes_, key);
    put_u32(kv_bytes_, static_cast<uint32_t>(type));
    put(kv_bytes_, v, n);
    ++n_kv_;
}

void GgufWriter::add_u8(const std::string& k, uint8_t v) { add_scalar(k, GgufValueType::kU8, &v, 1); }
void GgufWriter::add_i8(const std::string& k, int8_t v) { add_scalar(k, GgufValueType::kI8, &v, 1); }
void GgufWriter::add_u16(const std::string& k, uint16_t v) {
    add_scalar(k, GgufValueType::kU16, &v, 2);
}
void GgufWriter::add_i16(const std::string& k, int16_t v) {
    add_scalar(k, GgufValueType::kI16, &v, 2);
}
void GgufWriter::add_u32(const std::string& k, uint32_t v) {
    add_scalar(k, GgufValueType::kU32, &v, 4);
}
void GgufWriter::add_i32(const std::string& k, int32_t v) {
    add_scalar(k, GgufValueType::kI32, &v, 4);
}
void GgufWriter::add_u64(const std::string& k, uint64_t v) {
    add_scalar(k, GgufValueType::kU64, &v, 8);
}
void GgufWriter::add_i64(const std::string& k, int64_t v) {
    add_scalar(k, GgufValueType::kI64, &v, 8);
}
void GgufWriter::add_f32(const std::string& k, float v) {
    add_scalar(k, GgufValueType::kF32, &v, 4);
}
void GgufWriter::add_f64(const std::string& k, double v) {
    add_scalar(k, GgufValueType::kF64, &v, 8);
}
void GgufWriter::add_bool(const std::string& k, bool v) {
    const uint8_t b = v ? 1 : 0;
    add_scalar(k, GgufValueType::kBool, &b, 1);
}
void GgufWriter::add_string(const std::string& k, const std::string& v) {
    std::vector<uint8_t> value;
    put_str(value, v);
    add_raw_kv(k, GgufValueType::kString, std::move(value));
}

void GgufWriter::add_string_array(const std::string& k, const std::vector<std::string>& v) {
    std::vector<uint8_t> value;
    put_u32(value, static_cast<uint32_t>(GgufValueType::kString));
    put_u64(value, v.size());
    for (const std::string& s : v) put_str(value, s);
    add_raw_kv(k, GgufValueType::kArray, std::move(value));
}

void GgufWriter::add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
    std::vector<uint8_t> value;
    put_u32(value, static_cast<uint32_t>(GgufValueType::kI32));
    put_u64(value, v.size());
    put(value, v.data(), v.size() * 4);
    add_raw_kv(k, GgufValueType::kArray, std::move(value));
}

void GgufWriter::add_u32_array(const std::string& k, const std::vector<uint32_t>& v) {
    std::vector<uint8_t> value;
    put_u32(value, static_cast<uint32_t>(GgufValueType::kU32));
    put_u64(value, v.size());
    put(value, v.data(), v.size() * 4);
    add_raw_kv(k, GgufValueType::kArray, std::move(value));
}

void GgufWriter::add_f32_array(const std::string& k, const std::vector<float>& v) {
    std::vector<uint8_t> value;
    put_u32(value, static_cast<uint32_t>(GgufValueType::kF32));
    put_u64(value, v.size());
    put(value, v.data(), v.size() * 4);
    add_raw_kv(k, GgufValueType::kArray, std::move(value));
}

void GgufWriter::add_raw_kv(const std::string& key, GgufValueType type,
                            std::vector<uint8_t> value) {
    put_str(kv_bytes_, key);
    put_u32(kv_bytes_, static_cast<uint32_t>(type));
    put(kv_bytes_, value.data(), value.size());
    ++n_kv_;
}

Status GgufWriter::add_tensor(const std::string& name, GgmlType type,
                              const std::vector<int64_t>& shape, const float* data) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    auto bytes = encode_from_f32(type, data, numel);
    if (!bytes.ok()) {
        return Status(bytes.status().code(), "tensor " + name + ": " + bytes.status().message());
    }
    return add_tensor_bytes(name, type, shape, std::move(bytes).value());
}

Status GgufWriter::add_tensor_bytes(const std::string& name, GgmlType type,
                                    const std::vector<int64_t>& shape,
                                    std::vector<uint8_t> bytes) {
    if (shape.empty() || shape.size() > 4) {
        return invalid_argument("tensor %s: %zu dims, expected 1..4", name.c_str(), shape.size());
    }
    int64_t numel = 1;
    for (int64_t d : shape) {
        if (d < 0) return invalid_argument("tensor %s: negative dimension", name.c_str());
        numel *= d;
    }
    const int64_t row = shape.back();
    auto row_bytes = ggml_row_bytes(type, row);
    if (!row_bytes.ok()) {
        return Status(row_bytes.status().code(), "tensor " + name + ": " +
                                                     row_bytes.status().message());
    }
    const uint64_t expect = row == 0 ? 0 : *row_bytes * static_cast<uint64_t>(numel / row);
    if (bytes.size() != expect) {
        return invalid_argument("tensor %s: %zu bytes given, %s data of this shape needs %llu",
                                name.c_str(), bytes.size(), ggml_type_name(type),
                                static_cast<unsigned long long>(expect));
    }
    tensors_.push_back(Tensor{name, type, shape, std::move(bytes)});
    return {};
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    std::vector<uint8_t> out;
    put(out, "GGUF", 4);
    put_u32(out, 3);
    put_u64(out, tensors_.size());
    put_u64(out, n_kv_);
    put(out, kv_bytes_.data(), kv_bytes_.size());
    const uint64_t a = alignment_;
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
        put_str(out, t.name);
        put_u32(out, static_cast<uint32_t>(t.shape.size()));
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {
            put_u64(out, static_cast<uint64_t>(*it));
        }
        put_u32(out, static_cast<uint32_t>(t.type));
        put_u64(out, offset);
        offset += (t.bytes.size() + a - 1) / a * a;
    }
    out.resize((out.size() + a - 1) / a * a, 0);
    for (const Tensor& t : tensors_) {
        put(out, t.bytes.data(), t.bytes.size());
        out.resize((out.size() + a - 1) / a * a, 0);
    }
    return out;
}

Status GgufWriter::write_file(const std::string& path) const {
    const std::vector<uint8_t> bytes = to_bytes();
    struct Closer {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };
    std::unique_ptr<std::FILE, Closer> f(std::fopen(path.c_str(), "wb"));
    if (!f) return io_error("cannot create %s: %s", path.c_str(), std::strerror(errno));
    if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
        return io_error("cannot write %s: %s", path.c_str(), std::strerror(errno));
    }
    if (std::fclose(f.release()) != 0) {
        return io_error("cannot write %s: %s", path.c_str(), std::strerror(errno));
    }
    return {};
}

}  // namespace tca
