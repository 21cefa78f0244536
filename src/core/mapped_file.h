// MappedFile: RAII read-only view of a whole file (mmap), or of an owned in-memory buffer (tests,
// generated models). Model readers parse it in place; tensor views point into it (zero-copy).
// The data pointer is stable across moves, so views survive moving the owner.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tca {

class MappedFile {
public:
    MappedFile() = default;
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    // Maps `path` read-only. Errors name the path and the errno text. An empty file is valid
    // (size 0, data nullptr).
    static Result<MappedFile> open(const std::string& path);
    // Takes ownership of `bytes`; `name` is used in messages in place of a path.
    static MappedFile from_bytes(std::vector<uint8_t> bytes, std::string name);

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    std::span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }
    const std::string& path() const { return path_; }
    bool is_mapped() const { return mapping_ != nullptr; }

private:
    void reset();

    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    void* mapping_ = nullptr;     // mmap base, or nullptr when not mapped
    std::vector<uint8_t> owned_;  // backing store for from_bytes()
};

}  // namespace tca
