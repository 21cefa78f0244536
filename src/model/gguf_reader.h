// GGUF v2/v3 reader: parses the header, key/value metadata and tensor infos of a GGUF file in
// place (over a MappedFile or caller-owned bytes). Every count, length and offset is checked
// against the file size before use, so malformed files yield a Status, never a crash.
// Tensor data is not copied: GgufTensorInfo::data points into the mapping.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "model/ggml_types.h"

namespace tca {

enum class GgufValueType : uint32_t {
    kU8 = 0,
    kI8 = 1,
    kU16 = 2,
    kI16 = 3,
    kU32 = 4,
    kI32 = 5,
    kF32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kU64 = 10,
    kI64 = 11,
    kF64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);
// Byte size of a fixed-size value type; 0 for string and array.
uint64_t gguf_value_type_size(GgufValueType t);

// Nested arrays deeper than this are rejected (bounds recursion on untrusted input).
inline constexpr int kGgufMaxArrayDepth = 8;

struct GgufKv {
    std::string key;
    GgufValueType type = GgufValueType::kU8;
    // Scalars: integers (any width, sign-extended or zero-extended) in `i`/`u`, floats in `f`,
    // bool in `u` (0/1), strings in `str`.
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0.0;
    std::string str;
    // Arrays: element type, count, and the raw payload in the file (decoded on demand).
    GgufValueType array_type = GgufValueType::kU8;
    uint64_t array_count = 0;
    uint64_t payload_offset = 0;  // file offset of the value (or array elements)
    uint64_t payload_bytes = 0;

    bool is_integer() const;
    bool is_float() const { return type == GgufValueType::kF32 || type == GgufValueType::kF64; }
};

struct GgufTensorInfo {
    std::string name;
    uint32_t type_id = 0;                   // raw ggml type id from the file
    GgmlType type = GgmlType::kF32;         // same, as the enum (valid: the id is known)
    int n_dims = 0;                         // 1..4
    std::array<int64_t, 4> ne{1, 1, 1, 1};  // ggml order: ne[0] is the fastest (row) dim
    std::array<int64_t, 4> shape{};         // tca order: outermost first, n_dims entries used
    uint64_t offset = 0;                    // relative to the data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
    const uint8_t* data = nullptr;          // into the file bytes

    std::vector<int64_t> shape_vector() const;
    std::string shape_string() const;  // "[32, 64]" outermost first
};

class GgufFile {
public:
    GgufFile() = default;
    GgufFile(GgufFile&&) noexcept = default;
    GgufFile& operator=(GgufFile&&) noexcept = default;
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    // Maps and parses `path`.
    static Result<GgufFile> open(const std::string& path);
    // Parses an already-open file; the result owns it.
    static Result<GgufFile> from_file(MappedFile file);
    // Parses bytes the caller keeps alive for the lifetime of the result (fuzz tests).
    static Result<GgufFile> parse(const uint8_t* data, uint64_t size, std::string name);

    const std::string& name() const { return name_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
    uint64_t file_size() const { return size_; }
    const uint8_t* file_data() const { return base_; }

    const std::vector<GgufKv>& kvs() const { return kvs_; }
    const GgufKv* find_kv(std::string_view key) const;
    bool has_kv(std::string_view key) const { return find_kv(key) != nullptr; }

    // Typed getters. Missing key -> kNotFound; wrong type or out of range -> kInvalidArgument.
    // Integer getters accept any integer width (and non-negative signed values for unsigned).
    Result<uint64_t> get_u64(std::string_view key) const;
    Result<int64_t> get_i64(std::string_view key) const;
    Result<uint32_t> get_u32(std::string_view key) const;
    Result<double> get_f64(std::string_view key) const;  // F32 or F64 (or an integer)
    Result<float> get_f32(std::string_view key) const;
    Result<bool> get_bool(std::string_view key) const;
    Result<std::string> get_string(std::string_view key) const;
    // Defaults when the key is absent; a present key of the wrong type is still an error.
    Result<uint64_t> get_u64_or(std::string_view key, uint64_t def) const;
    Result<double> get_f64_or(std::string_view key, double def) const;
    Result<std::string> get_string_or(std::string_view key, std::string def) const;

    // Arrays. Element count of an array KV:
    Result<uint64_t> get_array_count(std::string_view key) const;
    Result<std::vector<std::string>> get_string_array(std::string_view key) const;
    // Zero-copy views into the file bytes.
    Result<std::vector<std::string_view>> get_string_array_views(std::string_view key) const;
    // Any integer element type.
    Result<std::vector<int64_t>> get_int_array(std::string_view key) const;
    // F32 or F64 elements (integers converted too).
    Result<std::vector<float>> get_f32_array(std::string_view key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const;

private:
    friend class GgufParser;
    Result<const GgufKv*> require(std::string_view key) const;
    Result<const GgufKv*> require_array(std::string_view key) const;
    Status bad_type(const GgufKv& kv, const char* wanted) const;

    MappedFile file_;  // empty for parse()
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    std::string name_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<GgufKv> kvs_;
    std::vector<GgufTensorInfo> tensors_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace tca
