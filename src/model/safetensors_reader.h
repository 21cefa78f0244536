// Safetensors reader: u64 header length, JSON header {name: {dtype, shape, data_offsets}, and
// optional "__metadata__"}, then the data section. Parsed in place over a MappedFile with every
// offset, size and shape checked; tensor views point into the mapping. SafetensorsModel joins
// the shards of a multi-file checkpoint (model.safetensors.index.json).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "model/ggml_types.h"

namespace tca {

// Headers longer than this are rejected (the reference implementation uses the same 100 MB).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// JSON nesting deeper than this is rejected before parsing.
inline constexpr int kSafetensorsMaxJsonDepth = 64;

struct SafetensorsTensor {
    std::string name;
    std::string dtype;            // as in the file: "F32", "BF16", "I64", ...
    uint64_t elem_bytes = 0;
    std::vector<int64_t> shape;   // outermost first
    uint64_t n_elements = 0;
    uint64_t begin = 0, end = 0;  // data_offsets, relative to the data section
    uint64_t n_bytes = 0;
    const uint8_t* data = nullptr;

    std::string shape_string() const;
};

// F32/F16/BF16 map to the ggml type of the same layout; other dtypes are a clean
// "tensor x: unsupported safetensors dtype I64 (F32, F16, BF16 are)".
Result<GgmlType> safetensors_ggml_type(const SafetensorsTensor& t);

class SafetensorsFile {
public:
    SafetensorsFile() = default;
    SafetensorsFile(SafetensorsFile&&) noexcept = default;
    SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

    static Result<SafetensorsFile> open(const std::string& path);
    static Result<SafetensorsFile> from_file(MappedFile file);
    // Parses bytes the caller keeps alive (fuzz tests).
    static Result<SafetensorsFile> parse(const uint8_t* data, uint64_t size, std::string name);

    const std::string& name() const { return name_; }
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
    const SafetensorsTensor* find(std::string_view name) const;
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    uint64_t data_offset() const { return data_offset_; }

private:
    Status parse_header();

    MappedFile file_;
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    uint64_t data_offset_ = 0;
    std::string name_;
    std::vector<SafetensorsTensor> tensors_;
    std::unordered_map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

// One or more safetensors files seen as one set of tensors.
class SafetensorsModel {
public:
    // `path` is a .safetensors file, a model.safetensors.index.json, or a directory holding
    // either an index or *.safetensors files.
    static Result<SafetensorsModel> open(const std::string& path);
    // Joins already-open files; a tensor name in two files is an error.
    static Result<SafetensorsModel> from_files(std::vector<SafetensorsFile> files);

    const SafetensorsTensor* find(std::string_view name) const;
    const std::vector<SafetensorsFile>& files() const { return *files_; }
    size_t n_tensors() const { return index_.size(); }

private:
    // Files live on the heap so tensor pointers survive moving the model.
    std::shared_ptr<std::vector<SafetensorsFile>> files_;
    std::unordered_map<std::string, const SafetensorsTensor*> index_;
};

}  // namespace tca
