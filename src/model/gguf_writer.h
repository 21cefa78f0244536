// GgufWriter: builds a GGUF v3 file in memory (KVs of every type, string/numeric arrays,
// tensors stored as F32/F16/BF16/Q8_0/Q4_0 from f32 data or as raw bytes of any ggml type) and
// writes it out. Tests and benchmarks use it to generate models of any shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/ggml_types.h"
#include "model/gguf_reader.h"

namespace tca {

class GgufWriter {
public:
    // Must be a power of two; also written as general.alignment (u32) when not 32.
    void set_alignment(uint32_t alignment);

    void add_u8(const std::string& key, uint8_t v);
    void add_i8(const std::string& key, int8_t v);
    void add_u16(const std::string& key, uint16_t v);
    void add_i16(const std::string& key, int16_t v);
    void add_u32(const std::string& key, uint32_t v);
    void add_i32(const std::string& key, int32_t v);
    void add_u64(const std::string& key, uint64_t v);
    void add_i64(const std::string& key, int64_t v);
    void add_f32(const std::string& key, float v);
    void add_f64(const std::string& key, double v);
    void add_bool(const std::string& key, bool v);
    void add_string(const std::string& key, const std::string& v);
    void add_string_array(const std::string& key, const std::vector<std::string>& v);
    void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
    void add_u32_array(const std::string& key, const std::vector<uint32_t>& v);
    void add_f32_array(const std::string& key, const std::vector<float>& v);
    // A KV whose value bytes (after the u32 type) are given verbatim: nested arrays, odd cases.
    void add_raw_kv(const std::string& key, GgufValueType type, std::vector<uint8_t> value);

    // `shape` is outermost first (tca order); `data` holds numel f32 values, encoded as `type`.
    Status add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                      const float* data);
    // Raw bytes already in `type`'s layout; their size must match the shape.
    Status add_tensor_bytes(const std::string& name, GgmlType type,
                            const std::vector<int64_t>& shape, std::vector<uint8_t> bytes);

    std::vector<uint8_t> to_bytes() const;
    Status write_file(const std::string& path) const;

private:
    struct Tensor {
        std::string name;
        GgmlType type;
        std::vector<int64_t> shape;
        std::vector<uint8_t> bytes;
    };
    void add_scalar(const std::string& key, GgufValueType type, const void* v, size_t n);

    uint32_t alignment_ = 32;
    uint64_t n_kv_ = 0;
    std::vector<uint8_t> kv_bytes_;  // encoded KVs in insertion order
    std::vector<Tensor> tensors_;
};

}  // namespace tca
